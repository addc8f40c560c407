"""The one idea behind SPRI: draft -> critique -> refine, while score < threshold.

:func:`add_refine_loop` adds three nodes to any :class:`~langgraph.graph.StateGraph`:

* ``<name>_draft`` - the base model writes a first candidate;
* ``<name>_critique`` - the critic grades it (feedback and a 1-5 score);
* ``<name>_refine`` - the base model rewrites the candidate from the feedback,

and a conditional edge after the critique that returns ``"refine"`` while the score is below
``threshold`` and fewer than ``max_iterations`` critiques were made, else ``"done"``. An
unreadable score (after ``parse_retries`` re-asks) also ends the loop, keeping the
current candidate. :func:`create_refine_loop` wraps
the same nodes in a graph of their own.

Every model call shares one code path for sync and async: a node is a generator that yields
the model calls it needs and receives their results, so only the few lines that call
``invoke`` or ``ainvoke`` differ.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable
from langgraph.graph import END, START, StateGraph
from langgraph.types import CachePolicy, RetryPolicy
from typing_extensions import TypedDict, Unpack

from spri_graph.engine.caching import model_identity, prompt_cache_policy
from spri_graph.engine.options import (
    LoopOptions,
    LoopSettings,
    OutputMode,
    ResolvedModels,
    default_retry_policy,
    is_transient_error,
    validate_loop_settings,
)
from spri_graph.engine.prompts import FORMAT_REMINDER, resolve_prompts, spri_headings
from spri_graph.engine.steps import (
    Discard,
    Join,
    ModelCall,
    Spawn,
    StageUsage,
    Step,
    add_usage,
    context_value,
    empty_usage,
    merge_usage,
    message_text,
    route_node,
    step_node,
    structured_output,
)
from spri_graph.models import is_local_model
from spri_graph.readers.frames import strip_frames
from spri_graph.readers.scores import Critique, ScoredCritique, clean_text, parse_critique

__all__ = [
    "OutputMode",
    "RefineLoop",
    "RefineLoopState",
    "StageUsage",
    "add_refine_loop",
    "context_value",
    "create_refine_loop",
    "default_retry_policy",
    "is_transient_error",
    "loop_done",
    "merge_usage",
    "structured_output",
    "validate_loop_settings",
]

ModelResolver = Callable[[str], BaseChatModel | Runnable[Any, Any]]


def _default_parse(message: BaseMessage) -> str:
    return strip_frames(message_text(message), spri_headings())


_STEPS = ("draft", "critique", "refine")


@dataclass(frozen=True)
class RefineLoop:
    """Everything one draft -> critique -> refine loop needs.

    Attributes:
        name: Stage name; nodes are ``<name>_draft``, ``<name>_critique``, ``<name>_refine``
            and usage is recorded under ``usage[name]``.
        model: The base model that drafts and refines.
        critic_model: The model that critiques; ``None`` means ``model``.
        draft_prompt: Prompt for the first candidate.
        critique_prompt: Prompt for the critic; receives ``candidate``.
        refine_prompt: Prompt for a rewrite; receives ``candidate`` and ``feedback``.
        candidate_key: State key holding the candidate.
        critiques_key: State key holding the list of :class:`Critique`.
        prompt_inputs: Builds the prompt variables from the state.
        parse_candidate: Turns the model's message into the candidate value; by default
            its text without the prompt frames it copied
            (:func:`~spri_graph.readers.frames.strip_frames`).
        render_candidate: Turns the candidate into text for the critique/refine prompts.
        settings: The loop's ``threshold``, ``max_iterations``, ``critic_output`` and
            ``parse_retries`` (its models and prompts are the fields above). A
            ``critic_output`` of ``None`` means ``"structured"`` when the critic is the
            embedded local model, else ``"text"``.
        resolve_model: Resolves model names given per run through the graph's context.
        critic_tags: Extra tags for the critic's calls, e.g. ``("nostream",)`` to keep the
            critic's tokens out of LangGraph's ``stream_mode="messages"``.
        speculated_key: State key (a bool) recording whether this loop's draft was made
            ahead, during the previous loop's first critique, and kept; a loop passed as
            another's ``speculate=`` (see :func:`add_refine_loop`) needs one.
        drafts_key: State key the loop records every candidate in, in order (the first
            draft, then each refinement; the ``i``-th was graded by the ``i``-th
            critique); ``None`` records none.

    Drafts and refinements are calls whose output mode is ``"candidate"``: a ``model``
    that is a :class:`~spri_graph.engine.steps.CandidateModel` answers them with its
    candidates runnable.
    """

    name: str
    model: BaseChatModel | Runnable[Any, Any]
    draft_prompt: ChatPromptTemplate
    critique_prompt: ChatPromptTemplate
    refine_prompt: ChatPromptTemplate
    candidate_key: str
    critiques_key: str
    critic_model: BaseChatModel | Runnable[Any, Any] | None = None
    prompt_inputs: Callable[[Mapping[str, Any]], dict[str, Any]] = field(default=lambda state: {})
    parse_candidate: Callable[[BaseMessage], Any] = _default_parse
    render_candidate: Callable[[Any], str] = str
    settings: LoopSettings = LoopSettings()
    resolve_model: ModelResolver | None = None
    critic_tags: tuple[str, ...] = ()
    speculated_key: str | None = None
    drafts_key: str | None = None

    def __post_init__(self) -> None:
        if not self.name or not self.name.isidentifier():
            raise ValueError(f"name must be a non-empty identifier, got {self.name!r}")
        if not isinstance(self.settings, LoopSettings):
            raise ValueError(f"settings must be a LoopSettings, got {self.settings!r}")

    @classmethod
    def for_stage(
        cls,
        name: str,
        models: ResolvedModels,
        prompts: Mapping[str, ChatPromptTemplate],
        settings: LoopSettings,
        *,
        prefix: str | None = None,
        **fields: Any,
    ) -> RefineLoop:
        """A loop over resolved models, its prompts picked from ``prompts`` by step.

        Args:
            name: Stage name (see the class).
            models: The resolved models; their ``critic_output`` goes into the settings.
            prompts: Prompts keyed ``<prefix>_draft``, ``<prefix>_critique`` and
                ``<prefix>_refine`` (``draft``, ``critique``, ``refine`` with ``prefix=""``).
            settings: The loop settings.
            prefix: The prompt keys' prefix; ``None`` means ``name``.
            **fields: The other fields (``candidate_key``, ``critiques_key``,
                ``prompt_inputs``...).

        Example:
            >>> from langchain_core.language_models import FakeListChatModel
            >>> from spri_graph.engine.options import LoopSettings
            >>> from spri_graph.engine.prompts import SPRI_PROMPTS
            >>> settings = LoopSettings()
            >>> loop = RefineLoop.for_stage(
            ...     "response", settings.resolve(FakeListChatModel(responses=["ok"])),
            ...     SPRI_PROMPTS, settings, candidate_key="response",
            ...     critiques_key="response_critiques")
            >>> loop.refine_prompt is SPRI_PROMPTS["response_refine"], loop.critic_output
            (True, 'text')
        """
        head = name if prefix is None else prefix
        draft, critique, refine = (f"{head}_{step}" if head else step for step in _STEPS)
        return cls(
            name=name,
            model=models.base,
            critic_model=models.critic,
            draft_prompt=prompts[draft],
            critique_prompt=prompts[critique],
            refine_prompt=prompts[refine],
            settings=replace(settings, critic_output=models.critic_output),
            **fields,
        )

    @property
    def critic_output(self) -> OutputMode:
        """How the critic answers, with the local-model default applied."""
        if self.settings.critic_output is not None:
            return self.settings.critic_output
        return "structured" if is_local_model(self.critic_model or self.model) else "text"

    @property
    def nodes(self) -> tuple[str, str, str]:
        """Names of the draft, critique and refine nodes."""
        return (f"{self.name}_draft", f"{self.name}_critique", f"{self.name}_refine")


# --------------------------------------------------------------------------- run settings


def _settings(loop: RefineLoop) -> tuple[int, int]:
    threshold = context_value("threshold")
    max_iterations = context_value("max_iterations")
    return (
        loop.settings.threshold if threshold is None else threshold,
        loop.settings.max_iterations if max_iterations is None else max_iterations,
    )


def _models(loop: RefineLoop) -> tuple[Runnable[Any, Any], Runnable[Any, Any]]:
    base, critic = loop.model, loop.critic_model or loop.model
    name, critic_name = context_value("model"), context_value("critic_model")
    if (name or critic_name) and loop.resolve_model is None:
        raise ValueError("context: model names need a resolver; pass model objects instead")
    if name:
        base = loop.resolve_model(name)  # type: ignore[misc]
        if loop.critic_model is None:
            critic = base
    if critic_name:
        critic = loop.resolve_model(critic_name)  # type: ignore[misc]
    return base, critic


# --------------------------------------------------------------------------- nodes


def _candidate_call(
    loop: RefineLoop, runnable: Runnable[Any, Any], messages: Any, step: str, it: int
) -> ModelCall:
    return ModelCall.for_stage(
        runnable, messages, stage=loop.name, step=step, iteration=it, output="candidate"
    )


def _usage_update(loop: RefineLoop, usage: StageUsage) -> dict[str, Any]:
    return {"usage": {loop.name: usage}}


def _draft_call(loop: RefineLoop, state: Mapping[str, Any]) -> ModelCall:
    model, _ = _models(loop)
    messages = loop.draft_prompt.format_messages(**loop.prompt_inputs(state))
    return _candidate_call(loop, model, messages, "draft", 0)


def _drafted(loop: RefineLoop, message: BaseMessage) -> dict[str, Any]:
    candidate = loop.parse_candidate(message)
    update = {
        loop.candidate_key: candidate,
        loop.critiques_key: [],
        **_usage_update(loop, add_usage(empty_usage(), message, critic=False)),
    }
    if loop.drafts_key is not None:
        update[loop.drafts_key] = [candidate]
    return update


def _draft_step(loop: RefineLoop, state: Mapping[str, Any]) -> Step:
    message = yield _draft_call(loop, state)
    return _drafted(loop, message)


def _critique_step(loop: RefineLoop, state: Mapping[str, Any]) -> Step:
    _, critic = _models(loop)
    critiques: list[Critique] = _critiques(state, loop)
    usage = (state.get("usage") or {}).get(loop.name) or empty_usage()
    iteration = len(critiques) + 1
    inputs = {
        **loop.prompt_inputs(state),
        "candidate": loop.render_candidate(state[loop.candidate_key]),
    }
    messages = list(loop.critique_prompt.format_messages(**inputs))
    output = loop.critic_output
    if output == "structured":
        critic = structured_output(critic, ScoredCritique)
    critique = Critique(feedback="", score=None)
    for _attempt in range(loop.settings.parse_retries + 1):
        result = yield ModelCall.for_stage(
            critic,
            messages,
            stage=loop.name,
            step="critique",
            iteration=iteration,
            tags=loop.critic_tags,
            critic=True,
        )
        if output == "structured":
            raw, parsed = result["raw"], result["parsed"]
            usage = add_usage(usage, raw, critic=True)
            if parsed is not None:
                critique = Critique(feedback=parsed.feedback, score=parsed.score)
            else:
                text = message_text(raw)
                critique = Critique(feedback=clean_text(text), score=None, raw=text)
        else:
            usage = add_usage(usage, result, critic=True)
            # Markers the critic copied from the candidate are not its verdict.
            critique = parse_critique(message_text(result), quoted=inputs["candidate"])
            if critique.score is None:
                messages += [AIMessage(content=critique.raw or ""), HumanMessage(FORMAT_REMINDER)]
        if critique.score is not None:
            break
    return {
        loop.critiques_key: [*critiques, critique],
        **_usage_update(loop, usage),
    }


def _refine_step(loop: RefineLoop, state: Mapping[str, Any]) -> Step:
    model, _ = _models(loop)
    critiques: list[Critique] = _critiques(state, loop)
    usage = (state.get("usage") or {}).get(loop.name) or empty_usage()
    inputs = {
        **loop.prompt_inputs(state),
        "candidate": loop.render_candidate(state[loop.candidate_key]),
        "feedback": critiques[-1].feedback if critiques else "",
    }
    messages = loop.refine_prompt.format_messages(**inputs)
    message = yield _candidate_call(loop, model, messages, "refine", len(critiques))
    candidate = loop.parse_candidate(message)
    update = {
        loop.candidate_key: candidate,
        **_usage_update(loop, add_usage(usage, message, critic=False)),
    }
    if loop.drafts_key is not None:
        update[loop.drafts_key] = [*(state.get(loop.drafts_key) or []), candidate]
    return update


def _critiques(state: Mapping[str, Any], loop: RefineLoop) -> list[Critique]:
    """The loop's critiques so far (restored from a checkpoint they are plain dicts)."""
    return [Critique.of(c) for c in state.get(loop.critiques_key) or []]


