"""Grading building blocks shared by every judge: output modes, schemas, readers, a step.

A judge writes its grading (and, for the SPRI judge, its rubric) either as text, read by
:func:`~spri_graph.parse_judgment` / :func:`~spri_graph.parse_rubric`, or as structured
output: a tool call with the fields of :func:`grading_schema` / :func:`rubric_schema`,
made by function calling and, on the embedded local model, constrained by a grammar so
that it always holds a score on the scale. ``judge_output=None`` picks structured output
for the embedded local model and text otherwise, like ``critic_output``.

Building blocks for judges of your own (pairwise, panels):

* :func:`resolve_judge_output` - the output mode a model gets;
* :func:`grading_schema`, :func:`~spri_graph.rubric.rubric_schema` - the schemas;
* :func:`answer_with_schema` - a model that answers every call with a schema;
  :class:`StructuredDrafts` - one that does so for a refine loop's draft and refine calls;
* :func:`structured_fields`, :func:`read_grading`, :func:`read_rubric` - the readers,
  structured first, text as the fallback;
* :func:`grading_step` - one grading call as a step (see :func:`spri_graph.nodes.step_node`).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any, Literal

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import BaseMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from langchain_core.utils.json import parse_partial_json
from pydantic import BaseModel, Field, create_model

from spri_graph.caching import model_identity
from spri_graph.critique import Judgment, check_scale, parse_judgment
from spri_graph.models import is_local_model, resolve_model_cached
from spri_graph.nodes import (
    ModelCall,
    Step,
    add_usage,
    context_value,
    empty_usage,
    message_text,
    structured_output,
)
from spri_graph.rubric import Rubric, parse_rubric, read_rubric_fields

__all__ = [
    "JudgeOutputMode",
    "StructuredDrafts",
    "answer_with_schema",
    "check_judge_output",
    "grading_schema",
    "grading_step",
    "read_grading",
    "read_rubric",
    "resolve_judge_output",
    "structured_fields",
]

JudgeOutputMode = Literal["text", "structured"]
Scale = tuple[int, int]


def check_judge_output(judge_output: Any) -> None:
    """Raise a ``ValueError`` unless ``judge_output`` is ``"text"``, ``"structured"`` or None.

    Example:
        >>> check_judge_output("json")
        Traceback (most recent call last):
        ...
        ValueError: judge_output must be 'text', 'structured' or None, got 'json'
    """
    if judge_output not in (None, "text", "structured"):
        raise ValueError(f"judge_output must be 'text', 'structured' or None, got {judge_output!r}")


def resolve_judge_output(judge_output: JudgeOutputMode | None, model: Any) -> JudgeOutputMode:
    """The output mode a judge model gets: ``None`` means structured for the local model.

    Example:
        >>> resolve_judge_output(None, object()), resolve_judge_output("structured", None)
        ('text', 'structured')
    """
    check_judge_output(judge_output)
    if judge_output is None:
        return "structured" if is_local_model(model) else "text"
    return judge_output


# --------------------------------------------------------------------------- schemas


@functools.lru_cache(maxsize=32)
def _grading_schema(scale: Scale) -> type[BaseModel]:
    low, high = scale
    feedback = Field(description="Concise feedback that judges the response by the rubric.")
    score = Field(
        ge=low, le=high, description=f"The rubric level the response meets, {low}-{high}."
    )
    doc = f"A grading of one response by a rubric: feedback, then a {low}-{high} score."
    return create_model("Grading", __doc__=doc, feedback=(str, feedback), score=(int, score))


def grading_schema(scale: Scale = (1, 5)) -> type[BaseModel]:
    """The structured-output schema of a grading on ``scale`` (tool name ``Grading``).

    Fields: ``feedback`` (a string), then ``score`` (an integer from ``low`` to ``high``).

    Example:
        >>> grading_schema((1, 10)).model_json_schema()["properties"]["score"]["maximum"]
        10
    """
    return _grading_schema(check_scale(scale))


# --------------------------------------------------------------------------- models


def answer_with_schema(model: Runnable[Any, Any], schema: type[BaseModel]) -> Runnable[Any, Any]:
    """``model`` answering with ``schema`` by function calling, replying its ``AIMessage``.

    Unlike ``with_structured_output``, the reply stays a message: its tool call carries the
    fields (read them with :func:`structured_fields`) and its ``usage_metadata`` the tokens.
    """
    return structured_output(model, schema) | RunnableLambda(itemgetter("raw"), name="raw")


class StructuredDrafts(Runnable[LanguageModelInput, BaseMessage]):
    """A chat model whose refine-loop draft and refine calls answer with ``schema``.

    A :class:`~spri_graph.RefineLoop` calls one model to draft, refine and, when no critic is
    given, critique. Wrapped in this, the model answers the calls tagged as drafts and
    refinements (``spri_step`` metadata ``"draft"`` or ``"refine"``, which every loop call
    carries) through :func:`answer_with_schema`, and every other call as it is, so a critic
    sharing the model still writes its text or structured critique.

    Args:
        model: The chat model.
        schema: The structured-output schema of the candidates.
    """

    def __init__(self, model: Runnable[Any, Any], schema: type[BaseModel]) -> None:
        self.model = model
        self.schema = schema
        self.structured = answer_with_schema(model, schema)

    def _pick(self, config: RunnableConfig | None) -> Runnable[Any, Any]:
        metadata = (config or {}).get("metadata") or {}
        return self.structured if metadata.get("spri_step") in ("draft", "refine") else self.model

    def invoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> BaseMessage:
        """Call the model, structured for draft and refine calls."""
        return self._pick(config).invoke(input, config, **kwargs)  # type: ignore[no-any-return]

    async def ainvoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> BaseMessage:
        """Call the model asynchronously, structured for draft and refine calls."""
        return await self._pick(config).ainvoke(input, config, **kwargs)  # type: ignore[no-any-return]

    def with_structured_output(
        self, schema: Any, *, include_raw: bool = False, **kwargs: Any
    ) -> Runnable[Any, Any]:
        """The wrapped model's structured output (a critic sharing the model uses it)."""
        if include_raw and not kwargs:
            return structured_output(self.model, schema)
        return self.model.with_structured_output(schema, include_raw=include_raw, **kwargs)  # type: ignore[attr-defined, no-any-return]

    @property
    def _identifying_params(self) -> dict[str, Any]:
        """The wrapped model's identity and the schema (node cache keys use it)."""
        return {
            "model": model_identity(self.model),
            "schema": json.dumps(self.schema.model_json_schema(), sort_keys=True),
        }


