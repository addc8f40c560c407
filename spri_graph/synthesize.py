"""SFT data synthesis: run SPRI over an instruction dataset and write chat-format training data.

:func:`synthesize` (and :func:`asynthesize`) build the SPRI graph once and run every record
through it concurrently, bounded by ``concurrency``. Each finished record is appended to the
output as one JSONL line in the chat format that TRL's ``SFTTrainer`` and OpenAI fine-tuning
read::

    {"id": "a1",
     "messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}],
     "principles": "...", "principle_critiques": [...], "response_critiques": [...],
     "usage": {"principles": {...}, "response": {...}}}

Nothing is lost and nothing is written twice:

* The input is checked in full before the first model call: unreadable JSON lines, records
  that are not objects, missing or empty query fields, missing or duplicate ids and an empty
  input are reported together, with their line numbers, as one :class:`InputError`.
* The input is read lazily, twice (a first pass keeps only the ids); at most ``concurrency``
  records are in flight, so memory does not grow with the dataset.
* Every output line is written whole with a single ``write()`` on an append-only file
  descriptor: once it returns, the line is the operating system's and survives a killed
  process. The file is ``fsync``-ed about once a second and on close, which bounds what an
  operating-system crash or power loss can take to the last second; syncing every line would
  cap throughput at the disk's sync rate.
* With ``resume=True`` (the default) ids already in the output are skipped. A line torn by a
  crash is cut off, so the file stays valid JSONL, and its record runs again.
* A record whose model calls still fail after the graph's retries (``retry_policy=``) goes to
  the errors file (``OUT.errors.jsonl``: id, line, error type, message, attempts) and the run
  goes on. Failed records are not in the output, so the next run with ``resume=True`` tries
  them again; the errors file lists the failures of the latest run.
* Ctrl-C stops scheduling, cancels the records in flight and keeps every finished line;
  :func:`synthesize` then raises :class:`SynthesisInterrupted` carrying the report.

One event loop spends a few milliseconds of CPU per record on graph bookkeeping, so an
endpoint that answers hundreds of calls per second keeps a core busy. ``workers=N`` forks
``N`` processes that each run every ``N``-th record and send finished lines back to the
parent, the only writer (in batches, each at most 50 ms old). On Python 3.12+ the loops
synthesis owns start tasks eagerly, which keeps a busy loop's model calls going out sooner.
Beyond one machine, see :mod:`spri_graph.ray`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import inspect
import json
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.types import RetryPolicy

from spri_graph.loop import default_retry_policy
from spri_graph.models import ModelSpec
from spri_graph.spri import create_batch_graph, create_spri_graph

__all__ = [
    "InputError",
    "SynthesisInterrupted",
    "SynthesisReport",
    "asynthesize",
    "errors_path_for",
    "output_record",
    "synthesize",
]

Records = str | os.PathLike[str] | Iterable[Mapping[str, Any]]
"""What ``records`` accepts: a JSONL path, or an iterable of dicts."""

_MAX_LISTED_PROBLEMS = 20
_FSYNC_INTERVAL = 1.0
_SEND_INTERVAL = 0.05  # seconds a worker holds finished lines before sending them
# Seconds between the first records of a run's slots. Started at the same instant, the
# records' first steps run in lockstep: none calls the model before all have set up, and
# they go on calling it in bursts that leave the event loop idle in between.
_SLOT_STAGGER = 0.001


class InputError(ValueError):
    """The input has problems; nothing was run.

    Attributes:
        problems: One readable line per problem, each starting with its line (or record)
            number.
    """

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        count = len(self.problems)
        if count == 1 and not self.problems[0].startswith(("line ", "record ")):
            super().__init__(f"{source}: {self.problems[0]}; nothing was run")
            return
        listed = self.problems[:_MAX_LISTED_PROBLEMS]
        head = f"{source}: {count} problem{'s' if count != 1 else ''} in the input; nothing was run"
        lines = [head + ":", *(f"  {p}" for p in listed)]
        if count > len(listed):
            lines.append(f"  ... and {count - len(listed)} more")
        super().__init__("\n".join(lines))


@dataclass
class SynthesisReport:
    """What a synthesis run did; updated live while it runs.

    Attributes:
        output: The output JSONL file.
        errors_path: The errors JSONL file (written only when a record fails).
        records: Records in the input.
        skipped: Records already in the output when the run started (resume).
        completed: Records written to the output by this run.
        failed: Records written to the errors file by this run.
        repaired: Torn lines cut off the end of the output before resuming (0 or 1).
        model_calls: Base-model calls (drafts and refinements) of completed records.
        critic_calls: Critic calls of completed records.
        input_tokens: Prompt tokens of completed records, as the models reported them.
        output_tokens: Completion tokens of completed records.
        total_tokens: All tokens of completed records.
        wall_time: Seconds from the first record started to the last finished.
        interrupted: Whether the run was stopped (Ctrl-C) before it finished.
    """

    output: Path
    errors_path: Path
    records: int = 0
    skipped: int = 0
    completed: int = 0
    failed: int = 0
    repaired: int = 0
    model_calls: int = 0
    critic_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    wall_time: float = 0.0
    interrupted: bool = False
    _started: float | None = field(default=None, repr=False, compare=False)

    @property
    def todo(self) -> int:
        """Records this run set out to process (not already in the output)."""
        return self.records - self.skipped

    @property
    def remaining(self) -> int:
        """Records neither written nor failed yet (re-run them with ``resume=True``)."""
        return self.todo - self.completed - self.failed

    @property
    def calls(self) -> int:
        """All model calls of completed records (base and critic)."""
        return self.model_calls + self.critic_calls

    @property
    def rate(self) -> float:
        """Records finished (written or failed) per second."""
        elapsed = self.elapsed
        return (self.completed + self.failed) / elapsed if elapsed > 0 else 0.0

    @property
    def elapsed(self) -> float:
        """Seconds since the run started (the final wall time once it ended)."""
        if self._started is None:
            return self.wall_time
        return time.perf_counter() - self._started

    def summary(self) -> str:
        """A few lines for people: records, failures, model calls, tokens, wall time."""
        status = "interrupted" if self.interrupted else "done"
        lines = [
            f"synthesis {status}: {self.completed} written, {self.failed} failed, "
            f"{self.skipped} already done, {self.remaining} not run "
            f"({self.records} records in the input)",
            f"model calls: {self.calls} ({self.model_calls} base, {self.critic_calls} critic); "
            f"tokens: {self.total_tokens} ({self.input_tokens} in, {self.output_tokens} out)",
            f"wall time: {self.wall_time:.1f}s ({self.rate:.1f} records/s)",
            f"output: {self.output}",
        ]
        if self.repaired:
            lines.append("a torn last line of the output was cut off; its record ran again")
        if self.failed:
            lines.append(f"errors: {self.errors_path}")
        return "\n".join(lines)


class SynthesisInterrupted(KeyboardInterrupt):
    """Raised by :func:`synthesize` on Ctrl-C, after every finished line was kept.

    Attributes:
        report: The report of the interrupted run.
    """

    def __init__(self, report: SynthesisReport) -> None:
        super().__init__("synthesis interrupted")
        self.report = report


def errors_path_for(output: str | os.PathLike[str]) -> Path:
    """The default errors file for ``output``: ``out.jsonl`` -> ``out.errors.jsonl``.

    Example:
        >>> errors_path_for("data/train.jsonl").as_posix()
        'data/train.errors.jsonl'
    """
    path = Path(output)
    if path.suffix == ".jsonl":
        return path.with_suffix(".errors.jsonl")
    return path.with_name(path.name + ".errors.jsonl")


def output_record(record_id: Any, query: str, result: Mapping[str, Any]) -> dict[str, Any]:
    """The output line for one record: chat messages plus principles, critiques and usage.

    Args:
        record_id: The record's id.
        query: The instruction given to the model.
        result: The SPRI graph's output for it.

    Example:
        >>> from spri_graph.critique import Critique
        >>> out = {"principles": "Be kind.", "response": "Hi!", "usage": {},
        ...        "principle_critiques": [Critique(feedback="ok", score=5)],
        ...        "response_critiques": []}
        >>> line = output_record("a1", "Say hi", out)
        >>> line["messages"][1], line["principle_critiques"][0]["score"]
        ({'role': 'assistant', 'content': 'Hi!'}, 5)
    """
    return {
        "id": record_id,
        "messages": [
            {"role": "user", "content": query},
            {"role": "assistant", "content": result["response"]},
        ],
        "principles": result["principles"],
        "principle_critiques": [c.model_dump() for c in result.get("principle_critiques", [])],
        "response_critiques": [c.model_dump() for c in result.get("response_critiques", [])],
        "usage": dict(result.get("usage") or {}),
    }


# --------------------------------------------------------------------------- input


@dataclass(frozen=True)
class _Fields:
    query: str
    id: str | None  # None: the record's line (or position) number is its id


def _record_problem(record: Any, fields: _Fields) -> str | None:
    if not isinstance(record, Mapping):
        return f"expected a JSON object, got {type(record).__name__}"
    if fields.query not in record:
        return f"missing query field {fields.query!r}"
    query = record[fields.query]
    if not isinstance(query, str):
        return f"query field {fields.query!r} must be a string, got {type(query).__name__}"
    if not query.strip():
        return f"query field {fields.query!r} is empty"
    if fields.id is not None:
        if fields.id not in record:
            return f"missing id field {fields.id!r}"
        rid = record[fields.id]
        if isinstance(rid, bool) or not isinstance(rid, (str, int)):
            return f"id field {fields.id!r} must be a string or an integer, got {rid!r}"
        if isinstance(rid, str) and not rid.strip():
            return f"id field {fields.id!r} is empty"
    return None


class _Source:
    """A re-readable stream of ``(position, record or problem)``; positions start at 1."""

    unit = "record"

    def __init__(self, name: str) -> None:
        self.name = name

    def items(self) -> Iterator[tuple[int, Any, str | None]]:
        """Yield ``(position, record, problem)``; ``problem`` is set when unreadable."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the source holds (a spool file)."""