def loop_done(critiques: Sequence[Critique], *, threshold: int, max_iterations: int) -> bool:
    """Whether a refine loop stops after these critiques (the paper's rule).

    It stops when the last critique has no readable score, reaches ``threshold``, or is the
    ``max_iterations``-th.

    Example:
        >>> from spri_graph.readers.scores import Critique
        >>> loop_done([Critique(score=3)], threshold=4, max_iterations=4)
        False
    """
    last = critiques[-1] if critiques else None
    if last is None or last.score is None:
        return True
    return last.score >= threshold or len(critiques) >= max_iterations


def _decide(loop: RefineLoop, critiques: Sequence[Critique]) -> Literal["refine", "done"]:
    threshold, max_iterations = _settings(loop)
    done = loop_done(critiques, threshold=threshold, max_iterations=max_iterations)
    return "done" if done else "refine"


def _router(loop: RefineLoop) -> Callable[[Mapping[str, Any]], Literal["refine", "done"]]:
    def route(state: Mapping[str, Any]) -> Literal["refine", "done"]:
        return _decide(loop, _critiques(state, loop))

    route.__name__ = f"route_{loop.name}"
    return route


# --------------------------------------------------------------------------- speculation


def _speculated_key(ahead: RefineLoop) -> str:
    if ahead.speculated_key is None:
        raise ValueError(f"speculate: loop {ahead.name!r} needs a speculated_key")
    return ahead.speculated_key


