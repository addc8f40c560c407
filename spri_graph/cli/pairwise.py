"""``spri judge --pairwise``: which of two responses is better, by one instance-specific rubric."""

from __future__ import annotations

import argparse
from typing import Any

from spri_graph.cli import grading
from spri_graph.cli.common import CLIError, loop_options
from spri_graph.cli.stages import model_label

__all__ = ["add_pairwise_arguments", "refuse_pairwise_options", "run_pairwise"]

_FIELDS = ("instruction", "response_a", "response_b")
_RESULT_KEYS = ("winner", "consistent", "verdicts", "rubric", "rubric_critiques")


def add_pairwise_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--pairwise`` and its options to the ``spri judge`` parser."""
    group = parser.add_argument_group(
        "pairwise grading",
        "--pairwise compares two responses: it writes and refines one rubric for the "
        "instruction, then asks which response the rubric prefers with A shown first and "
        "with B shown first; when the two orders disagree the verdict is a tie. FILE lines "
        "need 'instruction', 'response_a' and 'response_b' (and 'reference_answer' with "
        "--use-reference); OUT.jsonl adds judge_winner ('A', 'B', 'tie' or null), "
        "judge_consistent, judge_verdicts, judge_rubric, judge_rubric_critiques and "
        "judge_error. --scale, --judge-output, --cache, the model and loop options apply.",
    )
    group.add_argument(
        "--pairwise", action="store_true", help="compare two responses instead of grading one"
    )
    group.add_argument("--response-a", metavar="TEXT", help="the first response (no FILE)")
    group.add_argument("--response-b", metavar="TEXT", help="the second response (no FILE)")
    group.add_argument(
        "--on-disagreement",
        choices=["tie", "reask"],
        default=None,
        help="when the two orders disagree: a tie (default), or ask both orders once more",
    )


def refuse_pairwise_options(args: argparse.Namespace) -> None:
    """Fail with one line when a pairwise option is given without ``--pairwise``."""
    for name in ("response_a", "response_b", "on_disagreement"):
        if getattr(args, name) is not None:
            raise CLIError(f"--{name.replace('_', '-')} needs --pairwise")


def _check_args(args: argparse.Namespace) -> None:
    if args.judge != "spri" or args.rubric is not None:
        raise CLIError("--pairwise writes its own rubric: drop --judge and --rubric")
    if args.response is not None:
        raise CLIError("--pairwise compares --response-a and --response-b; drop --response")
    grading.check_mode(args, required=_FIELDS, one="comparison", lines="verdicts")


def _check_record(record: dict[str, Any], *, use_reference: bool) -> str | None:
    return grading.check_texts(record, [*_FIELDS, *(["reference_answer"] if use_reference else [])])


def _build(args: argparse.Namespace, *, reference_free: bool) -> tuple[Any, tuple[Any, Any]]:
    from spri_graph import create_pairwise_judge

    cache, model, critic, options = grading.judge_options(args, reference_free=reference_free)
    graph = create_pairwise_judge(
        model,
        on_disagreement=args.on_disagreement or "tie",
        **loop_options(args, critic),
        **options,
    )
    return graph.compile(cache=cache), (model, critic)


def _result(out: dict[str, Any]) -> dict[str, Any]:
    """A pairwise judge's output as plain JSON-ready values."""
    return {
        "winner": out["winner"],
        "consistent": out["consistent"],
        "verdicts": [dict(verdict) for verdict in out["verdicts"]],
        "rubric": out["rubric"].model_dump(),
        "rubric_critiques": [c.model_dump(exclude={"raw"}) for c in out["rubric_critiques"]],
    }


_VERDICTS = grading.FileMode(
    inputs=(*_FIELDS, "reference_answer"),
    result=_result,
    result_keys=_RESULT_KEYS,
    readable="winner",
    noun="verdict",
)


def run_pairwise(args: argparse.Namespace) -> int:
    """Run ``spri judge --pairwise`` (one comparison, or every line of FILE)."""
    _check_args(args)
    if args.file is not None:
        use_reference = args.use_reference
        count = grading.check_file(
            args, lambda record: _check_record(record, use_reference=use_reference)
        )
        graph, models = _build(args, reference_free=not use_reference)
        return grading.grade_file(args, graph, models, count, _VERDICTS)
    graph, models = _build(args, reference_free=args.reference is None)
    grading.judge_once(
        args,
        graph,
        {name: getattr(args, name) for name in _FIELDS},
        _result,
        _show_verdicts,
        header=[f"Model: {model_label(*models)}"],
    )
    return 0


def _show_verdicts(result: dict[str, Any]) -> None:
    """Print a comparison's verdict in each order and the winner."""
    for verdict in result["verdicts"]:
        shown = "A" if verdict["order"] == "AB" else "B"
        again = " (asked again)" if verdict["round"] > 1 else ""
        print(f"\n{shown} shown first{again}: {verdict['winner'] or 'no verdict'}")
        print("  " + (verdict["feedback"] or "(no feedback)").replace("\n", "\n  "))
    winner = result["winner"]
    if winner == "tie":
        why = "the two orders disagreed" if result["verdicts"] else "the responses are identical"
        print(f"\nWinner: tie ({why})")
    else:
        print(f"\nWinner: {winner}" if winner else "\nWinner: none (no readable verdict)")
