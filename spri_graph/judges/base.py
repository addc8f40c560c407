"""What every judge shares: states, settings, output modes, the grading step, prepare/finalize.

:mod:`spri_graph.judges.absolute` (the SPRI judge), :mod:`spri_graph.judges.baselines`,
the pairwise judge, panels and judges of your own build on these:

* the options, declared once: :class:`GradingOptions` (every judge's) and
  :class:`JudgeOptions` (the refining judges': the loop options too), with their defaults
  in :class:`GradingSettings` and :class:`~spri_graph.engine.options.LoopSettings`, and
  :class:`JudgeSettings` (every option checked, then the models resolved once);
* the input and output states, the ``prepare`` node that validates the input before any
  model call, the judge prompts' variables and the ``finalize`` node;
* output modes: a judge writes its grading (and, for the SPRI judge, its rubric) either as
  text, read by :func:`~spri_graph.parse_judgment` / :func:`~spri_graph.parse_rubric`, or
  as structured output: a tool call with the fields of :func:`grading_schema` /
  :func:`~spri_graph.readers.rubric.rubric_schema`, made by function calling and, on the
  embedded local model, constrained by a grammar so that it always holds a score on the
  scale. ``judge_output=None`` picks structured output for the embedded local model and
  text otherwise, like ``critic_output``;
* :func:`answer_with_schema` (a model that answers every call with a schema) and
  :class:`StructuredDrafts` (one that does so for a refine loop's draft and refine calls);
* :func:`structured_fields`, :func:`read_grading`, :func:`read_rubric`: the readers,
  structured first, text as the fallback;
* :func:`render_rubric`, :func:`render_judgment`: a candidate written back as text;
* :func:`grading_step`: one grading call as a step (see
  :func:`spri_graph.engine.steps.step_node`), and :class:`Grader` (a model's grading step
  with its node cache policy);
* :func:`add_judge_loop`: one refine loop over rubrics or gradings.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from operator import itemgetter
from types import MappingProxyType
from typing import Annotated, Any, Literal, Protocol

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from langchain_core.utils.json import parse_partial_json
from langgraph.graph import StateGraph
from langgraph.types import CachePolicy
from pydantic import BaseModel, Field, create_model
from typing_extensions import TypedDict

from spri_graph.engine.caching import model_identity, prompt_cache_policy
from spri_graph.engine.loop import RefineLoop, add_refine_loop
from spri_graph.engine.options import (
    CallOptions,
    LoopOptions,
    LoopSettings,
    OutputMode,
    ResolvedModels,
    check_context,
    option_names,
    take_options,
)
from spri_graph.engine.prompts import (
    CRITERIA_PROMPTS,
    JUDGE_PROMPTS,
    checklist_format,
    criteria_grading_format,
    fence,
    grading_format,
    pairwise_criteria_format,
    resolve_prompts,
    rubric_format,
    score_levels,
)
from spri_graph.engine.steps import (
    ModelCall,
    StageUsage,
    Step,
    add_usage,
    context_value,
    empty_usage,
    merge_usage,
    message_text,
    structured_output,
)
from spri_graph.models import ModelSpec, is_local_model, resolve_model_cached
from spri_graph.readers.criteria import (
    Checklist,
    CriterionResult,
    coerce_checklist,
    parse_checklist,
    read_checklist_fields,
)
from spri_graph.readers.rubric import Rubric, coerce_rubric, parse_rubric, read_rubric_fields
from spri_graph.readers.scores import Critique, Judgment, Scale, check_scale, parse_judgment

__all__ = [
    "GRADING_OPTION_NAMES",
    "JUDGE_OPTION_NAMES",
    "FixedRubricInput",
    "Grader",
    "GradingOptions",
    "GradingSettings",
    "JudgeInput",
    "JudgeOptions",
    "JudgeOutput",
    "JudgeSettings",
    "JudgeState",
    "RubricInput",
    "CriteriaGrading",
    "RubricOutput",
    "RubricStyle",
    "StructuredDrafts",
    "add_judge_loop",
    "answer_with_schema",
    "as_judgment",
    "as_rubric",
    "check_criteria_grading",
    "check_judge_output",
    "check_rubric_style",
    "check_reference_free",
    "finalize_judgment",
    "grading_schema",
    "grading_step",
    "judge_prepare",
    "judge_prompt_inputs",
    "judgment_finalizer",
    "read_checklist",
    "read_grading",
    "read_rubric",
    "render_checklist",
    "render_judgment",
    "render_rubric",
    "resolve_judge_output",
    "structured_fields",
    "text_field",
]


RubricStyle = Literal["levels", "criteria"]
"""A judge's rubric: one description per score level, or a weighted checklist of criteria."""

