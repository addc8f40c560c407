"""Records out: the output's line formats, the checks before a run, resume, whole-line writes.

The output holds one SFT line per record (:func:`output_record`); with the ``"dpo"`` format a
second file beside it (``OUT.dpo.jsonl``, :func:`pairs_path_for`) holds preference pairs in
TRL's conversational format (:func:`preference_pairs`). A record's pairs are written before
its SFT line, so the SFT file says which records are done: on resume, pairs of a record
whose SFT line never made it are cut off with the torn line (:func:`scan_pairs`), and the
record runs again; every record is in each file once.

Every output line is written whole with a single ``write()`` on an append-only file
descriptor: once it returns, the line is the operating system's and survives a killed
process. The file is ``fsync``-ed about once a second and on close, which bounds what an
operating-system crash or power loss can take to the last second. Only the last line can
be torn (by a crash, or a disk that fills up mid-line); :func:`scan_output` cuts it off
before a run resumes, so the file stays valid JSONL and its record runs again.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, NamedTuple, get_args

from spri_graph.engine.options import LoopSettings
from spri_graph.engine.steps import StageUsage
from spri_graph.synthesis.report import SynthesisReport
from spri_graph.synthesis.runner import Record

__all__ = [
    "FORMATS",
    "FSYNC_INTERVAL",
    "PAIRINGS",
    "EncodedRecord",
    "FileSink",
    "Format",
    "LineWriter",
    "Pairing",
    "RecordEncoder",
    "Target",
    "TargetReached",
    "check_formats",
    "count_passed",
    "check_writable",
    "encode_line",
    "errors_path_for",
    "output_record",
    "pairs_path_for",
    "preference_pairs",
    "scan_output",
    "scan_pairs",
]

Format = Literal["sft", "dpo"]
"""An output format: ``"sft"`` chat lines, ``"dpo"`` preference pairs."""

FORMATS: tuple[str, ...] = get_args(Format)

Pairing = Literal["first-final", "successive"]
"""Which drafts a record's preference pairs compare."""

PAIRINGS: tuple[str, ...] = get_args(Pairing)

FSYNC_INTERVAL = 1.0
"""Seconds between ``fsync`` calls of a :class:`LineWriter` (syncing every line would cap
throughput at the disk's sync rate)."""


def errors_path_for(output: str | os.PathLike[str]) -> Path:
    """The default errors file for ``output``: ``out.jsonl`` -> ``out.errors.jsonl``.

    Example:
        >>> errors_path_for("data/train.jsonl").as_posix()
        'data/train.errors.jsonl'
    """
    return _beside(output, "errors")


def _beside(output: str | os.PathLike[str], kind: str) -> Path:
    path = Path(output)
    if path.suffix == ".jsonl":
        return path.with_suffix(f".{kind}.jsonl")
    return path.with_name(f"{path.name}.{kind}.jsonl")


def pairs_path_for(output: str | os.PathLike[str]) -> Path:
    """The preference-pairs file beside ``output``: ``out.jsonl`` -> ``out.dpo.jsonl``.

    Example:
        >>> pairs_path_for("data/train.jsonl").as_posix()
        'data/train.dpo.jsonl'
    """
    return _beside(output, "dpo")


def check_formats(formats: Any) -> tuple[Format, ...]:
    """``formats`` checked: a sequence of known formats that includes ``"sft"``.

    The SFT file is always written: it records which records ran, which resume reads.

    Raises:
        ValueError: Naming ``formats``.

    Example:
        >>> check_formats(("sft", "dpo"))
        ('sft', 'dpo')
        >>> check_formats(["sft", "kto"])
        Traceback (most recent call last):
        ...
        ValueError: formats: unknown format 'kto'; expected 'sft' and optionally 'dpo'
    """
    if isinstance(formats, str) or not isinstance(formats, (list, tuple)):
        raise ValueError(f"formats must be a tuple of format names, got {formats!r}")
    for name in formats:
        if name not in FORMATS:
            raise ValueError(
                f"formats: unknown format {name!r}; expected 'sft' and optionally 'dpo'"
            )
    if "sft" not in formats:
        raise ValueError(
            "formats: 'sft' is always written (it records which records ran, for resume); "
            f"got {tuple(formats)!r}"
        )
    return tuple(dict.fromkeys(formats))


