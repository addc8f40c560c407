"""One-call judges to compare SPRI rubrics against: a generic rubric, or one you give.

:func:`create_vanilla_judge` grades with :data:`~spri_graph.GENERIC_RUBRIC`;
:func:`create_fixed_rubric_judge` grades with a rubric you give (e.g. a benchmark's gold
rubric per instance). Both take the input and give the output of
:func:`~spri_graph.create_judge_graph`, so the same data and metrics serve all three.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_core.prompts import ChatPromptTemplate
from langgraph.graph import END, START, StateGraph
from langgraph.types import CachePolicy, RetryPolicy

from spri_graph.engine.caching import prompt_cache_policy
from spri_graph.engine.options import OutputMode, SPRIContext
from spri_graph.engine.prompts import JUDGE_PROMPTS
from spri_graph.engine.steps import step_node
from spri_graph.judges.base import (
    FixedRubricInput,
    JudgeInput,
    JudgeOutput,
    JudgeSettings,
    JudgeState,
    finalize_judgment,
    grading_step,
    judge_prepare,
)
from spri_graph.models import ModelSpec
from spri_graph.readers.rubric import Rubric, coerce_rubric, generic_rubric

__all__ = ["create_fixed_rubric_judge", "create_vanilla_judge"]


def _build_single(
    settings: JudgeSettings, *, rubric: Rubric | None, rubric_from_input: bool
) -> StateGraph[Any, Any, Any, Any]:
    """``prepare -> grade -> finalize``: one grading call, a one-step node."""
    prompt = settings.prompts["judgment_draft"]
    inputs = settings.prompt_inputs()
    builder = StateGraph(
        JudgeState,
        context_schema=SPRIContext,
        input_schema=FixedRubricInput if rubric_from_input else JudgeInput,
        output_schema=JudgeOutput,
    )
    builder.add_node(
        "prepare",
        judge_prepare(
            with_response=True,
            reference_free=settings.reference_free,
            rubric=rubric,
            rubric_from_input=rubric_from_input,
            scale=settings.scale,
        ),
    )
    grade = grading_step(
        settings.models.base,
        prompt,
        inputs,
        scale=settings.scale,
        judge_output=settings.judge_output,
    )
    cache_policy = prompt_cache_policy(
        settings.cache_policy,
        node="grade",
        model=settings.models.base,
        prompt=prompt,
        prompt_inputs=inputs,
        extra=[settings.judge_output, list(settings.scale)],
    )
    builder.add_node(
        "grade",
        step_node("grade", grade),
        retry_policy=settings.loop.policy,
        cache_policy=cache_policy,
    )
    builder.add_node("finalize", finalize_judgment)
    builder.add_edge(START, "prepare")
    builder.add_edge("prepare", "grade")
    builder.add_edge("grade", "finalize")
    builder.add_edge("finalize", END)
    return builder


def _settings(
    model: ModelSpec,
    *,
    scale: tuple[int, int],
    judge_output: OutputMode | None,
    reference_free: bool,
    prompts: Mapping[str, ChatPromptTemplate | str] | None,
    retry_policy: RetryPolicy | None,
    cache_policy: CachePolicy[Any] | None,
) -> JudgeSettings:
    return JudgeSettings.create(
        model,
        scale=scale,
        judge_output=judge_output,
        reference_free=reference_free,
        prompts=prompts,
        default_prompts={"judgment_draft": JUDGE_PROMPTS["judgment_draft"]},
        cache_policy=cache_policy,
        retry_policy=retry_policy,
    )


def create_vanilla_judge(
    model: ModelSpec = None,
    *,
    reference_free: bool = True,
    prompts: Mapping[str, ChatPromptTemplate | str] | None = None,
    retry_policy: RetryPolicy | None = None,
    scale: tuple[int, int] = (1, 5),
    judge_output: OutputMode | None = None,
    cache_policy: CachePolicy[Any] | None = None,
) -> StateGraph[Any, Any, Any, Any]:
    """Create the vanilla baseline: one absolute grading against the generic rubric.

    This is the generic LLM-as-a-judge that instance-specific rubrics are compared with; its
    rubric is :data:`GENERIC_RUBRIC` on 1-5 (:func:`~spri_graph.readers.rubric.generic_rubric` on
    other scales).

    Args:
        model: The judge model (same forms as :func:`create_judge_graph`).
        reference_free: As in :func:`create_judge_graph`.
        prompts: Override for ``judgment_draft``.
        retry_policy: Retry policy for transient model errors.
        scale: As in :func:`create_judge_graph`.
        judge_output: As in :func:`create_judge_graph`.
        cache_policy: As in :func:`create_judge_graph` (the grading node is cached).

    Returns:
        An uncompiled :class:`~langgraph.graph.StateGraph` with the input and output of
        :func:`create_judge_graph` (the critiques are empty lists).

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
    settings = _settings(
        model,
        scale=scale,
        judge_output=judge_output,
        reference_free=reference_free,
        prompts=prompts,
        retry_policy=retry_policy,
        cache_policy=cache_policy,
    )
    rubric = generic_rubric(settings.scale)
    return _build_single(settings, rubric=rubric, rubric_from_input=False)


