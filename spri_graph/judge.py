"""Instance-specific rubrics and LLM-as-a-judge, built from SPRI's refine loop.

Instead of one generic rubric for every instruction, the judge writes a 1-5 rubric for *this*
instruction, has a critic check its usefulness and refines it, grades the response with it,
then critiques and refines the grading itself. Both stages are the same draft -> critique ->
refine loop as the SPRI graph (:mod:`spri_graph.loop`):

``prepare -> rubric_draft -> rubric_critique -(refine)-> rubric_refine -> ...``
``-(done)-> judgment_draft -> judgment_critique -(refine)-> judgment_refine -> ...``
``-(done)-> finalize``

:func:`create_rubric_graph` is the rubric stage alone. The one-call baselines
(:func:`~spri_graph.create_vanilla_judge`, :func:`~spri_graph.create_fixed_rubric_judge`) live
in :mod:`spri_graph.baselines` and share this module's states and ``prepare`` / ``finalize``
nodes. Rubrics themselves (:class:`~spri_graph.Rubric`, :func:`~spri_graph.parse_rubric`)
live in :mod:`spri_graph.rubric`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Annotated, Any

from langchain_core.messages import BaseMessage
from langchain_core.prompts import ChatPromptTemplate
from langgraph.graph import END, START, StateGraph
from langgraph.types import RetryPolicy
from typing_extensions import TypedDict

from spri_graph.critique import Critique, Judgment, parse_judgment
from spri_graph.loop import RefineLoop, add_refine_loop
from spri_graph.models import ModelSpec, resolve_model_cached
from spri_graph.nodes import StageUsage, merge_usage, message_text
from spri_graph.prompts import JUDGE_PROMPTS, resolve_prompts
from spri_graph.rubric import GENERIC_RUBRIC, Rubric, coerce_rubric, parse_rubric
from spri_graph.settings import CriticOutput, LoopSettings, check_context
from spri_graph.spri import SPRIContext

__all__ = [
    "GENERIC_RUBRIC",
    "JUDGE_DEFAULTS",
    "FixedRubricInput",
    "JudgeInput",
    "JudgeOutput",
    "JudgeState",
    "Rubric",
    "RubricInput",
    "RubricOutput",
    "check_reference_free",
    "create_judge_graph",
    "create_rubric_graph",
    "finalize_judgment",
    "judge_prepare",
    "judge_prompt_inputs",
    "parse_rubric",
    "render_judgment",
    "text_field",
]


def render_judgment(judgment: Judgment) -> str:
    """A grading in the ``<feedback>..</feedback><score>N</score>`` layout the critic reads."""
    score = "none given" if judgment.score is None else f"{judgment.score:g}"
    return f"<feedback>{judgment.feedback}</feedback><score>{score}</score>"


# --------------------------------------------------------------------------- state


class RubricInput(TypedDict, total=False):
    """Input of :func:`create_rubric_graph`.

    ``reference_answer`` (a response that would score 5) is used only by graphs built with
    ``reference_free=False``, which require it.
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

    ``score`` is ``None`` when the final grading carried no readable 1-5 score.
    ``usage`` maps each stage (``"rubric"``, ``"judgment"``) to its model calls and tokens.
    """

    score: float | None
    feedback: str
    judgment_critiques: list[Critique]


class JudgeState(FixedRubricInput, JudgeOutput, total=False):
    """Full state of the judge graphs; ``judgment`` is the grading under refinement."""

    judgment: Judgment


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
    *, with_response: bool, reference_free: bool, rubric: Rubric | None, rubric_from_input: bool
) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """The ``prepare`` node of the judge graphs: validate the input before any model call.

    Args:
        with_response: Require a ``response`` (a judge; not the rubric stage alone).
        reference_free: Ignore ``reference_answer`` (else require it).
        rubric: A fixed rubric to grade with, if any.
        rubric_from_input: Take the rubric from the input (falling back to ``rubric``).
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
            update["rubric"] = rubric if given is None else coerce_rubric(given, "rubric")
        elif rubric is not None:
            update["rubric"] = rubric
        check_context()
        return update

    return prepare


def judge_prompt_inputs(reference_free: bool) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """The judge prompts' variables from the state (the reference only when used)."""

    def inputs(state: Mapping[str, Any]) -> dict[str, Any]:
        reference = None if reference_free else state.get("reference_answer")
        rubric = state.get("rubric")
        return {
            "instruction": state["instruction"],
            "response": state.get("response", ""),
            "reference_section": (
                f"\n\n### Reference Answer (Score 5):\n{reference}" if reference else ""
            ),
            "rubric": rubric.render() if isinstance(rubric, Rubric) else "",
        }

    return inputs


