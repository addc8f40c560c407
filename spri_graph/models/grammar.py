"""Structured output for the local model: tools, their JSON grammars and instructions.

llama.cpp constrains sampling with a GBNF grammar. :func:`tool_grammar` builds one for a
tool's JSON arguments with every string bounded (``maxLength``, through llama-cpp-python's
JSON-schema converter), so a small model cannot fill its token budget without closing the
JSON. Schemas shaped like a critique, one free-text field and
then one choice (``ScoredCritique``: ``feedback`` then a score from 1 to 5), take a cheaper
path: :func:`text_then_choice` finds them, and the chat model writes the text unconstrained
and then, after a label (``Score:``), only the choice under a grammar that allows nothing
else (:func:`choice_grammar`). Checking every sampled token against a grammar costs about
as much again as sampling it.

Tools bound without a forced choice (an agent's tools) are listed in the instructions
(:func:`tool_choice_instruction`); a reply whose text opens a JSON object
(:func:`opens_tool_call`) is written again as a call of one of them, under
:func:`tool_call_grammar`, so text replies pay for no grammar.
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
    "opens_tool_call",
    "parsed_tool_call",
    "text_instruction",
    "bounded_schema",
    "text_then_choice",
    "tool_call_grammar",
    "tool_call_schema",
    "tool_choice_instruction",
    "tool_gbnf",
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


def _bounded_strings(schema: Any, max_chars: int) -> Any:
    """Give every free string 1 to ``max_chars`` characters (``minLength``/``maxLength``)."""
    if isinstance(schema, list):
        return [_bounded_strings(item, max_chars) for item in schema]
    if not isinstance(schema, dict):
        return schema
    schema = {key: _bounded_strings(value, max_chars) for key, value in schema.items()}
    if schema.get("type") == "string" and not {"enum", "const", "format", "pattern"} & set(schema):
        schema["maxLength"] = min(schema.get("maxLength", max_chars), max_chars)
        schema["minLength"] = min(max(schema.get("minLength", 1), 1), schema["maxLength"])
    return schema


def bounded_schema(parameters: Mapping[str, Any], max_string_chars: int) -> dict[str, Any]:
    """A tool's parameters with every bound its grammar must enforce written into the schema.

    llama-cpp-python's JSON-schema converter honours ``minLength``/``maxLength`` but not
    ``minimum``/``maximum``: free strings get 1 to ``max_string_chars`` characters (so a small
    model cannot fill its token budget without closing the JSON), integer ranges become
    enums.

    Example:
        >>> bounded_schema({"properties": {"why": {"type": "string"},
        ...     "n": {"type": "integer", "minimum": 1, "maximum": 3}}}, 50)["properties"]
        {'why': {'type': 'string', 'maxLength': 50, 'minLength': 1}, 'n': {'type': 'integer', 'minimum': 1, 'maximum': 3, 'enum': [1, 2, 3]}}
    """  # noqa: E501
    bounded: dict[str, Any] = _bounded_strings(
        _bounded_integers(dict(parameters)), max_string_chars
    )
    return bounded


@functools.lru_cache(maxsize=64)
def tool_gbnf(parameters_json: str, max_string_chars: int) -> str:
    """GBNF grammar text for a tool's JSON arguments, bounded by :func:`bounded_schema`.

    Args:
        parameters_json: The tool's parameters (a JSON schema) as JSON, keys sorted.
        max_string_chars: Most characters in each string.

    Returns:
        The grammar, as llama-cpp-python's ``json_schema_to_gbnf`` writes it.
    """
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    schema = bounded_schema(json.loads(parameters_json), max_string_chars)
    gbnf: str = json_schema_to_gbnf(json.dumps(schema))
    return gbnf


@functools.lru_cache(maxsize=64)
def tool_grammar(parameters_json: str, max_string_chars: int) -> Any:
    """:func:`tool_gbnf` as a ``llama_cpp.LlamaGrammar``; same arguments."""
    from llama_cpp.llama_grammar import LlamaGrammar

    return LlamaGrammar.from_string(tool_gbnf(parameters_json, max_string_chars), verbose=False)


def tool_call_schema(tools: list[dict[str, Any]], max_string_chars: int) -> dict[str, Any]:
    """The JSON schema of a call to one of ``tools``: ``{"name": ..., "arguments": {...}}``.

    Example:
        >>> tool = {"function": {"name": "add", "parameters": {"type": "object"}}}
        >>> tool_call_schema([tool], 10)["oneOf"][0]["properties"]["name"]
        {'const': 'add'}
    """
    return {
        "oneOf": [
            {
                "type": "object",
                "properties": {
                    "name": {"const": tool["function"]["name"]},
                    "arguments": bounded_schema(
                        tool["function"].get("parameters") or {"type": "object"},
                        max_string_chars,
                    ),
                },
                "required": ["name", "arguments"],
            }
            for tool in tools
        ]
    }


@functools.lru_cache(maxsize=64)
def tool_call_grammar(tools_json: str, max_string_chars: int) -> Any:
    """Grammar for a call to one of the tools (OpenAI tool dicts, as JSON): name first.

    Returns:
        A ``llama_cpp.LlamaGrammar`` for :func:`tool_call_schema`.
    """
    from llama_cpp.llama_grammar import LlamaGrammar, json_schema_to_gbnf

    schema = tool_call_schema(json.loads(tools_json), max_string_chars)
    gbnf = json_schema_to_gbnf(json.dumps(schema), prop_order=["name", "arguments"])
    return LlamaGrammar.from_string(gbnf, verbose=False)


def tool_choice_instruction(tools: list[dict[str, Any]]) -> str:
    """Tell the model which tools it may call, and how; it may also answer in text.

    Example:
        >>> print(tool_choice_instruction([{"function": {"name": "add",
        ...     "description": "Add two numbers.", "parameters": {"properties": {
        ...     "a": {"type": "integer"}, "b": {"type": "integer"}}}}}]))
        You can call a tool:
        - add: Add two numbers. Arguments: {"a": <integer>, "b": <integer>}
        To call one, reply with only a JSON object: {"name": "<tool name>", "arguments": {...}}. Otherwise reply in plain text.
    """  # noqa: E501
    lines = []
    for tool in tools:
        function = tool["function"]
        properties = (function.get("parameters") or {}).get("properties") or {}
        fields = ", ".join(
            f"{json.dumps(key)}: {_placeholder(prop)}" for key, prop in properties.items()
        )
        about = (function.get("description") or "").strip()
        lines.append(f"- {function['name']}: {about + ' ' if about else ''}Arguments: {{{fields}}}")
    return (
        "You can call a tool:\n"
        + "\n".join(lines)
        + '\nTo call one, reply with only a JSON object: {"name": "<tool name>", '
        '"arguments": {...}}. Otherwise reply in plain text.'
    )


def opens_tool_call(text: str) -> bool:
    """Whether a reply's first text starts a tool call (a JSON object) rather than text.

    Example:
        >>> opens_tool_call(' {"name"'), opens_tool_call("Sure, 12 x 7 is 84.")
        (True, False)
    """
    return text.lstrip().startswith("{")


def parsed_tool_call(text: str, tools: list[dict[str, Any]]) -> tuple[str, dict[str, Any]] | None:
    """The tool name and arguments of a reply written under :func:`tool_call_grammar`.

    Returns:
        ``None`` when the text is not a whole call of a bound tool (e.g. cut off).

    Example:
        >>> tools = [{"function": {"name": "add"}}]
        >>> parsed_tool_call('{"name": "add", "arguments": {"a": 1}}', tools)
        ('add', {'a': 1})
        >>> parsed_tool_call('{"name": "add", "argu', tools) is None
        True
    """
    try:
        call = json.loads(text)
    except ValueError:
        return None
    names = {tool["function"]["name"] for tool in tools}
    if not isinstance(call, dict) or call.get("name") not in names:
        return None
    arguments = call.get("arguments")
    return (call["name"], arguments) if isinstance(arguments, dict) else None


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
