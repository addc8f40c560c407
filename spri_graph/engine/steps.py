"""Node machinery: model calls written once, run sync or async.

Every model-calling node in spri-graph is a *step*: a generator that yields the
:class:`ModelCall` requests it needs, receives each result, and returns the state update.
:func:`step_node` turns a step into a graph node whose sync and async paths differ only in
``invoke`` / ``ainvoke``, so prompt building and parsing are written once::

    def grade(state):
        message = yield ModelCall.for_stage(model, prompt.format_messages(**state),
                                            stage="judgment", step="grade")
        return {"score": read(message_text(message))}

    builder.add_node("grade", step_node("grade", grade))

A step can also start a call in the background with ``handle = yield Spawn(call)``, collect
it later with ``result = yield Join(handle)``, or drop it with ``dropped = yield
Discard(handle)`` (a :class:`Dropped`: whether the call was made, and its reply).
Background calls of the sync and the async paths, and of the agent middleware's early
model call, go through the same few functions here (:func:`start_in_background`,
:func:`discard`, :func:`adiscard`) and one thread pool:

* async: a dropped call that has not finished is cancelled (it stops);
* sync: a thread cannot stop a running call, so a dropped call that has started is waited
  for and its reply returned, for the caller to count what it really cost; one not started
  yet is never made.

A spawned call the step neither joins nor discards (the step raised) is cancelled; on the
sync path one that has started finishes unobserved.

Usage accounting (:class:`StageUsage`, :func:`add_usage`, :func:`sum_usage`,
:class:`UsageCallback`) and per-run settings (:func:`context_value`) live here too, since
every step uses them.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import threading
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeVar, cast, runtime_checkable
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import var_child_runnable_config
from langgraph.runtime import get_runtime
from typing_extensions import TypedDict

__all__ = [
    "CRITIC_TAG",
    "CallOutput",
    "CandidateModel",
    "Discard",
    "Dropped",
    "Join",
    "ModelCall",
    "Spawn",
    "StageUsage",
    "Step",
    "StepNode",
    "UsageCallback",
    "add_usage",
    "adiscard",
    "context_value",
    "discard",
    "empty_usage",
    "merge_usage",
    "message_text",
    "route_node",
    "start_in_background",
    "step_node",
    "structured_output",
    "sum_usage",
]

T = TypeVar("T")

CRITIC_TAG = "spri:critic"
"""Tag of every critic call (:meth:`ModelCall.for_stage` with ``critic=True``), which
:class:`UsageCallback` counts as ``critic_calls``."""


# --------------------------------------------------------------------------- usage


class StageUsage(TypedDict):
    """Model calls and tokens spent by one stage of a run (or by a whole run).

    The one usage record of the package, from a model call to the CLI's totals. The token
    fields are langchain-core's :class:`~langchain_core.messages.ai.UsageMetadata` ones,
    added up over the calls; ``model_calls`` counts base-model calls (drafts,
    refinements, gradings) and ``critic_calls`` critic calls.
    """

    model_calls: int
    critic_calls: int
    input_tokens: int
    output_tokens: int
    total_tokens: int


_USAGE_FIELDS = ("model_calls", "critic_calls", "input_tokens", "output_tokens", "total_tokens")


def merge_usage(
    left: dict[str, StageUsage] | None, right: dict[str, StageUsage] | None
) -> dict[str, StageUsage]:
    """State reducer for ``usage``: later entries replace earlier ones stage by stage."""
    return {**(left or {}), **(right or {})}


def empty_usage() -> StageUsage:
    """A stage that has made no calls yet."""
    return sum_usage(())


def sum_usage(usages: Iterable[Mapping[str, Any]]) -> StageUsage:
    """Usages added up field by field (a field a usage lacks counts 0).

    Example:
        >>> one = {**empty_usage(), "model_calls": 1, "total_tokens": 9}
        >>> sum_usage([one, one])["total_tokens"]
        18
    """
    totals = dict.fromkeys(_USAGE_FIELDS, 0)
    for usage in usages:
        for name in _USAGE_FIELDS:
            totals[name] += int(usage.get(name, 0) or 0)
    return cast(StageUsage, totals)


def add_usage(usage: StageUsage, message: BaseMessage | None, *, critic: bool) -> StageUsage:
    """``usage`` plus one call that returned ``message`` (its ``usage_metadata`` tokens).

    A call with no message (cancelled before it replied) counts as a call with no tokens.

    Example:
        >>> from langchain_core.messages import AIMessage
        >>> reply = AIMessage("ok", usage_metadata={
        ...     "input_tokens": 7, "output_tokens": 1, "total_tokens": 8})
        >>> add_usage(empty_usage(), reply, critic=True)["critic_calls"]
        1
    """
    meta: Mapping[str, Any] = getattr(message, "usage_metadata", None) or {}
    call = {**meta, "critic_calls" if critic else "model_calls": 1}
    return sum_usage((usage, call))


class UsageCallback(BaseCallbackHandler):
    """A callback adding up the chat-model calls a run really makes into one :class:`StageUsage`.

    Calls served from a node cache are never made, so they are not counted; a call tagged
    :data:`CRITIC_TAG` counts as a critic call. Thread-safe; pass it as
    ``config={"callbacks": [callback]}`` and read :attr:`usage`.

    Example:
        >>> from langchain_core.language_models import FakeListChatModel
        >>> callback = UsageCallback()
        >>> _ = FakeListChatModel(responses=["hi"]).invoke("x", {"callbacks": [callback]})
        >>> callback.usage["model_calls"]
        1
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._critic_runs: set[UUID] = set()
        self._usage = empty_usage()

    @property
    def usage(self) -> StageUsage:
        """The calls and tokens so far."""
        with self._lock:
            return StageUsage(**self._usage)

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        """Note whether the call is a critic's."""
        if CRITIC_TAG in (tags or ()):
            with self._lock:
                self._critic_runs.add(run_id)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        """Count one call and the tokens its reply reports."""
        replies = [
            generation.message
            for generations in response.generations
            for generation in generations
            if isinstance(generation, ChatGeneration)
        ]
        with self._lock:
            critic = run_id in self._critic_runs
            self._critic_runs.discard(run_id)
            tokens = sum_usage(getattr(m, "usage_metadata", None) or {} for m in replies)
            self._usage = add_usage(sum_usage((self._usage, tokens)), None, critic=critic)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Forget a call that failed (it replied nothing to count)."""
        with self._lock:
            self._critic_runs.discard(run_id)


# --------------------------------------------------------------------------- helpers


def message_text(message: BaseMessage) -> str:
    """A message's text content (works across langchain-core's ``text`` property/method)."""
    text = message.text
    return text if isinstance(text, str) else text()


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


@functools.lru_cache(maxsize=64)
def _accepts_method(kind: type) -> bool:
    try:
        method = getattr(kind, "with_structured_output", None)
        return method is not None and "method" in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


def structured_output(model: Runnable[Any, Any], schema: type) -> Runnable[Any, Any]:
    """``model.with_structured_output(schema, include_raw=True)`` by function calling.

    Function calling is the structured-output method that OpenAI, Anthropic and the
    OpenAI-compatible servers (vLLM, Ollama, llama.cpp) share; some of the servers reject
    the ``json_schema`` response format that ``ChatOpenAI`` would pick by default. Models
    whose ``with_structured_output`` takes no ``method`` keep their own.
    """
    kwargs = {"method": "function_calling"} if _accepts_method(type(model)) else {}
    structured = getattr(model, "with_structured_output", None)
    if structured is None:
        raise ValueError(f"{type(model).__name__} has no with_structured_output")
    return cast(Runnable[Any, Any], structured(schema, include_raw=True, **kwargs))


# --------------------------------------------------------------------------- calls and nodes


CallOutput = Literal["reply", "candidate"]
"""How a :class:`ModelCall` wants its answer: ``"reply"`` is the runnable's own reply;
``"candidate"`` is a refine-loop candidate (a draft or a refinement), which a
:class:`CandidateModel` answers with its :attr:`~CandidateModel.candidates` runnable."""


@runtime_checkable
class CandidateModel(Protocol):
    """A model that writes refine-loop candidates through another runnable.

    E.g. :class:`~spri_graph.judges.base.StructuredDrafts`: its drafts and refinements answer
    with a schema, its other calls (a critic sharing the model) as the model does.
    """

    @property
    def candidates(self) -> Runnable[Any, Any]:
        """The runnable that answers calls whose output mode is ``"candidate"``."""
        ...


@dataclass(frozen=True)
class ModelCall:
    """A model call a step asks its driver to make.

    Attributes:
        runnable: The model (or structured-output runnable) to call.
        messages: The prompt.
        run_name: Name of the traced run.
        tags: Tags added to the run (stage and step included, for tracing and streaming).
        metadata: Metadata added to the run.
        output: The answer it wants (see :data:`CallOutput`).
    """

    runnable: Runnable[Any, Any]
    messages: Sequence[BaseMessage]
    run_name: str
    tags: tuple[str, ...]
    metadata: dict[str, Any]
    output: CallOutput = "reply"

    @classmethod
    def for_stage(
        cls,
        runnable: Runnable[Any, Any],
        messages: Sequence[BaseMessage],
        *,
        stage: str,
        step: str,
        iteration: int = 0,
        tags: Sequence[str] = (),
        output: CallOutput = "reply",
        critic: bool = False,
    ) -> ModelCall:
        """A call tagged ``spri``, ``spri:<stage>`` and ``spri:<stage>:<step>``.

        A critic's call (``critic=True``) is tagged :data:`CRITIC_TAG` too.

        Example:
            >>> from langchain_core.language_models import GenericFakeChatModel
            >>> call = ModelCall.for_stage(GenericFakeChatModel(messages=iter([])), [],
            ...                            stage="response", step="draft")
            >>> call.run_name, call.metadata["spri_step"]
            ('spri:response:draft', 'draft')
        """
        return cls(
            runnable=runnable,
            messages=messages,
            run_name=f"spri:{stage}:{step}",
            tags=(
                "spri",
                f"spri:{stage}",
                f"spri:{stage}:{step}",
                *((CRITIC_TAG,) if critic else ()),
                *tags,
            ),
            metadata={"spri_stage": stage, "spri_step": step, "spri_iteration": iteration},
            output=output,
        )

    @property
    def target(self) -> Runnable[Any, Any]:
        """The runnable to call: a :class:`CandidateModel`'s candidates for a candidate."""
        if self.output == "candidate" and isinstance(self.runnable, CandidateModel):
            return self.runnable.candidates
        return self.runnable

    def config(self, config: RunnableConfig) -> RunnableConfig:
        """The node's config with this call's run name, tags and metadata added."""
        merged: dict[str, Any] = {k: v for k, v in config.items() if k != "run_id"}
        tags = list(config.get("tags") or ())
        merged["tags"] = tags + [tag for tag in self.tags if tag not in tags]
        merged["metadata"] = {**(config.get("metadata") or {}), **self.metadata}
        merged["run_name"] = self.run_name
        return merged  # type: ignore[return-value]


