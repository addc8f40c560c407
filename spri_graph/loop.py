"""The one idea behind SPRI: draft -> critique -> refine, while score < threshold.

:func:`add_refine_loop` adds three nodes to any :class:`~langgraph.graph.StateGraph`:

* ``<name>_draft`` - the base model writes a first candidate;
* ``<name>_critique`` - the critic grades it (feedback and a 1-5 score);
* ``<name>_refine`` - the base model rewrites the candidate from the feedback,

and a conditional edge after the critique that returns ``"refine"`` while the score is below
``threshold`` and fewer than ``max_iterations`` critiques were made, else ``"done"``. An
unreadable score (after ``critic_parse_retries`` re-asks) also ends the loop, keeping the
current candidate. :func:`create_refine_loop` wraps the same nodes in a graph of their own.

Every model call shares one code path for sync and async: a node is a generator that yields
the model calls it needs and receives their results, so only the few lines that call
``invoke`` or ``ainvoke`` differ.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import var_child_runnable_config
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import get_runtime
from langgraph.types import RetryPolicy
from typing_extensions import TypedDict

from spri_graph.critique import Critique, ScoredCritique, clean_text, parse_critique
from spri_graph.prompts import FORMAT_REMINDER

__all__ = [
    "CriticOutput",
    "RefineLoop",
    "RefineLoopState",
    "StageUsage",
    "add_refine_loop",
    "context_value",
    "create_refine_loop",
    "default_retry_policy",
    "is_transient_error",
    "merge_usage",
    "structured_output",
    "validate_loop_settings",
]

CriticOutput = Literal["text", "structured"]


class StageUsage(TypedDict):
    """Model calls and tokens spent by one stage of a run."""

    model_calls: int
    critic_calls: int
    input_tokens: int
    output_tokens: int
    total_tokens: int


def merge_usage(
    left: dict[str, StageUsage] | None, right: dict[str, StageUsage] | None
) -> dict[str, StageUsage]:
    """State reducer for ``usage``: later entries replace earlier ones stage by stage."""
    return {**(left or {}), **(right or {})}


def _empty_usage() -> StageUsage:
    return StageUsage(
        model_calls=0, critic_calls=0, input_tokens=0, output_tokens=0, total_tokens=0
    )


def _add_usage(usage: StageUsage, message: BaseMessage | None, *, critic: bool) -> StageUsage:
    meta = getattr(message, "usage_metadata", None) or {}
    return StageUsage(
        model_calls=usage["model_calls"] + (0 if critic else 1),
        critic_calls=usage["critic_calls"] + (1 if critic else 0),
        input_tokens=usage["input_tokens"] + int(meta.get("input_tokens", 0) or 0),
        output_tokens=usage["output_tokens"] + int(meta.get("output_tokens", 0) or 0),
        total_tokens=usage["total_tokens"] + int(meta.get("total_tokens", 0) or 0),
    )


_TRANSIENT_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 529}
_TRANSIENT_NAMES = (
    "RateLimit",
    "Timeout",
    "APIConnectionError",
    "InternalServerError",
    "ServiceUnavailable",
    "Overloaded",
    "RemoteProtocolError",
    "ConnectError",
)


def is_transient_error(exc: BaseException) -> bool:
    """Whether a model error is worth retrying: timeouts, rate limits, 5xx, lost connections.

    Works across providers without importing them: it looks at the status code the
    exception carries (``status_code`` or ``response.status_code``) and its class names.

    Example:
        >>> is_transient_error(TimeoutError()), is_transient_error(ValueError("bad"))
        (True, False)
    """
    if isinstance(exc, (TimeoutError, ConnectionError, asyncio.TimeoutError)):
        return True
    status = getattr(exc, "status_code", None)
    if status is None:
        status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(status, int):
        return status in _TRANSIENT_STATUS or 500 <= status < 600
    names = [cls.__name__ for cls in type(exc).__mro__]
    return any(marker in name for name in names for marker in _TRANSIENT_NAMES)


def default_retry_policy(
    max_attempts: int = 4, initial_interval: float = 1.0, max_interval: float = 30.0
) -> RetryPolicy:
    """The retry policy the graph factories use for model nodes.

    Retries :func:`is_transient_error` failures with exponential backoff and jitter; any
    other error surfaces at once.

    Args:
        max_attempts: Attempts per node, the first included.
        initial_interval: Seconds before the first retry; doubles each time.
        max_interval: Upper bound on the wait between attempts, in seconds.
    """
    return RetryPolicy(
        initial_interval=initial_interval,
        backoff_factor=2.0,
        max_interval=max_interval,
        max_attempts=max_attempts,
        jitter=True,
        retry_on=is_transient_error,
    )


def validate_loop_settings(
    *,
    threshold: Any = 4,
    max_iterations: Any = 4,
    critic_output: Any = "text",
    critic_parse_retries: Any = 0,
) -> None:
    """Check loop settings, raising a ``ValueError`` that names the bad argument."""
    if isinstance(threshold, bool) or not isinstance(threshold, int) or not 1 <= threshold <= 5:
        raise ValueError(f"threshold must be an integer from 1 to 5, got {threshold!r}")
    if (
        isinstance(max_iterations, bool)
        or not isinstance(max_iterations, int)
        or max_iterations < 1
    ):
        raise ValueError(f"max_iterations must be an integer >= 1, got {max_iterations!r}")
    if critic_output not in ("text", "structured"):
        raise ValueError(f"critic_output must be 'text' or 'structured', got {critic_output!r}")
    if (
        isinstance(critic_parse_retries, bool)
        or not isinstance(critic_parse_retries, int)
        or critic_parse_retries < 0
    ):
        raise ValueError(
            f"critic_parse_retries must be an integer >= 0, got {critic_parse_retries!r}"
        )


@functools.lru_cache(maxsize=64)
def _accepts_method(kind: type) -> bool:
    try:
        return "method" in inspect.signature(kind.with_structured_output).parameters
    except (TypeError, ValueError):
        return False


def structured_output(model: Runnable, schema: type) -> Runnable:
    """``model.with_structured_output(schema, include_raw=True)`` by function calling.

    Function calling is the structured-output method that OpenAI, Anthropic and the
    OpenAI-compatible servers (vLLM, Ollama, llama.cpp) share; some of the servers reject
    the ``json_schema`` response format that ``ChatOpenAI`` would pick by default. Models
    whose ``with_structured_output`` takes no ``method`` keep their own.
    """
    kwargs = {"method": "function_calling"} if _accepts_method(type(model)) else {}
    return model.with_structured_output(schema, include_raw=True, **kwargs)


def _message_text(message: BaseMessage) -> str:
    return message.text if isinstance(message.text, str) else message.text()


def _default_parse(message: BaseMessage) -> str:
    return clean_text(_message_text(message))


ModelResolver = Callable[[str], BaseChatModel]


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
        parse_candidate: Turns the model's message into the candidate value.
        render_candidate: Turns the candidate into text for the critique/refine prompts.
        threshold: Score (1-5) that accepts a candidate.
        max_iterations: Most critiques to make.
        critic_output: ``"text"`` (parse ``[RESULT] N``) or ``"structured"``.
        critic_parse_retries: Re-asks when a text critique has no readable score.
        resolve_model: Resolves model names given per run through the graph's context.
    """

    name: str
    model: BaseChatModel | Runnable
    draft_prompt: ChatPromptTemplate
    critique_prompt: ChatPromptTemplate
    refine_prompt: ChatPromptTemplate
    candidate_key: str
    critiques_key: str
    critic_model: BaseChatModel | Runnable | None = None
    prompt_inputs: Callable[[Mapping[str, Any]], dict[str, Any]] = field(default=lambda state: {})
    parse_candidate: Callable[[BaseMessage], Any] = _default_parse
    render_candidate: Callable[[Any], str] = str
    threshold: int = 4
    max_iterations: int = 4
    critic_output: CriticOutput = "text"
    critic_parse_retries: int = 1
    resolve_model: ModelResolver | None = None

    def __post_init__(self) -> None:
        if not self.name or not self.name.isidentifier():
            raise ValueError(f"name must be a non-empty identifier, got {self.name!r}")
        validate_loop_settings(
            threshold=self.threshold,
            max_iterations=self.max_iterations,
            critic_output=self.critic_output,
            critic_parse_retries=self.critic_parse_retries,
        )

    @property
    def nodes(self) -> tuple[str, str, str]:
        """Names of the draft, critique and refine nodes."""
        return (f"{self.name}_draft", f"{self.name}_critique", f"{self.name}_refine")


