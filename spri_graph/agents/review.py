"""Review an answer someone else drafted: SPRI's response loop, entered at its critique.

:class:`~spri_graph.SPRIMiddleware` uses it with ``refine_answer=True``: the agent drafted
its final answer, so the loop starts by critiquing it against the turn's principles and
refines it while the score is below the threshold.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from langchain_core.prompts import ChatPromptTemplate
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from typing_extensions import TypedDict

from spri_graph.engine.loop import RefineLoop, add_refine_loop
from spri_graph.engine.options import LoopSettings, ResolvedModels, SPRIContext
from spri_graph.engine.steps import StageUsage, merge_usage
from spri_graph.readers.scores import Critique

__all__ = ["AnswerReviewState", "create_answer_review_graph"]


class AnswerReviewState(TypedDict, total=False):
    """State of the answer review: the question, its principles and the answer."""

    query: str
    goal: str | None
    conversation: str
    principles: str
    response: str
    response_critiques: list[Critique]
    usage: Annotated[dict[str, StageUsage], merge_usage]


def create_answer_review_graph(
    models: ResolvedModels,
    settings: LoopSettings,
    prompts: Mapping[str, ChatPromptTemplate],
    critic_tags: tuple[str, ...] = (),
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """The response loop, entered at its critique, compiled as ``spri_answer``.

    Args:
        models: The resolved base and critic models.
        settings: Threshold, iterations and retry settings.
        prompts: The resolved SPRI prompts (``response_critique``, ``response_refine``).
        critic_tags: Extra tags for the critic's calls (e.g. ``("nostream",)``).

    Returns:
        A graph from :class:`AnswerReviewState` (with ``response`` set) to the reviewed
        ``response``, its ``response_critiques`` and ``usage["response"]``.
    """
    loop = RefineLoop.for_stage(
        "response",
        models,
        prompts,
        settings,
        candidate_key="response",
        critiques_key="response_critiques",
        prompt_inputs=_inputs,
        critic_tags=critic_tags,
    )
    builder: StateGraph[Any, Any, Any, Any] = StateGraph(
        AnswerReviewState, context_schema=SPRIContext
    )
    add_refine_loop(builder, loop, then=END, retry_policy=settings.policy)
    builder.add_edge(START, loop.nodes[1])
    return builder.compile(name="spri_answer")


def _inputs(state: Mapping[str, Any]) -> dict[str, Any]:
    goal, conversation = state.get("goal"), state.get("conversation")
    return {
        "history_section": f"### Conversation so far:\n{conversation}\n\n" if conversation else "",
        "query": state["query"],
        "goal_section": f"\n### Response Goal: {goal}" if goal else "",
        "examples_section": "",
        "principles": state["principles"],
        "response": state["response"],
    }
