"""One-call judges to compare SPRI rubrics against: a generic rubric, or one you give.

:func:`create_vanilla_judge` grades with :data:`~spri_graph.GENERIC_RUBRIC`;
:func:`create_fixed_rubric_judge` grades with a rubric you give (e.g. a benchmark's gold
rubric per instance). Both take the input and give the output of
:func:`~spri_graph.create_judge`, so the same data and metrics serve all three.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langgraph.graph import START, StateGraph
from typing_extensions import Unpack

from spri_graph.engine.options import SPRIContext, spri_state_graph
from spri_graph.engine.prompts import JUDGE_PROMPTS
from spri_graph.judges.base import (
    GRADING_OPTION_NAMES,
    FixedRubricInput,
    GradingOptions,
    JudgeInput,
    JudgeOutput,
    JudgeSettings,
    JudgeState,
    judge_prepare,
)
from spri_graph.judges.criteria import add_grading
from spri_graph.models import ModelSpec
from spri_graph.readers.criteria import Checklist, coerce_checklist, generic_checklist
from spri_graph.readers.rubric import Rubric, coerce_rubric, generic_rubric

__all__ = ["create_fixed_rubric_judge", "create_vanilla_judge"]


def _settings(model: ModelSpec, options: Mapping[str, Any], caller: str) -> JudgeSettings:
    prompts = {"judgment_draft": JUDGE_PROMPTS["judgment_draft"]}
    return JudgeSettings.from_options(
        model, options, caller=caller, default_prompts=prompts, names=GRADING_OPTION_NAMES
    )


def _build_single(
    settings: JudgeSettings, *, rubric: Rubric | Checklist | None, rubric_from_input: bool
) -> StateGraph[JudgeState, SPRIContext, JudgeInput, JudgeOutput]:
    """``prepare -> grade -> finalize``: one grading call, a one-step node."""
    builder = spri_state_graph(
        JudgeState, FixedRubricInput if rubric_from_input else JudgeInput, JudgeOutput
    )
    prepare = judge_prepare(
        settings, with_response=True, rubric=rubric, rubric_from_input=rubric_from_input
    )
    builder.add_node("prepare", prepare)
    builder.add_edge(START, "prepare")
    builder.add_edge("prepare", add_grading(builder, settings))
    return builder


def create_vanilla_judge(
    model: ModelSpec = None, **options: Unpack[GradingOptions]
) -> StateGraph[JudgeState, SPRIContext, JudgeInput, JudgeOutput]:
    """Create the vanilla baseline: one absolute grading against the generic rubric.

    This is the generic LLM-as-a-judge that instance-specific rubrics are compared with; its
    rubric is :data:`GENERIC_RUBRIC` on 1-5 (:func:`~spri_graph.readers.rubric.generic_rubric` on
    other scales).

    Args:
        model: The judge model (same forms as :func:`~spri_graph.create_judge`).
        **options: The shared options of every judge
            (:class:`~spri_graph.judges.base.GradingOptions`: ``scale``, ``judge_output``,
            ``reference_free``, ``prompts``, ``retry_policy``, ``cache_policy``); the one
            prompt is ``judgment_draft``, and with ``cache_policy`` the grading node is
            cached.

    Returns:
        An uncompiled :class:`~langgraph.graph.StateGraph` with the input and output of
        :func:`~spri_graph.create_judge` (the critiques are empty lists).

    Raises:
        TypeError: If an option is unknown (the loop options included: this judge does not
            refine).
        ValueError: If an option's value is bad or a model string cannot be resolved; at
            run time, before the model call, if ``instruction`` or ``response`` is missing.

    Example:
        >>> from langchain_core.language_models import GenericFakeChatModel
        >>> from spri_graph import GENERIC_RUBRIC
        >>> reply = "<feedback>Fine.</feedback><score>4</score>"
        >>> model = GenericFakeChatModel(messages=iter([reply]))
        >>> out = create_vanilla_judge(model).compile().invoke(
        ...     {"instruction": "Say hi.", "response": "Hello!"}
        ... )
        >>> out["score"], out["rubric"] == GENERIC_RUBRIC
        (4.0, True)
    """
    settings = _settings(model, options, "create_vanilla_judge")
    rubric = generic_checklist() if settings.criteria else generic_rubric(settings.scale)
    return _build_single(settings, rubric=rubric, rubric_from_input=False)


def create_fixed_rubric_judge(
    model: ModelSpec = None,
    *,
    rubric: Rubric | Checklist | Mapping[str, Any] | str | None = None,
    **options: Unpack[GradingOptions],
) -> StateGraph[JudgeState, SPRIContext, JudgeInput, JudgeOutput]:
    r"""Create the fixed-rubric baseline: one absolute grading against a given rubric.

    Give one rubric for every input here, or a ``rubric`` per input (e.g. a benchmark's
    hand-written rubric for each instance), which overrides this one. A rubric must have
    one level per score of ``scale`` (text is read on ``scale``, missing levels getting
    the generic description).

    Args:
        model: The judge model (same forms as :func:`~spri_graph.create_judge`).
        rubric: A :class:`Rubric`, a dict of its fields, or rubric text in the
            ``Criteria:`` / ``Score N:`` layout; with ``rubric_style="criteria"`` a
            :class:`~spri_graph.readers.criteria.Checklist`, a dict of its fields or
            checklist text. ``None`` requires a rubric in every input.
        **options: The shared options of every judge
            (:class:`~spri_graph.judges.base.GradingOptions`: ``scale``, ``judge_output``,
            ``reference_free``, ``prompts``, ``retry_policy``, ``cache_policy``); the one
            prompt is ``judgment_draft``, and with ``cache_policy`` the grading node is
            cached.

    Returns:
        An uncompiled :class:`~langgraph.graph.StateGraph` with the input of
        :func:`~spri_graph.create_judge` plus an optional ``rubric``, and its output.

    Raises:
        TypeError: If an option is unknown (the loop options included: this judge does not
            refine).
        ValueError: If ``rubric`` is malformed or not on ``scale`` (a checklist whose
            weights, pitfalls aside, sum to zero); at run time, if neither
            the factory nor the input gives a rubric.

    Example:
        >>> from langchain_core.language_models import GenericFakeChatModel
        >>> reply = "<feedback>Warm.</feedback><score>5</score>"
        >>> model = GenericFakeChatModel(messages=iter([reply]))
        >>> judge = create_fixed_rubric_judge(model, rubric="Criteria: Polite?\nScore 5: Warm.")
        >>> judge.compile().invoke({"instruction": "Say hi.", "response": "Hello!"})["score"]
        5.0
    """
    settings = _settings(model, options, "create_fixed_rubric_judge")
    fixed: Rubric | Checklist | None = None
    if rubric is not None and settings.criteria:
        fixed = coerce_checklist(rubric, "rubric")
    elif rubric is not None:
        fixed = coerce_rubric(rubric, "rubric", scale=settings.scale)
    return _build_single(settings, rubric=fixed, rubric_from_input=True)
