"""A refine loop as a graph of its own: :func:`create_refine_loop`.

For a draft -> critique -> refine stage that is not part of a larger graph; inside a graph
of your own, use :func:`~spri_graph.add_refine_loop` instead.
"""

from __future__ import annotations

from typing import Annotated, Any

from langchain_core.language_models import BaseChatModel
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable
from langgraph.graph import END, START, StateGraph
from langgraph.types import RetryPolicy
from typing_extensions import TypedDict

from spri_graph.critique import Critique
from spri_graph.loop import RefineLoop, add_refine_loop
from spri_graph.nodes import StageUsage, merge_usage
from spri_graph.settings import CriticOutput, default_retry_policy

__all__ = ["RefineLoopState", "create_refine_loop"]


class RefineLoopState(TypedDict, total=False):
    """State of a stand-alone refine loop (see :func:`create_refine_loop`)."""

    inputs: dict[str, Any]
    candidate: Any
    critiques: list[Critique]
    usage: Annotated[dict[str, StageUsage], merge_usage]


def create_refine_loop(
    model: BaseChatModel | Runnable[Any, Any],
    *,
    draft_prompt: ChatPromptTemplate,
    critique_prompt: ChatPromptTemplate,
    refine_prompt: ChatPromptTemplate,
    critic_model: BaseChatModel | Runnable[Any, Any] | None = None,
    name: str = "refine",
    threshold: int = 4,
    max_iterations: int = 4,
    critic_output: CriticOutput = "text",
    critic_parse_retries: int = 1,
    retry_policy: RetryPolicy | None = None,
) -> StateGraph[Any, Any, Any, Any]:
    """Create a stand-alone draft -> critique -> refine graph.

    The prompts read their variables from the ``inputs`` dict of the state, plus
    ``candidate`` (critique and refine) and ``feedback`` (refine).

    Args:
        model: Chat model that drafts and refines.
        draft_prompt: Prompt for the first candidate.
        critique_prompt: Prompt for the critic; should ask for ``[RESULT] N``.
        refine_prompt: Prompt that rewrites ``candidate`` from ``feedback``.
        critic_model: Chat model that critiques; defaults to ``model``.
        name: Stage name used for nodes, tracing and usage.
        threshold: Score (1-5) that accepts a candidate.
        max_iterations: Most critiques to make (at least 1).
        critic_output: ``"text"`` or ``"structured"``.
        critic_parse_retries: Re-asks when a text critique carries no score.
        retry_policy: Retry policy for transient model errors; defaults to
            :func:`default_retry_policy`.

    Returns:
        An uncompiled :class:`~langgraph.graph.StateGraph` over :class:`RefineLoopState`.

    Example:
        >>> from langchain_core.language_models import GenericFakeChatModel
        >>> from langchain_core.prompts import ChatPromptTemplate
        >>> model = GenericFakeChatModel(messages=iter(["A haiku.", "Vivid. [RESULT] 5"]))
        >>> graph = create_refine_loop(
        ...     model,
        ...     draft_prompt=ChatPromptTemplate.from_template("Write about {topic}"),
        ...     critique_prompt=ChatPromptTemplate.from_template("Grade: {candidate}"),
        ...     refine_prompt=ChatPromptTemplate.from_template("{candidate} {feedback}"),
        ... ).compile()
        >>> out = graph.invoke({"inputs": {"topic": "rain"}})
        >>> out["candidate"], out["critiques"][0].score
        ('A haiku.', 5)
    """
    loop = RefineLoop(
        name=name,
        model=model,
        critic_model=critic_model,
        draft_prompt=draft_prompt,
        critique_prompt=critique_prompt,
        refine_prompt=refine_prompt,
        candidate_key="candidate",
        critiques_key="critiques",
        prompt_inputs=lambda state: dict(state.get("inputs") or {}),
        threshold=threshold,
        max_iterations=max_iterations,
        critic_output=critic_output,
        critic_parse_retries=critic_parse_retries,
    )
    builder = StateGraph(RefineLoopState)
    builder.add_edge(
        START,
        add_refine_loop(
            builder,
            loop,
            then=END,
            retry_policy=default_retry_policy() if retry_policy is None else retry_policy,
        ),
    )
    return builder
