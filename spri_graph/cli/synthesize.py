"""``spri synthesize``: SPRI over an instruction dataset, written as chat-format SFT data."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from spri_graph.cli.common import (
    CLIError,
    add_model_arguments,
    check_output,
    loop_options,
    positive_int,
    price,
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
    _add_dataset_arguments(parser)
    _add_batch_arguments(parser)
    add_model_arguments(parser)
    parser.set_defaults(func=_run_synthesize)


def _formats(text: str) -> tuple[str, ...]:
    from spri_graph.synthesis.output import check_formats

    names = tuple(name.strip() for name in text.split(",") if name.strip())
    try:
        return check_formats(names)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("formats: ")) from None


def _add_dataset_arguments(parser: Any) -> None:
    from spri_graph.synthesis.methods import METHODS
    from spri_graph.synthesis.output import PAIRINGS

    group = parser.add_argument_group("datasets")
    group.add_argument(
        "--format",
        dest="formats",
        type=_formats,
        default=("sft",),
        metavar="F[,F]",
        help="what to write: sft (chat lines, always), dpo (also preference pairs in "
        "OUT.dpo.jsonl); e.g. --format sft,dpo (default: sft)",
    )
    group.add_argument(
        "--pairs",
        choices=PAIRINGS,
        default="first-final",
        help="which drafts a pair compares: the final response and the first draft, or "
        "each refinement and the one before it (default: first-final)",
    )
    group.add_argument(
        "--method",
        choices=METHODS,
        default="spri",
        help="how responses are made: SPRI, or a comparison set in the same format "
        "(seed-principles needs --seed-examples) (default: spri)",
    )
    group.add_argument(
        "--seed-examples",
        metavar="SEEDS.jsonl",
        help='few-shot examples for the principle writer, one {"query", "principles"} '
        "object per line (the fixed principles of --method seed-principles)",
    )
    group.add_argument(
        "--target",
        type=positive_int,
        default=None,
        metavar="N",
        help="stop once OUT.jsonl holds N records",
    )
    group.add_argument(
        "--target-passed",
        action="store_true",
        help="count toward --target only records whose final critique passed",
    )


def _seeds(path: str) -> list[dict[str, str]]:
    from spri_graph.synthesis import InputError, read_jsonl

    seeds: list[dict[str, str]] = []
    try:
        for number, line in read_jsonl(path):
            query, principles = line.get("query"), line.get("principles")
            if not isinstance(query, str) or not isinstance(principles, str):
                raise CLIError(
                    f"--seed-examples: line {number} of {path!r} needs string 'query' and "
                    "'principles' fields",
                    code=2,
                )
            seeds.append({"query": query, "principles": principles})
    except (OSError, InputError) as exc:
        raise CLIError(f"--seed-examples: {exc}".replace("\n", " "), code=2) from None
    return seeds


def _add_batch_arguments(parser: Any) -> None:
    group = parser.add_argument_group("batch API")
    group.add_argument(
        "--batch",
        action="store_true",
        help="send each round of model calls as one batch to the endpoint's batch API "
        "(OpenAI-compatible models; about half the price; resumable; state in "
        "OUT.batch.sqlite); --concurrency records share each batch",
    )
    group.add_argument(
        "--price-in",
        type=price,
        default=0.0,
        metavar="USD",
        help="interactive price per million input tokens, for the cost report (default: 0)",
    )
    group.add_argument(
        "--price-out",
        type=price,
        default=0.0,
        metavar="USD",
        help="interactive price per million output tokens (default: 0)",
    )
    group.add_argument(
        "--batch-discount",
        type=float,
        default=0.5,
        metavar="F",
        help="batch price as a fraction of the interactive one (default: 0.5)",
    )
    group.add_argument(
        "--batch-poll",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds between checks of an open batch (default: 30)",
    )


def _run_synthesize(args: argparse.Namespace) -> int:
    from spri_graph.synthesis import (
        InputError,
        SynthesisInterrupted,
        errors_path_for,
        synthesize,
    )
    from spri_graph.synthesis.batch import BatchSettings

    batch: bool | BatchSettings = False
    if args.batch:
        try:
            batch = BatchSettings(
                poll_interval=args.batch_poll,
                price_in=args.price_in,
                price_out=args.price_out,
                discount=args.batch_discount,
            )
        except ValueError as exc:
            name = str(exc).split(" ", 1)[0]
            option = {"discount": "--batch-discount", "poll_interval": "--batch-poll"}
            raise CLIError(f"{option.get(name, name)}: {exc}", code=2) from None
    if args.target_passed and args.target is None:
        raise CLIError("--target-passed: needs --target N", code=2)
    check_output(args.output, option="-o")
    check_output(args.errors or errors_path_for(args.output), option="--errors")
    seeds: dict[str, Any] = {}
    if args.seed_examples is not None:
        seeds["seed_examples"] = _seeds(args.seed_examples)
    model, critic = resolve_cli_models(args)
    progress = Progress(desc="synthesize")
    try:
        report = synthesize(
            args.input,
            model=model,
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
            **loop_options(args, critic),
            **seeds,
            batch=batch,
            formats=args.formats,
            pairs=args.pairs,
            method=args.method,
            target=args.target,
            target_passed=args.target_passed,
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
