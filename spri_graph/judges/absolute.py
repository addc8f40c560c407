"""Instance-specific rubrics and LLM-as-a-judge, built from SPRI's refine loop.

Instead of one generic rubric for every instruction, the judge writes a rubric for *this*
instruction, on the judge's scale (1-5 by default), has a critic check its usefulness and
refines it, grades the response with it, then critiques and refines the grading itself.
Both stages are the same draft -> critique -> refine loop as the SPRI graph
(:mod:`spri_graph.engine.loop`):

``prepare -> rubric_draft -> rubric_critique -(refine)-> rubric_refine -> ...``
``-(done)-> judgment_draft -> judgment_critique -(refine)-> judgment_refine -> ...``
``-(done)-> finalize``

:func:`create_rubric_graph` is the rubric stage alone. The one-call baselines
(:func:`~spri_graph.create_vanilla_judge`, :func:`~spri_graph.create_fixed_rubric_judge`) live
in :mod:`spri_graph.judges.baselines` and share this module's states and ``prepare`` / ``finalize``
nodes. Judges of your own reuse :class:`JudgeSettings` (validated, resolved settings),
:func:`add_rubric_stage` / :func:`add_judgment_stage` (the two loops, added to any builder)
and the grading blocks of :mod:`spri_graph.judges.base`. Caching and costs:
:mod:`spri_graph.engine.caching`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable
from langgraph.graph import END, START, StateGraph
from langgraph.types import CachePolicy, RetryPolicy

from spri_graph.engine.loop import RefineLoop, add_refine_loop
from spri_graph.engine.options import OutputMode, SPRIContext
from spri_graph.judges.base import (
    FixedRubricInput,
    JudgeInput,
    JudgeOutput,
    JudgeSettings,
    JudgeState,
    RubricInput,
    RubricOutput,
    as_rubric,
    check_reference_free,
    finalize_judgment,
    grading_schema,
    judge_prepare,
    judge_prompt_inputs,
    judgment_finalizer,
    read_grading,
    read_rubric,
    render_judgment,
    text_field,
)
from spri_graph.models import ModelSpec, resolve_model_cached
from spri_graph.readers.rubric import GENERIC_RUBRIC, Rubric, parse_rubric, rubric_schema
from spri_graph.readers.scores import Scale

__all__ = [
    "GENERIC_RUBRIC",
    "JUDGE_DEFAULTS",
    "FixedRubricInput",
    "JudgeInput",
    "JudgeOutput",
    "JudgeSettings",
    "JudgeState",
    "Rubric",
    "RubricInput",
    "RubricOutput",
    "add_judgment_stage",
    "add_rubric_stage",
    "check_reference_free",
    "create_judge_graph",
    "create_rubric_graph",
    "finalize_judgment",
    "judge_prepare",
    "judge_prompt_inputs",
    "judgment_finalizer",
    "parse_rubric",
    "render_judgment",
    "render_rubric",
    "text_field",
]


# --------------------------------------------------------------------------- stages


def render_rubric(rubric: Rubric) -> str:
    """A rubric in its text layout (also one read back from a cache as a dict)."""
    return as_rubric(rubric).render()  # type: ignore[union-attr]


def _add_stage(
    builder: StateGraph[Any, Any, Any, Any],
    settings: JudgeSettings,
    name: str,
    schema: Callable[[Scale], type],
    read: Callable[..., Any],
    render: Callable[[Any], str],
    then: str,
) -> str:
    """Add one judge loop: candidates read by ``read``, structured by ``schema`` if asked."""
    scale, structured = settings.scale, settings.structured

    def parse(message: BaseMessage) -> Any:
        return read(message, scale=scale, structured=structured)

    def resolve(model_name: str) -> Runnable[Any, Any]:
        return settings.answering(resolve_model_cached(model_name), schema)

    loop = RefineLoop(
        name=name,
        model=settings.answering(settings.models.base, schema),
        critic_model=settings.models.critic,
        draft_prompt=settings.prompts[f"{name}_draft"],
        critique_prompt=settings.prompts[f"{name}_critique"],
        refine_prompt=settings.prompts[f"{name}_refine"],
        candidate_key=name,
        critiques_key=f"{name}_critiques",
        prompt_inputs=settings.prompt_inputs(),
        parse_candidate=parse,
        render_candidate=render,
        settings=replace(settings.loop, critic_output=settings.models.critic_output),
        resolve_model=resolve,
    )
    return add_refine_loop(
        builder,
        loop,
        then=then,
        retry_policy=settings.loop.policy,
        cache_policy=settings.cache_policy,
    )


def add_rubric_stage(
    builder: StateGraph[Any, Any, Any, Any], settings: JudgeSettings, *, then: str
) -> str:
    """Add the rubric loop (``rubric_draft``, ``rubric_critique``, ``rubric_refine``).

    The state must hold the :class:`JudgeState` keys ``instruction``, ``reference_answer``,
    ``rubric``, ``rubric_critiques``, ``context_models`` and ``usage``. The caller adds the
    edge into the returned node; the loop ends with an edge to ``then``. With
    ``settings.cache_policy`` set, its nodes are cached.

    Returns:
        The name of the stage's first node (``rubric_draft``).
    """
    return _add_stage(builder, settings, "rubric", rubric_schema, read_rubric, render_rubric, then)


def add_judgment_stage(
    builder: StateGraph[Any, Any, Any, Any], settings: JudgeSettings, *, then: str
) -> str:
    """Add the grading loop (``judgment_draft``, ``judgment_critique``, ``judgment_refine``).

    The state must hold a ``rubric`` and ``response`` besides the keys
    :func:`add_rubric_stage` needs, plus ``judgment`` and ``judgment_critiques``. Read the
    final grading with :func:`judgment_finalizer`.

    Returns:
        The name of the stage's first node (``judgment_draft``).
    """
    stage = ("judgment", grading_schema, read_grading, render_judgment)
    return _add_stage(builder, settings, *stage, then)


def _build_refined(
    settings: JudgeSettings, *, with_judgment: bool
) -> StateGraph[Any, Any, Any, Any]:
    builder = StateGraph(
        JudgeState,
        context_schema=SPRIContext,
        input_schema=JudgeInput if with_judgment else RubricInput,
        output_schema=JudgeOutput if with_judgment else RubricOutput,
    )
    prepare = judge_prepare(
        with_response=with_judgment,
        reference_free=settings.reference_free,
        rubric=None,
        rubric_from_input=False,
        scale=settings.scale,
    )
    builder.add_node("prepare", prepare)
    builder.add_edge(START, "prepare")
    then = "judgment_draft" if with_judgment else END
    builder.add_edge("prepare", add_rubric_stage(builder, settings, then=then))
    if with_judgment:
        add_judgment_stage(builder, settings, then="finalize")
        finalize = judgment_finalizer(scale=settings.scale, judge_output=settings.judge_output)
        builder.add_node("finalize", finalize)
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
        "scale": (1, 5),
        "judge_output": None,
        "cache_policy": None,
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
    critic_output: OutputMode | None = None,
    critic_parse_retries: int = 1,
    prompts: Mapping[str, ChatPromptTemplate | str] | None = None,
    retry_policy: RetryPolicy | None = None,
    scale: tuple[int, int] = (1, 5),
    judge_output: OutputMode | None = None,
    cache_policy: CachePolicy[Any] | None = None,
) -> StateGraph[Any, Any, Any, Any]:
    r"""Create the SPRI judge: an instance-specific rubric, then a refined grading with it.

    The rubric stage drafts a rubric for the instruction, one description per level of
    ``scale``, has the critic judge its usefulness and refines it while the critic's score
    is below ``threshold``. The judgment stage grades the response against the rubric, has
    the critic check that the grading follows the rubric, and refines the grading the same
    way. A grading with no readable score on the scale gets ``score=None`` unless a
    refinement fixes it; a score outside the scale is unread, never clipped.

    Args:
        model: Model that writes rubrics and gradings: a chat model or a model string
            (``"openai:gpt-4o-mini"``, ``"local"``, ...); ``None`` means ``$SPRI_MODEL`` or the
            embedded local model.
        critic_model: Critic model; defaults to ``model``.
        threshold: Critique score that accepts a rubric or a grading. Critics grade on
            their own 1-5 scale, whatever the judge's ``scale``.
        max_iterations: Most critiques per stage (at least 1).
        reference_free: Grade without a reference answer (the default). With ``False``,
            every input must carry a non-empty ``reference_answer``, shown to the rubric
            writer, the grader and the critics as a response that would get the top score;
            with ``True`` a ``reference_answer`` in the input is not used.
        critic_output: ``"text"`` parses ``Feedback: ... [RESULT] N``; ``"structured"`` uses
            ``with_structured_output``. ``None`` means ``"text"``, except ``"structured"``
            for the embedded local model.
        critic_parse_retries: Re-asks, with a format reminder, when a text critique has no
            readable score.
        prompts: Overrides keyed ``rubric_draft``, ``rubric_critique``, ``rubric_refine``,
            ``judgment_draft``, ``judgment_critique``, ``judgment_refine``
            (see :data:`spri_graph.engine.prompts.JUDGE_PROMPTS`).
        retry_policy: Retry policy for transient model errors; defaults to
            :func:`spri_graph.default_retry_policy`.
        scale: The integer score scale ``(low, high)``: ``(1, 5)``, ``(1, 10)``, ``(0, 1)``
            for pass/fail...
        judge_output: ``"text"`` reads ``<feedback>...</feedback><score>N</score>`` (and the
            rubric's ``Score N:`` lines); ``"structured"`` has the model answer with the
            fields of :func:`spri_graph.judges.base.grading_schema` (and
            :func:`spri_graph.readers.rubric.rubric_schema`) by function calling, so the score is
            always on the scale. ``None`` means ``"structured"`` for the embedded local
            model and ``"text"`` otherwise.
        cache_policy: Cache the model nodes with LangGraph's node cache, e.g.
            ``CachePolicy()``, and compile with a cache
            (:func:`spri_graph.engine.caching.judge_cache`): re-running the same judging then
            makes no model calls. See :mod:`spri_graph.engine.caching` for keys and clearing.

    Returns:
        An uncompiled :class:`~langgraph.graph.StateGraph` with input ``instruction``,
        ``response`` and optional ``reference_answer``, and output ``rubric``, ``score``,
        ``feedback``, ``rubric_critiques``, ``judgment_critiques`` and ``usage``. Per-run
        settings go through ``context=SPRIContext(...)``.

    Raises:
        ValueError: If a setting is out of range (a ``scale`` with fewer than two levels or
            non-integers included) or a model string cannot be resolved; at run time,
            before any model call, if ``instruction`` or ``response`` is missing or empty.

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
    options = {name: value for name, value in locals().items() if name != "model"}
    return _build_refined(JudgeSettings.create(model, **options), with_judgment=True)


def create_rubric_graph(
    model: ModelSpec = None,
    *,
    critic_model: ModelSpec = None,
    threshold: int = 4,
    max_iterations: int = 4,
    reference_free: bool = True,
    critic_output: OutputMode | None = None,
    critic_parse_retries: int = 1,
    prompts: Mapping[str, ChatPromptTemplate | str] | None = None,
    retry_policy: RetryPolicy | None = None,
    scale: tuple[int, int] = (1, 5),
    judge_output: OutputMode | None = None,
    cache_policy: CachePolicy[Any] | None = None,
) -> StateGraph[Any, Any, Any, Any]:
    r"""Create the rubric stage alone: a refined rubric for an instruction, on ``scale``.

    Use it to write rubrics once and grade many responses with
    :func:`create_fixed_rubric_judge`. Arguments are those of :func:`create_judge_graph`
    (``judge_output`` applies to the rubric: structured fields or ``Score N:`` lines).

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
    options = {name: value for name, value in locals().items() if name != "model"}
    return _build_refined(JudgeSettings.create(model, **options), with_judgment=False)
