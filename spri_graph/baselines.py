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
from langchain_core.runnables import Runnable
from langgraph.graph import END, START, StateGraph
from langgraph.types import RetryPolicy

from spri_graph.critique import parse_judgment
from spri_graph.judge import (
    FixedRubricInput,
    JudgeInput,
    JudgeOutput,
    JudgeState,
    check_reference_free,
    finalize_judgment,
    judge_prepare,
    judge_prompt_inputs,
)
from spri_graph.models import ModelSpec, resolve_model, resolve_model_cached
from spri_graph.nodes import (
    ModelCall,
    Step,
    StepNode,
    add_usage,
    context_value,
    empty_usage,
    message_text,
    step_node,
)
from spri_graph.prompts import JUDGE_PROMPTS, resolve_prompts
from spri_graph.rubric import GENERIC_RUBRIC, Rubric, coerce_rubric
from spri_graph.settings import default_retry_policy
from spri_graph.spri import SPRIContext

__all__ = ["create_fixed_rubric_judge", "create_vanilla_judge"]


def _grade_node(model: Runnable, prompt: ChatPromptTemplate, reference_free: bool) -> StepNode:
    """One grading call: prompt -> model -> :func:`~spri_graph.parse_judgment`.

    A one-step node like the refine loop's: the call carries the stage's run name and tags,
    and a per-run ``model`` from the context replaces the factory's.
    """
    inputs = judge_prompt_inputs(reference_free)

    def grade(state: Mapping[str, Any]) -> Step:
        name = context_value("model")
        runnable = resolve_model_cached(name, field="model") if name else model
        messages = prompt.format_messages(**inputs(state))
        message = yield ModelCall.for_stage(runnable, messages, stage="judgment", step="grade")
        return {
            "judgment": parse_judgment(message_text(message)),
            "usage": {"judgment": add_usage(empty_usage(), message, critic=False)},
        }

    return step_node("grade", grade)


def _build_single(
    model: ModelSpec,
    *,
    rubric: Rubric | None,
    rubric_from_input: bool,
    reference_free: bool,
    prompts: Mapping[str, ChatPromptTemplate | str] | None,
    retry_policy: RetryPolicy | None,
) -> StateGraph:
    check_reference_free(reference_free)
    prompt = resolve_prompts({"judgment_draft": JUDGE_PROMPTS["judgment_draft"]}, prompts)[
        "judgment_draft"
    ]
    base = resolve_model(model, field="model")
    policy = default_retry_policy() if retry_policy is None else retry_policy
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
            reference_free=reference_free,
            rubric=rubric,
            rubric_from_input=rubric_from_input,
        ),
    )
    builder.add_node("grade", _grade_node(base, prompt, reference_free), retry_policy=policy)
    builder.add_node("finalize", finalize_judgment)
    builder.add_edge(START, "prepare")
    builder.add_edge("prepare", "grade")
    builder.add_edge("grade", "finalize")
    builder.add_edge("finalize", END)
    return builder


def create_vanilla_judge(
    model: ModelSpec = None,
    *,
    reference_free: bool = True,
    prompts: Mapping[str, ChatPromptTemplate | str] | None = None,
    retry_policy: RetryPolicy | None = None,
) -> StateGraph:
    """Create the vanilla baseline: one absolute grading against :data:`GENERIC_RUBRIC`.

    This is the generic LLM-as-a-judge that instance-specific rubrics are compared with.

    Args:
        model: The judge model (same forms as :func:`create_judge_graph`).
        reference_free: As in :func:`create_judge_graph`.
        prompts: Override for ``judgment_draft``.
        retry_policy: Retry policy for transient model errors.

    Returns:
        An uncompiled :class:`~langgraph.graph.StateGraph` with the input and output of
        :func:`create_judge_graph` (the critiques are empty lists).

    Example:
        >>> from langchain_core.language_models import GenericFakeChatModel
        >>> reply = "<feedback>Fine.</feedback><score>4</score>"
        >>> model = GenericFakeChatModel(messages=iter([reply]))
        >>> out = create_vanilla_judge(model).compile().invoke(
        ...     {"instruction": "Say hi.", "response": "Hello!"}
        ... )
        >>> out["score"], out["rubric"] == GENERIC_RUBRIC
        (4.0, True)
    """
    return _build_single(
        model,
        rubric=GENERIC_RUBRIC,
        rubric_from_input=False,
        reference_free=reference_free,
        prompts=prompts,
        retry_policy=retry_policy,
    )


def create_fixed_rubric_judge(
    model: ModelSpec = None,
    *,
    rubric: Rubric | Mapping[str, str] | str | None = None,
    reference_free: bool = True,
    prompts: Mapping[str, ChatPromptTemplate | str] | None = None,
    retry_policy: RetryPolicy | None = None,
) -> StateGraph:
    r"""Create the fixed-rubric baseline: one absolute grading against a given rubric.

    Give one rubric for every input here, or a ``rubric`` per input (e.g. a benchmark's
    hand-written rubric for each instance), which overrides this one.

    Args:
        model: The judge model (same forms as :func:`create_judge_graph`).
        rubric: A :class:`Rubric`, a dict of its fields, or rubric text in the
            ``Criteria:`` / ``Score N:`` layout; ``None`` requires a rubric in every input.
        reference_free: As in :func:`create_judge_graph`.
        prompts: Override for ``judgment_draft``.
        retry_policy: Retry policy for transient model errors.

    Returns:
        An uncompiled :class:`~langgraph.graph.StateGraph` with the input of
        :func:`create_judge_graph` plus an optional ``rubric``, and its output.

    Raises:
        ValueError: If ``rubric`` is malformed; at run time, if neither the factory nor the
            input gives a rubric.

    Example:
        >>> from langchain_core.language_models import GenericFakeChatModel
        >>> reply = "<feedback>Warm.</feedback><score>5</score>"
        >>> model = GenericFakeChatModel(messages=iter([reply]))
        >>> judge = create_fixed_rubric_judge(model, rubric="Criteria: Polite?\nScore 5: Warm.")
        >>> judge.compile().invoke({"instruction": "Say hi.", "response": "Hello!"})["score"]
        5.0
    """
    fixed = None if rubric is None else coerce_rubric(rubric, "rubric")
    return _build_single(
        model,
        rubric=fixed,
        rubric_from_input=True,
        reference_free=reference_free,
        prompts=prompts,
        retry_policy=retry_policy,
    )
