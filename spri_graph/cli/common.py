"""What every ``spri`` subcommand shares: errors, argument types, models, files."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple, NoReturn

__all__ = [
    "LOOP_FLAGS",
    "CLIError",
    "CLIParser",
    "LoopFlag",
    "add_loop_arguments",
    "add_model_arguments",
    "bad_lines",
    "check_output",
    "loop_options",
    "non_negative_int",
    "one_line",
    "positive_int",
    "price",
    "read_records",
    "resolve_cli_models",
    "resolve_cli_specs",
    "score",
]


class CLIError(Exception):
    """An error to show as one line, with an exit code (2: bad input, 1: run failure)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


class CLIParser(argparse.ArgumentParser):
    """An argument parser whose errors are :class:`CLIError` lines pointing at ``--help``."""

    def error(self, message: str) -> NoReturn:
        """Raise the parse error as a one-line :class:`CLIError` (exit code 2)."""
        raise CLIError(f"{message} (see '{self.prog} --help')", code=2)


def _whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {value}")
    return value


def positive_int(text: str) -> int:
    """Argument type: a whole number >= 1.

    Example:
        >>> positive_int("3")
        3
    """
    return _whole_number(text, 1)


def non_negative_int(text: str) -> int:
    """Argument type: a whole number >= 0.

    Example:
        >>> non_negative_int("0")
        0
    """
    return _whole_number(text, 0)


def price(text: str) -> float:
    """Argument type: a price in USD per million tokens (>= 0).

    Example:
        >>> price("0.15")
        0.15
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected USD per million tokens, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a price >= 0, got {text!r}")
    return value


def score(text: str) -> int:
    """Argument type: a whole number from 1 to 5."""
    value = positive_int(text)
    if value > 5:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 to 5, got {value}")
    return value


def one_line(text: object, limit: int = 300) -> str:
    r"""``text`` on one line, whitespace collapsed, cut to ``limit`` characters.

    Example:
        >>> one_line("a\n  b", limit=10)
        'a b'
    """
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- models


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the model flags (``--model``, ``--max-tokens``, ...) and the loop settings."""
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
        "--max-tokens",
        type=positive_int,
        metavar="N",
        help="most tokens per model reply, for every model of the run (default: the "
        "model's own; 256 for local models, whose structured replies get twice as many)",
    )
    group.add_argument(
        "--base-url",
        metavar="URL",
        help="OpenAI-compatible server for --model/--critic-model names "
        "(e.g. http://127.0.0.1:8000/v1; default: $OPENAI_BASE_URL when the name starts "
        "with 'openai-compatible:')",
    )
    group.add_argument(
        "--chat-format",
        metavar="NAME",
        help="llama.cpp chat format for local GGUF models (e.g. gemma, chatml), for files "
        "without a chat template (default: the file's own template)",
    )
    add_loop_arguments(parser)


class LoopFlag(NamedTuple):
    """How a shared option is given on the command line (its flag is ``--name-with-dashes``).

    Attributes:
        help: What the option does; the library's default is added to it.
        type: Argument type.
        choices: The values allowed, if a fixed set.
        metavar: Placeholder in ``--help``.
        default: The default as shown in ``--help``; ``None`` shows the one of
            :class:`~spri_graph.engine.options.LoopSettings`.
    """

    help: str
    type: Callable[[str], Any] = str
    choices: tuple[str, ...] | None = None
    metavar: str | None = "N"
    default: str | None = None


LOOP_FLAGS: Mapping[str, LoopFlag] = {
    "threshold": LoopFlag("score 1-5 that accepts a candidate", type=score),
    "max_iterations": LoopFlag("most critiques per stage", type=positive_int),
    "critic_output": LoopFlag(
        "how the critic scores: parse '[RESULT] N' text, or structured output",
        choices=("text", "structured"),
        metavar=None,
        default="structured for local models, text otherwise",
    ),
    "parse_retries": LoopFlag(
        "re-asks, with a format reminder, when a critique, grading or verdict has no "
        "readable score",
        type=non_negative_int,
    ),
}
"""The shared loop options (:class:`~spri_graph.engine.options.LoopOptions`) given as flags.

``critic_model`` is ``--critic-model`` (a model, resolved with ``--model``); ``prompts``,
``retry_policy`` and ``cache_policy`` are Python objects with no flag of their own."""


def add_loop_arguments(parser: argparse.ArgumentParser) -> None:
    """Add a flag per :data:`LOOP_FLAGS` entry, in the declaration's order.

    Every flag defaults to ``None``, so what is not given keeps the library's default.
    """
    from spri_graph.engine.options import LoopSettings, option_names

    group = parser.add_argument_group("refine loop")
    defaults = LoopSettings()
    for name in option_names(LoopSettings):
        flag = LOOP_FLAGS.get(name)
        if flag is None:
            continue
        shown = flag.default if flag.default is not None else getattr(defaults, name)
        group.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            type=flag.type,
            choices=flag.choices,
            default=None,
            metavar=flag.metavar,
            help=f"{flag.help} (default: {shown})",
        )


