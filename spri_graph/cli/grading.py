"""What both modes of ``spri judge`` share: the judge options, one judging, FILE mode.

The absolute (:mod:`spri_graph.cli.judge`) and the pairwise (:mod:`spri_graph.cli.pairwise`)
judges both build their graphs from :func:`judge_options`; FILE mode checks every record
first, grades them all and sums up the run, each judge describing its lines with a
:class:`FileMode`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from spri_graph.cli.common import (
    CLIError,
    bad_lines,
    check_output,
    read_records,
    resolve_cli_models,
)
from spri_graph.cli.progress import Progress
from spri_graph.cli.stages import Stage, StageView
from spri_graph.engine.steps import StageUsage, UsageCallback
from spri_graph.synthesis import Record, RecordRunner
from spri_graph.synthesis.output import encode_line

__all__ = [
    "JUDGE_STAGES",
    "PREFIX",
    "FileMode",
    "check_file",
    "check_mode",
    "check_texts",
    "grade_file",
    "judge_once",
    "judge_options",
    "judge_settings",
]

PREFIX = "judge_"
"""The prefix of the fields FILE mode adds to each record."""


def check_mode(args: argparse.Namespace, *, required: Sequence[str], one: str, lines: str) -> None:
    """Check the flags of FILE mode, or of one judging (``required`` texts, ``--reference``).

    Args:
        args: The parsed ``spri judge`` flags.
        required: Argument names one judging needs (``"response_a"`` is ``--response-a``).
        one: One judging, in the messages (``"grading"``).
        lines: What FILE mode writes, in the messages (``"grades"``).
    """
    names = [*required, "reference"]
    given = [f"--{name.replace('_', '-')}" for name in names if getattr(args, name)]
    if args.file is not None:
        if given:
            raise CLIError(f"give FILE or {'/'.join(given)}, not both")
        if not args.output:
            raise CLIError(f"FILE needs -o OUT.jsonl for the {lines}")
        if args.json:
            raise CLIError(f"--json is for one {one}; FILE mode writes JSONL to -o")
        return
    file_only = {
        "--output": args.output,
        "--use-reference": args.use_reference,
        "--no-progress": args.no_progress,
        "--min-scored": args.min_scored is not None,
        "--price-in": args.price_in is not None,
        "--price-out": args.price_out is not None,
    }
    for flag, value in file_only.items():
        if value:
            raise CLIError(f"{flag} needs FILE.jsonl")
    for name in names:
        flag, text = f"--{name.replace('_', '-')}", getattr(args, name)
        if text is None and name in required:
            raise CLIError(f"{flag} is required (or give FILE.jsonl)")
        if text is not None and not text.strip():
            raise CLIError(f"{flag} must not be empty")


def judge_options(
    args: argparse.Namespace, *, reference_free: bool
) -> tuple[Any, Any, Any, dict[str, Any]]:
    """The node cache, the models and the options every judge takes, from the judge flags.

    Returns:
        ``(cache, model, critic, options)``; ``options`` holds ``reference_free``,
        ``scale``, ``judge_output``, ``cache_policy``, ``rubric_style`` and
        ``criteria_grading``.
    """
    cache, options = judge_settings(args, reference_free=reference_free)
    model, critic = resolve_cli_models(args)
    return cache, model, critic, options


def judge_settings(args: argparse.Namespace, *, reference_free: bool) -> tuple[Any, dict[str, Any]]:
    """:func:`judge_options` but the models: ``(cache, options)``, for judges of their own."""
    from langgraph.types import CachePolicy

    from spri_graph.engine.caching import judge_cache

    cache = None
    if args.cache is not None:
        check_output(args.cache, option="--cache")
        cache = judge_cache(args.cache)
    options: dict[str, Any] = {
        "reference_free": reference_free,
        "scale": args.scale,
        "judge_output": args.judge_output,
        "cache_policy": None if cache is None else CachePolicy(),
        "rubric_style": getattr(args, "rubric_style", "levels"),
        "criteria_grading": getattr(args, "criteria_grading", "joint"),
    }
    return cache, options


def check_texts(record: dict[str, Any], names: Sequence[str]) -> str | None:
    """What is wrong with a FILE record whose ``names`` must be non-empty strings, if anything."""
    for name in names:
        value = record.get(name)
        if value is None:
            return f"missing {name!r}"
        if not isinstance(value, str) or not value.strip():
            return f"{name!r} must be a non-empty string"
    return None


JUDGE_STAGES = {
    "rubric": Stage("Rubric", "rubric_critiques", lambda rubric: rubric.render()),
    "judgment": Stage(
        "Grading",
        "judgment_critiques",
        lambda judgment: (
            f"{judgment.feedback or '(no feedback)'}\nScore: "
            + ("none" if judgment.score is None else f"{judgment.score:g}")
        ),
    ),
}
"""The refine-loop stages of the judges, as ``spri judge`` shows them while it runs."""


def judge_once(
    args: argparse.Namespace,
    graph: Any,
    inputs: dict[str, Any],
    result: Callable[[dict[str, Any]], dict[str, Any]],
    show: Callable[[dict[str, Any]], None],
    *,
    header: Sequence[str] = (),
    on_update: Callable[[StageView, str, dict[str, Any]], None] | None = None,
) -> None:
    """Judge one input (with ``--reference`` when given) and print the result.

    With ``--json``, the result (with the usage) is one JSON document. Otherwise each
    stage is shown on stdout as it happens, as ``spri align`` does: the rubric's draft, its
    critiques with their scores and its refinements, then the grading and its critiques
    (:data:`JUDGE_STAGES`); then the calls, tokens and time, the rubric the judge kept
    and what ``show`` prints of the result (so the last line is the verdict).

    Args:
        args: The parsed ``spri judge`` flags.
        graph: The compiled judge.
        inputs: The judge's input.
        result: The graph's output as JSON-ready fields.
        show: Prints the result after the rubric (e.g. the grading and the score).
        header: Lines to start with (e.g. ``"Model: ..."``).
        on_update: Called with the view, a node's name and its update, for every node
            (to show the nodes that are not a refine-loop stage).
    """
    import json
    import time

    if args.reference is not None:
        inputs = {**inputs, "reference_answer": args.reference}
    if args.json:
        done = graph.invoke(inputs)
        fields = result(done)
        print(json.dumps({**fields, "usage": done.get("usage", {})}, ensure_ascii=False, indent=2))
        return
    view = StageView.of(args, JUDGE_STAGES, sys.stdout)
    for line in header:
        view.write(line)
    out: dict[str, Any] = {}
    started = time.perf_counter()
    chunk: Any
    for mode, chunk in graph.stream(inputs, stream_mode=["updates", "values"]):
        if mode == "values":
            out = chunk
            continue
        for node, update in chunk.items():
            view.update(node, update or {})
            if on_update is not None:
                on_update(view, node, update or {})
    seconds = time.perf_counter() - started
    fields = result(out)
    scores = [c["score"] for c in fields["rubric_critiques"]]
    view.write()
    view.usage(out.get("usage"), seconds)
    view.write("\n== Result ==")
    view.write("Rubric" + (f" (critic scores: {scores})" if scores else ""))
    view.block(out["rubric"].render())
    show(fields)


def check_file(args: argparse.Namespace, check: Callable[[dict[str, Any]], str | None]) -> int:
    """Check FILE's every record and the output before any model call; count the records.

    Raises:
        CLIError: Naming the first bad lines (``check`` says what is wrong with a record),
            an empty FILE, or an output that is FILE or cannot be written (exit 2).
    """
    import os

    if os.path.exists(args.output) and os.path.samefile(args.file, args.output):
        raise CLIError("-o must not be the input FILE")
    problems: list[tuple[int, str]] = []
    count = 0
    for line_no, record in read_records(args.file, problems):  # check all, keep nothing
        count += 1
        if problem := check(record):
            problems.append((line_no, problem))
    if problems:
        raise bad_lines(args.file, problems)
    if not count:
        raise CLIError(f"{args.file}: no records to grade")
    check_output(args.output, option="-o")
    return count


@dataclass(frozen=True)
class FileMode:
    """What FILE mode writes for a record, and what makes a record count as graded.

    Attributes:
        inputs: The record's fields given to the graph (those present).
        result: The graph's output as the JSON-ready fields added to the line (each
            prefixed ``judge_``).
        result_keys: Those fields' names (all ``None`` on a failed line).
        readable: The field that must not be ``None`` for the record to count.
        noun: What that field holds, for the summary (``"score"``, ``"verdict"``).
    """

    inputs: tuple[str, ...]
    result: Callable[[dict[str, Any]], dict[str, Any]]
    result_keys: tuple[str, ...]
    readable: str
    noun: str


def grade_file(
    args: argparse.Namespace, graph: Any, models: Sequence[Any], count: int, mode: FileMode
) -> int:
    """Grade every record of ``args.file`` into ``args.output`` (checked) with ``graph``.

    Records go ``args.concurrency`` at once (one at a time on a local model); the summary
    (calls, tokens, cost, how many got a readable ``mode.readable``) goes to stderr.
    """
    import asyncio

    from spri_graph.synthesis.runner import serving_concurrency

    concurrency = serving_concurrency(args.concurrency, *models)
    try:
        out_file = open(args.output, "wb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise CLIError(f"-o: cannot write to {args.output!r} ({exc.strerror or exc})") from None
    counter = UsageCallback()
    with out_file, Progress(desc="judge", total=count, enabled=not args.no_progress) as progress:
        sink = _GradeSink(out_file, progress, PREFIX + mode.readable)
        try:
            asyncio.run(_grade_file(graph, args, mode, concurrency, sink, counter))
        except OSError as exc:
            raise CLIError(
                f"-o: cannot write to {args.output!r} ({exc.strerror or exc}); the run stopped "
                f"after {sink.done} of {count} records",
                code=1,
            ) from None
    if sink.failed:
        failed = sink.failed
        lines = ", ".join(str(n) for n in failed[:10]) + (", ..." if len(failed) > 10 else "")
        raise CLIError(
            f"{len(failed)} of {count} records failed (lines {lines}); each has "
            f"'{PREFIX}error' in {args.output}",
            code=1,
        )
    _check_scored(sink.scored, count, args.min_scored, mode.noun)
    print(_spent(counter.usage, args), file=sys.stderr)
    print(
        f"graded {count} records into {args.output}; {sink.scored} with a readable {mode.noun}",
        file=sys.stderr,
    )
    return 0


def _spent(usage: StageUsage, args: argparse.Namespace) -> str:
    """The run's model calls and tokens, and their cost when prices are given."""
    calls = usage["model_calls"] + usage["critic_calls"]
    line = (
        f"model calls: {calls}; tokens: {usage['input_tokens']:,} in, "
        f"{usage['output_tokens']:,} out"
    )
    if args.cache is not None:
        line += " (calls served from --cache are not counted)"
    if args.price_in is not None or args.price_out is not None:
        price_in, price_out = args.price_in or 0.0, args.price_out or 0.0
        cost = (usage["input_tokens"] * price_in + usage["output_tokens"] * price_out) / 1e6
        line += f"; cost: ${cost:.4f} (at ${price_in:g} in / ${price_out:g} out per million tokens)"
    return line