@dataclass(frozen=True)
class Spawn:
    """Ask the driver to start ``call`` in the background; the step receives a handle."""

    call: ModelCall


@dataclass(frozen=True)
class Join:
    """Ask the driver for the result of a spawned call (waiting for it if needed)."""

    handle: Any


@dataclass(frozen=True)
class Discard:
    """Ask the driver to drop a spawned call; the step receives a :class:`Dropped`.

    What :func:`discard` (sync) or :func:`adiscard` (async) returns: whether the call was
    made, and its reply if it finished (on the sync path, one that started always does).
    """

    handle: Any


Request = ModelCall | Spawn | Join | Discard
Step = Generator[Request, Any, dict[str, Any]]
"""A node body: yields :class:`ModelCall` requests (or :class:`Spawn` / :class:`Join` /
:class:`Discard`), receives their results, and returns the state update."""


# --------------------------------------------------------------------------- background calls

_BACKGROUND = ThreadPoolExecutor(thread_name_prefix="spri-background")


def start_in_background(func: Callable[..., T], *args: Any) -> Future[T]:
    """Run ``func(*args)`` on the package's one background thread pool.

    It runs in a copy of the caller's context (the run's config and runtime go with it).
    """
    return _BACKGROUND.submit(contextvars.copy_context().run, func, *args)


