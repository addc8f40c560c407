"""``spri judge``: grade one response, or every line of a JSONL file."""

from __future__ import annotations

import argparse
from typing import Any

from spri_graph.cli.common import CLIError, add_model_arguments, loop_options, positive_int, price
from spri_graph.cli.grading import (
    FileMode,
    check_file,
    check_mode,
    check_texts,
    grade_file,
    judge_once,
    judge_options,
)
from spri_graph.cli.pairwise import add_pairwise_arguments, refuse_pairwise_options, run_pairwise
from spri_graph.cli.panel import add_panel_arguments, refuse_panel_options, run_panel
from spri_graph.cli.stages import model_label

__all__ = ["add_parser"]

_JUDGE_FIELDS = ("instruction", "response")
_RESULT_KEYS = ("rubric", "score", "feedback", "rubric_critiques", "judgment_critiques")


def _scale(text: str) -> tuple[int, int]:
    """Argument type: an integer score scale written ``LOW-HIGH`` (``1-5``, ``0-1``)."""
    import re

    from spri_graph.readers.scores import check_scale

    found = re.fullmatch(r"\s*(-?\d+)\s*-\s*(-?\d+)\s*", text)
    if not found:
        raise argparse.ArgumentTypeError(f"expected LOW-HIGH integers such as 1-10, got {text!r}")
    try:
        return check_scale((int(found.group(1)), int(found.group(2))))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected LOW-HIGH with LOW < HIGH (at least two levels), got {text!r}"
        ) from None


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction from 0 to 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction from 0 to 1, got {value:g}")
    return value


def add_parser(sub: Any) -> None:
    """Add ``spri judge`` (and its ``--pairwise`` mode) to the ``spri`` subcommands."""
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
        "per score of --scale (with --rubric-style criteria: 'Criterion N [essential, "
        "binary]: ...' lines)",
    )
    parser.add_argument(
        "--rubric-style",
        choices=["levels", "criteria"],
        default="levels",
        help="levels: one description per score (default); criteria: a weighted checklist, "
        "a verdict per criterion and their weighted score on --scale",
    )
    parser.add_argument(
        "--criteria-grading",
        choices=["joint", "each"],
        default="joint",
        help="--rubric-style criteria: grade every criterion in one call (default) or one "
        "call per criterion",
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
        type=price,
        metavar="USD",
        help="FILE: price per million input tokens, to print the run's cost",
    )
    parser.add_argument(
        "--price-out",
        type=price,
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
    add_pairwise_arguments(parser)
    add_panel_arguments(parser)
    add_model_arguments(parser)
    parser.set_defaults(func=_run_judge)


def _check_judge_args(args: argparse.Namespace) -> None:
    check_mode(args, required=_JUDGE_FIELDS, one="grading", lines="grades")
    if args.rubric is not None and args.judge != "fixed":
        raise CLIError("--rubric needs --judge fixed")
    if args.judge == "fixed" and args.rubric is None and args.file is None:
        raise CLIError("--judge fixed needs --rubric")


def _check_judge_record(
    record: dict[str, Any],
    *,
    use_reference: bool,
    need_rubric: bool,
    scale: tuple[int, int],
    criteria: bool = False,
) -> str | None:
    from spri_graph.readers.criteria import coerce_checklist
    from spri_graph.readers.rubric import coerce_rubric

    fields = [*_JUDGE_FIELDS, *(["reference_answer"] if use_reference else [])]
    if problem := check_texts(record, fields):
        return problem
    if "rubric" in record or need_rubric:
        if record.get("rubric") is None:
            return "missing 'rubric' (or pass --rubric)" if need_rubric else None
        try:
            if criteria:
                coerce_checklist(record["rubric"], "'rubric'")
            else:
                coerce_rubric(record["rubric"], "'rubric'", scale=scale)
        except ValueError as exc:
            return str(exc)
    return None


def _build_judge(args: argparse.Namespace, *, reference_free: bool) -> Any:
    from spri_graph import create_fixed_rubric_judge, create_judge, create_vanilla_judge

    cache, model, critic, options = judge_options(args, reference_free=reference_free)
    try:
        if args.judge == "vanilla":
            graph = create_vanilla_judge(model, **options)
        elif args.judge == "fixed":
            graph = create_fixed_rubric_judge(model, rubric=args.rubric, **options)
        else:
            graph = create_judge(model, **loop_options(args, critic), **options)
    except ValueError as exc:  # --rubric not on --scale
        message = str(exc)
        raise CLIError(f"--{message}" if message.startswith("rubric") else message) from None
    return graph.compile(cache=cache), (model, critic)


def _judge_result(out: dict[str, Any]) -> dict[str, Any]:
    """A judge graph's output as plain JSON-ready values (per criterion, when graded so)."""
    result = {
        "rubric": out["rubric"].model_dump(),
        "score": out["score"],
        "feedback": out["feedback"],
        "rubric_critiques": [c.model_dump(exclude={"raw"}) for c in out["rubric_critiques"]],
        "judgment_critiques": [c.model_dump(exclude={"raw"}) for c in out["judgment_critiques"]],
    }
    if "criteria_results" in out:
        result["criteria_results"] = [dict(r) for r in out["criteria_results"]]
    return result


def _run_judge(args: argparse.Namespace) -> int:
    if args.panel is not None:
        return run_panel(args)
    refuse_panel_options(args)
    if args.pairwise:
        return run_pairwise(args)
    refuse_pairwise_options(args)
    _check_judge_args(args)
    if args.file is not None:
        return _run_judge_file(args)
    graph, models = _build_judge(args, reference_free=args.reference is None)
    inputs = {"instruction": args.instruction, "response": args.response}
    header = [f"Model: {model_label(*models)}"]
    judge_once(args, graph, inputs, _judge_result, _show_grading(args), header=header)
    return 0


def _show_grading(args: argparse.Namespace) -> Any:
    """Print a judge's grading, its critic's scores and the score (one judging)."""
    low, high = args.scale

    def show(result: dict[str, Any]) -> None:
        judgment_scores = [c["score"] for c in result["judgment_critiques"]]
        print("\nGrading" + (f" (critic scores: {judgment_scores})" if judgment_scores else ""))
        print("  " + (result["feedback"] or "(no feedback)").replace("\n", "\n  "))
        score = result["score"]
        print(
            f"\nScore: {score:g}"
            if score is not None
            else f"\nScore: none (no readable {low}-{high} score)"
        )

    return show


def _run_judge_file(args: argparse.Namespace) -> int:
    need_rubric = args.judge == "fixed" and args.rubric is None

    def check(record: dict[str, Any]) -> str | None:
        return _check_judge_record(
            record,
            use_reference=args.use_reference,
            need_rubric=need_rubric,
            scale=args.scale,
            criteria=args.rubric_style == "criteria",
        )

    count = check_file(args, check)
    graph, models = _build_judge(args, reference_free=not args.use_reference)
    return grade_file(args, graph, models, count, _SCORES)


_SCORES = FileMode(
    inputs=("instruction", "response", "rubric", "reference_answer"),
    result=_judge_result,
    result_keys=_RESULT_KEYS,
    readable="score",
    noun="score",
)