def _check_scored(scored: int, graded: int, min_scored: float | None, noun: str) -> None:
    """Exit 1 when too few graded records have a readable score (default: none has)."""
    enough = scored >= 1 if min_scored is None else scored >= min_scored * graded
    if enough:
        return
    wanted = "" if min_scored is None else f" (--min-scored {min_scored:g})"
    raise CLIError(
        f"{scored} of {graded} graded records have a readable {noun}{wanted}: the model did "
        "not follow the grading format; try --judge-output structured",
        code=1,
    )


class _GradeSink:
    """Writes each record's grades to the output as one line, in input order, and counts."""

    def __init__(self, out_file: Any, progress: Progress, readable: str) -> None:
        self.out_file = out_file
        self.progress = progress
        self.readable = readable
        self.done = 0
        self.scored = 0
        self.failed: list[int] = []

    def ok(self, record: Record, line: dict[str, Any], usage: StageUsage) -> None:
        self.scored += line[self.readable] is not None
        self._write(line)

    def error(self, record: Record, line: dict[str, Any]) -> None:
        self.failed.append(record.number)
        self._write(line)

    def _write(self, line: dict[str, Any]) -> None:
        self.out_file.write(encode_line(line))
        self.out_file.flush()
        self.done += 1
        self.progress.update(self.done, failed=len(self.failed))


def _graded(record: Record, result: dict[str, Any]) -> dict[str, Any]:
    return {**record.value, **{PREFIX + key: value for key, value in result.items()}}


async def _grade_file(
    graph: Any,
    args: argparse.Namespace,
    mode: FileMode,
    concurrency: int,
    sink: _GradeSink,
    counter: UsageCallback,
) -> None:
    """Grade every record of FILE (read again, lazily), ``concurrency`` at once."""
    keys = [key for key in mode.inputs if args.use_reference or key != "reference_answer"]

    def to_input(record: Record) -> dict[str, Any]:
        return {key: record.value[key] for key in keys if record.value.get(key) is not None}

    def to_error(record: Record, exc: BaseException, attempts: int) -> dict[str, Any]:
        return _graded(
            record, {**dict.fromkeys(mode.result_keys), "error": f"{type(exc).__name__}: {exc}"}
        )

    runner = RecordRunner(
        graph,
        to_input=to_input,
        to_line=lambda record, out: _graded(record, {**mode.result(out), "error": None}),
        to_error=to_error,
        concurrency=concurrency,
        config={"callbacks": [counter]},
    )
    records = (Record(n, n, value) for n, value in read_records(args.file, []))
    await runner.run(records, sink, ordered=True)