# --------------------------------------------------------------------------- run settings


def context_value(key: str) -> Any:
    """Read a per-run setting from the graph's context (``None`` when unset)."""
    try:
        context = get_runtime().context
    except RuntimeError:  # called outside a graph run
        return None
    if context is None:
        return None
    if isinstance(context, Mapping):
        return context.get(key)
    return getattr(context, key, None)


def _settings(loop: RefineLoop) -> tuple[int, int]:
    threshold = context_value("threshold")
    max_iterations = context_value("max_iterations")
    return (
        loop.threshold if threshold is None else threshold,
        loop.max_iterations if max_iterations is None else max_iterations,
    )


def _models(loop: RefineLoop) -> tuple[Runnable, Runnable]:
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


@dataclass(frozen=True)
class _Call:
    """A model call a node asks its driver to make."""

    runnable: Runnable
    messages: Sequence[BaseMessage]
    run_name: str
    tags: tuple[str, ...]
    metadata: dict[str, Any]

    def config(self, config: RunnableConfig) -> RunnableConfig:
        """The node's config with this call's run name, tags and metadata added."""
        merged: dict[str, Any] = {k: v for k, v in config.items() if k != "run_id"}
        tags = list(config.get("tags") or ())
        merged["tags"] = tags + [tag for tag in self.tags if tag not in tags]
        merged["metadata"] = {**(config.get("metadata") or {}), **self.metadata}
        merged["run_name"] = self.run_name
        return merged  # type: ignore[return-value]