def finalize_judgment(state: Mapping[str, Any]) -> dict[str, Any]:
    """The ``finalize`` node of the judge graphs: the output keys from the final grading."""
    judgment: Judgment = state["judgment"]
    return {
        "score": judgment.score,
        "feedback": judgment.feedback,
        "rubric_critiques": list(state.get("rubric_critiques") or []),
        "judgment_critiques": list(state.get("judgment_critiques") or []),
    }


# --------------------------------------------------------------------------- factories


def check_reference_free(reference_free: Any) -> None:
    """Raise a ``ValueError`` unless ``reference_free`` is a bool."""
    if not isinstance(reference_free, bool):
        raise ValueError(f"reference_free must be True or False, got {reference_free!r}")


def _build_refined(
    model: ModelSpec,
    *,
    critic_model: ModelSpec,
    settings: LoopSettings,
    reference_free: bool,
    prompts: Mapping[str, ChatPromptTemplate | str] | None,
    with_judgment: bool,
) -> StateGraph:
    check_reference_free(reference_free)
    stage_prompts = resolve_prompts(JUDGE_PROMPTS, prompts)
    models = settings.resolve(model, critic_model)
    policy = settings.policy
    inputs = judge_prompt_inputs(reference_free)

    def loop(
        name: str,
        candidate_key: str,
        critiques_key: str,
        parse: Callable[[BaseMessage], Any],
        render: Callable[[Any], str],
    ) -> RefineLoop:
        return RefineLoop(
            name=name,
            model=models.base,
            critic_model=models.critic,
            draft_prompt=stage_prompts[f"{name}_draft"],
            critique_prompt=stage_prompts[f"{name}_critique"],
            refine_prompt=stage_prompts[f"{name}_refine"],
            candidate_key=candidate_key,
            critiques_key=critiques_key,
            prompt_inputs=inputs,
            parse_candidate=parse,
            render_candidate=render,
            threshold=settings.threshold,
            max_iterations=settings.max_iterations,
            critic_output=models.critic_output,
            critic_parse_retries=settings.critic_parse_retries,
            resolve_model=resolve_model_cached,
        )

    builder = StateGraph(
        JudgeState,
        context_schema=SPRIContext,
        input_schema=JudgeInput if with_judgment else RubricInput,
        output_schema=JudgeOutput if with_judgment else RubricOutput,
    )
    builder.add_node(
        "prepare",
        judge_prepare(
            with_response=with_judgment,
            reference_free=reference_free,
            rubric=None,
            rubric_from_input=False,
        ),
    )
    judgment = loop(
        "judgment",
        "judgment",
        "judgment_critiques",
        lambda message: parse_judgment(message_text(message)),
        render_judgment,
    )
    rubric = loop(
        "rubric",
        "rubric",
        "rubric_critiques",
        lambda message: parse_rubric(message_text(message)),
        Rubric.render,
    )
    builder.add_edge(START, "prepare")
    builder.add_edge(
        "prepare",
        add_refine_loop(
            builder,
            rubric,
            then=judgment.nodes[0] if with_judgment else END,
            retry_policy=policy,
        ),
    )
    if with_judgment:
        add_refine_loop(builder, judgment, then="finalize", retry_policy=policy)
        builder.add_node("finalize", finalize_judgment)
        builder.add_edge("finalize", END)
    return builder


JUDGE_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        "critic_model": None,
        "threshold": 4,
        "max_iterations": 4,
        "reference_free": True,
        "critic_output": None,
        "critic_parse_retries": 1,
        "prompts": None,
        "retry_policy": None,
    }
)
"""The defaults of :func:`create_judge_graph`'s options (for wrappers such as evaluators)."""


