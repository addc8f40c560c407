"""``spri judge``: grade one response, or every line of a JSONL file."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from spri_graph.cli.common import (
    CLIError,
    add_model_arguments,
    bad_lines,
    check_output,
    command,
    positive_int,
    read_records,
    resolve_cli_models,
)
from spri_graph.cli.progress import Progress
from spri_graph.synthesis import Record, RecordRunner, UsageCounts
from spri_graph.synthesis.output import encode_line

__all__: list[str] = []

_JUDGE_FIELDS = ("instruction", "response")
_JUDGE_PREFIX = "judge_"
_RESULT_KEYS = ("rubric", "score", "feedback", "rubric_critiques", "judgment_critiques")


def _scale(text: str) -> tuple[int, int]:
    """Argument type: an integer score scale written ``LOW-HIGH`` (``1-5``, ``0-1``)."""
    import re

    from spri_graph.critique import check_scale

    found = re.fullmatch(r"\s*(-?\d+)\s*-\s*(-?\d+)\s*", text)
    if not found:
        raise argparse.ArgumentTypeError(f"expected LOW-HIGH integers such as 1-10, got {text!r}")
    try:
        return check_scale((int(found.group(1)), int(found.group(2))))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected LOW-HIGH with LOW < HIGH (at least two levels), got {text!r}"
        ) from None


def _price(text: str) -> float:
    """Argument type: a price in USD per million tokens (>= 0)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected USD per million tokens, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a price >= 0, got {text!r}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction from 0 to 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction from 0 to 1, got {value:g}")
    return value


@command("judge")
def _add_judge(sub: Any) -> None:
    parser = sub.add_parser(
        "judge",
        help="grade a response with an instance-specific rubric (or a baseline judge)",
        description="Write a rubric for the instruction, refine it, grade the response with "
        "it and refine the grading; or grade every line of FILE.jsonl (fields 'instruction', "
        "'response', optional 'reference_answer' and 'rubric') into OUT.jsonl: one output "
        "line per input record, in input order (blank lines are skipped), adding "
        "judge_score, judge_feedback, judge_rubric, judge_rubric_critiques, "
        "judge_judgment_critiques and judge_error.",
    )
    parser.add_argument("file", nargs="?", metavar="FILE.jsonl", help="records to grade")
    parser.add_argument("--instruction", metavar="TEXT", help="the instruction (no FILE)")
    parser.add_argument("--response", metavar="TEXT", help="the response to grade (no FILE)")
    parser.add_argument(
        "--reference",
        metavar="TEXT",
        help="a reference answer that would get the top score; grades with it (no FILE)",
    )
    parser.add_argument("-o", "--output", metavar="OUT.jsonl", help="where FILE's grades go")
    parser.add_argument(
        "--use-reference",
        action="store_true",
        help="FILE: grade each line against its 'reference_answer' (then required)",
    )
    parser.add_argument(
        "--judge",
        choices=["spri", "vanilla", "fixed"],
        default="spri",
        help="spri: instance-specific rubric with refine loops (default); vanilla: one call "
        "with a generic rubric; fixed: one call with --rubric or each line's 'rubric'",
    )
    parser.add_argument(
        "--rubric",
        metavar="TEXT",
        help="rubric for --judge fixed: a 'Criteria: ...' line and one 'Score N: ...' line "
        "per score of --scale",
    )
    parser.add_argument(
        "--scale",
        type=_scale,
        default=(1, 5),
        metavar="LOW-HIGH",
        help="integer score scale of the grading and the rubric, e.g. 1-10 or 0-1 for "
        "pass/fail (default: 1-5; the critics keep their own 1-5 scale and --threshold)",
    )
    parser.add_argument(
        "--judge-output",
        choices=["text", "structured"],
        default=None,
        help="how the judge answers: '<score>N</score>' text, or structured output that "
        "always holds a score on the scale (default: structured for local models, text "
        "otherwise)",
    )
    parser.add_argument(
        "--cache",
        metavar="PATH",
        help="SQLite file caching model calls: grading the same records again with the same "
        "models and settings makes no calls (delete the file to clear it)",
    )
    parser.add_argument(
        "--price-in",
        type=_price,
        metavar="USD",
        help="FILE: price per million input tokens, to print the run's cost",
    )
    parser.add_argument(
        "--price-out",
        type=_price,
        metavar="USD",
        help="FILE: price per million output tokens, to print the run's cost",
    )
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        default=4,
        metavar="N",
        help="FILE: records graded at once (default: 4; local models run one at a time)",
    )
    parser.add_argument(
        "--min-scored",
        type=_fraction,
        default=None,
        metavar="FRACTION",
        help="FILE: exit 1 unless at least this fraction (0-1) of the graded records has a "
        "readable score (default: at least one record)",
    )
    parser.add_argument("--no-progress", action="store_true", help="FILE: no progress bar")
    parser.add_argument("--json", action="store_true", help="print the result as JSON (no FILE)")
    add_model_arguments(parser)
    parser.set_defaults(func=_run_judge)