def loop_options(args: argparse.Namespace, critic_model: Any = None) -> dict[str, Any]:
    """The shared options given on the command line, as keyword arguments.

    Only the flags given are included, so the rest keep the library's defaults;
    ``critic_model`` (the resolved ``--critic-model``) is included unless ``None``.
    """
    options = {
        name: value for name in LOOP_FLAGS if (value := getattr(args, name, None)) is not None
    }
    if critic_model is not None:
        options["critic_model"] = critic_model
    return options


def _is_local_spec(name: str | None) -> bool:
    """Whether a ``--model`` value (``None``: the default) names a local GGUF model."""
    if name is None:
        name = os.environ.get("SPRI_MODEL", "").strip() or "local"
    name = name.strip()
    return name == "local" or name.startswith("gguf:")


def _model_error(exc: ValueError, field: str, name: str | None) -> CLIError:
    """A model resolution error as one line (providers' messages can run to many lines)."""
    text = str(exc).strip()
    first = text.splitlines()[0].strip() if text else f"{field}: cannot use model {name!r}"
    if "Unable to infer model provider" in first and name:
        provider = name.split(":", 1)[0] if ":" in name else name
        first = (
            f"{field}: cannot use model {name!r}: unknown provider {provider!r}; expected "
            "'provider:name' (e.g. openai:gpt-4o-mini), 'local', 'gguf:/path/model.gguf', "
            "or a model name with --base-url"
        )
    return CLIError(first, code=2)


def resolve_cli_models(args: argparse.Namespace, **kwargs: Any) -> tuple[Any, Any]:
    """Resolve ``--model``/``--critic-model`` into chat models, as one-line errors.

    ``--max-tokens`` and ``kwargs`` go to both models' constructors; ``--chat-format``
    goes to the local GGUF ones.
    """
    specs = [("--model", args.model)]
    if args.critic_model is not None:
        specs.append(("--critic-model", args.critic_model))
    resolved = resolve_cli_specs(args, specs, **kwargs)
    return resolved[0], (resolved[1] if len(resolved) > 1 else None)


def resolve_cli_specs(
    args: argparse.Namespace, specs: list[tuple[str, str | None]], **kwargs: Any
) -> list[Any]:
    """Resolve ``(flag, model string)`` pairs as :func:`resolve_cli_models` does, in order."""
    from spri_graph.models import resolve_model

    chat_format = getattr(args, "chat_format", None)
    if getattr(args, "max_tokens", None) is not None:
        kwargs = {"max_tokens": args.max_tokens, **kwargs}
    if chat_format is not None and not any(_is_local_spec(name) for _, name in specs):
        raise CLIError("--chat-format: only applies to local GGUF models", code=2)
    resolved = []
    for field, name in specs:
        options = dict(kwargs)
        if chat_format is not None and _is_local_spec(name):
            options["chat_format"] = chat_format
        try:
            resolved.append(resolve_model(name, field=field, base_url=args.base_url, **options))
        except ValueError as exc:
            raise _model_error(exc, field, name) from None
    return resolved


# --------------------------------------------------------------------------- files


def check_output(path: str | os.PathLike[str], *, option: str) -> None:
    """Fail with one line (exit 2) unless ``path`` can be created or appended to.

    Run before the first model call (and before a local model loads), so no work is lost
    on an unwritable output.
    """
    from spri_graph.synthesis import check_writable

    try:
        check_writable(path, field=option)
    except ValueError as exc:
        raise CLIError(str(exc), code=2) from None


def read_records(
    path: str, problems: list[tuple[int, str]]
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Read a JSONL file lazily: ``(line number, object)``; unreadable lines go to ``problems``.

    The package's one JSONL reader (:func:`spri_graph.synthesis.read_jsonl`), with a file
    that cannot be read as a one-line :class:`CLIError`.
    """
    from spri_graph.synthesis import read_jsonl

    try:
        yield from read_jsonl(path, problems)
    except OSError as exc:
        raise CLIError(f"{path}: cannot read: {exc.strerror or exc}", code=2) from None


def bad_lines(path: str, problems: list[tuple[int, str]]) -> CLIError:
    """One line naming the first problems found in ``path`` (exit code 2)."""
    problems = sorted(problems)
    shown = "; ".join(f"line {line_no}: {text}" for line_no, text in problems[:5])
    more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
    count = f"{len(problems)} bad line{'s' if len(problems) != 1 else ''}"
    return CLIError(f"{path}: {count}: {shown}{more}", code=2)