_Step = Generator[_Call, Any, dict[str, Any]]


def _call(
    loop: RefineLoop, runnable: Runnable, messages: Sequence[BaseMessage], step: str, iteration: int
) -> _Call:
    return _Call(
        runnable=runnable,
        messages=messages,
        run_name=f"spri:{loop.name}:{step}",
        tags=("spri", f"spri:{loop.name}", f"spri:{loop.name}:{step}"),
        metadata={"spri_stage": loop.name, "spri_step": step, "spri_iteration": iteration},
    )


def _usage_update(loop: RefineLoop, usage: StageUsage) -> dict[str, Any]:
    return {"usage": {loop.name: usage}}


def _draft_step(loop: RefineLoop, state: Mapping[str, Any]) -> _Step:
    model, _ = _models(loop)
    messages = loop.draft_prompt.format_messages(**loop.prompt_inputs(state))
    message = yield _call(loop, model, messages, "draft", 0)
    return {
        loop.candidate_key: loop.parse_candidate(message),
        loop.critiques_key: [],
        **_usage_update(loop, _add_usage(_empty_usage(), message, critic=False)),
    }


def _critique_step(loop: RefineLoop, state: Mapping[str, Any]) -> _Step:
    _, critic = _models(loop)
    critiques: list[Critique] = list(state.get(loop.critiques_key) or [])
    usage = (state.get("usage") or {}).get(loop.name) or _empty_usage()
    iteration = len(critiques) + 1
    inputs = {
        **loop.prompt_inputs(state),
        "candidate": loop.render_candidate(state[loop.candidate_key]),
    }
    messages = list(loop.critique_prompt.format_messages(**inputs))
    if loop.critic_output == "structured":
        critic = structured_output(critic, ScoredCritique)
    critique = Critique(feedback="", score=None)
    for _attempt in range(loop.critic_parse_retries + 1):
        result = yield _call(loop, critic, messages, "critique", iteration)
        if loop.critic_output == "structured":
            raw, parsed = result["raw"], result["parsed"]
            usage = _add_usage(usage, raw, critic=True)
            if parsed is not None:
                critique = Critique(feedback=parsed.feedback, score=parsed.score)
            else:
                text = _message_text(raw)
                critique = Critique(feedback=clean_text(text), score=None, raw=text)
        else:
            usage = _add_usage(usage, result, critic=True)
            critique = parse_critique(_message_text(result))
            if critique.score is None:
                messages += [AIMessage(content=critique.raw or ""), HumanMessage(FORMAT_REMINDER)]
        if critique.score is not None:
            break
    return {
        loop.critiques_key: [*critiques, critique],
        **_usage_update(loop, usage),
    }


def _refine_step(loop: RefineLoop, state: Mapping[str, Any]) -> _Step:
    model, _ = _models(loop)
    critiques: list[Critique] = list(state.get(loop.critiques_key) or [])
    usage = (state.get("usage") or {}).get(loop.name) or _empty_usage()
    inputs = {
        **loop.prompt_inputs(state),
        "candidate": loop.render_candidate(state[loop.candidate_key]),
        "feedback": critiques[-1].feedback if critiques else "",
    }
    messages = loop.refine_prompt.format_messages(**inputs)
    message = yield _call(loop, model, messages, "refine", len(critiques))
    return {
        loop.candidate_key: loop.parse_candidate(message),
        **_usage_update(loop, _add_usage(usage, message, critic=False)),
    }


