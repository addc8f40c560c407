"""Records out: the output's line format, the checks before a run, resume, whole-line writes.

Every output line is written whole with a single ``write()`` on an append-only file
descriptor: once it returns, the line is the operating system's and survives a killed
process. The file is ``fsync``-ed about once a second and on close, which bounds what an
operating-system crash or power loss can take to the last second. Only the last line can
be torn (by a crash, or a disk that fills up mid-line); :func:`scan_output` cuts it off
before a run resumes, so the file stays valid JSONL and its record runs again.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from spri_graph.engine.steps import StageUsage
from spri_graph.synthesis.report import SynthesisReport
from spri_graph.synthesis.runner import Record

__all__ = [
    "FSYNC_INTERVAL",
    "FileSink",
    "LineWriter",
    "check_writable",
    "encode_line",
    "errors_path_for",
    "output_record",
    "scan_output",
]

FSYNC_INTERVAL = 1.0
"""Seconds between ``fsync`` calls of a :class:`LineWriter` (syncing every line would cap
throughput at the disk's sync rate)."""


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
        >>> from spri_graph.readers.scores import Critique
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


def encode_line(obj: Mapping[str, Any]) -> bytes:
    """One JSONL line: ``obj`` as UTF-8 JSON (non-ASCII kept as is) and a newline."""
    return (json.dumps(obj, ensure_ascii=False) + "\n").encode("utf-8")


def check_writable(path: str | os.PathLike[str], *, field: str = "output") -> Path:
    """Check, before any model call, that ``path`` can be appended to (or created).

    An existing file is opened for appending and closed, unchanged. A new file is created
    and removed again, which tells what a look at permission bits cannot (a read-only file
    system, ``/sys``, root on a network share...).

    Args:
        path: The file a run will append to.
        field: The argument that named it, to start the error message with.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: Naming ``field`` and the path: its directory does not exist, a file
            stands where a directory of it should be, it is a directory, or it cannot be
            opened for writing (with the system's reason).

    Example:
        >>> check_writable("/no/such/dir/out.jsonl")
        Traceback (most recent call last):
        ...
        ValueError: output: directory '/no/such/dir' does not exist
    """
    path = Path(path)
    if not path.parent.is_dir():
        file = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        if file is not None:
            raise ValueError(f"{field}: {str(file)!r} is a file, not a directory")
        raise ValueError(f"{field}: directory {str(path.parent)!r} does not exist")
    if path.is_dir():
        raise ValueError(f"{field}: {str(path)!r} is a directory, expected a file path")
    created = False
    try:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644)
            created = True
        except FileExistsError:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        os.close(fd)
        if created:
            path.unlink()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ValueError(f"{field}: cannot write to {str(path)!r} ({reason})") from None
    return path


def scan_output(path: Path) -> tuple[set[Any], int]:
    """Ids already in ``output`` and the number of torn lines cut off its end (0 or 1).

    Only the last line can be torn (lines are appended whole, one ``write()`` each, by one
    process); a bad line anywhere else, or a line that is not an output record, means the
    file is not ours or was edited, and is an error.

    Raises:
        ValueError: If the file holds a bad line before its last, or a line without an id.
    """
    done: set[Any] = set()
    if not path.is_file():  # nothing yet (or a device such as /dev/null: nothing to resume)
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


class LineWriter:
    """Appends whole lines to a file: one ``write()`` per line, ``fsync`` about once a second.

    The file is opened on the first line, so a run that writes nothing creates nothing.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._synced = time.monotonic()

    def write(self, data: bytes) -> None:
        """Append ``data`` (whole lines)."""
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        view = memoryview(data)
        while view:  # a regular file takes the whole line at once; loop in case it does not
            view = view[os.write(self._fd, view) :]
        now = time.monotonic()
        if now - self._synced >= FSYNC_INTERVAL:
            os.fsync(self._fd)
            self._synced = now

    def close(self) -> None:
        """Sync and close the file (if it was opened)."""
        if self._fd is not None:
            try:
                os.fsync(self._fd)
            finally:
                os.close(self._fd)
                self._fd = None


class FileSink:
    """Writes finished records to the output and failures to the errors file.

    The lines come from a :class:`~spri_graph.synthesis.runner.RecordRunner` in this
    process (:meth:`ok`, :meth:`error`) or already encoded from worker processes
    (:meth:`write_ok`, :meth:`write_error`); either way the report is updated after each
    line is written. A write that fails raises ``OSError`` saying that every finished
    record was kept and how to resume.
    """

    def __init__(
        self, report: SynthesisReport, on_progress: Callable[[SynthesisReport], None] | None
    ) -> None:
        self.report = report
        self.on_progress = on_progress
        self.out = LineWriter(report.output)
        self.errors = LineWriter(report.errors_path)

    def ok(self, record: Record, line: dict[str, Any], usage: StageUsage) -> None:
        """Write a finished record's line."""
        self.write_ok(encode_line(line), usage)

    def error(self, record: Record, line: dict[str, Any]) -> None:
        """Write a failed record's error line."""
        self.write_error(encode_line(line))

    def write_ok(self, data: bytes, usage: StageUsage) -> None:
        """Write an encoded output line and count its usage."""
        self._write(self.out, data)
        report = self.report
        report.completed += 1
        report.model_calls += usage["model_calls"]
        report.critic_calls += usage["critic_calls"]
        report.input_tokens += usage["input_tokens"]
        report.output_tokens += usage["output_tokens"]
        report.total_tokens += usage["total_tokens"]
        if self.on_progress is not None:
            self.on_progress(report)

    def write_error(self, data: bytes) -> None:
        """Write an encoded error line."""
        self._write(self.errors, data)
        self.report.failed += 1
        if self.on_progress is not None:
            self.on_progress(self.report)

    def close(self) -> None:
        """Sync and close both files."""
        try:
            self._close(self.out)
        finally:
            self._close(self.errors)

    def _write(self, writer: LineWriter, data: bytes) -> None:
        try:
            writer.write(data)
        except OSError as exc:
            raise self._failed(writer, exc) from exc

    def _close(self, writer: LineWriter) -> None:
        try:
            writer.close()
        except OSError as exc:
            raise self._failed(writer, exc) from exc

    def _failed(self, writer: LineWriter, exc: OSError) -> OSError:
        report = self.report
        error = OSError(
            f"cannot write to {str(writer.path)!r} ({exc.strerror or exc}); the run stopped "
            f"and every finished record was kept ({report.completed} written, {report.failed} "
            "failed): make it writable, then run the same command again to resume"
        )
        error.errno = exc.errno
        return error
