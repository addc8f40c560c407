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

A step can also start a call in the background with ``handle = yield Spawn(call)`` and
collect it later with ``result = yield Join(handle)``; a spawned call the step never joins
is cancelled (async) or left to finish unobserved (sync) when the step returns, so it never
holds up the node.

Usage accounting (:class:`StageUsage`, :func:`add_usage`) and per-run settings
(:func:`context_value`) live here too, since every step uses them.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from collections.abc import Callable, Generator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, cast

from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import var_child_runnable_config
from langgraph.runtime import get_runtime
from typing_extensions import TypedDict

__all__ = [
    "Join",
    "ModelCall",
    "Spawn",
    "StageUsage",
    "Step",
    "StepNode",
    "add_usage",
    "context_value",
    "empty_usage",
    "merge_usage",
    "message_text",
    "route_node",
    "step_node",
    "structured_output",
]


# --------------------------------------------------------------------------- usage


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


def empty_usage() -> StageUsage:
    """A stage that has made no calls yet."""
    return StageUsage(
        model_calls=0, critic_calls=0, input_tokens=0, output_tokens=0, total_tokens=0
    )


def add_usage(usage: StageUsage, message: BaseMessage | None, *, critic: bool) -> StageUsage:
    """``usage`` plus one call that returned ``message`` (its ``usage_metadata`` tokens).

    Example:
        >>> from langchain_core.messages import AIMessage
        >>> reply = AIMessage("ok", usage_metadata={
        ...     "input_tokens": 7, "output_tokens": 1, "total_tokens": 8})
        >>> add_usage(empty_usage(), reply, critic=True)["critic_calls"]
        1
    """
    meta: Mapping[str, Any] = getattr(message, "usage_metadata", None) or {}
    return StageUsage(
        model_calls=usage["model_calls"] + (0 if critic else 1),
        critic_calls=usage["critic_calls"] + (1 if critic else 0),
        input_tokens=usage["input_tokens"] + int(meta.get("input_tokens", 0) or 0),
        output_tokens=usage["output_tokens"] + int(meta.get("output_tokens", 0) or 0),
        total_tokens=usage["total_tokens"] + int(meta.get("total_tokens", 0) or 0),
    )


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


@dataclass(frozen=True)
class ModelCall:
    """A model call a step asks its driver to make.

    Attributes:
        runnable: The model (or structured-output runnable) to call.
        messages: The prompt.
        run_name: Name of the traced run.
        tags: Tags added to the run (stage and step included, for tracing and streaming).
        metadata: Metadata added to the run.
    """

    runnable: Runnable[Any, Any]
    messages: Sequence[BaseMessage]
    run_name: str
    tags: tuple[str, ...]
    metadata: dict[str, Any]

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
    ) -> ModelCall:
        """A call tagged ``spri``, ``spri:<stage>`` and ``spri:<stage>:<step>``.

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
            tags=("spri", f"spri:{stage}", f"spri:{stage}:{step}", *tags),
            metadata={"spri_stage": stage, "spri_step": step, "spri_iteration": iteration},
        )

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


Request = ModelCall | Spawn | Join
Step = Generator[Request, Any, dict[str, Any]]
"""A node body: yields :class:`ModelCall` requests (or :class:`Spawn` / :class:`Join`),
receives their results, and returns the state update."""


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


_BACKGROUND = ThreadPoolExecutor(thread_name_prefix="spri-spawn")


def _serve(request: Request, config: RunnableConfig, spawned: list[Future[Any]]) -> Any:
    """Carry out one request of a step, synchronously."""
    if isinstance(request, ModelCall):
        return request.runnable.invoke(request.messages, request.config(config))
    if isinstance(request, Spawn):
        call, context = request.call, contextvars.copy_context()
        future = _BACKGROUND.submit(
            context.run, call.runnable.invoke, call.messages, call.config(config)
        )
        spawned.append(future)
        return future
    return request.handle.result()


async def _aserve(
    request: Request, config: RunnableConfig, spawned: list[asyncio.Future[Any]]
) -> Any:
    """Carry out one request of a step on the running event loop."""
    if isinstance(request, ModelCall):
        return await request.runnable.ainvoke(request.messages, request.config(config))
    if isinstance(request, Spawn):
        call = request.call
        task = asyncio.ensure_future(call.runnable.ainvoke(call.messages, call.config(config)))
        spawned.append(task)
        return task
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