def _check_judge_args(args: argparse.Namespace) -> None:
    single = [f"--{n}" for n in ("instruction", "response", "reference") if getattr(args, n)]
    if args.file is not None:
        if single:
            raise CLIError(f"give FILE or {'/'.join(single)}, not both")
        if not args.output:
            raise CLIError("FILE needs -o OUT.jsonl for the grades")
        if args.json:
            raise CLIError("--json is for one grading; FILE mode writes JSONL to -o")
    else:
        file_only = {
            "--output": args.output,
            "--use-reference": args.use_reference,
            "--no-progress": args.no_progress,
            "--min-scored": args.min_scored is not None,
            "--price-in": args.price_in is not None,
            "--price-out": args.price_out is not None,
        }
        for flag, given in file_only.items():
            if given:
                raise CLIError(f"{flag} needs FILE.jsonl")
        for name in ("instruction", "response"):
            value = getattr(args, name)
            if value is None:
                raise CLIError(f"--{name} is required (or give FILE.jsonl)")
            if not value.strip():
                raise CLIError(f"--{name} must not be empty")
        if args.reference is not None and not args.reference.strip():
            raise CLIError("--reference must not be empty")
    if args.rubric is not None and args.judge != "fixed":
        raise CLIError("--rubric needs --judge fixed")
    if args.judge == "fixed" and args.rubric is None and args.file is None:
        raise CLIError("--judge fixed needs --rubric")


def _check_judge_record(
    record: dict[str, Any], *, use_reference: bool, need_rubric: bool, scale: tuple[int, int]
) -> str | None:
    from spri_graph.rubric import coerce_rubric

    fields = [*_JUDGE_FIELDS, *(["reference_answer"] if use_reference else [])]
    for name in fields:
        value = record.get(name)
        if value is None:
            return f"missing {name!r}"
        if not isinstance(value, str) or not value.strip():
            return f"{name!r} must be a non-empty string"
    if "rubric" in record or need_rubric:
        if record.get("rubric") is None:
            return "missing 'rubric' (or pass --rubric)" if need_rubric else None
        try:
            coerce_rubric(record["rubric"], "'rubric'", scale=scale)
        except ValueError as exc:
            return str(exc)
    return None


def _build_judge(args: argparse.Namespace, *, reference_free: bool) -> Any:
    from langgraph.types import CachePolicy

    from spri_graph import create_fixed_rubric_judge, create_judge_graph, create_vanilla_judge
    from spri_graph.caching import judge_cache

    cache = None
    if args.cache is not None:
        check_output(args.cache, option="--cache")
        cache = judge_cache(args.cache)
    model, critic = resolve_cli_models(args)
    options: dict[str, Any] = {
        "reference_free": reference_free,
        "scale": args.scale,
        "judge_output": args.judge_output,
        "cache_policy": None if cache is None else CachePolicy(),
    }
    try:
        if args.judge == "vanilla":
            graph = create_vanilla_judge(model, **options)
        elif args.judge == "fixed":
            graph = create_fixed_rubric_judge(model, rubric=args.rubric, **options)
        else:
            loop = {"threshold": args.threshold, "max_iterations": args.max_iterations}
            loop["critic_output"] = args.critic_output
            graph = create_judge_graph(model, critic_model=critic, **loop, **options)
    except ValueError as exc:  # --rubric not on --scale
        message = str(exc)
        raise CLIError(f"--{message}" if message.startswith("rubric") else message) from None
    return graph.compile(cache=cache), (model, critic)


def _judge_result(out: dict[str, Any]) -> dict[str, Any]:
    """A judge graph's output as plain JSON-ready values."""
    return {
        "rubric": out["rubric"].model_dump(),
        "score": out["score"],
        "feedback": out["feedback"],
        "rubric_critiques": [c.model_dump(exclude={"raw"}) for c in out["rubric_critiques"]],
        "judgment_critiques": [c.model_dump(exclude={"raw"}) for c in out["judgment_critiques"]],
    }


def _run_judge(args: argparse.Namespace) -> int:
    _check_judge_args(args)
    if args.file is not None:
        return _run_judge_file(args)
    import json

    graph, _ = _build_judge(args, reference_free=args.reference is None)
    inputs = {"instruction": args.instruction, "response": args.response}
    if args.reference is not None:
        inputs["reference_answer"] = args.reference
    out = graph.invoke(inputs)
    result = _judge_result(out)
    if args.json:
        print(json.dumps({**result, "usage": out.get("usage", {})}, ensure_ascii=False, indent=2))
        return 0
    rubric_scores = [c["score"] for c in result["rubric_critiques"]]
    judgment_scores = [c["score"] for c in result["judgment_critiques"]]
    print("Rubric" + (f" (critic scores: {rubric_scores})" if rubric_scores else ""))
    print("\n".join("  " + line for line in out["rubric"].render().splitlines()))
    print("\nGrading" + (f" (critic scores: {judgment_scores})" if judgment_scores else ""))
    print("  " + (result["feedback"] or "(no feedback)").replace("\n", "\n  "))
    score = result["score"]
    low, high = args.scale
    print(
        f"\nScore: {score:g}"
        if score is not None
        else f"\nScore: none (no readable {low}-{high} score)"
    )
    return 0


