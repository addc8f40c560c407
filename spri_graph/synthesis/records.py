"""Records in: the JSONL reader, input sources read lazily, and the checks run before a run.

:func:`read_jsonl` is the one JSONL reader of the package (synthesis and ``spri judge FILE``
use it): it reads a file line by line and keeps the line numbers. A source
(:func:`open_source`) turns what :func:`~spri_graph.synthesis.synthesize` accepts (a path,
a re-iterable collection, or a one-shot iterator, spooled to a temporary file) into a
stream that can be read twice: :func:`scan_input` checks every record and keeps only the
ids, then :func:`pending_records` hands out the records still to run.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spri_graph.synthesis.runner import Record

__all__ = [
    "InputError",
    "RecordFields",
    "RecordSource",
    "Records",
    "open_source",
    "pending_records",
    "read_jsonl",
    "record_problem",
    "scan_input",
]

Records = str | os.PathLike[str] | Iterable[Mapping[str, Any]]
"""What ``records`` accepts: a JSONL path, or an iterable of dicts."""

_MAX_LISTED_PROBLEMS = 20


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


# --------------------------------------------------------------------------- JSONL


def _json_reason(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at column {exc.colno}"
    return str(exc)


def _jsonl_lines(path: Path) -> Iterator[tuple[int, Any, str | None]]:
    """``(line number, value, problem)`` for each non-blank line; ``problem`` if unreadable."""
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                value = json.loads(raw)
            except ValueError as exc:  # UnicodeDecodeError too: a line that is not UTF-8
                yield number, None, f"not valid JSON ({_json_reason(exc)})"
                continue
            if not isinstance(value, dict):
                yield number, value, f"expected a JSON object, got {type(value).__name__}"
                continue
            yield number, value, None


def read_jsonl(
    path: str | os.PathLike[str], problems: list[tuple[int, str]] | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    r"""Read a JSONL file lazily: ``(line number, object)`` for each line holding an object.

    Lines are numbered from 1; blank lines are skipped but counted. A line that is not
    valid JSON (or not UTF-8), or holds something other than a JSON object, is not yielded:
    it is appended to ``problems`` as ``(line number, reason)`` when a list is given, and
    raises :class:`InputError` otherwise. The file is opened when iteration starts, so a
    missing or unreadable file raises ``OSError`` from the first ``next()``.

    Args:
        path: The JSONL file.
        problems: A list that collects the lines that could not be read, in order.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> path = Path(tempfile.mkdtemp()) / "in.jsonl"
        >>> _ = path.write_text('{"a": 1}\n\n[2]\n{"a": 3}\n')
        >>> problems = []
        >>> list(read_jsonl(path, problems))
        [(1, {'a': 1}), (4, {'a': 3})]
        >>> problems
        [(3, 'expected a JSON object, got list')]
    """
    for number, value, problem in _jsonl_lines(Path(path)):
        if problem is None:
            yield number, value
        elif problems is not None:
            problems.append((number, problem))
        else:
            raise InputError(str(path), [f"line {number}: {problem}"])


# --------------------------------------------------------------------------- checks


@dataclass(frozen=True)
class RecordFields:
    """Where a record keeps its query and its id.

    Attributes:
        query: Field holding the instruction.
        id: Field holding the record's id; ``None``: its line (or position) number is its id.
    """

    query: str
    id: str | None


def record_problem(record: Any, fields: RecordFields) -> str | None:
    """What is wrong with ``record`` (``None`` if nothing): its shape, query and id fields.

    Example:
        >>> record_problem({"id": 1, "instruction": " "}, RecordFields("instruction", "id"))
        "query field 'instruction' is empty"
    """
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


# --------------------------------------------------------------------------- sources


class RecordSource:
    """A re-readable stream of records; positions start at 1.

    Attributes:
        name: How problems name the input (its path, or ``"records"``).
        unit: How problems name a position: ``"line"`` or ``"record"``.
    """

    unit = "record"

    def __init__(self, name: str) -> None:
        self.name = name

    def items(self) -> Iterator[tuple[int, Any, str | None]]:
        """Yield ``(position, record, problem)``; ``problem`` is set when unreadable."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the source holds (a spool file)."""


class _FileSource(RecordSource):
    unit = "line"

    def __init__(self, path: Path, name: str | None = None) -> None:
        super().__init__(name or str(path))
        self.path = path

    def items(self) -> Iterator[tuple[int, Any, str | None]]:
        return _jsonl_lines(self.path)


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


class _IterableSource(RecordSource):
    """A re-iterable collection of records (a list, a ``datasets.Dataset``...)."""

    def __init__(self, records: Iterable[Any]) -> None:
        super().__init__("records")
        self.records = records

    def items(self) -> Iterator[tuple[int, Any, str | None]]:
        for number, record in enumerate(self.records, 1):
            yield number, record, None


def open_source(records: Records) -> RecordSource:
    """The source for ``records``: a JSONL file, a collection, or a spooled one-shot iterator.

    Raises:
        ValueError: If the file does not exist, or ``records`` is not a path or an iterable.
    """
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


def scan_input(source: RecordSource, fields: RecordFields) -> dict[Any, int]:
    """First pass: check every record; return ``{id: position}`` (memory: the ids only).

    Raises:
        InputError: Listing every bad record, duplicate id, or an empty input.
    """
    ids: dict[Any, int] = {}
    problems: list[str] = []
    unit = source.unit
    for number, record, problem in source.items():
        problem = problem or record_problem(record, fields)
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


def pending_records(
    source: RecordSource, fields: RecordFields, ids: Mapping[Any, int], done: set[Any]
) -> Iterator[Record]:
    """Second pass: each checked record not in the output yet, its value being its query."""
    for number, record, problem in source.items():
        if problem is not None or record_problem(record, fields) is not None:
            continue
        rid = number if fields.id is None else record[fields.id]
        if ids.get(rid) != number or rid in done:
            continue
        yield Record(number, rid, record[fields.query])