# --------------------------------------------------------------------------- readers


def _json_object(text: str) -> dict[str, Any] | None:
    start, end = text.find("{"), text.rfind("}")
    if start < 0:
        return None
    data: Any = None
    if end > start:
        try:
            data = json.loads(text[start : end + 1])
        except ValueError:
            data = None
    if data is None:
        try:  # cut off by the token limit
            data = parse_partial_json(text[start:])
        except ValueError:
            return None
    return data if isinstance(data, dict) else None


def structured_fields(message: BaseMessage) -> dict[str, Any] | None:
    """The fields of a structured answer: its tool call, or a JSON object in its text.

    A tool call whose JSON was cut off (an ``invalid_tool_call``) is read as far as it goes.

    Returns:
        The fields, or ``None`` when the message holds no JSON object.

    Example:
        >>> from langchain_core.messages import AIMessage
        >>> structured_fields(AIMessage('{"feedback": "Fine.", "score": 4}'))
        {'feedback': 'Fine.', 'score': 4}
    """
    for call in getattr(message, "tool_calls", None) or []:
        if isinstance(call.get("args"), Mapping):
            return dict(call["args"])
    for call in getattr(message, "invalid_tool_calls", None) or []:
        if isinstance(call.get("args"), str) and (found := _json_object(call["args"])):
            return found
    return _json_object(message_text(message))


