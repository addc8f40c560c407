"""Structured output for the local model: forced tools, their JSON grammar and instruction.

llama.cpp constrains sampling with a GBNF grammar. :func:`tool_grammar` builds one for a
tool's JSON arguments with every string bounded, so a small model cannot fill its token
budget without closing the JSON. Schemas shaped like a critique, one free-text field and
then one choice (``ScoredCritique``: ``feedback`` then a score from 1 to 5), take a cheaper
path: :func:`text_then_choice` finds them, and the chat model writes the text unconstrained
and then, after a label (``Score:``), only the choice under a grammar that allows nothing
else (:func:`choice_grammar`). Checking every sampled token against a grammar costs about
as much again as sampling it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "TextThenChoice",
    "choice_grammar",
    "choice_label",
    "forced_tool",
    "text_instruction",
    "text_then_choice",
    "tool_grammar",
    "tool_instruction",
    "with_instruction",
]


def forced_tool(tools: list[dict[str, Any]] | None, tool_choice: Any) -> dict[str, Any] | None:
    """The tool a call must use, or ``None`` when the model answers in text.

    Raises:
        ValueError: If ``tool_choice`` names no bound tool, or asks for "any" of several.
    """
    if not tools or tool_choice in (None, False, "auto", "none"):
        return None
    names = [tool["function"]["name"] for tool in tools]
    if isinstance(tool_choice, dict):
        tool_choice = (tool_choice.get("function") or {}).get("name")
    if tool_choice in (True, "any", "required"):
        if len(tools) != 1:
            raise ValueError(
                f"tool_choice: LocalChatModel forces one tool; name it among {names} "
                f"instead of {tool_choice!r}"
            )
        return tools[0]
    for tool in tools:
        if tool["function"]["name"] == tool_choice:
            return tool
    raise ValueError(f"tool_choice: {tool_choice!r} is not among the bound tools {names}")


_JSON_STRING_RULE = '"\\"" char* "\\"" space'
_JSON_CHAR_RULE = 'char ::= [^"\\\\]'
# No control characters inside strings; and tiny models under a JSON grammar like to open
# a string with brackets or spaces ("]["), so a string starts with neither.
_JSON_CHAR_CLEAN = 'char ::= [^"\\\\\\x7F\\x00-\\x1F]'
_JSON_STRING_START = 'string-start ::= [^"\\\\\\x7F\\x00-\\x20<>()\\[\\]{}]'

_MAX_INTEGER_CHOICES = 1000


def _bounded_integers(schema: Any) -> Any:
    """Turn integer ranges into enums: llama.cpp's grammar ignores minimum and maximum."""
    if isinstance(schema, list):
        return [_bounded_integers(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    schema = {key: _bounded_integers(value) for key, value in schema.items()}
    if schema.get("type") != "integer" or "enum" in schema:
        return schema

    def bound(inclusive: str, exclusive: str, step: int) -> int | None:
        for key, shift in ((inclusive, 0), (exclusive, step)):
            value = schema.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                return value + shift
        return None

    low, high = bound("minimum", "exclusiveMinimum", 1), bound("maximum", "exclusiveMaximum", -1)
    if low is not None and high is not None and 0 <= high - low < _MAX_INTEGER_CHOICES:
        schema["enum"] = list(range(low, high + 1))
    return schema


@functools.lru_cache(maxsize=64)
def tool_grammar(parameters_json: str, max_string_chars: int) -> Any:
    """GBNF grammar for a tool's JSON arguments, with strings bounded so output always ends.

    llama.cpp's JSON-schema grammar lets strings run on; a small model can then fill the
    token budget and never close the JSON. Here every plain string holds 1 to
    ``max_string_chars`` characters, no control characters, and starts with neither a space
    nor a bracket; integer ranges (``minimum``/``maximum``) become enums.

    Args:
        parameters_json: The tool's parameters (a JSON schema) as JSON, keys sorted.
        max_string_chars: Most characters in each string.

    Returns:
        A ``llama_cpp.LlamaGrammar``.
    """
    from llama_cpp.llama_grammar import LlamaGrammar, json_schema_to_gbnf

    schema = _bounded_integers(json.loads(parameters_json))
    gbnf = json_schema_to_gbnf(json.dumps(schema))
    if _JSON_STRING_RULE in gbnf and _JSON_CHAR_RULE in gbnf:
        bounded = f'"\\"" string-start char{{0,{max_string_chars - 1}}} "\\"" space'
        gbnf = gbnf.replace(_JSON_STRING_RULE, bounded)
        gbnf = gbnf.replace(_JSON_CHAR_RULE, _JSON_CHAR_CLEAN) + "\n" + _JSON_STRING_START
    return LlamaGrammar.from_string(gbnf, verbose=False)


@dataclass(frozen=True)
class TextThenChoice:
    """A tool whose arguments are one free-text field, then one field of a few choices.

    Attributes:
        text_field: Name of the text field (e.g. ``"feedback"``).
        text_note: The text field's description, for the instruction.
        choice_field: Name of the choice field (e.g. ``"score"``).
        choices: The allowed values, as JSON scalars (e.g. ``(1, 2, 3, 4, 5)``).
    """

    text_field: str
    text_note: str
    choice_field: str
    choices: tuple[Any, ...]

    @property
    def words(self) -> tuple[str, ...]:
        """Each choice as the model writes it: ``3`` for ``3``, ``A`` for ``"A"``."""
        return tuple(str(value) for value in self.choices)


_MAX_CHOICES = 16


def _choices(prop: Mapping[str, Any]) -> tuple[Any, ...] | None:
    values = prop.get("enum", [prop["const"]] if "const" in prop else None)
    if not values or len(values) > _MAX_CHOICES:
        return None
    words = [str(value) for value in values]
    simple = all(isinstance(value, (int, str)) and not isinstance(value, bool) for value in values)
    # Every choice is a short single word.
    if not simple or any(not w or len(w) > 16 or not w.isprintable() or " " in w for w in words):
        return None
    return tuple(values)


def text_then_choice(parameters: Mapping[str, Any]) -> TextThenChoice | None:
    """Whether a tool's parameters are one required text field, then one required choice.

    Such tools (a critique's feedback and score, a verdict's reasons and letter) are
    written in two steps: the text without a grammar, then the choice under a one-token
    grammar right after it; the result is the same JSON object.

    Example:
        >>> shape = text_then_choice({"properties": {
        ...     "feedback": {"type": "string"}, "score": {"enum": [1, 2, 3]}},
        ...     "required": ["feedback", "score"]})
        >>> shape.text_field, shape.choice_field, shape.words
        ('feedback', 'score', ('1', '2', '3'))
        >>> text_then_choice({"properties": {"score": {"enum": [1, 2]}}}) is None
        True
    """
    parameters = _bounded_integers(dict(parameters))
    properties = parameters.get("properties") or {}
    if len(properties) != 2 or set(parameters.get("required") or ()) != set(properties):
        return None
    (text_name, text), (choice_name, choice) = properties.items()
    if text.get("type") != "string" or set(text) - {"type", "description", "title"}:
        return None
    choices = _choices(choice)
    if choices is None:
        return None
    return TextThenChoice(
        text_field=text_name,
        text_note=_note(text),
        choice_field=choice_name,
        choices=choices,
    )


@functools.lru_cache(maxsize=64)
def choice_grammar(words: tuple[str, ...]) -> Any:
    """GBNF grammar that allows exactly one of ``words`` (a ``llama_cpp.LlamaGrammar``)."""
    from llama_cpp.llama_grammar import LlamaGrammar

    alternatives = " | ".join(json.dumps(word) for word in words)
    return LlamaGrammar.from_string(f"root ::= {alternatives}", verbose=False)


def _note(prop: Mapping[str, Any]) -> str:
    note = (prop.get("description") or "").strip().rstrip(".")
    return note[:1].lower() + note[1:]


def _one_of(values: list[str]) -> str:
    return values[0] if len(values) == 1 else f"{', '.join(values[:-1])} or {values[-1]}"


def _placeholder(prop: Mapping[str, Any]) -> str:
    """A JSON-like stand-in for one field, e.g. ``"<concise feedback>"`` or ``<1, 2 or 3>``."""
    note = _note(prop)
    if "enum" in prop or "const" in prop:
        return "<" + _one_of([json.dumps(v) for v in prop.get("enum", [prop.get("const")])]) + ">"
    kind = prop.get("type")
    kind = " or ".join(kind) if isinstance(kind, list) else str(kind or "value")
    if kind == "string":
        return f'"<{note or "text"}>"'
    return f"<{kind}: {note}>" if note else f"<{kind}>"


def tool_instruction(tool: Mapping[str, Any]) -> str:
    """Show the model the JSON to write; the grammar then holds it to that shape.

    Example:
        >>> print(tool_instruction({"function": {"name": "Grade", "parameters": {
        ...     "properties": {"why": {"type": "string", "description": "Reasons."},
        ...                    "score": {"enum": [1, 2, 3], "type": "integer"}}}}}))
        Reply with only this JSON object, filled in:
        {"why": "<reasons>", "score": <1, 2 or 3>}
    """
    properties = (tool["function"].get("parameters") or {}).get("properties") or {}
    fields = ", ".join(
        f"{json.dumps(key)}: {_placeholder(prop)}" for key, prop in properties.items()
    )
    return "Reply with only this JSON object, filled in:\n{" + fields + "}"


def text_instruction(shape: TextThenChoice, max_words: int) -> str:
    """The instruction for the text step of a :class:`TextThenChoice` tool.

    Example:
        >>> shape = TextThenChoice("feedback", "concise feedback", "score", (1, 2))
        >>> print(text_instruction(shape, 60))
        Reply with only the feedback (concise feedback), in at most 60 words. Do not give the score yet: it is asked for next.
    """  # noqa: E501
    note = f" ({shape.text_note})" if shape.text_note else ""
    return (
        f"Reply with only the {shape.text_field}{note}, in at most {max_words} words. "
        f"Do not give the {shape.choice_field} yet: it is asked for next."
    )


def choice_label(shape: TextThenChoice) -> str:
    r"""What follows the text of a :class:`TextThenChoice` tool, before the choice.

    Example:
        >>> choice_label(TextThenChoice("feedback", "", "score", (1, 2, 3)))
        '\n\nScore: '
    """
    return f"\n\n{shape.choice_field[:1].upper()}{shape.choice_field[1:]}: "


def with_instruction(messages: list[dict[str, Any]], instruction: str) -> list[dict[str, Any]]:
    """``messages`` with ``instruction`` added to the system message (or as a new one)."""
    if messages and messages[0].get("role") == "system":
        first = {**messages[0], "content": f"{messages[0]['content']}\n\n{instruction}"}
        return [first, *messages[1:]]
    return [{"role": "system", "content": instruction}, *messages]