class _FileSource(_Source):
    unit = "line"

    def __init__(self, path: Path, name: str | None = None) -> None:
        super().__init__(name or str(path))
        self.path = path

    def items(self) -> Iterator[tuple[int, Any, str | None]]:
        with self.path.open("rb") as fh:
            for number, raw in enumerate(fh, 1):
                if not raw.strip():
                    continue
                try:
                    yield number, json.loads(raw), None
                except ValueError as exc:
                    yield number, None, f"not valid JSON ({_json_reason(exc)})"


class _SpooledSource(_FileSource):
    """Records of a one-shot iterator, written to a temporary JSONL file as they are read."""

    unit = "record"

    def __init__(self, records: Iterable[Any]) -> None:
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in close()
            mode="w", suffix=".jsonl", prefix="spri-input-", encoding="utf-8", delete=False
        )
        super().__init__(Path(handle.name), name="records")
        self._bad: dict[int, str] = {}
        try:
            with handle:
                for number, record in enumerate(records, 1):
                    try:
                        line = json.dumps(record, ensure_ascii=False)
                    except (TypeError, ValueError) as exc:
                        self._bad[number] = f"not JSON-serializable ({exc})"
                        line = "null"
                    handle.write(line + "\n")
        except BaseException:
            self.close()
            raise

    def items(self) -> Iterator[tuple[int, Any, str | None]]:
        for number, record, problem in super().items():
            yield number, record, self._bad.get(number, problem)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()


