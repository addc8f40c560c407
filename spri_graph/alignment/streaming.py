"""Turn a SPRI graph's stream into events a chat UI can show.

Stream with both modes and pass the stream through :func:`spri_events`::

    stream = graph.stream({"query": q}, stream_mode=["messages", "updates"])
    for event in spri_events(stream):
        ...  # event.kind: "token", "principles", "critique", "draft", "answer"

``token`` events carry the text as it is generated, with the stage (``"principles"`` or
``"response"``) and step (``"draft"``, ``"critique"``, ``"refine"``) it belongs to; build the
graph with ``stream_critiques=False`` to leave the critic's tokens out. The other events
come once per finished node: the principles as drafted or refined, each critique (with its
score), each response draft, and the final answer. :func:`aspri_events` does the same for
``astream``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.messages import BaseMessage

from spri_graph.engine.steps import message_text

__all__ = ["SPRIEvent", "aspri_events", "spri_events"]

EventKind = Literal["token", "principles", "critique", "draft", "answer"]


@dataclass(frozen=True)
class SPRIEvent:
    """One thing worth showing while a SPRI run streams.

    Attributes:
        kind: ``"token"`` (generated text), ``"principles"`` (a drafted or refined set),
            ``"critique"`` (a critic's verdict), ``"draft"`` (a drafted or refined response)
            or ``"answer"`` (the final response).
        stage: ``"principles"`` or ``"response"``.
        step: The step that produced it (``"draft"``, ``"critique"``, ``"refine"``,
            ``"final"``).
        text: The text (a token, the principles, the feedback, the response).
        score: The critique's score, for ``"critique"`` events.
    """

    kind: EventKind
    stage: str
    step: str
    text: str
    score: float | None = None


def _token(payload: Any) -> list[SPRIEvent]:
    chunk, metadata = payload
    stage, step = metadata.get("spri_stage"), metadata.get("spri_step")
    if not isinstance(chunk, BaseMessage) or stage is None:
        return []
    text = message_text(chunk)
    return [SPRIEvent("token", stage, step, text)] if text else []


_CRITIQUES = {"principles": "principle_critiques", "response": "response_critiques"}


def _update(payload: Any) -> list[SPRIEvent]:
    events: list[SPRIEvent] = []
    for node, update in (payload or {}).items():
        if not isinstance(update, dict):
            continue
        stage, _, step = node.partition("_")
        if stage not in _CRITIQUES:
            continue
        if step == "critique" and update.get(_CRITIQUES[stage]):
            last = update[_CRITIQUES[stage]][-1]
            events.append(SPRIEvent("critique", stage, step, last.feedback, last.score))
        if "principles" in update and step != "critique":
            events.append(SPRIEvent("principles", stage, step, update["principles"]))
        if "response" in update:  # a draft, a refinement, or a speculative draft kept
            events.append(SPRIEvent("draft", "response", "draft", update["response"]))
    return events


class _Events:
    """Events for each streamed item, and the final answer once the stream ends."""

    def __init__(self) -> None:
        self.answer: str | None = None

    def __call__(self, item: Any) -> list[SPRIEvent]:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise ValueError(
                "stream: expected (mode, payload) pairs; stream with "
                'stream_mode=["messages", "updates"]'
            )
        mode, payload = item
        if mode == "messages":
            return _token(payload)
        if mode != "updates":
            return []
        events = _update(payload)
        for event in events:
            if event.kind == "draft":
                self.answer = event.text
        return events

    def end(self) -> list[SPRIEvent]:
        if self.answer is None:
            return []
        return [SPRIEvent("answer", "response", "final", self.answer)]


def spri_events(stream: Iterable[Any]) -> Iterator[SPRIEvent]:
    """Events from ``graph.stream(..., stream_mode=["messages", "updates"])``.

    Example:
        >>> from langchain_core.language_models import FakeListChatModel
        >>> from spri_graph import create_spri_graph
        >>> replies = ["1. Be kind.", "Feedback: Useful. [RESULT] 5", "Say no kindly."]
        >>> model = FakeListChatModel(responses=[*replies, "Feedback: Apt. [RESULT] 5"])
        >>> stream = create_spri_graph(model).compile().stream(
        ...     {"query": "How do I say no?"}, stream_mode=["messages", "updates"])
        >>> [e.kind for e in spri_events(stream) if e.kind != "token"]
        ['principles', 'critique', 'draft', 'critique', 'answer']
    """
    events = _Events()
    for item in stream:
        yield from events(item)
    yield from events.end()


async def aspri_events(stream: AsyncIterator[Any]) -> AsyncIterator[SPRIEvent]:
    """Events from ``graph.astream(..., stream_mode=["messages", "updates"])``."""
    events = _Events()
    async for item in stream:
        for event in events(item):
            yield event
    for event in events.end():
        yield event