def output_record(record_id: Any, query: str, result: Mapping[str, Any]) -> dict[str, Any]:
    """The output line for one record: chat messages plus principles, critiques and usage.

    ``response_drafts`` lists every response candidate in order (the first draft, then each
    refinement; the ``i``-th was graded by ``response_critiques[i]``).

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
        "principles": result.get("principles", ""),
        "principle_critiques": [c.model_dump() for c in result.get("principle_critiques", [])],
        "response_critiques": [c.model_dump() for c in result.get("response_critiques", [])],
        "response_drafts": list(result.get("response_drafts") or [result["response"]]),
        "usage": dict(result.get("usage") or {}),
    }


def _improved(scores: list[int | None], worse: int, better: int) -> bool:
    low, high = scores[worse], scores[better]
    return low is not None and high is not None and high > low


def preference_pairs(
    line: Mapping[str, Any], pairing: Pairing = "first-final"
) -> list[dict[str, Any]]:
    """The preference pairs of one SFT line (:func:`output_record`), in TRL's conversational format.

    A record whose response was refined, and whose final critique scores above the first
    draft's, gives one pair: the final response chosen over the first draft. With
    ``pairing="successive"`` each refinement that scored above the candidate before it
    gives a pair with it instead. Beside ``prompt``, ``chosen`` and ``rejected`` (lists of
    messages) a pair holds ``pair`` (its number within the record), both scores, the
    principles and the critic's feedback on the rejected candidate (which the refinement
    answered).

    Example:
        >>> line = {"id": "a", "messages": [{"role": "user", "content": "Hi?"}],
        ...         "principles": "Be warm.", "response_drafts": ["Hi.", "Hello, friend!"],
        ...         "response_critiques": [{"feedback": "Cold.", "score": 2},
        ...                                {"feedback": "Warm.", "score": 5}]}
        >>> pair, = preference_pairs(line)
        >>> pair["chosen"], pair["rejected_score"], pair["feedback"]
        ([{'role': 'assistant', 'content': 'Hello, friend!'}], 2, 'Cold.')
    """
    drafts = list(line.get("response_drafts") or [])
    critiques = list(line.get("response_critiques") or [])
    scores: list[int | None] = [c.get("score") for c in critiques]
    count = min(len(drafts), len(scores))
    if count < 2:
        return []
    last = count - 1
    steps = [(i, i + 1) for i in range(last)] if pairing == "successive" else [(0, last)]
    prompt = [m for m in line["messages"] if m.get("role") != "assistant"]
    pairs: list[dict[str, Any]] = []
    for worse, better in steps:
        if not _improved(scores, worse, better):
            continue
        pairs.append(
            {
                "id": line["id"],
                "pair": len(pairs),
                "prompt": prompt,
                "chosen": [{"role": "assistant", "content": drafts[better]}],
                "rejected": [{"role": "assistant", "content": drafts[worse]}],
                "chosen_score": scores[better],
                "rejected_score": scores[worse],
                "principles": line.get("principles", ""),
                "feedback": critiques[worse].get("feedback", ""),
            }
        )
    return pairs


class EncodedRecord(NamedTuple):
    """A finished record's lines, encoded: its SFT line and its preference pairs.

    Attributes:
        line: The SFT line.
        pairs: The pair lines (``b""`` when there are none or no pairs are written).
        pair_count: How many pair lines ``pairs`` holds.
        refined: Whether the response was refined (more than one draft).
        passed: Whether the final critique reached the threshold.
    """

    line: bytes
    pairs: bytes = b""
    pair_count: int = 0
    refined: bool = False
    passed: bool = False


class RecordEncoder(NamedTuple):
    """Encodes finished records' lines for the formats of a run.

    Attributes:
        pairing: Which pairs to write; ``None`` writes none (the ``"sft"`` format alone).
        threshold: The score a final critique must reach to pass.
    """

    pairing: Pairing | None = None
    threshold: int = LoopSettings.threshold

    def encode(self, line: Mapping[str, Any]) -> EncodedRecord:
        """The record's SFT line and, with a pairing, its preference pairs."""
        passed = _passed(line, self.threshold)
        refined = len(line.get("response_drafts") or ()) > 1
        if self.pairing is None:
            return EncodedRecord(encode_line(line), refined=refined, passed=passed)
        pairs = preference_pairs(line, self.pairing)
        data = b"".join(encode_line(pair) for pair in pairs)
        return EncodedRecord(encode_line(line), data, len(pairs), refined, passed)


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
    torn_at: int | None = None
    torn = 0
    for number, start, line in _lines(path):
        if torn_at is not None:
            raise ValueError(
                f"output: line {torn} of {str(path)!r} is not valid JSON; it holds "
                "lines that are not whole output records, so it cannot be resumed "
                "(fix it, or pass resume=False / --no-resume to start over)"
            )
        if line is None:  # cut short by a crash: only the last line can be
            torn_at, torn = start, number
            continue
        if not isinstance(line, dict) or "id" not in line:
            raise ValueError(
                f"output: line {number} of {str(path)!r} is not an output record (no 'id'); "
                "is it the right file? (pass resume=False / --no-resume to overwrite it)"
            )
        done.add(line["id"])
    if torn_at is None:
        return done, 0
    _truncate(path, torn_at)
    return done, 1


def _lines(path: Path) -> Iterator[tuple[int, int, Any]]:
    """``(line number, byte offset, value)`` per non-blank line; ``None`` if torn or bad."""
    offset = 0
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, 1):
            start, offset = offset, offset + len(raw)
            if not raw.strip():
                continue
            try:
                yield number, start, json.loads(raw) if raw.endswith(b"\n") else None
            except ValueError:
                yield number, start, None


def _truncate(path: Path, size: int) -> None:
    with path.open("r+b") as fh:
        fh.truncate(size)
        fh.flush()
        os.fsync(fh.fileno())


