"""The SPRI judge: an instance-specific rubric, then a refined grading with it.

The judge writes a rubric for the instruction (the rubric stage,
:mod:`spri_graph.judges.rubric`), grades the response with it, then critiques and refines
the grading itself. Both stages are the same draft -> critique -> refine loop as the SPRI
graph (:mod:`spri_graph.engine.loop`):

``prepare -> rubric_draft -> rubric_critique -(refine)-> rubric_refine -> ...``
``-(done)-> judgment_draft -> judgment_critique -(refine)-> judgment_refine -> ...``
``-(done)-> finalize``

The one-call baselines (:func:`~spri_graph.create_vanilla_judge`,
:func:`~spri_graph.create_fixed_rubric_judge`) live in :mod:`spri_graph.judges.baselines`.
Judges of your own reuse :class:`~spri_graph.judges.base.JudgeSettings` (validated,
resolved settings), :func:`~spri_graph.judges.rubric.add_rubric_stage` /
:func:`add_judgment_stage` (the two loops, added to any builder) and the grading blocks of
:mod:`spri_graph.judges.base`. Caching and costs: :mod:`spri_graph.engine.caching`.
"""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, StateGraph
from typing_extensions import Unpack

from spri_graph.engine.options import SPRIContext, spri_state_graph
from spri_graph.judges.base import (
    JudgeInput,
    JudgeOptions,
    JudgeOutput,
    JudgeSettings,
    JudgeState,
    add_judge_loop,
    grading_schema,
    judgment_finalizer,
    read_grading,
    render_judgment,
)
from spri_graph.judges.criteria import add_grading
from spri_graph.judges.rubric import start_with_rubric
from spri_graph.models import ModelSpec

__all__ = ["add_judgment_stage", "create_judge"]


def add_judgment_stage(
    builder: StateGraph[Any, Any, Any, Any], settings: JudgeSettings, *, then: str
) -> str:
    """Add the grading loop (``judgment_draft``, ``judgment_critique``, ``judgment_refine``).

    The state must hold a ``rubric`` and ``response`` besides the keys
    :func:`~spri_graph.judges.rubric.add_rubric_stage` needs, plus ``judgment`` and
    ``judgment_critiques``. Read the final grading with
    :func:`~spri_graph.judges.base.judgment_finalizer`.

    Returns:
        The name of the stage's first node (``judgment_draft``).
    """
    return add_judge_loop(
        builder,
        settings,
        "judgment",
        schema=grading_schema,
        read=read_grading,
        render=render_judgment,
        then=then,
    )


def create_judge(
    model: ModelSpec = None, **options: Unpack[JudgeOptions]
) -> StateGraph[JudgeState, SPRIContext, JudgeInput, JudgeOutput]:
    r"""Create the SPRI judge: an instance-specific rubric, then a refined grading with it.

    The rubric stage drafts a rubric for the instruction, one description per level of
    ``scale``, has the critic judge its usefulness and refines it while the critic's score
    is below ``threshold``. The judgment stage grades the response against the rubric, has
    the critic check that the grading follows the rubric, and refines the grading the same
    way. A grading with no readable score on the scale gets ``score=None`` unless a
    refinement fixes it; a score outside the scale is unread, never clipped.

    With ``rubric_style="criteria"`` the rubric stage drafts, critiques and refines a
    weighted checklist instead, and the grading is a verdict and a one-line reason per
    criterion (one call, or one per criterion with ``criteria_grading="each"``), in
    ``criteria_results``; the score is their weighted result on ``scale``
    (:func:`~spri_graph.readers.criteria.criteria_score`). Verdicts are not critiqued.

    Args:
        model: Model that writes rubrics and gradings: a chat model or a model string
            (``"openai:gpt-4o-mini"``, ``"local"``, ...); ``None`` means ``$SPRI_MODEL`` or the
            embedded local model.
        **options: The shared options (:class:`~spri_graph.judges.base.JudgeOptions`:
            :class:`~spri_graph.engine.options.LoopOptions` and the grading options
            ``scale``, ``judge_output``, ``reference_free``). Critics grade on their own
            1-5 scale, whatever the judge's ``scale``. ``prompts`` keys: ``rubric_draft``,
            ``rubric_critique``, ``rubric_refine``, ``judgment_draft``,
            ``judgment_critique``, ``judgment_refine`` (see
            :data:`spri_graph.engine.prompts.JUDGE_PROMPTS`). With ``cache_policy`` set,
            compile with a cache (:func:`spri_graph.engine.caching.judge_cache`):
            re-running the same judging then makes no model calls.

    Returns:
        An uncompiled :class:`~langgraph.graph.StateGraph` with input ``instruction``,
        ``response`` and optional ``reference_answer``, and output ``rubric``, ``score``,
        ``feedback``, ``rubric_critiques``, ``judgment_critiques``, ``criteria_results``
        and ``usage``. Per-run
        settings go through ``context=SPRIContext(...)``.

    Raises:
        TypeError: If an option is unknown.
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
        >>> out = create_judge(model).compile().invoke(
        ...     {"instruction": "What is 2+2?", "response": "4"}
        ... )
        >>> out["score"], out["feedback"], out["rubric"].score3_description
        (3.0, 'Correct, with no explanation.', 'Right, no reasoning.')
    """
    settings = JudgeSettings.from_options(model, options, caller="create_judge")
    builder = spri_state_graph(JudgeState, JudgeInput, JudgeOutput)
    if settings.criteria:
        start_with_rubric(builder, settings, with_response=True, then="grade")
        add_grading(builder, settings)
        return builder
    start_with_rubric(builder, settings, with_response=True, then="judgment_draft")
    add_judgment_stage(builder, settings, then="finalize")
    finalize = judgment_finalizer(scale=settings.scale, judge_output=settings.judge_output)
    builder.add_node("finalize", finalize)
    builder.add_edge("finalize", END)
    return builder