@dataclass(frozen=True)
class Dropped(Generic[T]):
    """What a dropped background call came to (see :func:`discard`, :func:`adiscard`).

    Attributes:
        started: Whether the call was made at all (it costs a call).
        result: Its result, if it finished (its reply's tokens are what it cost).
    """

    started: bool
    result: T | None = None

    def usage(self, reply: BaseMessage | None = None) -> StageUsage:
        """What the call cost: no call if it never started, else one with its reply's tokens.

        Args:
            reply: The reply, when the result is not a message itself (an agent's model
                response); by default the result.
        """
        if not self.started:
            return empty_usage()
        if reply is None and isinstance(self.result, BaseMessage):
            reply = self.result
        return add_usage(empty_usage(), reply, critic=False)


def discard(future: Future[T]) -> Dropped[T]:
    """Drop a background call started by :func:`start_in_background`.

    A call not started yet is cancelled and never made. A thread cannot stop a call that has
    started: it is waited for, and its result returned so the caller can count what it
    cost.
    """
    if future.cancel():
        return Dropped(started=False)
    try:
        return Dropped(started=True, result=future.result())
    except (CancelledError, Exception):
        return Dropped(started=True)


async def adiscard(task: asyncio.Future[T]) -> Dropped[T]:
    """Drop a call running as a task: its result if it has finished, else cancel it.

    A cancelled call of a model with a native async path stops where it is (its HTTP
    request is closed): nothing completes after this returns. A model whose async path runs
    its sync one in a thread (langchain-core's default ``_agenerate``) finishes there,
    unobserved. A task counts as started: the step that spawned it has awaited since (the
    calls it overlaps); its tokens are unknown unless it finished.
    """
    if task.done():
        if task.cancelled() or task.exception() is not None:
            return Dropped(started=True)
        return Dropped(started=True, result=task.result())
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    return Dropped(started=True)


