"""The ``spri`` command line.

One module per subcommand (``align``, ``judge``, ``agreement``, ``synthesize``), each
exposing ``add_parser(subparsers)``, which adds its parser and sets its ``func``
(``args -> exit code``); :data:`COMMANDS` lists them, in ``spri --help`` order. What they
share lives in :mod:`spri_graph.cli.common`, and the progress bar in
:mod:`spri_graph.cli.progress`.
``spri judge --pairwise`` lives in :mod:`spri_graph.cli.pairwise`, ``spri judge --panel`` in
:mod:`spri_graph.cli.panel`, and what the judging modes share (FILE mode, one judging) in
:mod:`spri_graph.cli.grading`; the live layout of ``spri align`` and of one ``spri judge``
(each refine-loop stage as it happens) in :mod:`spri_graph.cli.stages`.

Errors are one readable line on stderr and a non-zero exit code, never a traceback:
2 for bad arguments or input, 1 for failures while running (e.g. an unreachable server).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from spri_graph.cli import agreement, align, judge, synthesize
from spri_graph.cli.common import CLIError, CLIParser

__all__ = ["COMMANDS", "CLIError", "build_parser", "main"]

COMMANDS: dict[str, Callable[[Any], None]] = {
    "align": align.add_parser,
    "judge": judge.add_parser,
    "agreement": agreement.add_parser,
    "synthesize": synthesize.add_parser,
}
"""The subcommands: name -> the function adding its parser to the subparsers, in order."""


def build_parser() -> argparse.ArgumentParser:
    """Build the ``spri`` argument parser with every subcommand.

    Example:
        >>> build_parser().parse_args(["agreement", "scores.jsonl"]).human
        'human_score'
    """
    from spri_graph import __version__

    parser = CLIParser(
        prog="spri",
        description="SPRI for LangGraph: situated principles, aligned responses, "
        "instance-specific rubrics and SFT data synthesis.",
    )
    parser.add_argument("--version", action="version", version=f"spri-graph {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=CLIParser)
    sub.required = True
    for add_parser in COMMANDS.values():
        add_parser(sub)
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