class _IterableSource(_Source):
    """A re-iterable collection of records (a list, a ``datasets.Dataset``...)."""

    def __init__(self, records: Iterable[Any]) -> None:
        super().__init__("records")
        self.records = records

    def items(self) -> Iterator[tuple[int, Any, str | None]]:
        for number, record in enumerate(self.records, 1):
            yield number, record, None


def _json_reason(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at column {exc.colno}"
    return str(exc)


def _open_source(records: Records) -> _Source:
    if isinstance(records, (str, os.PathLike)):
        path = Path(records)
        if not path.is_file():
            raise ValueError(f"records: input file {str(path)!r} does not exist")
        return _FileSource(path)
    if isinstance(records, (Mapping, bytes)):
        raise ValueError(
            "records must be a JSONL path or an iterable of dicts, "
            f"got a single {type(records).__name__}"
        )
    if not isinstance(records, Iterable):
        raise ValueError(
            f"records must be a JSONL path or an iterable of dicts, got {type(records).__name__}"
        )
    if iter(records) is records:  # a one-shot iterator: keep it on disk, not in memory
        return _SpooledSource(records)
    return _IterableSource(records)


def _scan_input(source: _Source, fields: _Fields) -> dict[Any, int]:
    """First pass: check every record; return ``{id: position}`` (memory: the ids only)."""
    ids: dict[Any, int] = {}
    problems: list[str] = []
    unit = source.unit
    for number, record, problem in source.items():
        problem = problem or _record_problem(record, fields)
        if problem:
            problems.append(f"{unit} {number}: {problem}")
            continue
        rid = number if fields.id is None else record[fields.id]
        first = ids.get(rid)
        if first is not None:
            problems.append(f"{unit} {number}: duplicate id {rid!r} (first at {unit} {first})")
            continue
        ids[rid] = number
    if problems:
        raise InputError(source.name, problems)
    if not ids:
        raise InputError(
            source.name,
            [
                "no records: the input is empty (expected JSON objects with the query field "
                f"{fields.query!r})"
            ],
        )
    return ids


def _todo(
    source: _Source, fields: _Fields, ids: Mapping[Any, int], done: set[Any]
) -> Iterator[tuple[int, Any, str]]:
    """Second pass: ``(position, id, query)`` of each record not in the output yet."""
    for number, record, problem in source.items():
        if problem is not None or _record_problem(record, fields) is not None:
            continue
        rid = number if fields.id is None else record[fields.id]
        if ids.get(rid) != number or rid in done:
            continue
        yield number, rid, record[fields.query]


# --------------------------------------------------------------------------- output


def _scan_output(path: Path) -> tuple[set[Any], int]:
    """Ids already in ``output`` and the number of torn lines cut off its end (0 or 1).

    Only the last line can be torn (lines are appended whole, one ``write()`` each, by one
    process); a bad line anywhere else, or a line that is not an output record, means the
    file is not ours or was edited, and is an error.
    """
    done: set[Any] = set()
    if not path.exists():
        return done, 0
    offset = 0
    torn_at: int | None = None
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, 1):
            start, offset = offset, offset + len(raw)
            if torn_at is not None:
                raise ValueError(
                    f"output: line {number - 1} of {str(path)!r} is not valid JSON; it holds "
                    "lines that are not whole output records, so it cannot be resumed "
                    "(fix it, or pass resume=False / --no-resume to start over)"
                )
            if not raw.strip():
                continue
            try:
                line = json.loads(raw) if raw.endswith(b"\n") else None
            except ValueError:
                line = None
            if line is None:  # cut short by a crash: only the last line can be
                torn_at = start
                continue
            if not isinstance(line, dict) or "id" not in line:
                raise ValueError(
                    f"output: line {number} of {str(path)!r} is not an output record (no 'id'); "
                    "is it the right file? (pass resume=False / --no-resume to overwrite it)"
                )
            done.add(line["id"])
    if torn_at is None:
        return done, 0
    with path.open("r+b") as fh:
        fh.truncate(torn_at)
        fh.flush()
        os.fsync(fh.fileno())
    return done, 1


