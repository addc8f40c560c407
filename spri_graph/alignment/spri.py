"""The SPRI graph: situated principles for a query, then a response guided by them.

Both stages are the same draft -> critique -> refine loop (:mod:`spri_graph.engine.loop`):

``prepare -> principles_draft -> principles_critique -(refine)-> principles_refine -> ...``
``-(done)-> [review_principles] -> response_draft -> response_critique -> ... -> finalize``

``create_spri_graph(review_principles=True)`` adds :func:`review_principles` as a node
after the principles stage: the graph pauses and a person approves or edits the principles
(it needs a checkpointer so the run can be resumed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Annotated, Any

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.prompts import ChatPromptTemplate
from langgraph.constants import TAG_NOSTREAM
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import CachePolicy, RetryPolicy, interrupt
from typing_extensions import TypedDict

from spri_graph.engine.loop import RefineLoop, add_refine_loop
from spri_graph.engine.options import LoopSettings, OutputMode, SPRIContext, check_context
from spri_graph.engine.prompts import (
    SPRI_PROMPTS,
    SeedExample,
    format_seed_examples,
    resolve_prompts,
)
from spri_graph.engine.steps import StageUsage, merge_usage, message_text
from spri_graph.models import ModelSpec, resolve_model_cached
from spri_graph.readers.frames import strip_frames
from spri_graph.readers.scores import Critique

__all__ = [
    "PrinciplesOutput",
    "SPRIContext",
    "SPRIInput",
    "SPRIOutput",
    "SPRIState",
    "SPRI_OPTIONS",
    "create_batch_graph",
    "create_principles_graph",
    "create_spri_graph",
    "format_conversation",
    "review_principles",
]

_REVIEW_HOW = "Resume with True to approve, or with edited principles (a string)."


def _review_edit(decision: Any) -> str | None:
    """The edited principles ("" to approve as they are), or ``None`` if unreadable."""
    if decision is True or decision is None or decision in ("approve", "approved", "ok"):
        return ""
    if isinstance(decision, Mapping):
        if decision.get("action") == "approve" and "principles" not in decision:
            return ""
        decision = decision.get("principles")
    if not isinstance(decision, str) or not decision.strip():
        return None
    return decision.strip()


def review_principles(state: Any) -> dict[str, Any]:
    """Pause for a person to approve or edit the principles.

    Resume with ``Command(resume=True)`` (or ``"approve"``) to keep them, or with the edited
    principles as a string (or ``{"principles": "..."}``) to replace them. An unreadable
    answer pauses again, with an ``error`` saying what was expected, so the thread can
    still be resumed.
    """
    request: dict[str, Any] = {
        "principles": state["principles"],
        "principle_critiques": [
            Critique.of(c).model_dump() for c in state.get("principle_critiques", [])
        ],
        "instructions": _REVIEW_HOW,
    }
    decision = interrupt(request)
    while (edited := _review_edit(decision)) is None:
        request = {
            **request,
            "error": f"review: cannot use {decision!r:.80}; expected True to approve or "
            "edited principles as a non-empty string",
        }
        decision = interrupt(request)
    return {"principles": edited} if edited else {}


# ---------------------------------------------------------------------------


class SPRIInput(TypedDict, total=False):
    """Input of the SPRI graphs.

    Give ``query`` (and optionally ``goal``), or ``messages``: with no ``query``, the last
    human message is the query, so the graph drops into a ``MessagesState`` parent graph.
    """

    query: str
    goal: str | None
    messages: Annotated[list[AnyMessage], add_messages]


class PrinciplesOutput(TypedDict, total=False):
    """Output of :func:`create_principles_graph`."""

    query: str
    principles: str
    principle_critiques: list[Critique]
    usage: Annotated[dict[str, StageUsage], merge_usage]


class SPRIOutput(TypedDict, total=False):
    """Output of :func:`create_spri_graph`.

    ``usage`` maps each stage (``"principles"``, ``"response"``) to its model calls and
    tokens. When the input had ``messages``, the response is appended to them.
    """

    principles: str
    response: str
    principle_critiques: list[Critique]
    response_critiques: list[Critique]
    usage: Annotated[dict[str, StageUsage], merge_usage]
    messages: Annotated[list[AnyMessage], add_messages]


class SPRIState(SPRIInput, SPRIOutput, total=False):
    """Full state of the SPRI graph.

    ``conversation`` holds the earlier turns shown to the prompts (see ``history``), and
    ``response_speculative`` whether a speculative response draft was kept.
    """

    conversation: str
    response_speculative: bool


_SPEAKERS = {"human": "User", "ai": "Assistant"}


def format_conversation(messages: Sequence[AnyMessage], limit: int) -> str:
    """The last ``limit`` user/assistant messages as a transcript ("" when none).

    Example:
        >>> from langchain_core.messages import AIMessage, HumanMessage
        >>> print(format_conversation(
        ...     [HumanMessage("Packing list for a week-long hike?"), AIMessage("Tent, ...")], 6
        ... ))
        User: Packing list for a week-long hike?
        Assistant: Tent, ...
    """
    turns = [m for m in messages if m.type in _SPEAKERS and message_text(m).strip()]
    if limit <= 0 or not turns:
        return ""
    return "\n".join(f"{_SPEAKERS[m.type]}: {message_text(m).strip()}" for m in turns[-limit:])


@dataclass(frozen=True)
class _Prepare:
    """The ``prepare`` node: validate the input and settle the query before any model call."""

    history: int

    def __call__(self, state: SPRIState) -> dict[str, Any]:
        update = _settle_query(state, self.history)
        check_context()
        return update


def _settle_query(state: Mapping[str, Any], history: int) -> dict[str, Any]:
    query = state.get("query")
    conversation = ""
    if query is None:
        messages = list(state.get("messages") or [])
        humans = [i for i, m in enumerate(messages) if isinstance(m, HumanMessage)]
        if not humans:
            raise ValueError(
                "query: missing; pass a non-empty string 'query' or a human message in 'messages'"
            )
        query = message_text(messages[humans[-1]])
        conversation = format_conversation(messages[: humans[-1]], history)
    if not isinstance(query, str):
        raise ValueError(f"query must be a string, got {type(query).__name__}")
    if not query.strip():
        got = "an empty string" if not query else "only whitespace"
        raise ValueError(f"query must be a non-empty string, got {got}")
    goal = state.get("goal")
    if goal is not None and not isinstance(goal, str):
        raise ValueError(f"goal must be a string or None, got {type(goal).__name__}")
    return {"query": query, "conversation": conversation}


def _inputs(state: Mapping[str, Any], examples_section: str) -> dict[str, Any]:
    goal = state.get("goal")
    conversation = state.get("conversation")
    return {
        "history_section": (
            f"### Conversation so far:\n{conversation}\n\n" if conversation else ""
        ),
        "query": state["query"],
        "goal_section": f"\n### Response Goal: {goal}" if goal else "",
        "examples_section": examples_section,
        "principles": state.get("principles", ""),
        "response": state.get("response", ""),
    }


def _finalize(state: SPRIState) -> dict[str, Any]:
    # Critiques restored from a checkpoint (after a review pause) are plain dicts.
    update: dict[str, Any] = {
        "principle_critiques": [Critique.of(c) for c in state.get("principle_critiques") or []],
        "response_critiques": [Critique.of(c) for c in state.get("response_critiques") or []],
    }
    if state.get("messages"):
        update["messages"] = [AIMessage(content=state["response"], name="spri")]
    return update


@dataclass(frozen=True)
class _Shape:
    """What a factory call asks of the graph's shape, beyond the loop settings."""

    with_response: bool = True
    review_principles: bool = False
    checked_queries: bool = False
    history: int = 6
    speculative: bool = False
    cache_policy: CachePolicy[Any] | None = None
    stream_critiques: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.history, bool) or not isinstance(self.history, int) or self.history < 0:
            raise ValueError(f"history must be an integer >= 0, got {self.history!r}")
        for name in ("review_principles", "speculative", "stream_critiques"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.speculative and self.review_principles:
            raise ValueError(
                "speculative: cannot be combined with review_principles (a person may still "
                "change the principles the response would be drafted from)"
            )
        if self.cache_policy is not None and not isinstance(self.cache_policy, CachePolicy):
            raise ValueError(
                f"cache_policy must be a langgraph.types.CachePolicy, got {self.cache_policy!r}"
            )


def _build(
    model: ModelSpec,
    *,
    critic_model: ModelSpec,
    settings: LoopSettings,
    seed_examples: Sequence[SeedExample] | None,
    prompts: Mapping[str, ChatPromptTemplate | str] | None,
    shape: _Shape,
) -> StateGraph[Any, Any, Any, Any]:
    """Build the SPRI graph.

    ``shape.checked_queries`` is for batch jobs that check every query themselves and pass
    neither ``messages`` nor a context: the graph is the two loops alone, without the
    ``prepare`` and ``finalize`` steps, two graph steps fewer per record.
    """
    stage_prompts = resolve_prompts(SPRI_PROMPTS, prompts)
    examples_section = format_seed_examples(seed_examples)
    models = replace(settings, critic_model=critic_model).resolve(model)
    policy = settings.policy

    def loop(name: str, candidate_key: str, critiques_key: str) -> RefineLoop:
        return RefineLoop(
            name=name,
            model=models.base,
            critic_model=models.critic,
            draft_prompt=stage_prompts[f"{name}_draft"],
            critique_prompt=stage_prompts[f"{name}_critique"],
            refine_prompt=stage_prompts[f"{name}_refine"],
            candidate_key=candidate_key,
            critiques_key=critiques_key,
            prompt_inputs=lambda state: _inputs(state, examples_section),
            parse_candidate=lambda message: strip_frames(message_text(message), writing=name),
            threshold=settings.threshold,
            max_iterations=settings.max_iterations,
            critic_output=models.critic_output,
            critic_parse_retries=settings.parse_retries,
            resolve_model=resolve_model_cached,
            critic_tags=() if shape.stream_critiques else (TAG_NOSTREAM,),
        )

    builder = StateGraph(
        SPRIState,
        context_schema=SPRIContext,
        input_schema=SPRIInput,
        output_schema=SPRIOutput if shape.with_response else PrinciplesOutput,
    )
    entry = START
    if not shape.checked_queries:
        builder.add_node("prepare", _Prepare(shape.history))
        builder.add_edge(START, "prepare")
        entry = "prepare"
    principles = loop("principles", "principles", "principle_critiques")
    response = loop("response", "response", "response_critiques")
    if not shape.with_response:
        then = END
    else:
        then = "review_principles" if shape.review_principles else response.nodes[0]
    first = add_refine_loop(
        builder,
        principles,
        then=then,
        retry_policy=policy,
        cache_policy=shape.cache_policy,
        speculate=response if shape.speculative and shape.with_response else None,
    )
    builder.add_edge(entry, first)
    if not shape.with_response:
        return builder
    if shape.review_principles:
        builder.add_node("review_principles", review_principles)
        builder.add_edge("review_principles", response.nodes[0])
    add_refine_loop(
        builder,
        response,
        then=END if shape.checked_queries else "finalize",
        retry_policy=policy,
    )
    if not shape.checked_queries:
        builder.add_node("finalize", _finalize)
        builder.add_edge("finalize", END)
    return builder


def create_spri_graph(
    model: ModelSpec = None,
    *,
    critic_model: ModelSpec = None,
    threshold: int = 4,
    max_iterations: int = 4,
    critic_output: OutputMode | None = None,
    critic_parse_retries: int = 1,
    seed_examples: Sequence[SeedExample] | None = None,
    prompts: Mapping[str, ChatPromptTemplate | str] | None = None,
    retry_policy: RetryPolicy | None = None,
    review_principles: bool = False,
    history: int = 6,
    speculative: bool = False,
    cache_policy: CachePolicy[Any] | None = None,
    stream_critiques: bool = True,
) -> StateGraph[Any, Any, Any, Any]:
    """Create the SPRI graph: situated principles, then a response aligned to them.

    Args:
        model: Base model (drafts and refines): a chat model, a model string such as
            ``"openai:gpt-4o-mini"``, ``"local"``, ``"gguf:/path.gguf"``, or ``None`` for
            ``$SPRI_MODEL`` / the embedded local model.
        critic_model: Critic model; defaults to ``model``.
        threshold: Score (1-5) at which a critique accepts the candidate.
        max_iterations: Most critiques per stage (at least 1).
        critic_output: ``"text"`` parses ``Feedback: ... [RESULT] N``; ``"structured"`` uses
            ``with_structured_output`` and always yields an integer score. ``None`` (the
            default) means ``"text"``, except ``"structured"`` for the embedded local model,
            which is too small to be trusted to print ``[RESULT] N``.
        critic_parse_retries: Re-asks, with a format reminder, when a text critique carries
            no readable score. After that the loop stops and keeps the current candidate.
        seed_examples: Few-shot ``{"query", "principles"}`` examples for the principle writer.
        prompts: Prompt overrides keyed ``principles_draft``, ``principles_critique``,
            ``principles_refine``, ``response_draft``, ``response_critique``,
            ``response_refine`` (see :mod:`spri_graph.engine.prompts`).
        retry_policy: Retry policy for transient model errors (timeouts, rate limits, 5xx);
            defaults to :func:`spri_graph.default_retry_policy`.
        review_principles: Pause with ``interrupt()`` after the principles stage so a person
            can approve or edit them (needs a checkpointer).
        history: With ``messages`` as input, how many earlier user/assistant messages the
            prompts see as the conversation so far (``0``: the last human message alone).
        speculative: Draft the response from the first principles while the critic grades
            them. If they pass, the draft is kept (one critique's wait saved); if they are
            refined, it is discarded without waiting and the response is drafted from the
            final principles. With deterministic models the result equals a sequential run.
        cache_policy: Cache the principles stage with LangGraph's node cache, e.g.
            ``CachePolicy(ttl=3600)``, and compile with ``cache=InMemoryCache()`` or
            ``SqliteCache(path=...)``: a repeated question (same query, goal, conversation,
            models, prompts and seed examples) then makes no principle-stage calls. Entries
            expire after ``ttl`` seconds; clear them with ``graph.clear_cache()`` or by
            deleting the SQLite file.
        stream_critiques: ``False`` tags the critic's calls ``nostream`` so their tokens stay
            out of ``stream_mode="messages"`` (a chat UI then shows the principles and the
            answer forming, not the critic's text).

    Returns:
        An uncompiled :class:`~langgraph.graph.StateGraph`; compile it with the
        checkpointer, store and interrupts you need. The state holds :class:`Critique`
        objects: with ``LANGGRAPH_STRICT_MSGPACK=true`` the graph registers them with the
        checkpointer itself; otherwise langgraph-checkpoint logs that it read an unregistered
        type unless the checkpointer's serializer allows it, e.g.
        ``InMemorySaver(serde=JsonPlusSerializer(allowed_msgpack_modules=[Critique]))``.

    Raises:
        ValueError: If a setting is out of range or a model string cannot be resolved.

    Example:
        >>> from langchain_core.language_models import GenericFakeChatModel
        >>> model = GenericFakeChatModel(messages=iter([
        ...     "1. Be specific.", "Feedback: Useful. [RESULT] 5",
        ...     "Drink water.", "Feedback: Follows them. [RESULT] 4",
        ... ]))
        >>> graph = create_spri_graph(model).compile()
        >>> out = graph.invoke({"query": "How do I stay healthy?"})
        >>> out["principles"], out["response"], out["response_critiques"][0].score
        ('1. Be specific.', 'Drink water.', 4)
    """
    return _build(
        model,
        critic_model=critic_model,
        settings=LoopSettings(
            threshold=threshold,
            max_iterations=max_iterations,
            critic_output=critic_output,
            parse_retries=critic_parse_retries,
            retry_policy=retry_policy,
        ),
        seed_examples=seed_examples,
        prompts=prompts,
        shape=_Shape(
            review_principles=review_principles,
            history=history,
            speculative=speculative,
            cache_policy=cache_policy,
            stream_critiques=stream_critiques,
        ),
    )


def create_principles_graph(
    model: ModelSpec = None,
    *,
    critic_model: ModelSpec = None,
    threshold: int = 4,
    max_iterations: int = 4,
    critic_output: OutputMode | None = None,
    critic_parse_retries: int = 1,
    seed_examples: Sequence[SeedExample] | None = None,
    prompts: Mapping[str, ChatPromptTemplate | str] | None = None,
    retry_policy: RetryPolicy | None = None,
    history: int = 6,
    cache_policy: CachePolicy[Any] | None = None,
    stream_critiques: bool = True,
) -> StateGraph[Any, Any, Any, Any]:
    """Create the principles stage alone: situated principles for a query.

    Use it when your own app generates the answer and you want principles to steer it.
    Arguments are those of :func:`create_spri_graph`.

    Returns:
        An uncompiled :class:`~langgraph.graph.StateGraph` whose output holds
        ``principles``, ``principle_critiques`` and ``usage``.

    Example:
        >>> from langchain_core.language_models import GenericFakeChatModel
        >>> model = GenericFakeChatModel(messages=iter(["1. Be kind.", "Good. [RESULT] 4"]))
        >>> create_principles_graph(model).compile().invoke({"query": "Hi?"})["principles"]
        '1. Be kind.'
    """
    return _build(
        model,
        critic_model=critic_model,
        settings=LoopSettings(
            threshold=threshold,
            max_iterations=max_iterations,
            critic_output=critic_output,
            parse_retries=critic_parse_retries,
            retry_policy=retry_policy,
        ),
        seed_examples=seed_examples,
        prompts=prompts,
        shape=_Shape(
            with_response=False,
            history=history,
            cache_policy=cache_policy,
            stream_critiques=stream_critiques,
        ),
    )


SPRI_OPTIONS = frozenset(
    {
        "critic_model",
        "threshold",
        "max_iterations",
        "critic_output",
        "critic_parse_retries",
        "seed_examples",
        "prompts",
        "retry_policy",
        "speculative",
    }
)
"""Keyword options of :func:`create_spri_graph` that batch jobs pass through (not
``model``, and not ``review_principles``, which needs a person)."""


def create_batch_graph(model: ModelSpec = None, **options: Any) -> StateGraph[Any, Any, Any, Any]:
    """The SPRI graph for batch jobs that check every query before the run.

    Takes the options in :data:`SPRI_OPTIONS` (with :func:`create_spri_graph`'s defaults);
    the input is ``{"query": str}`` alone, and the graph has no ``prepare`` or ``finalize``
    step.

    Raises:
        ValueError: If an option is unknown or a setting is out of range.
    """
    unknown = sorted(set(options) - SPRI_OPTIONS)
    if unknown:
        raise ValueError(
            f"{unknown[0]}: not an option of batch SPRI runs "
            f"(options: {', '.join(sorted(SPRI_OPTIONS))})"
        )
    seed_examples = options.pop("seed_examples", None)
    prompts = options.pop("prompts", None)
    critic_model = options.pop("critic_model", None)
    shape = _Shape(checked_queries=True, speculative=options.pop("speculative", False))
    return _build(
        model,
        critic_model=critic_model,
        settings=LoopSettings(**options),
        seed_examples=seed_examples,
        prompts=prompts,
        shape=shape,
    )
