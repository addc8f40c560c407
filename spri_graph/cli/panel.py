"""``spri judge --panel``: several judges grade one response with one instance-specific rubric."""

from __future__ import annotations

import argparse
from typing import Any

from spri_graph.cli import grading
from spri_graph.cli.common import CLIError, loop_options, positive_int, resolve_cli_specs
from spri_graph.cli.stages import StageView, model_label

__all__ = ["add_panel_arguments", "refuse_panel_options", "run_panel"]

_FIELDS = ("instruction", "response")
_RESULT_KEYS = (
    "score",
    "scores",
    "abstained",
    "feedback",
    "judgments",
    "rubric",
    "rubric_critiques",
)


def _models(text: str) -> list[str]:
    """Argument type: model strings separated by commas (``a,b,c``)."""
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(
            f"expected model strings separated by commas, such as local,openai:gpt-4o-mini, "
            f"got {text!r}"
        )
    return names


def add_panel_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--panel`` and its options to the ``spri judge`` parser."""
    group = parser.add_argument_group(
        "judge panel",
        "--panel M,M,... has several judges grade the response: one rubric is written and "
        "refined for the instruction (by --model, default: the first judge; critiqued by "
        "--critic-model, default: the rubric's writer), then every judge grades with it. "
        "The panel's score combines the readable scores (--aggregate); a judge with no "
        "readable score abstains. FILE lines need 'instruction' and 'response' (and "
        "'reference_answer' with --use-reference); OUT.jsonl adds judge_score, "
        "judge_scores (one per judge, in --panel order), judge_abstained, judge_feedback, "
        "judge_judgments, judge_rubric, judge_rubric_critiques and judge_error. The model "
        "forms of --model apply to each judge; --base-url, --max-tokens, --scale, "
        "--judge-output, --cache and the loop options apply.",
    )
    group.add_argument(
        "--panel",
        type=_models,
        metavar="M,M,...",
        help="grade with a panel of judges, one model string each, instead of one judge",
    )
    group.add_argument(
        "--aggregate",
        choices=["mean", "median", "majority"],
        default=None,
        help="how the panel combines its judges' scores (default: mean; majority: the "
        "score more than half of the readable judges gave)",
    )
    group.add_argument(
        "--min-judges",
        type=positive_int,
        metavar="N",
        help="fewest judges with a readable score for a panel score (default: a majority "
        "of the panel)",
    )


def refuse_panel_options(args: argparse.Namespace) -> None:
    """Fail with one line when a panel option is given without ``--panel``."""
    for name in ("aggregate", "min_judges"):
        if getattr(args, name) is not None:
            raise CLIError(f"--{name.replace('_', '-')} needs --panel")


def _check_args(args: argparse.Namespace) -> None:
    if args.pairwise:
        raise CLIError("--panel grades one response; drop --pairwise")
    if args.judge != "spri" or args.rubric is not None:
        raise CLIError("--panel writes its own rubric: drop --judge and --rubric")
    if args.min_judges is not None and args.min_judges > len(args.panel):
        raise CLIError(
            f"--min-judges: at most the number of judges ({len(args.panel)}), got {args.min_judges}"
        )
    grading.check_mode(args, required=_FIELDS, one="grading", lines="grades")


def _build(args: argparse.Namespace, *, reference_free: bool) -> tuple[Any, list[Any]]:
    """The compiled panel and every model it calls (judges, then rubric writer and critic)."""
    from spri_graph import create_judge_panel

    cache, options = grading.judge_settings(args, reference_free=reference_free)
    own = [("--model", args.model), ("--critic-model", args.critic_model)]
    specs = [("--panel", name) for name in args.panel]
    models = resolve_cli_specs(args, [*specs, *((f, n) for f, n in own if n is not None)])
    judges, rest = models[: len(specs)], iter(models[len(specs) :])
    rubric_model = next(rest) if args.model is not None else None
    critic = next(rest) if args.critic_model is not None else None
    graph = create_judge_panel(
        judges,
        aggregate=args.aggregate or "mean",
        min_judges=args.min_judges,
        rubric_model=rubric_model,
        **loop_options(args, critic),
        **options,
    )
    return graph.compile(cache=cache), models


def _names(panel: list[str]) -> list[str]:
    """Each judge's name for people: its model string, numbered when given twice."""
    return [name if panel.count(name) == 1 else f"{name} #{i + 1}" for i, name in enumerate(panel)]