class _LineWriter:
    """Appends whole lines to a file: one ``write()`` per line, ``fsync`` about once a second."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._synced = time.monotonic()

    def write(self, data: bytes) -> None:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        view = memoryview(data)
        while view:  # a regular file takes the whole line at once; loop in case it does not
            view = view[os.write(self._fd, view) :]
        now = time.monotonic()
        if now - self._synced >= _FSYNC_INTERVAL:
            os.fsync(self._fd)
            self._synced = now

    def close(self) -> None:
        if self._fd is not None:
            try:
                os.fsync(self._fd)
            finally:
                os.close(self._fd)
                self._fd = None


def _line(obj: Mapping[str, Any]) -> bytes:
    return (json.dumps(obj, ensure_ascii=False) + "\n").encode("utf-8")


_Usage = tuple[int, int, int, int, int]


def _usage_counts(usage: Mapping[str, Mapping[str, int]]) -> _Usage:
    keys = ("model_calls", "critic_calls", "input_tokens", "output_tokens", "total_tokens")
    return tuple(sum(int(stage.get(k, 0)) for stage in usage.values()) for k in keys)  # type: ignore[return-value]


class _FileSink:
    """Writes finished records to the output and failures to the errors file."""

    def __init__(
        self, report: SynthesisReport, on_progress: Callable[[SynthesisReport], None] | None
    ) -> None:
        self.report = report
        self.on_progress = on_progress
        self.out = _LineWriter(report.output)
        self.errors = _LineWriter(report.errors_path)

    def ok(self, line: bytes, usage: _Usage) -> None:
        self.out.write(line)
        report = self.report
        report.completed += 1
        report.model_calls += usage[0]
        report.critic_calls += usage[1]
        report.input_tokens += usage[2]
        report.output_tokens += usage[3]
        report.total_tokens += usage[4]
        if self.on_progress is not None:
            self.on_progress(report)

    def error(self, line: bytes) -> None:
        self.errors.write(line)
        self.report.failed += 1
        if self.on_progress is not None:
            self.on_progress(self.report)

    def close(self) -> None:
        try:
            self.out.close()
        finally:
            self.errors.close()


class _PipeSink:
    """A worker process's sink: sends finished lines to the parent, which writes them.

    Lines go in batches, each sent at most ``_SEND_INTERVAL`` seconds after its first line
    finished: a message per batch wakes the parent, and takes a core from the workers, far
    less often than a message per record. A batch not yet sent when its worker is killed
    dies with it; those records run again on resume, never twice in the output.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._pending: list[tuple[Any, ...]] = []
        self._timer: asyncio.TimerHandle | None = None

    def ok(self, line: bytes, usage: _Usage) -> None:
        self._add(("ok", line, usage))

    def error(self, line: bytes) -> None:
        self._add(("error", line))

    def _add(self, item: tuple[Any, ...]) -> None:
        self._pending.append(item)
        if _SEND_INTERVAL <= 0:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(_SEND_INTERVAL, self.flush)

    def flush(self) -> None:
        """Send the lines not sent yet."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending:
            batch, self._pending = self._pending, []
            self.conn.send(("lines", batch))


_Sink = _FileSink | _PipeSink


# --------------------------------------------------------------------------- the run


_SPRI_OPTIONS = frozenset(inspect.signature(create_spri_graph).parameters) - {
    "model",
    "critic_model",
}


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _attempts(exc: BaseException, policy: RetryPolicy | Sequence[RetryPolicy]) -> int:
    """How many times the failing node ran: the policy's attempts if it retried ``exc``."""
    policies = [policy] if isinstance(policy, RetryPolicy) else list(policy)
    for p in policies:
        retry_on = p.retry_on
        if isinstance(retry_on, type) and issubclass(retry_on, BaseException):
            matches = isinstance(exc, retry_on)
        elif isinstance(retry_on, Sequence):
            matches = isinstance(exc, tuple(retry_on))
        else:
            matches = bool(retry_on(exc))  # type: ignore[operator]
        if matches:
            return p.max_attempts
    return 1


