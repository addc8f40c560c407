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
from dataclasses import dataclass
from typing import Annotated, Any

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.constants import TAG_NOSTREAM
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import interrupt
from typing_extensions import Self, TypedDict, Unpack

from spri_graph.engine.loop import RefineLoop, add_refine_loop
from spri_graph.engine.options import (
    LoopOptions,
    LoopSettings,
    SPRIContext,
    check_context,
    option_names,
    spri_state_graph,
    take_options,
)
from spri_graph.engine.prompts import (
    SPRI_PROMPTS,
    SeedExample,
    format_seed_examples,
    resolve_prompts,
    spri_headings,
)
from spri_graph.engine.steps import StageUsage, merge_usage, message_text
from spri_graph.models import ModelSpec, resolve_model_cached
from spri_graph.readers.frames import strip_frames
from spri_graph.readers.scores import Critique

__all__ = [
    "PrinciplesOutput",
    "RESPONSE_SPECULATED",
    "SPRIContext",
    "SPRIInput",
    "SPRIOutput",
    "PrinciplesOptions",
    "PrinciplesSettings",
    "SPRIOptions",
    "SPRISettings",
    "SPRIState",
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
    tokens; ``response_drafts`` holds every response candidate in order (the first draft,
    then each refinement, graded by the critique of the same index). When the input had
    ``messages``, the response is appended to them.
    """

    principles: str
    response: str
    response_drafts: list[str]
    principle_critiques: list[Critique]
    response_critiques: list[Critique]
    usage: Annotated[dict[str, StageUsage], merge_usage]
    messages: Annotated[list[AnyMessage], add_messages]


class SPRIState(SPRIInput, SPRIOutput, total=False):
    """Full state of the SPRI graph.

    ``conversation`` holds the earlier turns shown to the prompts (see ``history``), and
    ``response_speculative`` (:data:`RESPONSE_SPECULATED`) whether a speculative response
    draft was kept.
    """

    conversation: str
    response_speculative: bool


RESPONSE_SPECULATED = "response_speculative"
"""The :class:`SPRIState` key the response loop records a kept speculative draft in (its
``speculated_key``)."""


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


class PrinciplesOptions(LoopOptions, total=False):
    """The options of :func:`create_principles_graph`: the shared loop options and these.

    Attributes:
        seed_examples: Few-shot ``{"query", "principles"}`` examples for the principle
            writer (default: none).
        history: With ``messages`` as input, how many earlier user/assistant messages the
            prompts see as the conversation so far (default 6; ``0``: the last human
            message alone).
        stream_critiques: ``False`` tags the critic's calls ``nostream`` so their tokens stay
            out of ``stream_mode="messages"`` (a chat UI then shows the principles and the
            answer forming, not the critic's text). Default ``True``.
    """

    seed_examples: Sequence[SeedExample] | None
    history: int
    stream_critiques: bool


class SPRIOptions(PrinciplesOptions, total=False):
    """The options of :func:`create_spri_graph`, synthesis and :class:`~spri_graph.SPRIMiddleware`.

    The shared loop options, :class:`PrinciplesOptions`' and this one.

    Attributes:
        speculative: Draft the response from the first principles while the critic grades
            them (default ``False``). If they pass, the draft is kept (one critique's wait
            saved); if they are refined, it is discarded (cancelled under ``ainvoke``;
            under ``invoke``, where a started call cannot be stopped, waited for and counted
            in ``usage["speculation"]``) and the response is drafted from the final
            principles. With deterministic models the result equals a sequential run.
    """

    speculative: bool


@dataclass(frozen=True)
class PrinciplesSettings:
    """The checked :class:`PrinciplesOptions`: the loop's settings and the alignment's own.

    Build one with :meth:`from_options`; the defaults live here and in
    :class:`~spri_graph.engine.options.LoopSettings`.
    """

    loop: LoopSettings = LoopSettings()
    seed_examples: Sequence[SeedExample] | None = None
    history: int = 6
    stream_critiques: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.history, bool) or not isinstance(self.history, int) or self.history < 0:
            raise ValueError(f"history must be an integer >= 0, got {self.history!r}")
        _check_flag("stream_critiques", self.stream_critiques)

    @classmethod
    def from_options(cls, options: Mapping[str, Any], *, caller: str) -> Self:
        """Settings from an entry point's keyword arguments (unknown names: ``TypeError``)."""
        shared = option_names(LoopSettings)
        taken = take_options(options, (*shared, *cls._own()), caller=caller)
        loop = LoopSettings(**{name: taken.pop(name) for name in shared if name in taken})
        return cls(loop=loop, **taken)

    @classmethod
    def _own(cls) -> tuple[str, ...]:
        return tuple(name for name in option_names(cls) if name != "loop")

    def options(self) -> dict[str, Any]:
        """The settings as keyword arguments, to pass on to another entry point."""
        return {**self.loop.options(), **{name: getattr(self, name) for name in self._own()}}


@dataclass(frozen=True)
class SPRISettings(PrinciplesSettings):
    """The checked :class:`SPRIOptions`."""

    speculative: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_flag("speculative", self.speculative)


def _check_flag(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")


def _build(
    model: ModelSpec,
    settings: PrinciplesSettings,
    *,
    with_response: bool = True,
    review: bool = False,
    checked_queries: bool = False,
) -> StateGraph[Any, Any, Any, Any]:
    """Build the SPRI graph.

    ``checked_queries`` is for batch jobs that check every query themselves and pass
    neither ``messages`` nor a context: the graph is the two loops alone, without the
    ``prepare`` and ``finalize`` steps, two graph steps fewer per record.
    """
    loop_settings = settings.loop
    stage_prompts = resolve_prompts(SPRI_PROMPTS, loop_settings.prompts)
    examples_section = format_seed_examples(settings.seed_examples)
    models = loop_settings.resolve(model)
    policy = loop_settings.policy
    speculative = isinstance(settings, SPRISettings) and settings.speculative
    _check_flag("review_principles", review)
    if speculative and review:
        raise ValueError(
            "speculative: cannot be combined with review_principles (a person may still "
            "change the principles the response would be drafted from)"
        )

    def loop(
        name: str,
        candidate_key: str,
        critiques_key: str,
        speculated: str | None = None,
        drafts: str | None = None,
    ) -> RefineLoop:
        return RefineLoop.for_stage(
            name,
            models,
            stage_prompts,
            loop_settings,
            candidate_key=candidate_key,
            critiques_key=critiques_key,
            prompt_inputs=lambda state: _inputs(state, examples_section),
            parse_candidate=lambda message: strip_frames(
                message_text(message), spri_headings(), writing=name
            ),
            resolve_model=resolve_model_cached,
            critic_tags=() if settings.stream_critiques else (TAG_NOSTREAM,),
            speculated_key=speculated,
            drafts_key=drafts,
        )

    builder = spri_state_graph(
        SPRIState, SPRIInput, SPRIOutput if with_response else PrinciplesOutput
    )
    entry = START
    if not checked_queries:
        builder.add_node("prepare", _Prepare(settings.history))
        builder.add_edge(START, "prepare")
        entry = "prepare"
    principles = loop("principles", "principles", "principle_critiques")
    response = loop(
        "response", "response", "response_critiques", RESPONSE_SPECULATED, "response_drafts"
    )
    then = response.nodes[0] if with_response else END
    if with_response and review:
        then = "review_principles"
    first = add_refine_loop(
        builder,
        principles,
        then=then,
        retry_policy=policy,
        cache_policy=loop_settings.cache_policy,
        speculate=response if speculative and with_response else None,
    )
    builder.add_edge(entry, first)
    if not with_response:
        return builder
    if review:
        builder.add_node("review_principles", review_principles)
        builder.add_edge("review_principles", response.nodes[0])
    add_refine_loop(
        builder,
        response,
        then=END if checked_queries else "finalize",
        retry_policy=policy,
    )
    if not checked_queries:
        builder.add_node("finalize", _finalize)
        builder.add_edge("finalize", END)
    return builder


def create_spri_graph(
    model: ModelSpec = None,
    *,
    review_principles: bool = False,
    **options: Unpack[SPRIOptions],
) -> StateGraph[Any, Any, Any, Any]:
    """Create the SPRI graph: situated principles, then a response aligned to them.

    Args:
        model: Base model (drafts and refines): a chat model, a model string such as
            ``"openai:gpt-4o-mini"``, ``"local"``, ``"gguf:/path.gguf"``, or ``None`` for
            ``$SPRI_MODEL`` / the embedded local model.
        review_principles: Pause with ``interrupt()`` after the principles stage so a person
            can approve or edit them (needs a checkpointer).
        **options: The shared options (:class:`~spri_graph.engine.options.LoopOptions`) and
            the alignment's (:class:`SPRIOptions`: ``seed_examples``, ``history``,
            ``stream_critiques``, ``speculative``). ``prompts`` is keyed
            ``principles_draft``, ``principles_critique``, ``principles_refine``,
            ``response_draft``, ``response_critique``, ``response_refine`` (see
            :data:`~spri_graph.SPRI_PROMPTS`). ``cache_policy`` caches the principles
            stage: a repeated question (same query, goal, conversation, models, prompts and
            seed examples) then makes no principle-stage calls; entries expire after
            ``ttl`` seconds; clear them with ``graph.clear_cache()`` or by deleting the
            SQLite file.

    Returns:
        An uncompiled :class:`~langgraph.graph.StateGraph`; compile it with the
        checkpointer, store and interrupts you need. The state holds :class:`Critique`
        objects: with ``LANGGRAPH_STRICT_MSGPACK=true`` the graph registers them with the
        checkpointer itself; otherwise langgraph-checkpoint logs that it read an unregistered
        type unless the checkpointer's serializer allows it, e.g.
        ``InMemorySaver(serde=JsonPlusSerializer(allowed_msgpack_modules=[Critique]))``.

    Raises:
        TypeError: If an option is unknown.
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
    settings = SPRISettings.from_options(options, caller="create_spri_graph")
    return _build(model, settings, review=review_principles)


def create_principles_graph(
    model: ModelSpec = None, **options: Unpack[PrinciplesOptions]
) -> StateGraph[Any, Any, Any, Any]:
    """Create the principles stage alone: situated principles for a query.

    Use it when your own app generates the answer and you want principles to steer it.

    Args:
        model: Base model, as for :func:`create_spri_graph`.
        **options: The shared options (:class:`~spri_graph.engine.options.LoopOptions`) and
            :class:`PrinciplesOptions` (``seed_examples``, ``history``,
            ``stream_critiques``).

    Returns:
        An uncompiled :class:`~langgraph.graph.StateGraph` whose output holds
        ``principles``, ``principle_critiques`` and ``usage``.

    Raises:
        TypeError: If an option is unknown.
        ValueError: If a setting is out of range or a model string cannot be resolved.

    Example:
        >>> from langchain_core.language_models import GenericFakeChatModel
        >>> model = GenericFakeChatModel(messages=iter(["1. Be kind.", "Good. [RESULT] 4"]))
        >>> create_principles_graph(model).compile().invoke({"query": "Hi?"})["principles"]
        '1. Be kind.'
    """
    settings = PrinciplesSettings.from_options(options, caller="create_principles_graph")
    return _build(model, settings, with_response=False)


def create_batch_graph(
    model: ModelSpec = None, **options: Unpack[SPRIOptions]
) -> StateGraph[Any, Any, Any, Any]:
    """The SPRI graph for batch jobs that check every query before the run.

    Takes :func:`create_spri_graph`'s options (but not ``review_principles``, which needs
    a person); the input is ``{"query": str}`` alone, and the graph has no ``prepare`` or
    ``finalize`` step.

    Raises:
        TypeError: If an option is unknown.
        ValueError: If a setting is out of range.
    """
    settings = SPRISettings.from_options(options, caller="create_batch_graph")
    return _build(model, settings, checked_queries=True)