def create_judge_graph(
    model: ModelSpec = None,
    *,
    critic_model: ModelSpec = None,
    threshold: int = 4,
    max_iterations: int = 4,
    reference_free: bool = True,
    critic_output: CriticOutput | None = None,
    critic_parse_retries: int = 1,
    prompts: Mapping[str, ChatPromptTemplate | str] | None = None,
    retry_policy: RetryPolicy | None = None,
) -> StateGraph:
    r"""Create the SPRI judge: an instance-specific rubric, then a refined grading with it.

    The rubric stage drafts a rubric for the instruction, has the critic judge its
    usefulness and refines it while the score is below ``threshold``. The judgment stage
    grades the response against the rubric (``<feedback>...</feedback><score>N</score>``,
    read by :func:`spri_graph.parse_judgment`), has the critic check that the grading
    follows the rubric, and refines the grading the same way. A grading with no readable
    score gets ``score=None`` unless a refinement fixes it.

    Args:
        model: Model that writes rubrics and gradings: a chat model or a model string
            (``"openai:gpt-4o-mini"``, ``"local"``, ...); ``None`` means ``$SPRI_MODEL`` or the
            embedded local model.
        critic_model: Critic model; defaults to ``model``.
        threshold: Critique score (1-5) that accepts a rubric or a grading.
        max_iterations: Most critiques per stage (at least 1).
        reference_free: Grade without a reference answer (the default). With ``False``,
            every input must carry a non-empty ``reference_answer``, shown to the rubric
            writer, the grader and the critic as a response that would score 5; with
            ``True`` a ``reference_answer`` in the input is not used.
        critic_output: ``"text"`` parses ``Feedback: ... [RESULT] N``; ``"structured"`` uses
            ``with_structured_output``. ``None`` means ``"text"``, except ``"structured"``
            for the embedded local model.
        critic_parse_retries: Re-asks, with a format reminder, when a text critique has no
            readable score.
        prompts: Overrides keyed ``rubric_draft``, ``rubric_critique``, ``rubric_refine``,
            ``judgment_draft``, ``judgment_critique``, ``judgment_refine``
            (see :data:`spri_graph.prompts.JUDGE_PROMPTS`).
        retry_policy: Retry policy for transient model errors; defaults to
            :func:`spri_graph.default_retry_policy`.

    Returns:
        An uncompiled :class:`~langgraph.graph.StateGraph` with input ``instruction``,
        ``response`` and optional ``reference_answer``, and output ``rubric``, ``score``,
        ``feedback``, ``rubric_critiques``, ``judgment_critiques`` and ``usage``. Per-run
        settings go through ``context=SPRIContext(...)``.

    Raises:
        ValueError: If a setting is out of range or a model string cannot be resolved; at
            run time, before any model call, if ``instruction`` or ``response`` is missing
            or empty.

    Example:
        >>> from langchain_core.language_models import GenericFakeChatModel
        >>> model = GenericFakeChatModel(messages=iter([
        ...     "Criteria: Is 2+2 answered correctly?\nScore 1: Wrong.\nScore 2: Wrong but "
        ...     "close.\nScore 3: Right, no reasoning.\nScore 4: Right, brief.\n"
        ...     "Score 5: Right and explained.",
        ...     "Feedback: Specific and checkable. [RESULT] 5",
        ...     "<feedback>Correct, with no explanation.</feedback><score>3</score>",
        ...     "Feedback: Applies level 3 exactly. [RESULT] 5",
        ... ]))
        >>> out = create_judge_graph(model).compile().invoke(
        ...     {"instruction": "What is 2+2?", "response": "4"}
        ... )
        >>> out["score"], out["feedback"], out["rubric"].score3_description
        (3.0, 'Correct, with no explanation.', 'Right, no reasoning.')
    """
    return _build_refined(
        model,
        critic_model=critic_model,
        settings=LoopSettings(
            threshold=threshold,
            max_iterations=max_iterations,
            critic_output=critic_output,
            critic_parse_retries=critic_parse_retries,
            retry_policy=retry_policy,
        ),
        reference_free=reference_free,
        prompts=prompts,
        with_judgment=True,
    )


def create_rubric_graph(
    model: ModelSpec = None,
    *,
    critic_model: ModelSpec = None,
    threshold: int = 4,
    max_iterations: int = 4,
    reference_free: bool = True,
    critic_output: CriticOutput | None = None,
    critic_parse_retries: int = 1,
    prompts: Mapping[str, ChatPromptTemplate | str] | None = None,
    retry_policy: RetryPolicy | None = None,
) -> StateGraph:
    r"""Create the rubric stage alone: a refined 1-5 rubric for an instruction.

    Use it to write rubrics once and grade many responses with
    :func:`create_fixed_rubric_judge`. Arguments are those of :func:`create_judge_graph`.

    Returns:
        An uncompiled :class:`~langgraph.graph.StateGraph` with input ``instruction`` (and
        ``reference_answer``) whose output holds ``rubric``, ``rubric_critiques``, ``usage``.

    Example:
        >>> from langchain_core.language_models import GenericFakeChatModel
        >>> model = GenericFakeChatModel(messages=iter([
        ...     "Criteria: Is it polite?\nScore 1: Rude.\nScore 5: Warm.", "Fine. [RESULT] 4"
        ... ]))
        >>> out = create_rubric_graph(model).compile().invoke({"instruction": "Say hi."})
        >>> out["rubric"].criteria, out["rubric"].score5_description
        ('Is it polite?', 'Warm.')
    """
    return _build_refined(
        model,
        critic_model=critic_model,
        settings=LoopSettings(
            threshold=threshold,
            max_iterations=max_iterations,
            critic_output=critic_output,
            critic_parse_retries=critic_parse_retries,
            retry_policy=retry_policy,
        ),
        reference_free=reference_free,
        prompts=prompts,
        with_judgment=False,
    )
