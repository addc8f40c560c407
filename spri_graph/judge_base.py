"""The parts every judge graph shares: states, ``prepare`` / ``finalize`` nodes, settings.

:mod:`spri_graph.judge` (the SPRI judge), :mod:`spri_graph.baselines` and judges of your own
(pairwise, panels) build on these: the input and output states, the ``prepare`` node that
validates the input before any model call, the judge prompts' variables, the ``finalize``
node, and :class:`JudgeSettings` (every setting checked, then the models resolved once).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Annotated, Any, Protocol

from langchain_core.messages import AIMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable
from langgraph.types import CachePolicy
from typing_extensions import TypedDict

from spri_graph.caching import check_cache_policy
from spri_graph.critique import Critique, Judgment, check_scale
from spri_graph.grading import (
    JudgeOutputMode,
    StructuredDrafts,
    check_judge_output,
    read_grading,
    resolve_judge_output,
)
from spri_graph.models import ModelSpec
from spri_graph.nodes import StageUsage, context_value, merge_usage
from spri_graph.prompts import (
    JUDGE_PROMPTS,
    fence,
    grading_format,
    resolve_prompts,
    rubric_format,
    score_levels,
)
from spri_graph.rubric import Rubric, coerce_rubric
from spri_graph.settings import LoopSettings, ResolvedModels, check_context

__all__ = [
    "FixedRubricInput",
    "JudgeInput",
    "JudgeOutput",
    "JudgeSettings",
    "JudgeState",
    "RubricInput",
    "RubricOutput",
    "as_judgment",
    "as_rubric",
    "check_reference_free",
    "finalize_judgment",
    "judge_prepare",
    "judge_prompt_inputs",
    "judgment_finalizer",
    "render_judgment",
    "text_field",
]

Scale = tuple[int, int]


def render_judgment(judgment: Judgment) -> str:
    """A grading in the ``<feedback>..</feedback><score>N</score>`` layout the critic reads."""
    judgment = as_judgment(judgment)
    score = "none given" if judgment.score is None else f"{judgment.score:g}"
    return f"<feedback>{judgment.feedback}</feedback><score>{score}</score>"


# --------------------------------------------------------------------------- state


class RubricInput(TypedDict, total=False):
    """Input of :func:`create_rubric_graph`.

    ``reference_answer`` (a response that would get the top score) is used only by graphs
    built with ``reference_free=False``, which require it.
    """

    instruction: str
    reference_answer: str | None


class JudgeInput(RubricInput, total=False):
    """Input of the judge graphs: the instruction and the response to grade."""

    response: str


class FixedRubricInput(JudgeInput, total=False):
    """Input of :func:`create_fixed_rubric_judge`: ``rubric`` overrides the factory's rubric.

    ``rubric`` may be a :class:`Rubric`, a dict of its fields, or rubric text.
    """

    rubric: Rubric


class RubricOutput(TypedDict, total=False):
    """Output of :func:`create_rubric_graph`."""

    rubric: Rubric
    rubric_critiques: list[Critique]
    usage: Annotated[dict[str, StageUsage], merge_usage]


class JudgeOutput(RubricOutput, total=False):
    """Output of the judge graphs.

    ``score`` is ``None`` when the final grading carried no readable score on the judge's
    scale. ``usage`` maps each stage (``"rubric"``, ``"judgment"``) to its model calls and
    tokens.
    """

    score: float | None
    feedback: str
    judgment_critiques: list[Critique]


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
    *,
    with_response: bool,
    reference_free: bool,
    rubric: Rubric | None,
    rubric_from_input: bool,
    scale: Scale = (1, 5),
) -> _JudgeNode:
    """The ``prepare`` node of the judge graphs: validate the input before any model call.

    It also records the context's per-run models in ``context_models``.

    Args:
        with_response: Require a ``response`` (a judge; not the rubric stage alone).
        reference_free: Ignore ``reference_answer`` (else require it).
        rubric: A fixed rubric to grade with, if any.
        rubric_from_input: Take the rubric from the input (falling back to ``rubric``).
        scale: The judge's scale; a rubric from the input must have its levels.
    """

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
            update["rubric"] = (
                rubric if given is None else coerce_rubric(given, "rubric", scale=scale)
            )
        elif rubric is not None:
            update["rubric"] = rubric
        check_context()
        update["context_models"] = {key: context_value(key) for key in ("model", "critic_model")}
        return update

    return prepare


def judge_prompt_inputs(
    reference_free: bool, *, scale: Scale = (1, 5), judge_output: JudgeOutputMode = "text"
) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """The judge prompts' variables from the state (the reference only when used).

    See :data:`spri_graph.prompts.JUDGE_PROMPTS` for the variables.
    """
    low, high = check_scale(scale)
    structured = judge_output == "structured"
    fixed = {
        "low": low,
        "high": high,
        "levels": score_levels((low, high)),
        "rubric_format": rubric_format((low, high), structured=structured),
        "grading_format": grading_format((low, high), structured=structured),
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


def as_rubric(value: Any) -> Rubric | None:
    """A :class:`Rubric` from state, also when read back as a dict of its fields.

    A checkpoint or cache whose serializer does not allow the class gives plain data back.
    """
    return Rubric.model_validate(value) if isinstance(value, Mapping) else value


def as_judgment(value: Any) -> Judgment:
    """A :class:`~spri_graph.Judgment` from state, also when read back as a dict."""
    return Judgment.model_validate(value) if isinstance(value, Mapping) else value


def finalize_judgment(state: Any) -> dict[str, Any]:
    """The ``finalize`` node of the judge graphs: the output keys from the final grading."""
    judgment = as_judgment(state["judgment"])
    return {
        "rubric": as_rubric(state.get("rubric")),
        "score": judgment.score,
        "feedback": judgment.feedback,
        "rubric_critiques": [Critique.of(c) for c in state.get("rubric_critiques") or []],
        "judgment_critiques": [Critique.of(c) for c in state.get("judgment_critiques") or []],
    }


def judgment_finalizer(
    *, scale: Scale = (1, 5), judge_output: JudgeOutputMode = "text"
) -> _JudgeNode:
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


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class JudgeSettings:
    """Validated, resolved settings of one judge factory call.

    Build it with :meth:`create`, which checks every setting (naming the bad one in a
    ``ValueError``) before resolving the models, then pass it to :func:`add_rubric_stage`,
    :func:`add_judgment_stage` or a judge of your own.

    Attributes:
        loop: Refine-loop settings (the critics' threshold is on their own 1-5 scale).
        models: The resolved base and critic models.
        scale: The judge's ``(low, high)`` scale.
        judge_output: ``"text"`` or ``"structured"``, the local-model default applied.
        reference_free: Whether a ``reference_answer`` is ignored (else required).
        prompts: The judge prompts, overrides merged in.
        cache_policy: The node cache policy (``None``: no caching).
    """

    loop: LoopSettings
    models: ResolvedModels
    scale: Scale
    judge_output: JudgeOutputMode
    reference_free: bool
    prompts: Mapping[str, ChatPromptTemplate]
    cache_policy: CachePolicy[Any] | None = None

    @classmethod
    def create(
        cls,
        model: ModelSpec = None,
        *,
        critic_model: ModelSpec = None,
        scale: Any = (1, 5),
        judge_output: JudgeOutputMode | None = None,
        reference_free: bool = True,
        prompts: Mapping[str, ChatPromptTemplate | str] | None = None,
        default_prompts: Mapping[str, ChatPromptTemplate] = JUDGE_PROMPTS,
        cache_policy: CachePolicy[Any] | None = None,
        **loop_settings: Any,
    ) -> JudgeSettings:
        """Check the settings, then resolve the models.

        Args:
            model: The judge model (see :func:`create_judge_graph`).
            critic_model: The critic model; ``None`` means ``model``.
            scale: The judge's integer scale ``(low, high)``.
            judge_output: ``"text"``, ``"structured"`` or ``None`` (structured for the
                embedded local model).
            reference_free: See :func:`create_judge_graph`.
            prompts: Prompt overrides, keyed like ``default_prompts``.
            default_prompts: The prompts the overrides apply to.
            cache_policy: See :func:`create_judge_graph`.
            **loop_settings: :class:`~spri_graph.settings.LoopSettings` fields
                (``threshold``, ``max_iterations``, ``critic_output``, ...).
        """
        scale = check_scale(scale)
        check_judge_output(judge_output)
        check_reference_free(reference_free)
        check_cache_policy(cache_policy)
        loop = LoopSettings(**loop_settings)
        stage_prompts = resolve_prompts(default_prompts, prompts)
        models = loop.resolve(model, critic_model)
        return cls(
            loop=loop,
            models=models,
            scale=scale,
            judge_output=resolve_judge_output(judge_output, models.base),
            reference_free=reference_free,
            prompts=MappingProxyType(stage_prompts),
            cache_policy=cache_policy,
        )

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
