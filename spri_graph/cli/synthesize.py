"""``spri synthesize``: SPRI over an instruction dataset, written as chat-format SFT data."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from spri_graph.cli.common import (
    CLIError,
    add_model_arguments,
    check_output,
    positive_int,
    resolve_cli_models,
)
from spri_graph.cli.progress import Progress

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    """Add ``spri synthesize`` to the ``spri`` subcommands."""
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
        type=positive_int,
        default=16,
        metavar="N",
        help="records in flight at once (default: 16; local models run one at a time)",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
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


def _run_synthesize(args: argparse.Namespace) -> int:
    from spri_graph.synthesis import (
        InputError,
        SynthesisInterrupted,
        errors_path_for,
        synthesize,
    )

    check_output(args.output, option="-o")
    check_output(args.errors or errors_path_for(args.output), option="--errors")
    model, critic = resolve_cli_models(args)
    progress = Progress(desc="synthesize")
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
            on_progress=lambda live: progress.update(
                live.completed + live.failed, failed=live.failed, total=live.todo
            ),
            threshold=args.threshold,
            max_iterations=args.max_iterations,
            critic_output=args.critic_output,
        )
    except SynthesisInterrupted as stop:
        progress.close()
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
        progress.close()
    print(report.summary())
    return 1 if report.failed else 0
