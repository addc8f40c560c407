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


def resolve_cli_models(args: argparse.Namespace) -> tuple[Any, Any]:
    """Resolve ``--model``/``--critic-model`` into chat models, as one-line errors."""
    from spri_graph.models import resolve_model

    try:
        model = resolve_model(args.model, field="--model", base_url=args.base_url)
        critic = (
            None
            if args.critic_model is None
            else resolve_model(args.critic_model, field="--critic-model", base_url=args.base_url)
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
    for add in _COMMANDS.values():
        add(sub)
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