def scan_pairs(path: Path, done: set[Any]) -> int:
    """Make the pairs file match the SFT file's ``done`` ids; return the lines cut off.

    A record's pairs are written before its SFT line, so lines of records not in ``done``
    (their SFT line was never written; they run again) and a torn line can only be at the
    end: they are cut off there.

    Raises:
        ValueError: If a line of a record not in ``done``, or a bad line, comes before a
            line of a record that is (the file is not ours, or was edited).
    """
    if not path.is_file():
        return 0
    cut_at: int | None = None
    cut = 0
    for number, start, line in _lines(path):
        kept = isinstance(line, dict) and line.get("id") in done
        if kept and cut_at is not None:
            raise ValueError(
                f"output: line {number} of {str(path)!r} follows lines of records that are "
                "not in the output, so the pairs file cannot be resumed (fix it, or pass "
                "resume=False / --no-resume to start over)"
            )
        if not kept:
            cut_at = start if cut_at is None else cut_at
            cut += 1
    if cut_at is None:
        return 0
    _truncate(path, cut_at)
    return cut


class Target(NamedTuple):
    """When a run stops.

    Attributes:
        size: Records the output should hold, those in it when the run started included.
        passed_only: Count only records whose final response critique passed.
    """

    size: int
    passed_only: bool = False


class TargetReached(Exception):  # noqa: N818 - a signal, not an error
    """Raised by a :class:`FileSink` once its target is reached; the run stops there."""


def count_passed(path: Path, threshold: int) -> int:
    """Lines of the SFT file whose final response critique reached ``threshold``."""
    if not path.is_file():
        return 0
    passed = 0
    with path.open("rb") as fh:
        for raw in fh:
            with contextlib.suppress(ValueError):
                line = json.loads(raw)
                passed += isinstance(line, dict) and _passed(line, threshold)
    return passed


def _passed(line: Mapping[str, Any], threshold: int) -> bool:
    """Whether the line's final response critique reached ``threshold``."""
    critiques = line.get("response_critiques") or []
    score = critiques[-1].get("score") if critiques else None
    return isinstance(score, int) and score >= threshold


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
    """Writes finished records to the output (and pairs file) and failures to the errors file.

    The lines come from a :class:`~spri_graph.synthesis.runner.RecordRunner` in this
    process (:meth:`ok`, :meth:`error`) or already encoded from worker processes
    (:meth:`write_ok`, :meth:`write_error`); either way the report is updated after each
    line is written. A record's pairs are written before its SFT line. A write that fails
    raises ``OSError`` saying that every finished record was kept and how to resume. With
    a ``target``, the write that reaches it (and any after it, which write nothing) raises
    :class:`TargetReached`.
    """

    def __init__(
        self,
        report: SynthesisReport,
        on_progress: Callable[[SynthesisReport], None] | None,
        encoder: RecordEncoder | None = None,
        target: Target | None = None,
        reached: int = 0,
    ) -> None:
        self.report = report
        self.on_progress = on_progress
        self.encoder = encoder or RecordEncoder()
        self.target = target
        self.reached = reached
        self.out = LineWriter(report.output)
        self.errors = LineWriter(report.errors_path)
        self.pairs = None if report.pairs_path is None else LineWriter(report.pairs_path)

    def ok(self, record: Record, line: dict[str, Any], usage: StageUsage) -> None:
        """Write a finished record's line."""
        self.write_ok(self.encoder.encode(line), usage)

    def error(self, record: Record, line: dict[str, Any]) -> None:
        """Write a failed record's error line."""
        self.write_error(encode_line(line))

    def write_ok(self, data: EncodedRecord, usage: StageUsage) -> None:
        """Write an encoded record's lines and count its usage."""
        target = self.target
        if target is not None and self.reached >= target.size:
            raise TargetReached
        if self.pairs is not None and data.pairs:
            self._write(self.pairs, data.pairs)
        self._write(self.out, data.line)
        report = self.report
        report.completed += 1
        report.passed += data.passed
        if self.pairs is not None:
            report.pairs += data.pair_count
            if not data.refined:
                report.first_passed += 1
            elif not data.pair_count:
                report.not_improved += 1
        report.model_calls += usage["model_calls"]
        report.critic_calls += usage["critic_calls"]
        report.input_tokens += usage["input_tokens"]
        report.output_tokens += usage["output_tokens"]
        report.total_tokens += usage["total_tokens"]
        if self.on_progress is not None:
            self.on_progress(report)
        if target is not None and (data.passed or not target.passed_only):
            self.reached += 1
            if self.reached >= target.size:
                report.target_reached = True
                raise TargetReached

    def write_error(self, data: bytes) -> None:
        """Write an encoded error line."""
        if self.target is not None and self.reached >= self.target.size:
            raise TargetReached
        self._write(self.errors, data)
        self.report.failed += 1
        if self.on_progress is not None:
            self.on_progress(self.report)

    def close(self) -> None:
        """Sync and close the files."""
        try:
            self._close(self.out)
        finally:
            try:
                self._close(self.errors)
            finally:
                if self.pairs is not None:
                    self._close(self.pairs)

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