def _result(names: list[str]) -> Any:
    """A panel's output as plain JSON-ready values, each judge named by its model string."""

    def result(out: dict[str, Any]) -> dict[str, Any]:
        return {
            "score": out["score"],
            "scores": out["scores"],
            "abstained": out["abstained"],
            "feedback": out["feedback"],
            "judgments": [
                {
                    "judge": names[judgment["index"]],
                    "score": judgment["score"],
                    "feedback": judgment["feedback"],
                    "usage": judgment["usage"],
                }
                for judgment in out["judgments"]
            ],
            "rubric": out["rubric"].model_dump(),
            "rubric_critiques": [c.model_dump(exclude={"raw"}) for c in out["rubric_critiques"]],
        }

    return result


def _score(score: float | None) -> str:
    return "none (abstained)" if score is None else f"{score:g}"


def _show_judge(names: list[str]) -> Any:
    """Show each judge's grading as it finishes."""

    def show(view: StageView, node: str, update: dict[str, Any]) -> None:
        if node != "judge":
            return
        for judgment in update.get("judgments") or []:
            name = names[judgment["index"]]
            view.write(f"\n-- judge {judgment['index'] + 1} ({name}): {_score(judgment['score'])}")
            view.block(judgment["feedback"] or "(no feedback)", indent="   ")

    return show


def _show_panel(args: argparse.Namespace) -> Any:
    """Print each judge's score and the panel's (one grading)."""
    low, high = args.scale
    size = len(args.panel)
    needed = args.min_judges or size // 2 + 1
    how = args.aggregate or "mean"

    def show(result: dict[str, Any]) -> None:
        readable = size - result["abstained"]
        print(f"\nJudges ({readable} of {size} with a readable {low}-{high} score)")
        for judgment in result["judgments"]:
            print(f"  {judgment['judge']}: {_score(judgment['score'])}")
        score = result["score"]
        if score is not None:
            print(f"\nScore: {score:g} ({how} of {readable})")
        elif readable < needed:
            print(f"\nScore: none (the panel needs {needed} readable scores, got {readable})")
        else:
            print("\nScore: none (no score has a majority)")

    return show


def run_panel(args: argparse.Namespace) -> int:
    """Run ``spri judge --panel`` (one grading, or every line of FILE)."""
    _check_args(args)
    names = _names(args.panel)
    if args.file is not None:
        fields = [*_FIELDS, *(["reference_answer"] if args.use_reference else [])]
        count = grading.check_file(args, lambda record: grading.check_texts(record, fields))
        graph, models = _build(args, reference_free=not args.use_reference)
        mode = grading.FileMode(
            inputs=(*_FIELDS, "reference_answer"),
            result=_result(names),
            result_keys=_RESULT_KEYS,
            readable="score",
            noun="score",
        )
        return grading.grade_file(args, graph, models, count, mode)
    graph, models = _build(args, reference_free=args.reference is None)
    judges = ", ".join(model_label(model) for model in models[: len(names)])
    writer, critic = models[0], None
    if args.model is not None:
        writer = models[len(names)]
    if args.critic_model is not None:
        critic = models[-1]
    grading.judge_once(
        args,
        graph,
        {name: getattr(args, name) for name in _FIELDS},
        _result(names),
        _show_panel(args),
        header=[f"Judges: {judges}", f"Rubric: {model_label(writer, critic)}"],
        on_update=_show_judge(names),
    )
    return 0