class StepNode(Runnable[Any, Any]):
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


def _serve(request: Request, config: RunnableConfig, spawned: list[Future[Any]]) -> Any:
    """Carry out one request of a step, synchronously."""
    if isinstance(request, ModelCall):
        return request.target.invoke(request.messages, request.config(config))
    if isinstance(request, Spawn):
        call = request.call
        future = start_in_background(call.target.invoke, call.messages, call.config(config))
        spawned.append(future)
        return future
    if isinstance(request, Discard):
        return discard(request.handle)
    return request.handle.result()


async def _aserve(
    request: Request, config: RunnableConfig, spawned: list[asyncio.Future[Any]]
) -> Any:
    """Carry out one request of a step on the running event loop."""
    if isinstance(request, ModelCall):
        return await request.target.ainvoke(request.messages, request.config(config))
    if isinstance(request, Spawn):
        call = request.call
        task = asyncio.ensure_future(call.target.ainvoke(call.messages, call.config(config)))
        spawned.append(task)
        return task
    if isinstance(request, Discard):
        return await adiscard(request.handle)
    return await request.handle


def step_node(name: str, step: Callable[[Mapping[str, Any]], Step]) -> StepNode:
    """Wrap a step (``state -> generator``) as a node that runs sync or async.

    Example:
        >>> from langchain_core.language_models import GenericFakeChatModel
        >>> model = GenericFakeChatModel(messages=iter(["Hello!"]))
        >>> def greet(state):
        ...     reply = yield ModelCall.for_stage(model, [], stage="demo", step="greet")
        ...     return {"greeting": message_text(reply)}
        >>> step_node("greet", greet).invoke({})
        {'greeting': 'Hello!'}
    """

    def run(state: Mapping[str, Any], config: RunnableConfig) -> dict[str, Any]:
        gen = step(state)
        spawned: list[Future[Any]] = []
        try:
            request = next(gen)
            while True:
                request = gen.send(_serve(request, config, spawned))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        finally:
            for future in spawned:
                future.cancel()

    async def arun(state: Mapping[str, Any], config: RunnableConfig) -> dict[str, Any]:
        gen = step(state)
        spawned: list[asyncio.Future[Any]] = []
        try:
            request = next(gen)
            while True:
                request = gen.send(await _aserve(request, config, spawned))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        finally:
            for task in spawned:
                task.cancel()

    return StepNode(name, run, arun)


def route_node(name: str, route: Callable[[Mapping[str, Any]], Any]) -> StepNode:
    """A router as a node: it may read per-run settings, so it runs with its config set."""

    def run(state: Mapping[str, Any], config: RunnableConfig) -> Any:
        token = var_child_runnable_config.set(config)
        try:
            return route(state)
        finally:
            var_child_runnable_config.reset(token)

    return StepNode(name, run)