CriteriaGrading = Literal["joint", "each"]
"""How a checklist is graded: every criterion in one call, or one call per criterion."""


def check_rubric_style(rubric_style: Any) -> None:
    """Raise a ``ValueError`` unless ``rubric_style`` is ``"levels"`` or ``"criteria"``.

    Example:
        >>> check_rubric_style("checklist")
        Traceback (most recent call last):
        ...
        ValueError: rubric_style must be 'levels' or 'criteria', got 'checklist'
    """
    if rubric_style not in ("levels", "criteria"):
        raise ValueError(f"rubric_style must be 'levels' or 'criteria', got {rubric_style!r}")


def check_criteria_grading(criteria_grading: Any) -> None:
    """Raise a ``ValueError`` unless ``criteria_grading`` is ``"joint"`` or ``"each"``."""
    if criteria_grading not in ("joint", "each"):
        raise ValueError(f"criteria_grading must be 'joint' or 'each', got {criteria_grading!r}")


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


def resolve_judge_output(judge_output: OutputMode | None, model: Any) -> OutputMode:
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
    given, critique. Its drafts and refinements are calls whose output mode is
    ``"candidate"``; this model (a :class:`~spri_graph.engine.steps.CandidateModel`)
    answers those with :attr:`candidates` (:func:`answer_with_schema`), and every other
    call as the model does, so a critic sharing the model still writes its text or
    structured critique.

    Args:
        model: The chat model.
        schema: The structured-output schema of the candidates.
    """

    def __init__(self, model: Runnable[Any, Any], schema: type[BaseModel]) -> None:
        self.model = model
        self.schema = schema
        self._candidates = answer_with_schema(model, schema)

    @property
    def candidates(self) -> Runnable[Any, Any]:
        """The model answering with ``schema``; its reply stays an ``AIMessage``."""
        return self._candidates

    def invoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> BaseMessage:
        """Call the model as it is."""
        return self.model.invoke(input, config, **kwargs)  # type: ignore[no-any-return]

    async def ainvoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> BaseMessage:
        """Call the model asynchronously, as it is."""
        return await self.model.ainvoke(input, config, **kwargs)  # type: ignore[no-any-return]

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


def read_checklist(
    message: BaseMessage, *, scale: Scale = (1, 5), structured: bool = False
) -> Checklist:
    """Read a checklist writer's reply: structured fields first, else its text.

    ``scale`` is taken to match :func:`read_rubric` (a checklist's score is mapped onto it).
    """
    check_scale(scale)
    if structured and (checklist := read_checklist_fields(structured_fields(message))):
        return checklist
    return parse_checklist(message_text(message))


# --------------------------------------------------------------------------- grading step


def grading_step(
    model: Runnable[Any, Any],
    prompt: ChatPromptTemplate,
    prompt_inputs: Callable[[Mapping[str, Any]], dict[str, Any]],
    *,
    scale: Scale = (1, 5),
    judge_output: OutputMode = "text",
    quoted_keys: Sequence[str] = ("response",),
    key: str = "judgment",
    stage: str = "judgment",
    step: str = "grade",
) -> Callable[[Mapping[str, Any]], Step]:
    """One grading call as a step: prompt -> model -> :func:`read_grading`.

    Wrap it with :func:`spri_graph.engine.steps.step_node` to get a node that runs sync or async.
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


# --------------------------------------------------------------------------- writers


def render_rubric(rubric: Rubric) -> str:
    """A rubric in its text layout (also one read back from a cache as a dict)."""
    return as_rubric(rubric).render()  # type: ignore[union-attr]


def render_checklist(checklist: Checklist) -> str:
    """A checklist in its text layout (also one read back from a cache as a dict)."""
    return as_rubric(checklist).render()  # type: ignore[union-attr]


def render_judgment(judgment: Judgment) -> str:
    """A grading in the ``<feedback>..</feedback><score>N</score>`` layout the critic reads."""
    judgment = as_judgment(judgment)
    score = "none given" if judgment.score is None else f"{judgment.score:g}"
    return f"<feedback>{judgment.feedback}</feedback><score>{score}</score>"


# --------------------------------------------------------------------------- state


class RubricInput(TypedDict, total=False):
    """Input of :func:`~spri_graph.create_rubric_graph`.

    ``reference_answer`` (a response that would get the top score) is used only by graphs
    built with ``reference_free=False``, which require it.
    """

    instruction: str
    reference_answer: str | None


class JudgeInput(RubricInput, total=False):
    """Input of the judge graphs: the instruction and the response to grade."""

    response: str


class FixedRubricInput(JudgeInput, total=False):
    """Input of :func:`~spri_graph.create_fixed_rubric_judge`: ``rubric`` overrides its rubric.

    ``rubric`` may be a :class:`Rubric`, a dict of its fields, or rubric text.
    """

    rubric: Rubric | Checklist


class RubricOutput(TypedDict, total=False):
    """Output of :func:`~spri_graph.create_rubric_graph`.

    ``rubric`` is a :class:`~spri_graph.readers.rubric.Rubric`, or with
    ``rubric_style="criteria"`` a :class:`~spri_graph.readers.criteria.Checklist`.
    """

    rubric: Rubric | Checklist
    rubric_critiques: list[Critique]
    usage: Annotated[dict[str, StageUsage], merge_usage]


class JudgeOutput(RubricOutput, total=False):
    """Output of the judge graphs.

    ``score`` is ``None`` when the final grading carried no readable score on the judge's
    scale. ``usage`` maps each stage (``"rubric"``, ``"judgment"``) to its model calls and
    tokens. ``criteria_results`` holds each criterion's verdict and reason when the rubric
    is a checklist (``rubric_style="criteria"``); it is absent otherwise.
    """

    score: float | None
    feedback: str
    judgment_critiques: list[Critique]
    criteria_results: list[CriterionResult]


class JudgeState(FixedRubricInput, JudgeOutput, total=False):
    """Full state of the judge graphs.

    ``judgment`` is the grading under refinement; ``context_models`` the per-run models of
    the graph's context (part of every node's cache key).
    """

    judgment: Judgment
    context_models: dict[str, str | None]


class _JudgeNode(Protocol):
    """A node of the judge graphs (LangGraph passes the state as ``state``)."""

    def __call__(self, state: JudgeState) -> dict[str, Any]: ...


# --------------------------------------------------------------------------- nodes


def text_field(state: Mapping[str, Any], key: str) -> str:
    """``state[key]`` when it is a non-empty string, else a ``ValueError`` naming ``key``."""
    value = state.get(key)
    if value is None:
        raise ValueError(f"{key}: missing; pass a non-empty string {key!r}")
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{key} must be a non-empty string, got {value!r}")
    return value


def judge_prepare(
    settings: JudgeSettings,
    *,
    with_response: bool,
    rubric: Rubric | Checklist | None = None,
    rubric_from_input: bool = False,
) -> _JudgeNode:
    """The ``prepare`` node of the judge graphs: validate the input before any model call.

    It also records the context's per-run models in ``context_models``.

    Args:
        settings: The judge's settings: with ``reference_free=False`` a
            ``reference_answer`` is required (else ignored), and a rubric from the input
            must have the levels of its ``scale``.
        with_response: Require a ``response`` (a judge; not the rubric stage alone).
        rubric: A fixed rubric to grade with, if any.
        rubric_from_input: Take the rubric from the input (falling back to ``rubric``).
    """
    reference_free, scale = settings.reference_free, settings.scale
    criteria = settings.criteria

    def prepare(state: Mapping[str, Any]) -> dict[str, Any]:
        update: dict[str, Any] = {"instruction": text_field(state, "instruction")}
        if with_response:
            update["response"] = text_field(state, "response")
        reference = state.get("reference_answer")
        if not reference_free:
            update["reference_answer"] = text_field(state, "reference_answer")
        elif reference is not None and not isinstance(reference, str):
            raise ValueError(
                f"reference_answer must be a string or None, got {type(reference).__name__}"
            )
        if rubric_from_input:
            given = state.get("rubric")
            if given is None and rubric is None:
                raise ValueError(
                    "rubric: missing; pass rubric= to create_fixed_rubric_judge or a 'rubric' "
                    "in the input"
                )
            if given is None:
                update["rubric"] = rubric
            elif criteria:
                update["rubric"] = coerce_checklist(given, "rubric")
            else:
                update["rubric"] = coerce_rubric(given, "rubric", scale=scale)
        elif rubric is not None:
            update["rubric"] = rubric
        check_context()
        update["context_models"] = {key: context_value(key) for key in ("model", "critic_model")}
        return update

    return prepare


def judge_prompt_inputs(
    reference_free: bool, *, scale: Scale = (1, 5), judge_output: OutputMode = "text"
) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """The judge prompts' variables from the state (the reference only when used).

    See :data:`spri_graph.engine.prompts.JUDGE_PROMPTS` for the variables.
    """
    low, high = check_scale(scale)
    structured = judge_output == "structured"
    fixed = {
        "low": low,
        "high": high,
        "levels": score_levels((low, high)),
        "rubric_format": rubric_format((low, high), structured=structured),
        "grading_format": grading_format((low, high), structured=structured),
        "checklist_format": checklist_format(structured=structured),
        "criteria_grading_format": criteria_grading_format(structured=structured),
        "pairwise_criteria_format": pairwise_criteria_format(structured=structured),
    }

    def inputs(state: Mapping[str, Any]) -> dict[str, Any]:
        reference = None if reference_free else state.get("reference_answer")
        rubric = as_rubric(state.get("rubric"))
        response = state.get("response") or ""
        return {
            "instruction": state["instruction"],
            "response": response,
            "response_block": fence(response),
            "reference_section": (
                f"\n\n### Reference Answer (Score {high}):\n{reference}" if reference else ""
            ),
            "rubric": rubric.render() if rubric is not None else "",
            "context_models": state.get("context_models"),
            **fixed,
        }

    return inputs


def as_rubric(value: Any) -> Rubric | Checklist | None:
    """A :class:`Rubric` or :class:`Checklist` from state, also when read back as a dict.

    A checkpoint or cache whose serializer does not allow the class gives plain data back.
    """
    if isinstance(value, Mapping):
        if "items" in value:
            return Checklist.model_validate(value)
        return Rubric.model_validate(value)
    return value  # type: ignore[no-any-return]


def as_judgment(value: Any) -> Judgment:
    """A :class:`~spri_graph.Judgment` from state, also when read back as a dict."""
    return Judgment.model_validate(value) if isinstance(value, Mapping) else value


def finalize_judgment(state: Any) -> dict[str, Any]:
    """The ``finalize`` node of the judge graphs: the output keys from the final grading."""
    judgment = as_judgment(state["judgment"])
    output = {
        "rubric": as_rubric(state.get("rubric")),
        "score": judgment.score,
        "feedback": judgment.feedback,
        "rubric_critiques": [Critique.of(c) for c in state.get("rubric_critiques") or []],
        "judgment_critiques": [Critique.of(c) for c in state.get("judgment_critiques") or []],
    }
    if "criteria_results" in state:
        output["criteria_results"] = list(state["criteria_results"])
    return output


def judgment_finalizer(*, scale: Scale = (1, 5), judge_output: OutputMode = "text") -> _JudgeNode:
    """A ``finalize`` node that reads the final grading again with the response quoted.

    Inside the refine loop a grading is read from the judge's reply alone; here its raw
    output is read again with the response as ``quoted``, so score markers the judge copied
    from the response (``<score>5</score>`` written into it) cannot set the grade.
    """
    structured = judge_output == "structured"

    def finalize(state: Mapping[str, Any]) -> dict[str, Any]:
        judgment = as_judgment(state["judgment"])
        if judgment.raw is not None:
            judgment = read_grading(
                AIMessage(content=judgment.raw),
                scale=scale,
                quoted=state.get("response"),
                structured=structured,
            )
        return finalize_judgment({**state, "judgment": judgment})

    return finalize


def check_reference_free(reference_free: Any) -> None:
    """Raise a ``ValueError`` unless ``reference_free`` is a bool."""
    if not isinstance(reference_free, bool):
        raise ValueError(f"reference_free must be True or False, got {reference_free!r}")


# --------------------------------------------------------------------------- options


class GradingOptions(CallOptions, total=False):
    """The options every judge takes, the one-call baselines included.

    Besides the :class:`~spri_graph.engine.options.CallOptions` (``prompts``,
    ``retry_policy``, ``cache_policy``), these. Their defaults and checks are the fields of
    :class:`GradingSettings`.

    Attributes:
        scale: The integer score scale ``(low, high)`` of rubrics and gradings: ``(1, 5)``
            (the default), ``(1, 10)``, ``(0, 1)`` for pass/fail... Critics grade on their
            own 1-5 scale, whatever the judge's.
        judge_output: ``"text"`` reads ``<feedback>...</feedback><score>N</score>`` (and a
            rubric's ``Score N:`` lines, a verdict's ``<verdict>A</verdict>``);
            ``"structured"`` has the model answer with the fields of
            :func:`grading_schema` (:func:`~spri_graph.readers.rubric.rubric_schema`,
            :class:`~spri_graph.readers.verdicts.PairwiseVerdict`) by function calling, so
            a score is always on the scale. ``None`` (the default) means ``"structured"``
            for the embedded local model and ``"text"`` otherwise.
        reference_free: Grade without a reference answer (the default, ``True``). With
            ``False``, every input must carry a non-empty ``reference_answer``, shown to
            the rubric writer, the grader and the critics as a response that would get the
            top score; with ``True`` a ``reference_answer`` in the input is not used.
        rubric_style: ``"levels"`` (the default): a rubric is a criteria question and one
            description per score, and a grading picks a level. ``"criteria"``: a rubric is
            a weighted checklist (:class:`~spri_graph.readers.criteria.Checklist`: each
            criterion essential, important, optional or a pitfall, or a numeric weight;
            binary or ordinal), each criterion gets a verdict and a one-line reason
            (``criteria_results``), and the score is their weighted result mapped onto
            ``scale`` (:func:`~spri_graph.readers.criteria.criteria_score`). Its prompts
            are :data:`~spri_graph.engine.prompts.CRITERIA_PROMPTS`.
        criteria_grading: With ``rubric_style="criteria"``: ``"joint"`` (the default)
            grades every criterion in one call, ``"each"`` makes one call per criterion.
    """

    scale: tuple[int, int]
    judge_output: OutputMode | None
    reference_free: bool
    rubric_style: RubricStyle
    criteria_grading: CriteriaGrading


class JudgeOptions(LoopOptions, GradingOptions, total=False):
    """The options of every judge that refines: the loop options and the grading options.

    The SPRI judge, the rubric stage, the pairwise judge, the panel and both evaluator
    kinds take these: :class:`~spri_graph.engine.options.LoopOptions` (``critic_model``,
    ``threshold``, ``max_iterations``, ``critic_output``, ``parse_retries``, ``prompts``,
    ``retry_policy``, ``cache_policy``) and :class:`GradingOptions` (``scale``,
    ``judge_output``, ``reference_free``, ``rubric_style``, ``criteria_grading``).
    """


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class GradingSettings:
    """The checked grading options of one judge: their one set of defaults.

    Every field is a key of :class:`GradingOptions` (documented there), with its default.

    Example:
        >>> GradingSettings(judge_output="json")
        Traceback (most recent call last):
        ...
        ValueError: judge_output must be 'text', 'structured' or None, got 'json'
    """

    scale: Scale = (1, 5)
    judge_output: OutputMode | None = None
    reference_free: bool = True
    rubric_style: RubricStyle = "levels"
    criteria_grading: CriteriaGrading = "joint"

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", check_scale(self.scale))
        check_judge_output(self.judge_output)
        check_reference_free(self.reference_free)
        check_rubric_style(self.rubric_style)
        check_criteria_grading(self.criteria_grading)


JUDGE_OPTION_NAMES: tuple[str, ...] = (*option_names(LoopSettings), *option_names(GradingSettings))
"""Every option name of :class:`JudgeOptions`, in declaration order of the settings."""

GRADING_OPTION_NAMES: tuple[str, ...] = tuple(
    name for name in JUDGE_OPTION_NAMES if name in GradingOptions.__annotations__
)
"""The option names of :class:`GradingOptions` (the one-call judges take these alone)."""


@dataclass(frozen=True)
class JudgeSettings:
    """Validated, resolved settings of one judge factory call.

    Build it with :meth:`from_options`, which refuses unknown option names and checks every
    setting (naming the bad one in a ``ValueError``) before resolving the models, then pass
    it to :func:`~spri_graph.judges.rubric.add_rubric_stage`,
    :func:`~spri_graph.judges.absolute.add_judgment_stage` or a judge of your own.

    Attributes:
        loop: Refine-loop settings (the critics' threshold is on their own 1-5 scale).
        grading: The grading settings as given.
        models: The resolved base and critic models.
        judge_output: ``"text"`` or ``"structured"``, the local-model default applied.
        prompts: The judge prompts, overrides merged in.
    """

    loop: LoopSettings
    grading: GradingSettings
    models: ResolvedModels
    judge_output: OutputMode
    prompts: Mapping[str, ChatPromptTemplate]

    @classmethod
    def from_options(
        cls,
        model: ModelSpec,
        options: Mapping[str, Any],
        *,
        caller: str,
        default_prompts: Mapping[str, ChatPromptTemplate] = JUDGE_PROMPTS,
        names: Sequence[str] = JUDGE_OPTION_NAMES,
    ) -> JudgeSettings:
        """Check the options, then resolve the models.

        Args:
            model: The judge model (see :func:`~spri_graph.create_judge`).
            options: The factory's keyword arguments (:class:`JudgeOptions`).
            caller: The factory's name, for errors.
            default_prompts: The prompts ``prompts`` overrides apply to.
            names: The option names the factory takes (default: all of
                :class:`JudgeOptions`; the one-call judges take :data:`GRADING_OPTION_NAMES`).

        Raises:
            TypeError: If an option is unknown.
            ValueError: If a value is bad or a model string cannot be resolved.
        """
        taken = take_options(options, names, caller=caller)
        own = set(option_names(GradingSettings))
        grading = GradingSettings(**{k: v for k, v in taken.items() if k in own})
        loop = LoopSettings(**{k: v for k, v in taken.items() if k not in own})
        prompts = resolve_prompts({**default_prompts, **CRITERIA_PROMPTS}, loop.prompts)
        models = loop.resolve(model)
        return cls(
            loop=loop,
            grading=grading,
            models=models,
            judge_output=resolve_judge_output(grading.judge_output, models.base),
            prompts=MappingProxyType(prompts),
        )

    @property
    def scale(self) -> Scale:
        """The judge's ``(low, high)`` scale."""
        return self.grading.scale

    @property
    def reference_free(self) -> bool:
        """Whether a ``reference_answer`` is ignored (else required)."""
        return self.grading.reference_free

    @property
    def cache_policy(self) -> CachePolicy[Any] | None:
        """The node cache policy (``None``: no caching)."""
        return self.loop.cache_policy

    @property
    def criteria(self) -> bool:
        """Whether the rubric is a weighted checklist (``rubric_style="criteria"``)."""
        return self.grading.rubric_style == "criteria"

    @property
    def structured(self) -> bool:
        """Whether gradings and rubrics are structured output."""
        return self.judge_output == "structured"

    def prompt_inputs(self) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
        """The prompts' variables from the state (see :func:`judge_prompt_inputs`)."""
        return judge_prompt_inputs(
            self.reference_free, scale=self.scale, judge_output=self.judge_output
        )

    def answering(
        self, model: Runnable[Any, Any], schema: Callable[[Scale], type]
    ) -> Runnable[Any, Any]:
        """``model`` as the loops call it: structured drafts and refinements when asked."""
        return StructuredDrafts(model, schema(self.scale)) if self.structured else model


# --------------------------------------------------------------------------- building blocks


def add_judge_loop(
    builder: StateGraph[Any, Any, Any, Any],
    settings: JudgeSettings,
    name: str,
    *,
    schema: Callable[[Scale], type],
    read: Callable[..., Any],
    render: Callable[[Any], str],
    then: str,
    prompt_prefix: str | None = None,
) -> str:
    """Add one judge loop: candidates read by ``read``, structured by ``schema`` if asked.

    The loop's prompts are ``settings.prompts["<prefix>_draft"]``, ``"<prefix>_critique"``
    and ``"<prefix>_refine"`` (the prefix is ``name`` unless ``prompt_prefix`` is given);
    its candidate goes to state key ``name`` and its critiques to ``<name>_critiques``.

    Args:
        builder: The graph to add the loop's nodes to.
        settings: The judge's settings.
        name: The loop's name (``"rubric"``, ``"judgment"``).
        schema: The structured-output schema of a candidate on a scale.
        read: Reads a candidate: ``read(message, scale=..., structured=...)``.
        render: Writes a candidate back as text for the critic and the refiner.
        then: The node the loop goes to when done.
        prompt_prefix: The prompts' key prefix, if not ``name``.

    Returns:
        The name of the loop's first node (``<name>_draft``).
    """
    scale, structured = settings.scale, settings.structured
    prefix = prompt_prefix or name

    def parse(message: BaseMessage) -> Any:
        return read(message, scale=scale, structured=structured)

    def resolve(model_name: str) -> Runnable[Any, Any]:
        return settings.answering(resolve_model_cached(model_name), schema)

    loop = RefineLoop.for_stage(
        name,
        replace(settings.models, base=settings.answering(settings.models.base, schema)),
        settings.prompts,
        settings.loop,
        prefix=prefix,
        candidate_key=name,
        critiques_key=f"{name}_critiques",
        prompt_inputs=settings.prompt_inputs(),
        parse_candidate=parse,
        render_candidate=render,
        resolve_model=resolve,
    )
    return add_refine_loop(
        builder,
        loop,
        then=then,
        retry_policy=settings.loop.policy,
        cache_policy=settings.cache_policy,
    )


@dataclass(frozen=True)
class Grader:
    """One judge model's one-call grading: its step and its node's cache policy.

    Attributes:
        step: The grading step (see :func:`grading_step`).
        cache_policy: The node cache policy, keyed on the model and the prompt it would
            send; ``None`` when the settings cache nothing.
    """

    step: Callable[[Mapping[str, Any]], Step]
    cache_policy: CachePolicy[Any] | None

    @classmethod
    def of(
        cls,
        settings: JudgeSettings,
        model: Runnable[Any, Any],
        *,
        node: str = "grade",
        step: str = "grade",
    ) -> Grader:
        """``model`` grading with ``settings.prompts["judgment_draft"]`` in one call.

        ``settings.grading.judge_output=None`` gives the model its own default (structured
        for the embedded local model), so several models graded this way may differ.

        Args:
            settings: The judge's settings.
            model: The grading model.
            node: The node's name (part of the cache key).
            step: The step's name, for tracing.
        """
        output = resolve_judge_output(settings.grading.judge_output, model)
        prompt = settings.prompts["judgment_draft"]
        inputs = judge_prompt_inputs(
            settings.reference_free, scale=settings.scale, judge_output=output
        )
        graded = grading_step(
            model, prompt, inputs, scale=settings.scale, judge_output=output, step=step
        )
        policy = prompt_cache_policy(
            settings.cache_policy,
            node=node,
            model=model,
            prompt=prompt,
            prompt_inputs=inputs,
            extra=[output, list(settings.scale)],
        )
        return cls(graded, policy)