@dataclass
class _Job:
    source: _Source
    fields: _Fields
    ids: dict[Any, int]
    done: set[Any]
    graph: Any
    concurrency: int
    workers: int
    retry_policy: RetryPolicy | Sequence[RetryPolicy]
    recursion_limit: int
    config: RunnableConfig
    report: SynthesisReport
    on_progress: Callable[[SynthesisReport], None] | None

    def shard_concurrency(self, shard: int, shards: int) -> int:
        base, extra = divmod(self.concurrency, shards)
        return base + (1 if shard < extra else 0)

    async def run(self, sink: _Sink, shard: int = 0, shards: int = 1) -> None:
        """Run the records of one shard (every ``shards``-th record not done yet)."""
        todo: Iterator[tuple[int, Any, str]] = _todo(self.source, self.fields, self.ids, self.done)
        if shards > 1:
            todo = (item for i, item in enumerate(todo) if i % shards == shard)
        count = min(self.shard_concurrency(shard, shards), self.report.todo)
        tasks = [
            asyncio.ensure_future(self._worker(todo, sink, slot * _SLOT_STAGGER))
            for slot in range(count)
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

    async def _worker(
        self, todo: Iterator[tuple[int, Any, str]], sink: _Sink, delay: float
    ) -> None:
        # Workers share one iterator: each takes the next record when it is free, so at
        # most `concurrency` records are in flight and the input is read as they finish.
        await asyncio.sleep(delay)
        for number, rid, query in todo:
            await self._one(number, rid, query, sink)

    async def _one(self, number: int, rid: Any, query: str, sink: _Sink) -> None:
        config: RunnableConfig = {
            **self.config,
            "recursion_limit": self.recursion_limit,
            "metadata": {**(self.config.get("metadata") or {}), "spri_record_id": rid},
        }
        try:
            result = await self.graph.ainvoke({"query": query}, config)
        except Exception as exc:  # noqa: BLE001 - recorded in the errors file, run goes on
            error = {
                "id": rid,
                self.source.unit: number,
                "error_type": type(exc).__name__,
                "message": str(exc),
                "attempts": _attempts(exc, self.retry_policy),
            }
            sink.error(_line(error))
        else:
            usage = _usage_counts(result.get("usage") or {})
            sink.ok(_line(output_record(rid, query, result)), usage)


@functools.lru_cache(maxsize=1)
def _event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """The event loop synthesis runs on (its own loop, not a caller's).

    uvloop when installed: less overhead per call. Tasks start eagerly where asyncio can
    (Python 3.12+): a LangGraph node or callback that finishes without waiting runs at once
    instead of queueing behind every other record's work, which keeps a busy loop's model
    calls going out sooner.
    """
    try:
        import uvloop
    except ImportError:
        new_loop: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    else:
        new_loop = uvloop.new_event_loop
    eager = getattr(asyncio, "eager_task_factory", None)
    if eager is None:
        return new_loop

    def new_eager_loop() -> asyncio.AbstractEventLoop:
        loop = new_loop()
        loop.set_task_factory(eager)
        return loop

    return new_eager_loop


@contextlib.contextmanager
def _batch_gc() -> Iterator[None]:
    """Garbage-collect less during a run: about a quarter of the CPU time otherwise.

    Every graph run allocates thousands of short-lived objects, and each collection of the
    oldest generation walks everything the process imported. ``gc.freeze()`` takes what
    exists before the run out of the collector's sight (and, before a fork, keeps the
    workers from copying those pages), and a larger first-generation threshold collects
    the young objects less often. Both are undone when the run ends. There is no full
    collection first: it would take about 0.1 s of the run, and any garbage frozen with
    the rest is collected as usual once the run has unfrozen it.
    """
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(threshold[0], 10_000), *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


def _run_loop(main: Callable[[], Any]) -> Any:
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=_event_loop_factory()) as runner:
            return runner.run(main())
    return asyncio.run(main())  # pragma: no cover - Python 3.10