def _run_judge_file(args: argparse.Namespace) -> int:
    import asyncio
    import os

    if os.path.exists(args.output) and os.path.samefile(args.file, args.output):
        raise CLIError("-o must not be the input FILE")
    need_rubric = args.judge == "fixed" and args.rubric is None
    problems: list[tuple[int, str]] = []
    count = 0
    for line_no, record in read_records(args.file, problems):  # check all, keep nothing
        count += 1
        problem = _check_judge_record(
            record, use_reference=args.use_reference, need_rubric=need_rubric, scale=args.scale
        )
        if problem:
            problems.append((line_no, problem))
    if problems:
        raise bad_lines(args.file, problems)
    if not count:
        raise CLIError(f"{args.file}: no records to grade")
    check_output(args.output, option="-o")
    graph, (model, critic) = _build_judge(args, reference_free=not args.use_reference)
    from spri_graph.models import is_local_model

    concurrency = 1 if is_local_model(model) or is_local_model(critic) else args.concurrency
    try:
        out_file = open(args.output, "wb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise CLIError(f"-o: cannot write to {args.output!r} ({exc.strerror or exc})") from None
    from spri_graph.caching import UsageCounter

    counter = UsageCounter()
    with out_file, Progress(desc="judge", total=count, enabled=not args.no_progress) as progress:
        sink = _GradeSink(out_file, progress)
        try:
            asyncio.run(_grade_file(graph, args, concurrency, sink, counter))
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
            f"'{_JUDGE_PREFIX}error' in {args.output}",
            code=1,
        )
    _check_scored(sink.scored, count, args.min_scored)
    print(_spent(counter, args), file=sys.stderr)
    print(
        f"graded {count} records into {args.output}; {sink.scored} with a readable score",
        file=sys.stderr,
    )
    return 0


def _spent(counter: Any, args: argparse.Namespace) -> str:
    """The run's model calls and tokens, and their cost when prices are given."""
    totals = counter.totals()
    line = (
        f"model calls: {totals['model_calls']}; tokens: {totals['input_tokens']:,} in, "
        f"{totals['output_tokens']:,} out"
    )
    if args.cache is not None:
        line += " (calls served from --cache are not counted)"
    if args.price_in is not None or args.price_out is not None:
        price_in, price_out = args.price_in or 0.0, args.price_out or 0.0
        cost = (totals["input_tokens"] * price_in + totals["output_tokens"] * price_out) / 1e6
        line += f"; cost: ${cost:.4f} (at ${price_in:g} in / ${price_out:g} out per million tokens)"
    return line


def _check_scored(scored: int, graded: int, min_scored: float | None) -> None:
    """Exit 1 when too few graded records have a readable score (default: none has)."""
    enough = scored >= 1 if min_scored is None else scored >= min_scored * graded
    if enough:
        return
    wanted = "" if min_scored is None else f" (--min-scored {min_scored:g})"
    raise CLIError(
        f"{scored} of {graded} graded records have a readable score{wanted}: the model did "
        "not follow the grading format; try --judge-output structured",
        code=1,
    )


class _GradeSink:
    """Writes each record's grades to the output as one line, in input order, and counts."""

    def __init__(self, out_file: Any, progress: Progress) -> None:
        self.out_file = out_file
        self.progress = progress
        self.done = 0
        self.scored = 0
        self.failed: list[int] = []

    def ok(self, record: Record, line: dict[str, Any], usage: UsageCounts) -> None:
        self.scored += line[_JUDGE_PREFIX + "score"] is not None
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
    return {**record.value, **{_JUDGE_PREFIX + key: value for key, value in result.items()}}


async def _grade_file(
    graph: Any, args: argparse.Namespace, concurrency: int, sink: _GradeSink, counter: Any
) -> None:
    """Grade every record of FILE (read again, lazily), ``concurrency`` at once."""
    keys = ["instruction", "response", "rubric"]
    if args.use_reference:
        keys.append("reference_answer")

    def to_input(record: Record) -> dict[str, Any]:
        return {key: record.value[key] for key in keys if record.value.get(key) is not None}

    def to_error(record: Record, exc: BaseException, attempts: int) -> dict[str, Any]:
        return _graded(
            record, {**dict.fromkeys(_RESULT_KEYS), "error": f"{type(exc).__name__}: {exc}"}
        )

    runner = RecordRunner(
        graph,
        to_input=to_input,
        to_line=lambda record, out: _graded(record, {**_judge_result(out), "error": None}),
        to_error=to_error,
        concurrency=concurrency,
        config={"callbacks": [counter]},
    )
    records = (Record(n, n, value) for n, value in read_records(args.file, []))
    await runner.run(records, sink, ordered=True)