def _score(value: Any, scale: Scale) -> float | None:
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if scale[0] <= value <= scale[1] else None


def read_grading(
    message: BaseMessage,
    *,
    scale: Scale = (1, 5),
    quoted: str | Sequence[str] | None = None,
    structured: bool = False,
) -> Judgment:
    """Read a judge's grading: structured fields first, else its text.

    Args:
        message: The judge's reply.
        scale: The ``(low, high)`` scale; a score outside it is unread (``None``).
        quoted: The text under judgment: score markers copied from it do not count
            (see :func:`~spri_graph.parse_judgment`).
        structured: Read the fields of :func:`grading_schema` when the reply has them.

    Example:
        >>> from langchain_core.messages import AIMessage
        >>> read_grading(AIMessage('{"feedback": "Ok.", "score": 9}'), structured=True).score
        >>> read_grading(AIMessage("<feedback>Ok.</feedback><score>4</score>")).score
        4.0
    """
    scale = check_scale(scale)
    if structured:
        fields = structured_fields(message)
        if fields is not None and ("score" in fields or "feedback" in fields):
            feedback = fields.get("feedback")
            return Judgment(
                feedback=feedback.strip() if isinstance(feedback, str) else "",
                score=_score(fields.get("score"), scale),
                raw=json.dumps(fields),
                scale=scale,
            )
    return parse_judgment(message_text(message), scale=scale, quoted=quoted)


def read_rubric(message: BaseMessage, *, scale: Scale = (1, 5), structured: bool = False) -> Rubric:
    """Read a rubric writer's reply: structured fields first, else its text.

    Missing levels get the generic description either way (see :func:`parse_rubric`).
    """
    if structured and (rubric := read_rubric_fields(structured_fields(message), scale=scale)):
        return rubric
    return parse_rubric(message_text(message), scale=scale)


# --------------------------------------------------------------------------- grading step


def grading_step(
    model: Runnable[Any, Any],
    prompt: ChatPromptTemplate,
    prompt_inputs: Callable[[Mapping[str, Any]], dict[str, Any]],
    *,
    scale: Scale = (1, 5),
    judge_output: JudgeOutputMode = "text",
    quoted_keys: Sequence[str] = ("response",),
    key: str = "judgment",
    stage: str = "judgment",
    step: str = "grade",
) -> Callable[[Mapping[str, Any]], Step]:
    """One grading call as a step: prompt -> model -> :func:`read_grading`.

    Wrap it with :func:`spri_graph.nodes.step_node` to get a node that runs sync or async.
    The call is tagged ``spri:<stage>:<step>``, and a per-run ``model`` from the graph's
    context replaces ``model``.

    Args:
        model: The judge model.
        prompt: The grading prompt.
        prompt_inputs: Builds the prompt's variables from the state.
        scale: The judge's scale.
        judge_output: ``"text"`` or ``"structured"`` (see :func:`resolve_judge_output`).
        quoted_keys: State keys holding the text under judgment.
        key: State key the :class:`~spri_graph.Judgment` is written to.
        stage: Stage name, for tracing and ``usage``.
        step: Step name, for tracing.

    Returns:
        A step whose update is ``{key: Judgment, "usage": {stage: StageUsage}}``.
    """
    scale = check_scale(scale)
    check_judge_output(judge_output)
    structured = judge_output == "structured"
    schema = grading_schema(scale)

    def grade(state: Mapping[str, Any]) -> Step:
        name = context_value("model")
        runnable = resolve_model_cached(name, field="model") if name else model
        if structured:
            runnable = answer_with_schema(runnable, schema)
        messages = prompt.format_messages(**prompt_inputs(state))
        message = yield ModelCall.for_stage(runnable, messages, stage=stage, step=step)
        quoted = [state[k] for k in quoted_keys if isinstance(state.get(k), str)]
        return {
            key: read_grading(message, scale=scale, quoted=quoted, structured=structured),
            "usage": {stage: add_usage(empty_usage(), message, critic=False)},
        }

    return grade