@functools.lru_cache(maxsize=1)
def _libc() -> Any:
    """The C library, for ``prctl``; ``None`` where it cannot be loaded."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True)
    except Exception:  # noqa: BLE001 - no prctl then; the parent's checks still apply
        return None


def _die_with_parent(parent: int) -> None:
    """Have the kernel kill this worker when the parent dies (Linux), e.g. on SIGKILL.

    A worker writes no file, so there is nothing to save; without this it would go on
    calling the model for a parent that can no longer write its lines.
    """
    libc = _libc()
    if libc is not None:
        with contextlib.suppress(Exception):
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _worker_process(
    job: _Job,
    conn: Connection,
    shard: int,
    shards: int,
    parent: int,
    inherited: Sequence[Connection],
) -> None:
    """Body of a forked worker: run one shard, send lines to the parent, stop on SIGTERM."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    _die_with_parent(parent)
    for other in inherited:  # read ends forked from the parent: only the parent reads
        other.close()

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        sink = _PipeSink(conn)
        try:
            await job.run(sink, shard, shards)
        finally:
            sink.flush()  # stopped or failed: the lines finished so far are kept

    try:
        _run_loop(main)
    except asyncio.CancelledError:
        pass  # stopped by the parent: the lines sent so far are written
    except (BrokenPipeError, EOFError):
        os._exit(1)  # the parent is gone; nothing is left to write to
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, one line
        with contextlib.suppress(OSError):
            conn.send(("fatal", f"{type(exc).__name__}: {exc}"))
        os._exit(1)
    with contextlib.suppress(OSError):
        conn.send(("done",))
        conn.close()