def create_fixed_rubric_judge(
    model: ModelSpec = None,
    *,
    rubric: Rubric | Mapping[str, str] | str | None = None,
    reference_free: bool = True,
    prompts: Mapping[str, ChatPromptTemplate | str] | None = None,
    retry_policy: RetryPolicy | None = None,
    scale: tuple[int, int] = (1, 5),
    judge_output: OutputMode | None = None,
    cache_policy: CachePolicy[Any] | None = None,
) -> StateGraph[Any, Any, Any, Any]:
    r"""Create the fixed-rubric baseline: one absolute grading against a given rubric.

    Give one rubric for every input here, or a ``rubric`` per input (e.g. a benchmark's
    hand-written rubric for each instance), which overrides this one. A rubric must have
    one level per score of ``scale`` (text is read on ``scale``, missing levels getting
    the generic description).

    Args:
        model: The judge model (same forms as :func:`create_judge_graph`).
        rubric: A :class:`Rubric`, a dict of its fields, or rubric text in the
            ``Criteria:`` / ``Score N:`` layout; ``None`` requires a rubric in every input.
        reference_free: As in :func:`create_judge_graph`.
        prompts: Override for ``judgment_draft``.
        retry_policy: Retry policy for transient model errors.
        scale: As in :func:`create_judge_graph`.
        judge_output: As in :func:`create_judge_graph`.
        cache_policy: As in :func:`create_judge_graph` (the grading node is cached).

    Returns:
        An uncompiled :class:`~langgraph.graph.StateGraph` with the input of
        :func:`create_judge_graph` plus an optional ``rubric``, and its output.

    Raises:
        ValueError: If ``rubric`` is malformed or not on ``scale``; at run time, if neither
            the factory nor the input gives a rubric.

    Example:
        >>> from langchain_core.language_models import GenericFakeChatModel
        >>> reply = "<feedback>Warm.</feedback><score>5</score>"
        >>> model = GenericFakeChatModel(messages=iter([reply]))
        >>> judge = create_fixed_rubric_judge(model, rubric="Criteria: Polite?\nScore 5: Warm.")
        >>> judge.compile().invoke({"instruction": "Say hi.", "response": "Hello!"})["score"]
        5.0
    """
    settings = _settings(
        model,
        scale=scale,
        judge_output=judge_output,
        reference_free=reference_free,
        prompts=prompts,
        retry_policy=retry_policy,
        cache_policy=cache_policy,
    )
    fixed = None if rubric is None else coerce_rubric(rubric, "rubric", scale=settings.scale)
    return _build_single(settings, rubric=fixed, rubric_from_input=True)