def _speculative_critique_step(
    loop: RefineLoop, ahead: RefineLoop, state: Mapping[str, Any]
) -> Step:
    """The first critique, with ``ahead``'s draft started from the same candidate.

    If the critique accepts the candidate, the draft is kept (``ahead``'s draft node is
    skipped); if not, it is discarded: cancelled on the async path; on the sync path, where
    a started call cannot be stopped, waited for. Either way ``usage["speculation"]``
    counts what the discarded call cost: no call if it never started, else one call with
    the tokens of its reply, if it replied.
    """
    handle, key = None, _speculated_key(ahead)
    if not state.get(loop.critiques_key):
        handle = yield Spawn(_draft_call(ahead, state))
    update = yield from _critique_step(loop, state)
    if handle is None:
        return {**update, key: False}
    if _decide(loop, update[loop.critiques_key]) == "refine":
        dropped = yield Discard(handle)
        usage = {**update["usage"], "speculation": dropped.usage()}
        return {**update, "usage": usage, key: False}
    message = yield Join(handle)
    drafted = _drafted(ahead, message)
    usage = {**update["usage"], **drafted["usage"]}
    return {**update, **drafted, "usage": usage, key: True}


def _speculative_router(
    loop: RefineLoop, ahead: RefineLoop
) -> Callable[[Mapping[str, Any]], Literal["refine", "done", "drafted"]]:
    def route(state: Mapping[str, Any]) -> Literal["refine", "done", "drafted"]:
        decision = _decide(loop, _critiques(state, loop))
        if decision == "done" and state.get(_speculated_key(ahead)):
            return "drafted"
        return decision

    route.__name__ = f"route_{loop.name}"
    return route


