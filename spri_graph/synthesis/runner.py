"""The per-record runner: one compiled graph over many records, concurrently.

:class:`RecordRunner` is how every batch job of the package runs records: local synthesis
runs and its worker processes, Ray actors (:mod:`spri_graph.synthesis.ray`) and the judge's file
mode. It takes a graph and two functions, one turning a :class:`Record` into the graph's
input and one turning the graph's output into a line (a JSON-ready dict). A record whose
graph run raises (after the graph's own retries), or whose input or line cannot be made,
becomes an error line instead, and the run goes on. Lines go to a sink as records finish
(or in input order, with ``ordered=True``); an exception raised by the sink (a full disk)
ends the run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from typing import Any, NamedTuple, Protocol

from langchain_core.runnables import RunnableConfig
from langgraph.types import RetryPolicy

from spri_graph.engine.steps import StageUsage, sum_usage

__all__ = [
    "SLOT_STAGGER",
    "Record",
    "RecordRunner",
    "RecordSink",
    "attempts",
    "error_record",
    "serving_concurrency",
    "total_usage",
]

SLOT_STAGGER = 0.001
"""Seconds between the first records of a run's slots.

Started at the same instant, the records' first steps run in lockstep: none calls the model
before all have set up, and they go on calling it in bursts that leave the event loop idle
in between."""


class Record(NamedTuple):
    """One record to run.

    Attributes:
        number: Its line (or position) in the input, from 1.
        id: Its id (tagged on the run as ``metadata["spri_record_id"]``).
        value: What the runner's ``to_input`` and ``to_line`` read: the record itself, or
            the one field the graph needs.
    """

    number: int
    id: Any
    value: Any


class RecordSink(Protocol):
    """Where a :class:`RecordRunner` puts its lines."""

    def ok(self, record: Record, line: dict[str, Any], usage: StageUsage) -> None:
        """Take the line of a record that ran, with its usage."""

    def error(self, record: Record, line: dict[str, Any]) -> None:
        """Take the error line of a record that failed."""


def total_usage(output: Any) -> StageUsage:
    """The per-stage usage of a graph's output (``output["usage"]``), added up.

    Example:
        >>> total = total_usage({"usage": {"a": {"model_calls": 2, "total_tokens": 9},
        ...                                "b": {"critic_calls": 1, "total_tokens": 3}}})
        >>> total["model_calls"], total["critic_calls"], total["total_tokens"]
        (2, 1, 12)
    """
    usage = output.get("usage") if isinstance(output, Mapping) else None
    return sum_usage(usage.values() if isinstance(usage, Mapping) else ())


def attempts(exc: Exception, policy: RetryPolicy | Sequence[RetryPolicy] | None) -> int:
    """How many times the failing node ran: the policy's attempts if it retried ``exc``.

    Example:
        >>> attempts(TimeoutError(), RetryPolicy(max_attempts=3, retry_on=TimeoutError))
        3
        >>> attempts(KeyError(), RetryPolicy(max_attempts=3, retry_on=TimeoutError))
        1
    """
    if policy is None:
        return 1
    policies = [policy] if isinstance(policy, RetryPolicy) else list(policy)
    for p in policies:
        retry_on = p.retry_on
        if isinstance(retry_on, Sequence):
            matches = isinstance(exc, tuple(retry_on))
        elif isinstance(retry_on, type):
            matches = isinstance(exc, retry_on)
        else:
            matches = bool(retry_on(exc))
        if matches:
            return p.max_attempts
    return 1


def serving_concurrency(concurrency: int, *models: Any) -> int:
    """Most records to run at once on ``models``: ``concurrency``, or one for in-process models.

    An in-process llama.cpp model (:func:`~spri_graph.models.is_local_model`) serves one
    call at a time, so records started beside the one it is serving only wait, half done,
    and an interrupt would lose them all; one record at a time keeps every finished one
    and loses at most the record in flight.

    Example:
        >>> serving_concurrency(16, None)
        16
    """
    from spri_graph.models import is_local_model

    return 1 if any(is_local_model(model) for model in models) else concurrency


def error_record(
    record: Record, exc: Exception, attempts: int, *, unit: str = "record"
) -> dict[str, Any]:
    """The errors-file line of a failed record: id, position, error type, message, attempts.

    Example:
        >>> error_record(Record(3, "a3", "q"), ValueError("bad"), 1, unit="line")
        {'id': 'a3', 'line': 3, 'error_type': 'ValueError', 'message': 'bad', 'attempts': 1}
    """
    return {
        "id": record.id,
        unit: record.number,
        "error_type": type(exc).__name__,
        "message": str(exc),
        "attempts": attempts,
    }


class RecordRunner:
    """Runs a compiled graph over records, at most ``concurrency`` at once.

    Records are taken from one shared iterator as slots free up, so the input is read only
    as fast as records finish. Each record's run gets ``config`` with its id added to the
    metadata (``spri_record_id``).

    Args:
        graph: A compiled graph (any runnable with ``ainvoke``).
        to_input: The graph's input for a record.
        to_line: The output line of a record from the graph's output.
        to_error: The error line of a record from its exception and the number of times
            the failing node ran; defaults to :func:`error_record`.
        concurrency: Most records in flight at once.
        retry_policy: The graph's retry policy, to count attempts in error lines.
        config: Run config for every record (callbacks, tags, metadata, recursion limit).
        usage: A record's usage from the graph's output; defaults to :func:`total_usage`.

    Example:
        >>> import asyncio
        >>> from langchain_core.runnables import RunnableLambda
        >>> class Lines(list):
        ...     def ok(self, record, line, usage): self.append(line)
        ...     def error(self, record, line): self.append(line)
        >>> runner = RecordRunner(
        ...     RunnableLambda(lambda x: {"twice": 2 * x["n"]}),
        ...     to_input=lambda record: {"n": record.value},
        ...     to_line=lambda record, out: {"id": record.id, **out},
        ... )
        >>> sink = Lines()
        >>> asyncio.run(runner.run([Record(1, "a", 4), Record(2, "b", 5)], sink, ordered=True))
        >>> sink
        [{'id': 'a', 'twice': 8}, {'id': 'b', 'twice': 10}]
    """

    def __init__(
        self,
        graph: Any,
        *,
        to_input: Callable[[Record], Any],
        to_line: Callable[[Record, Any], dict[str, Any]],
        to_error: Callable[[Record, Exception, int], dict[str, Any]] = error_record,
        concurrency: int = 16,
        retry_policy: RetryPolicy | Sequence[RetryPolicy] | None = None,
        config: RunnableConfig | None = None,
        usage: Callable[[Any], StageUsage] = total_usage,
    ) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be an integer >= 1, got {concurrency!r}")
        self.graph = graph
        self.to_input = to_input
        self.to_line = to_line
        self.to_error = to_error
        self.concurrency = concurrency
        self.retry_policy = retry_policy
        self.config: dict[str, Any] = dict(config or {})
        self.usage = usage
        self._metadata = dict(self.config.get("metadata") or {})

    async def run(
        self,
        records: Iterable[Record],
        sink: RecordSink,
        *,
        concurrency: int | None = None,
        ordered: bool = False,
    ) -> None:
        """Run every record, putting one line per record into ``sink``.

        Args:
            records: The records; read lazily, as slots free up.
            sink: Takes each record's line (``ok``) or error line (``error``).
            concurrency: Slots for this run (defaults to the runner's ``concurrency``); a
                caller that knows it has fewer records passes that number.
            ordered: Pass lines to ``sink`` in input order (finished lines wait for the
                records before them) instead of as records finish.

        Raises:
            Exception: Whatever the sink raised; the records in flight are cancelled.
        """
        todo: Iterator[tuple[int, Record]] = enumerate(records)
        put = _InOrder(sink).put if ordered else _direct(sink)
        slots = self.concurrency if concurrency is None else concurrency
        tasks = [
            asyncio.ensure_future(self._slot(todo, put, slot * SLOT_STAGGER))
            for slot in range(slots)
        ]
        try:
            if tasks:
                finished, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                for task in finished:
                    task.result()  # an error outside a record (e.g. a full disk) ends the run
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def collect(self, records: Iterable[Record]) -> list[dict[str, Any]]:
        """Run every record; return their lines (error lines included) in input order."""
        lines: list[dict[str, Any]] = []
        slots = min(self.concurrency, len(records)) if isinstance(records, Sized) else None
        await self.run(records, _ListSink(lines), concurrency=slots, ordered=True)
        return lines

    async def _slot(self, todo: Iterator[tuple[int, Record]], put: _Put, delay: float) -> None:
        # Slots share one iterator: each takes the next record when it is free, so at most
        # `concurrency` records are in flight and the input is read as they finish.
        await asyncio.sleep(delay)
        for index, record in todo:
            await self._one(index, record, put)

    async def _one(self, index: int, record: Record, put: _Put) -> None:
        config = {
            **self.config,
            "metadata": {**self._metadata, "spri_record_id": record.id},
        }
        try:
            output = await self.graph.ainvoke(self.to_input(record), config)
            line, usage = self.to_line(record, output), self.usage(output)
        except Exception as exc:  # noqa: BLE001 - an error line, and the run goes on
            put(index, record, self.to_error(record, exc, attempts(exc, self.retry_policy)), None)
        else:
            put(index, record, line, usage)


_Put = Callable[[int, Record, dict[str, Any], StageUsage | None], None]
"""Hands a finished record's line (with usage, or ``None`` for an error line) on."""


def _direct(sink: RecordSink) -> _Put:
    def put(index: int, record: Record, line: dict[str, Any], usage: StageUsage | None) -> None:
        if usage is None:
            sink.error(record, line)
        else:
            sink.ok(record, line, usage)

    return put


class _InOrder:
    """Holds finished lines until every record taken before them has been passed on."""

    def __init__(self, sink: RecordSink) -> None:
        self._put = _direct(sink)
        self._held: dict[int, tuple[Record, dict[str, Any], StageUsage | None]] = {}
        self._next = 0

    def put(
        self, index: int, record: Record, line: dict[str, Any], usage: StageUsage | None
    ) -> None:
        self._held[index] = (record, line, usage)
        while self._next in self._held:
            self._put(self._next, *self._held.pop(self._next))
            self._next += 1


class _ListSink:
    def __init__(self, lines: list[dict[str, Any]]) -> None:
        self.lines = lines

    def ok(self, record: Record, line: dict[str, Any], usage: StageUsage) -> None:
        self.lines.append(line)

    def error(self, record: Record, line: dict[str, Any]) -> None:
        self.lines.append(line)
