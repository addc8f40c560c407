"""Where records run: the event loop synthesis owns, and the pool of forked workers.

One event loop spends a few milliseconds of CPU per record on graph bookkeeping, so an
endpoint that answers hundreds of calls per second keeps a core busy. :func:`run_forked`
forks processes that each run a shard of the records and send finished lines back to the
parent, the only writer (in batches, each at most :data:`SEND_INTERVAL` old). The loops
synthesis owns (:func:`run_loop`) use uvloop when installed and start tasks eagerly on
Python 3.12+, and :func:`batch_gc` keeps the garbage collector out of the way during a run.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator, Sequence
from multiprocessing.connection import Connection
from typing import Any, cast

from spri_graph.engine.steps import StageUsage
from spri_graph.synthesis.output import FileSink, RecordEncoder, encode_line
from spri_graph.synthesis.runner import Record, RecordSink

__all__ = [
    "SEND_INTERVAL",
    "PipeSink",
    "batch_gc",
    "event_loop_factory",
    "preload",
    "run_forked",
    "run_loop",
]

SEND_INTERVAL = 0.05
"""Seconds a worker holds finished lines before sending them to the parent (0: at once)."""

RunShard = Callable[[RecordSink, int, int], Coroutine[Any, Any, None]]
"""Runs one shard of the records into a sink: ``run(sink, shard, shards)``."""


@functools.lru_cache(maxsize=1)
def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
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
def batch_gc() -> Iterator[None]:
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


def run_loop(main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run ``main()`` to completion on a new loop from :func:`event_loop_factory`."""
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
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


def preload(workers: int) -> None:
    """Load what the run's loops (and, with ``workers`` > 1, the workers) need, once."""
    event_loop_factory()
    if workers > 1:
        _libc()


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


class PipeSink:
    """A worker process's sink: sends finished lines to the parent, which writes them.

    Lines are encoded here, in the worker, and go in batches, each sent at most
    ``interval`` seconds after its first line finished: a message per batch wakes the
    parent, and takes a core from the workers, far less often than a message per record.
    A batch not yet sent when its worker is killed dies with it; those records run again
    on resume, never twice in the output.

    Args:
        conn: The sending end of the pipe to the parent.
        interval: Seconds to hold lines; defaults to :data:`SEND_INTERVAL`.
        encoder: Encodes a record's lines for the run's formats.
    """

    def __init__(
        self,
        conn: Connection,
        interval: float | None = None,
        encoder: RecordEncoder | None = None,
    ) -> None:
        self.conn = conn
        self.encoder = encoder or RecordEncoder()
        self.interval = SEND_INTERVAL if interval is None else interval
        self._pending: list[tuple[Any, ...]] = []
        self._timer: asyncio.TimerHandle | None = None

    def ok(self, record: Record, line: dict[str, Any], usage: StageUsage) -> None:
        """Queue a finished record's line."""
        self._add(("ok", self.encoder.encode(line), usage))

    def error(self, record: Record, line: dict[str, Any]) -> None:
        """Queue a failed record's error line."""
        self._add(("error", encode_line(line)))

    def _add(self, item: tuple[Any, ...]) -> None:
        self._pending.append(item)
        if self.interval <= 0:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.interval, self.flush)

    def flush(self) -> None:
        """Send the lines not sent yet."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending:
            batch, self._pending = self._pending, []
            self.conn.send(("lines", batch))


def _worker_process(
    run_shard: RunShard,
    conn: Connection,
    shard: int,
    shards: int,
    parent: int,
    inherited: Sequence[Connection],
    encoder: RecordEncoder,
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
        sink = PipeSink(conn, encoder=encoder)
        try:
            await run_shard(sink, shard, shards)
        finally:
            sink.flush()  # stopped or failed: the lines finished so far are kept

    try:
        run_loop(main)
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


def run_forked(run_shard: RunShard, sink: FileSink, workers: int) -> None:
    """Run ``workers`` shards in forked processes; this process writes every line to ``sink``.

    Workers are forked, so what ``run_shard`` uses (models, graphs) need not be picklable.
    Ctrl-C sets a flag instead of raising wherever this process happens to be, so no line
    is half-written or half-received: the workers are told to stop (SIGTERM), the lines they
    already sent are written, and only then is ``KeyboardInterrupt`` raised. A second
    Ctrl-C stops waiting.

    Raises:
        KeyboardInterrupt: On Ctrl-C, once the lines sent so far are written.
        RuntimeError: If a worker died or failed; every finished record was kept.
        OSError: If a line could not be written (from ``sink``).
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
                args=(
                    run_shard,
                    sender,
                    shard,
                    workers,
                    os.getpid(),
                    [receiver, *live],
                    sink.encoder,
                ),
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
    sink: FileSink,
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
        ready = cast("list[Connection]", multiprocessing.connection.wait(list(live), 0.2))
        for conn in ready:
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
                        sink.write_ok(item[1], item[2])
                    else:
                        sink.write_error(item[1])
            elif kind == "done":
                finished.add(conn)
            elif kind == "fatal":
                finished.add(conn)
                problems.append(f"worker process failed: {message[1]}")