class _Node(Runnable[Any, Any]):
    """A graph node or route that runs its sync or async function directly.

    LangGraph runs a plain sync function in a thread pool under ``ainvoke``, and a
    ``RunnableLambda`` adds a traced run of its own around the node's run. Both cost more
    than the node's work when many runs share one event loop, so nodes are this instead.
    """

    def __init__(
        self,
        name: str,
        func: Callable[[Any, RunnableConfig], Any],
        afunc: Callable[[Any, RunnableConfig], Any] | None = None,
    ) -> None:
        self.name = name
        self.func = func
        self.afunc = afunc

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Run the sync function."""
        return self.func(input, config or {})

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Run the async function (the sync one when there is none: it must not block)."""
        if self.afunc is None:
            return self.func(input, config or {})
        return await self.afunc(input, config or {})


def _drive(
    step: Callable[[RefineLoop, Mapping[str, Any]], _Step], loop: RefineLoop, name: str
) -> Runnable:
    """Wrap a step generator as a node that runs sync or async with one code path."""

    def run(state: Mapping[str, Any], config: RunnableConfig) -> dict[str, Any]:
        gen = step(loop, state)
        try:
            call = next(gen)
            while True:
                call = gen.send(call.runnable.invoke(call.messages, call.config(config)))
        except StopIteration as done:
            return done.value

    async def arun(state: Mapping[str, Any], config: RunnableConfig) -> dict[str, Any]:
        gen = step(loop, state)
        try:
            call = next(gen)
            while True:
                call = gen.send(await call.runnable.ainvoke(call.messages, call.config(config)))
        except StopIteration as done:
            return done.value

    return _Node(name, run, arun)


def _router(loop: RefineLoop) -> Callable[[Mapping[str, Any]], Literal["refine", "done"]]:
    def route(state: Mapping[str, Any]) -> Literal["refine", "done"]:
        critiques: list[Critique] = state.get(loop.critiques_key) or []
        threshold, max_iterations = _settings(loop)
        last = critiques[-1] if critiques else None
        if last is None or last.score is None:
            return "done"
        if last.score >= threshold or len(critiques) >= max_iterations:
            return "done"
        return "refine"

    route.__name__ = f"route_{loop.name}"
    return route


def _route_node(loop: RefineLoop) -> Runnable:
    """The router as a node: it reads per-run settings, so it runs with its config set."""
    route = _router(loop)

    def run(state: Mapping[str, Any], config: RunnableConfig) -> str:
        token = var_child_runnable_config.set(config)
        try:
            return route(state)
        finally:
            var_child_runnable_config.reset(token)

    return _Node(route.__name__, run)


def add_refine_loop(
    builder: StateGraph,
    loop: RefineLoop,
    *,
    then: str,
    retry_policy: RetryPolicy | None = None,
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

    Returns:
        The name of the loop's first node (``<name>_draft``).
    """
    draft, critique, refine = loop.nodes
    builder.add_node(draft, _drive(_draft_step, loop, draft), retry_policy=retry_policy)
    builder.add_node(critique, _drive(_critique_step, loop, critique), retry_policy=retry_policy)
    builder.add_node(refine, _drive(_refine_step, loop, refine), retry_policy=retry_policy)
    builder.add_edge(draft, critique)
    builder.add_conditional_edges(critique, _route_node(loop), {"refine": refine, "done": then})
    builder.add_edge(refine, critique)
    return draft


class RefineLoopState(TypedDict, total=False):
    """State of a stand-alone refine loop (see :func:`create_refine_loop`)."""

    inputs: dict[str, Any]
    candidate: Any
    critiques: list[Critique]
    usage: Annotated[dict[str, StageUsage], merge_usage]


def create_refine_loop(
    model: BaseChatModel | Runnable,
    *,
    draft_prompt: ChatPromptTemplate,
    critique_prompt: ChatPromptTemplate,
    refine_prompt: ChatPromptTemplate,
    critic_model: BaseChatModel | Runnable | None = None,
    name: str = "refine",
    threshold: int = 4,
    max_iterations: int = 4,
    critic_output: CriticOutput = "text",
    critic_parse_retries: int = 1,
    retry_policy: RetryPolicy | None = None,
) -> StateGraph:
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