# --------------------------------------------------------------------------- caching


def _cache_policy(
    loop: RefineLoop, policy: CachePolicy[Any], prompt: ChatPromptTemplate, step: str
) -> CachePolicy[Any] | None:
    """A node's cache policy: the models, the prompt it would send, what it appends to."""

    def inputs(state: Mapping[str, Any]) -> dict[str, Any]:
        values = loop.prompt_inputs(state)
        if step != "draft":
            critiques = _critiques(state, loop)
            values["candidate"] = loop.render_candidate(state.get(loop.candidate_key))
            values["feedback"] = critiques[-1].feedback if critiques else ""
            values["critiques"] = [c.model_dump() for c in critiques]
            values["usage"] = (state.get("usage") or {}).get(loop.name)
        return values

    return prompt_cache_policy(
        policy,
        node=f"{loop.name}_{step}",
        model=loop.model,
        prompt=prompt,
        prompt_inputs=inputs,
        extra=[model_identity(loop.critic_model), loop.critic_output],
    )


def add_refine_loop(
    builder: StateGraph[Any, Any, Any, Any],
    loop: RefineLoop,
    *,
    then: str,
    retry_policy: RetryPolicy | None = None,
    cache_policy: CachePolicy[Any] | None = None,
    speculate: RefineLoop | None = None,
) -> str:
    """Add a refine loop's nodes and edges to ``builder``.

    The caller adds the edge *into* the loop (to the returned draft node); the loop ends
    with an edge to ``then``.

    Args:
        builder: The graph to extend. Its state must hold ``loop.candidate_key``,
            ``loop.critiques_key`` and ``usage`` (with :func:`merge_usage` as reducer).
        loop: The loop's models, prompts, keys and settings.
        then: Node (or ``END``) to go to when the loop is done.
        retry_policy: Retry policy for the model nodes.
        cache_policy: Cache the nodes (pass a cache at ``compile(cache=...)``), keyed on the
            models and the prompt each node would send; ``ttl`` is kept.
        speculate: The loop that runs next (``then`` must be its draft node). Its draft
            starts from the first candidate while the critic grades that candidate; if the
            critique accepts it, the draft is kept and the next loop starts at its critique,
            else the draft is discarded (cancelled on the async path, waited for and
            counted in ``usage["speculation"]`` on the sync path). The state must also hold
            ``speculate.speculated_key`` (a bool).

    Returns:
        The name of the loop's first node (``<name>_draft``).
    """
    draft, critique, refine = loop.nodes
    if speculate is not None and then != speculate.nodes[0]:
        raise ValueError(f"speculate: then must be {speculate.nodes[0]!r}, got {then!r}")
    if speculate is not None:
        _speculated_key(speculate)
    steps = {
        draft: (_draft_step, loop.draft_prompt, "draft"),
        critique: (_critique_step, loop.critique_prompt, "critique"),
        refine: (_refine_step, loop.refine_prompt, "refine"),
    }
    for name, (step, prompt, kind) in steps.items():
        body = functools.partial(step, loop)
        if speculate is not None and kind == "critique":
            body = functools.partial(_speculative_critique_step, loop, speculate)
        policy = None if cache_policy is None else _cache_policy(loop, cache_policy, prompt, kind)
        builder.add_node(
            name, step_node(name, body), retry_policy=retry_policy, cache_policy=policy
        )
    builder.add_edge(draft, critique)
    if speculate is None:
        route: Callable[[Mapping[str, Any]], str] = _router(loop)
        targets: dict[Hashable, str] = {"refine": refine, "done": then}
    else:
        route = _speculative_router(loop, speculate)
        targets = {"refine": refine, "done": then, "drafted": speculate.nodes[1]}
    builder.add_conditional_edges(critique, route_node(route.__name__, route), targets)
    builder.add_edge(refine, critique)
    return draft