def _run_forked(job: _Job, sink: _FileSink, workers: int) -> None:
    """Run the job in ``workers`` forked processes; this process writes every line.

    Ctrl-C sets a flag instead of raising wherever this process happens to be, so no line
    is half-written or half-received: the workers are told to stop (SIGTERM), the lines they
    already sent are written, and only then is ``KeyboardInterrupt`` raised. A second
    Ctrl-C stops waiting.
    """
    context = multiprocessing.get_context("fork")
    live: dict[Connection, Any] = {}
    finished: set[Connection] = set()
    problems: list[str] = []
    stop = threading.Event()

    def on_sigint(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        for shard in range(workers):
            receiver, sender = context.Pipe(duplex=False)
            process = context.Process(
                target=_worker_process,
                args=(job, sender, shard, workers, os.getpid(), [receiver, *live]),
                name=f"spri-synthesize-{shard + 1}",
                daemon=True,
            )
            process.start()
            sender.close()
            live[receiver] = process
        _collect(live, finished, sink, problems, stop)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        for process in live.values():
            process.kill()
            process.join()
    if stop.is_set():
        raise KeyboardInterrupt
    if problems:
        raise RuntimeError(f"{problems[0]}; every finished record was kept, run again to resume")


def _collect(
    live: dict[Connection, Any],
    finished: set[Connection],
    sink: _FileSink,
    problems: list[str],
    stop: threading.Event,
) -> None:
    """Write what the workers send until all have exited; stop them all on Ctrl-C or failure."""
    stopping = False
    while live:
        if (stop.is_set() or problems) and not stopping:
            stopping = True
            for process in live.values():
                process.terminate()  # SIGTERM: cancel the records in flight, keep what is sent
        for conn in multiprocessing.connection.wait(list(live), timeout=0.2):
            try:
                message = conn.recv()
            except (EOFError, OSError):
                process = live.pop(conn)
                process.join()
                if conn not in finished and not problems:
                    problems.append(
                        f"worker process {process.name} died (exit code {process.exitcode})"
                    )
                continue
            kind = message[0]
            if kind == "lines":
                for item in message[1]:
                    if item[0] == "ok":
                        sink.ok(item[1], item[2])
                    else:
                        sink.error(item[1])
            elif kind == "done":
                finished.add(conn)
            elif kind == "fatal":
                finished.add(conn)
                problems.append(f"worker process failed: {message[1]}")


def _prepare(
    records: Records,
    *,
    model: ModelSpec,
    critic_model: ModelSpec,
    output: str | os.PathLike[str],
    errors: str | os.PathLike[str] | None,
    query_field: str,
    id_field: str | None,
    concurrency: int,
    workers: int,
    resume: bool,
    config: RunnableConfig | None,
    on_progress: Callable[[SynthesisReport], None] | None,
    spri_options: dict[str, Any],
) -> _Job:
    """Everything up to the first model call: arguments, input, output, graph."""
    _check_int("concurrency", concurrency, 1)
    _check_int("workers", workers, 1)
    if workers > 1 and "fork" not in multiprocessing.get_all_start_methods():
        raise ValueError(
            "workers > 1 needs processes started with fork (Linux); use workers=1, or "
            "spri_graph.ray.synthesize_dataset to scale out"
        )
    if not isinstance(query_field, str) or not query_field:
        raise ValueError(f"query_field must be a non-empty string, got {query_field!r}")
    if id_field is not None and (not isinstance(id_field, str) or not id_field):
        raise ValueError(f"id_field must be a non-empty string or None, got {id_field!r}")
    unknown = sorted(set(spri_options) - _SPRI_OPTIONS)
    if unknown:
        raise ValueError(
            f"{unknown[0]}: not an option of synthesize or create_spri_graph "
            f"(options: {', '.join(sorted(_SPRI_OPTIONS - {'review_principles'}))})"
        )
    if spri_options.get("review_principles"):
        raise ValueError(
            "review_principles: not available in synthesis (it would pause every record "
            "for a person)"
        )
    if output is None or (isinstance(output, str) and not output.strip()):
        raise ValueError("output: a path for the JSONL output is required")
    out_path = Path(output)
    err_path = errors_path_for(out_path) if errors is None else Path(errors)
    if not out_path.parent.is_dir():
        raise ValueError(f"output: directory {str(out_path.parent)!r} does not exist")
    if out_path.is_dir():
        raise ValueError(f"output: {str(out_path)!r} is a directory, expected a file path")
    if err_path.resolve() == out_path.resolve():
        raise ValueError("errors: the errors file must differ from the output file")
    if isinstance(records, (str, os.PathLike)) and Path(records).resolve() in (
        out_path.resolve(),
        err_path.resolve(),
    ):
        raise ValueError("output: the output and errors files must differ from the input file")
    if config is not None and not isinstance(config, Mapping):
        raise ValueError(f"config must be a RunnableConfig dict, got {type(config).__name__}")

    policy = spri_options.get("retry_policy") or default_retry_policy()
    spri_options = {**spri_options, "retry_policy": policy}
    graph = create_batch_graph(model, critic_model=critic_model, **spri_options).compile()
    fields = _Fields(query=query_field, id=id_field)
    source = _open_source(records)
    try:
        ids = _scan_input(source, fields)
        if resume:
            done, repaired = _scan_output(out_path)
        else:
            out_path.unlink(missing_ok=True)
            done, repaired = set(), 0
        err_path.unlink(missing_ok=True)  # failures of an earlier run are retried now
    except BaseException:
        source.close()
        raise
    skipped = sum(1 for rid in ids if rid in done)
    report = SynthesisReport(
        output=out_path,
        errors_path=err_path,
        records=len(ids),
        skipped=skipped,
        repaired=repaired,
    )
    max_iterations = spri_options.get("max_iterations", 4)
    return _Job(
        source=source,
        fields=fields,
        ids=ids,
        done=done,
        graph=graph,
        concurrency=concurrency,
        workers=max(1, min(workers, concurrency, report.todo)),
        retry_policy=policy,
        recursion_limit=10 + 4 * int(max_iterations),
        config=dict(config or {}),  # type: ignore[arg-type]
        report=report,
        on_progress=on_progress,
    )


def synthesize(
    records: Records,
    *,
    model: ModelSpec = None,
    critic_model: ModelSpec = None,
    output: str | os.PathLike[str],
    errors: str | os.PathLike[str] | None = None,
    query_field: str = "instruction",
    id_field: str | None = "id",
    concurrency: int = 16,
    workers: int = 1,
    resume: bool = True,
    config: RunnableConfig | None = None,
    on_progress: Callable[[SynthesisReport], None] | None = None,
    **spri_options: Any,
) -> SynthesisReport:
    """Run SPRI over a dataset and write chat-format SFT data, concurrently and resumably.

    Args:
        records: A JSONL file (read lazily, line by line) or an iterable of dicts. A one-shot
            iterator is spooled to a temporary file, so memory does not grow with it.
        model: Base model, as for :func:`~spri_graph.create_spri_graph`: a chat model, a
            model string, or ``None`` for the default model.
        critic_model: Critic model; defaults to ``model``.
        output: JSONL file the records are appended to as they finish.
        errors: JSONL file for records that failed; defaults to ``OUT.errors.jsonl``.
        query_field: Field holding the instruction.
        id_field: Field holding the record's unique id (a string or an integer); ``None``
            uses the record's line number (its position, for an iterable) as its id.
        concurrency: Most records in flight at once, over all workers; match it to what
            the model endpoint allows.
        workers: Processes that run records (Linux). One event loop spends a few ms of CPU
            per record on graph bookkeeping, so a fast endpoint (hundreds of calls per
            second) keeps one core busy; more workers use more cores. Workers are forked,
            so the models need not be picklable; this process writes every line. An
            in-process model such as the embedded llama.cpp model is CPU-bound and each
            worker loads its own copy, so keep ``workers=1`` for it.
        resume: Skip records whose id is already in ``output``; ``False`` starts over and
            overwrites ``output``.
        config: Run config given to every record's graph run (callbacks, tags, metadata).
        on_progress: Called with the live report after each record finishes.
        **spri_options: Options of :func:`~spri_graph.create_spri_graph` (``threshold``,
            ``max_iterations``, ``critic_output``, ``critic_parse_retries``,
            ``seed_examples``, ``prompts``, ``retry_policy``).

    Returns:
        The run's :class:`SynthesisReport`.

    Raises:
        InputError: If the input has bad lines, missing fields, duplicate ids or no
            records; it lists every problem with its line number. Nothing is run.
        ValueError: If an argument is invalid or the output cannot be resumed.
        SynthesisInterrupted: On Ctrl-C, after keeping every finished line.
        RuntimeError: If a worker process dies; finished lines are kept.

    Example:
        >>> import json, tempfile
        >>> from pathlib import Path
        >>> from langchain_core.language_models import GenericFakeChatModel
        >>> model = GenericFakeChatModel(messages=iter([
        ...     "1. Be brief.", "Clear. [RESULT] 5", "Hello!", "Good. [RESULT] 5",
        ... ]))
        >>> out = Path(tempfile.mkdtemp()) / "sft.jsonl"
        >>> report = synthesize(
        ...     [{"id": "a1", "instruction": "Say hello."}], model=model, output=out
        ... )
        >>> report.completed, report.failed, report.calls
        (1, 0, 4)
        >>> json.loads(out.read_text())["messages"][1]
        {'role': 'assistant', 'content': 'Hello!'}
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(
            "synthesize() cannot run inside a running event loop (e.g. a notebook); "
            "use 'await asynthesize(...)' there"
        )
    job = _prepare(
        records,
        model=model,
        critic_model=critic_model,
        output=output,
        errors=errors,
        query_field=query_field,
        id_field=id_field,
        concurrency=concurrency,
        workers=workers,
        resume=resume,
        config=config,
        on_progress=on_progress,
        spri_options=spri_options,
    )
    report = job.report
    sink = _FileSink(report, on_progress)
    # Loaded once here rather than by each worker as it starts.
    _event_loop_factory()
    if job.workers > 1:
        _libc()
    report._started = time.perf_counter()
    try:
        with _batch_gc():
            if job.workers > 1:
                _run_forked(job, sink, job.workers)
            else:
                _run_loop(lambda: job.run(sink))
    except KeyboardInterrupt:
        report.interrupted = True
        raise SynthesisInterrupted(report) from None
    finally:
        report.wall_time = time.perf_counter() - report._started
        report._started = None
        try:
            sink.close()
        finally:
            job.source.close()
    return report


async def asynthesize(
    records: Records,
    *,
    model: ModelSpec = None,
    critic_model: ModelSpec = None,
    output: str | os.PathLike[str],
    errors: str | os.PathLike[str] | None = None,
    query_field: str = "instruction",
    id_field: str | None = "id",
    concurrency: int = 16,
    resume: bool = True,
    config: RunnableConfig | None = None,
    on_progress: Callable[[SynthesisReport], None] | None = None,
    **spri_options: Any,
) -> SynthesisReport:
    """Async :func:`synthesize` on the running event loop; the same arguments but ``workers``.

    The input check and the resume scan run before the first model call, as in
    :func:`synthesize`. Cancelling the task cancels the records in flight and keeps every
    finished line.

    Example:
        >>> import asyncio, tempfile
        >>> from pathlib import Path
        >>> from langchain_core.language_models import GenericFakeChatModel
        >>> model = GenericFakeChatModel(messages=iter([
        ...     "1. Be brief.", "Clear. [RESULT] 5", "Hi!", "Good. [RESULT] 5",
        ... ]))
        >>> out = Path(tempfile.mkdtemp()) / "sft.jsonl"
        >>> report = asyncio.run(asynthesize([{"id": 1, "instruction": "Greet me."}],
        ...                                  model=model, output=out))
        >>> report.completed
        1
    """
    job = _prepare(
        records,
        model=model,
        critic_model=critic_model,
        output=output,
        errors=errors,
        query_field=query_field,
        id_field=id_field,
        concurrency=concurrency,
        workers=1,
        resume=resume,
        config=config,
        on_progress=on_progress,
        spri_options=spri_options,
    )
    report = job.report
    sink = _FileSink(report, on_progress)
    report._started = time.perf_counter()
    try:
        await job.run(sink)
    except asyncio.CancelledError:
        report.interrupted = True
        raise
    finally:
        report.wall_time = time.perf_counter() - report._started
        report._started = None
        try:
            sink.close()
        finally:
            job.source.close()
    return report
