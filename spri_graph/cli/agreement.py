"""``spri agreement``: how well judge scores agree with human scores."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from spri_graph.cli.common import (
    CLIError,
    bad_lines,
    check_output,
    positive_int,
    read_records,
)

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    """Add ``spri agreement`` to the ``spri`` subcommands."""
    parser = sub.add_parser(
        "agreement",
        help="agreement between judge scores and human scores in a JSONL file",
        description="Pearson, Spearman, mean absolute error and Krippendorff's alpha (ordinal) "
        "between two score columns, overall and per group. Pairs with a missing or unreadable "
        "score are dropped and counted. Also the resolution of each column: the share of "
        "scores at the ceiling (--ceiling) and the number of distinct values. Needs the "
        "'metrics' extra.",
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
    parser.add_argument(
        "--ceiling",
        type=float,
        default=5.0,
        metavar="SCORE",
        help="the top of the scores' scale, for the share at the ceiling (default: 5)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON (full precision)")
    parser.add_argument(
        "--plot",
        metavar="OUT.png",
        help="also draw, per group and overall, --pred against --human with Pearson's r in "
        "each panel's title (the format follows the suffix: .png, .svg, .pdf; needs the "
        "'plot' extra)",
    )
    parser.add_argument(
        "--plot-kind",
        choices=["scatter", "heatmap"],
        default="scatter",
        help="--plot as a jittered scatter (default) or a heatmap of counts",
    )
    parser.add_argument(
        "--digits",
        type=positive_int,
        default=3,
        metavar="N",
        help="decimals in the table (default: 3)",
    )
    parser.set_defaults(func=_run_agreement)


def _run_agreement(args: argparse.Namespace) -> int:
    import json

    from spri_graph.evaluation.metrics import agreement_by, resolution

    if args.plot is not None:
        check_output(args.plot, option="--plot")
    problems: list[tuple[int, str]] = []
    rows = [record for _, record in read_records(args.file, problems)]
    if problems:
        raise bad_lines(args.file, problems)
    try:
        table = agreement_by(rows, human=args.human, pred=args.pred, by=args.by, parse=args.parse)
    except ImportError as exc:
        raise CLIError(str(exc), code=1) from None
    except ValueError as exc:
        raise CLIError(f"{args.file}: {exc}", code=2) from None
    if args.plot is not None:
        _plot(args, rows)
    if not math.isfinite(args.ceiling):
        raise CLIError(f"--ceiling must be a finite number, got {args.ceiling}")
    resolutions = {
        column: resolution(
            [row.get(column) for row in rows],
            ceiling=args.ceiling,
            parse=args.parse and column == args.pred,
        )
        for column in (args.pred, args.human)
    }
    if args.json:
        report = {"file": args.file, "human": args.human, "pred": args.pred, "records": len(rows)}
        spread = {column: r.as_dict() for column, r in resolutions.items()}
        print(json.dumps({**report, **table.as_dict(), "resolution": spread}, indent=2))
        return 0
    grouping = f" by {args.by}" if args.by else ""
    print(f"{args.file}: {args.human} vs {args.pred}{grouping} ({len(rows)} records)")
    print(table.format(args.digits))
    overall = table.overall
    print(
        f"dropped {overall.dropped} of {len(rows)} pairs without a readable score "
        f"(human: {overall.unreadable_human}, {args.pred}: {overall.unreadable_pred})"
    )
    for column, figures in resolutions.items():
        share = "n/a" if figures.at_ceiling is None else f"{figures.at_ceiling:.1%}"
        print(
            f"resolution of {column}: {share} at the ceiling ({figures.ceiling:g}), "
            f"{figures.distinct} distinct values in {figures.scores} scores"
        )
    return 0


def _plot(args: argparse.Namespace, rows: list[Any]) -> None:
    from spri_graph.evaluation.plots import plot_agreement

    options = {"human": args.human, "pred": args.pred, "by": args.by, "parse": args.parse}
    try:
        plot_agreement(rows, **options, kind=args.plot_kind, path=args.plot)
    except ImportError as exc:
        raise CLIError(str(exc), code=1) from None
    except ValueError as exc:  # e.g. a suffix matplotlib cannot write
        raise CLIError(f"--plot: {exc}", code=2) from None
    except OSError as exc:
        raise CLIError(f"--plot: cannot write {args.plot!r} ({exc.strerror or exc})") from None
    print(f"plot: {args.plot}", file=sys.stderr)