# --------------------------------------------------------------------------- a loop as a graph


class RefineLoopState(TypedDict, total=False):
    """State of a stand-alone refine loop (see :func:`create_refine_loop`)."""

    inputs: dict[str, Any]
    candidate: Any
    critiques: list[Critique]
    usage: Annotated[dict[str, StageUsage], merge_usage]


def create_refine_loop(
    model: BaseChatModel | Runnable[Any, Any] | str,
    *,
    draft_prompt: ChatPromptTemplate,
    critique_prompt: ChatPromptTemplate,
    refine_prompt: ChatPromptTemplate,
    name: str = "refine",
    **options: Unpack[LoopOptions],
) -> StateGraph[Any, Any, Any, Any]:
    """Create a stand-alone draft -> critique -> refine graph.

    The prompts read their variables from the ``inputs`` dict of the state, plus
    ``candidate`` (critique and refine) and ``feedback`` (refine).

    Args:
        model: Chat model (or model string) that drafts and refines.
        draft_prompt: Prompt for the first candidate.
        critique_prompt: Prompt for the critic; should ask for ``[RESULT] N``.
        refine_prompt: Prompt that rewrites ``candidate`` from ``feedback``.
        name: Stage name used for nodes, tracing and usage.
        **options: The shared options (:class:`~spri_graph.engine.options.LoopOptions`);
            ``prompts`` overrides the three prompts, keyed ``draft``, ``critique`` and
            ``refine``.

    Returns:
        An uncompiled :class:`~langgraph.graph.StateGraph` over :class:`RefineLoopState`.

    Raises:
        TypeError: If an option is unknown.
        ValueError: If an option is out of range or a model string cannot be resolved.

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
    settings = LoopSettings.from_options(options, caller="create_refine_loop")
    prompts = resolve_prompts(
        {"draft": draft_prompt, "critique": critique_prompt, "refine": refine_prompt},
        settings.prompts,
    )
    models = settings.resolve(model)
    loop = RefineLoop.for_stage(
        name,
        models,
        prompts,
        settings,
        prefix="",
        candidate_key="candidate",
        critiques_key="critiques",
        prompt_inputs=lambda state: dict(state.get("inputs") or {}),
    )
    builder = StateGraph(RefineLoopState)
    first = add_refine_loop(
        builder,
        loop,
        then=END,
        retry_policy=settings.policy,
        cache_policy=settings.cache_policy,
    )
    builder.add_edge(START, first)
    return builder
