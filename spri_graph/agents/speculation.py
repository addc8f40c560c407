"""Speculative drafting inside an agent: the model call starts on the draft principles.

:class:`EarlyModelCall` follows a principles stage as it runs (its state after each step).
Once the draft principles are written, the agent's model call is started with them, in the
background, while the critic grades them. If the critique accepts them, that response is
the turn's; if it asks for a refinement, the early call is dropped and the model is called
with the final principles. :func:`call_early` and :func:`acall_early` drive it; they differ
only in ``stream`` / ``astream`` and in how the early call runs: in a thread of the
package's one background pool (:func:`~spri_graph.engine.steps.start_in_background`), or
as a task. A dropped call is dropped as the graph's speculative drafts are
(:func:`~spri_graph.engine.steps.discard`, :func:`~spri_graph.engine.steps.adiscard`): the
task is cancelled at once; the thread, which cannot be stopped, is waited for once the
principles are final, and its reply kept in :attr:`EarlyModelCall.discarded` to be counted.

The early call's tokens are kept out of ``stream_mode="messages"`` (it may be dropped); a
kept response reaches that stream as one message when the agent's model step ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from langchain.agents.middleware import ModelRequest, ModelResponse
from langchain_core.messages import AIMessage
from langchain_core.runnables.config import var_child_runnable_config
from langgraph.config import get_config
from langgraph.constants import TAG_NOSTREAM
from langgraph.graph.state import CompiledStateGraph

from spri_graph.engine.steps import (
    Dropped,
    StageUsage,
    adiscard,
    discard,
    empty_usage,
    start_in_background,
)
from spri_graph.readers.scores import Critique

__all__ = ["EarlyModelCall", "acall_early", "call_early"]


@dataclass
class EarlyModelCall:
    """A model call started on draft principles while the critic grades them.

    Attributes:
        stage: The compiled principles stage; its output holds ``principles`` and
            ``principle_critiques``.
        inputs: The stage's input.
        steer: The model request for given principles.
        accepts: Whether the stage stops at these critiques (no refinement).
        context: The stage's run context.
        values: The stage's state after its latest step (its output once it has run).
        draft: The draft principles the early call started on (``None`` before that).
        dropped: Whether the first critique asked for a refinement.
        discarded: What an early call that was not used came to (``None``: none was).
    """

    stage: CompiledStateGraph[Any, Any, Any, Any]
    inputs: dict[str, Any]
    steer: Callable[[str], ModelRequest]
    accepts: Callable[[Sequence[Critique]], bool]
    context: Any = None
    values: Mapping[str, Any] = field(default_factory=dict)
    draft: str | None = None
    dropped: bool = False
    discarded: Dropped[ModelResponse] | None = None

    def stream(self) -> Iterator[dict[str, Any]]:
        """Run the stage, yielding its state after each step."""
        return self.stage.stream(
            self.inputs, get_config(), context=self.context, stream_mode="values"
        )

    def astream(self) -> AsyncIterator[dict[str, Any]]:
        """Async :meth:`stream`."""
        return self.stage.astream(
            self.inputs, get_config(), context=self.context, stream_mode="values"
        )

    def see(self, values: Mapping[str, Any]) -> ModelRequest | bool:
        """Take the stage's next state.

        Returns:
            The request to start early once the draft is written; ``True`` once the first
            critique asks for a refinement (drop the early call); else ``False``.
        """
        self.values = values
        critiques = [Critique.of(c) for c in values.get("principle_critiques") or []]
        if self.draft is None and values.get("principles") and not critiques:
            self.draft = str(values["principles"])
            return self.steer(self.draft)
        if self.draft is not None and len(critiques) == 1 and not self.dropped:
            self.dropped = not self.accepts(critiques)
            return self.dropped
        return False

    @property
    def kept(self) -> bool:
        """Whether the early response is the turn's (the draft became the principles)."""
        return (
            not self.dropped
            and self.draft is not None
            and self.draft == self.values.get("principles")
        )

    @property
    def wasted(self) -> bool:
        """Whether an early call was made and not used."""
        return self.draft is not None and not self.kept

    def request(self) -> ModelRequest:
        """The request with the final principles."""
        return self.steer(str(self.values["principles"]))

    def wasted_usage(self) -> StageUsage:
        """What the early call that was not used cost (no call if it never started)."""
        if self.discarded is None:
            return empty_usage()
        response = self.discarded.result
        replies = [m for m in (response.result if response else []) if isinstance(m, AIMessage)]
        return self.discarded.usage(replies[-1] if replies else None)


def _quietly(call: Callable[[ModelRequest], Any], request: ModelRequest) -> Any:
    """``call(request)`` with its model's tokens kept out of ``stream_mode="messages"``.

    Run in a context of its own (a copied context, or a task): the tag is set there only.
    """
    config = var_child_runnable_config.get() or {}
    tags = [*(config.get("tags") or ()), TAG_NOSTREAM]
    var_child_runnable_config.set({**config, "tags": tags})
    return call(request)


async def _aquietly(
    call: Callable[[ModelRequest], Awaitable[ModelResponse]], request: ModelRequest
) -> ModelResponse:
    return await _quietly(call, request)  # type: ignore[no-any-return]


def call_early(
    spec: EarlyModelCall, handler: Callable[[ModelRequest], ModelResponse]
) -> ModelResponse:
    """Run the principles stage and the model call, overlapped (see the module docs)."""
    early: Future[ModelResponse] | None = None
    try:
        for values in spec.stream():
            action = spec.see(values)
            if isinstance(action, ModelRequest):
                early = start_in_background(_quietly, handler, action)
        if early is not None and spec.kept:
            return early.result()
        if early is not None:  # a started call cannot be stopped: wait, and count it
            spec.discarded = discard(early)
            early = None
        return handler(spec.request())
    finally:
        if early is not None:
            early.cancel()


async def acall_early(
    spec: EarlyModelCall, handler: Callable[[ModelRequest], Awaitable[ModelResponse]]
) -> ModelResponse:
    """Async :func:`call_early`; a dropped early call is cancelled as soon as it is dropped."""
    early: asyncio.Future[ModelResponse] | None = None
    try:
        async for values in spec.astream():
            action = spec.see(values)
            if isinstance(action, ModelRequest):
                early = asyncio.ensure_future(_aquietly(handler, action))
            elif action and early is not None:
                spec.discarded = await adiscard(early)
                early = None
        if early is not None and spec.kept:
            return await early
        if early is not None:
            spec.discarded = await adiscard(early)
            early = None
        return await handler(spec.request())
    finally:
        if early is not None:
            early.cancel()
