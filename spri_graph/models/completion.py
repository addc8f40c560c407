"""One llama.cpp chat completion as a stream of text pieces, with its tokens and time.

:func:`completion_pieces` runs a streamed ``create_chat_completion`` and adds what it
cost to a :class:`CompletionRecord`; :func:`retried` asks again while a reply comes back empty;
:func:`held_until_text` and :func:`trimmed` clean a reply's pieces as they stream.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from langchain_core.messages import BaseMessage, convert_to_openai_messages
from langchain_core.messages.ai import UsageMetadata, add_usage

__all__ = [
    "CompletionRecord",
    "chat_messages",
    "completion_pieces",
    "held_until_text",
    "retried",
    "trimmed",
]


def _usage(prompt: int = 0, output: int = 0, cached: int = 0) -> UsageMetadata:
    usage: dict[str, Any] = {
        "input_tokens": prompt,
        "output_tokens": output,
        "total_tokens": prompt + output,
    }
    if cached:
        usage["input_token_details"] = {"cache_read": cached}
    return cast("UsageMetadata", usage)


@dataclass
class CompletionRecord:
    """What the llama.cpp completions of one model call did, besides the reply.

    ``usage`` is LangChain's usage metadata (prompt tokens kept from, or restored to, an
    earlier prompt count as ``input_token_details.cache_read``): the model call's
    ``usage_metadata``, summed over its attempts.
    """

    usage: UsageMetadata = field(default_factory=_usage)
    seconds: float = 0.0
    """Time spent inside llama.cpp."""
    attempts: int = 0
    finish_reason: str | None = None
    raw_text: str = ""
    """The text of the last completion, as sampled."""

    def add(self, *, prompt: int, output: int, cached: int) -> None:
        """Add one completion's tokens to ``usage``."""
        self.usage = add_usage(self.usage, _usage(prompt, output, cached))


def chat_messages(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """LangChain messages as llama.cpp chat messages (content always a string).

    An assistant message that called tools shows its calls as the JSON the model writes
    for them (``{"name": ..., "arguments": ...}``), since chat templates without tool
    support drop ``tool_calls``.

    Example:
        >>> from langchain_core.messages import AIMessage
        >>> call = {"name": "add", "args": {"a": 1}, "id": "c1"}
        >>> chat_messages([AIMessage("", tool_calls=[call])])[0]["content"]
        '{"name": "add", "arguments": {"a": 1}}'
    """
    converted = convert_to_openai_messages(list(messages), text_format="string")
    out = []
    for message in converted:
        content = message.get("content") or ""
        if not content and message.get("tool_calls"):
            content = "\n".join(
                json.dumps(
                    {
                        "name": call["function"]["name"],
                        "arguments": json.loads(call["function"]["arguments"] or "{}"),
                    }
                )
                for call in message["tool_calls"]
            )
        out.append({**message, "content": content})
    return out


def completion_pieces(
    llama: Any, request: dict[str, Any], record: CompletionRecord
) -> Generator[str, None, None]:
    """Run one streamed llama.cpp completion, yielding its text as it is sampled.

    A request with ``messages`` is a chat completion; one with a ``prompt`` (tokens) is a
    plain completion. Closing the iterator early stops the completion (its finish reason
    is then ``"length"``). Tokens come from the model's ``counts`` (see
    :class:`~spri_graph.models.llama.LlamaCounts`), time from around each step only.

    Args:
        llama: A model from :func:`~spri_graph.models.llama.load_llama`.
        request: ``create_chat_completion`` or ``create_completion`` arguments.
        record: Where tokens, time and the finish reason are added.

    Yields:
        The reply's text pieces.
    """
    complete = llama.create_completion if "prompt" in request else llama.create_chat_completion
    stream = complete(stream=True, **request)
    finish = "length"  # unless llama.cpp says otherwise: stopped by the caller
    record.raw_text = ""
    try:
        while True:
            started = time.perf_counter()
            part = next(stream, None)
            record.seconds += time.perf_counter() - started
            if part is None:
                break
            choice = part["choices"][0]
            finish = choice.get("finish_reason") or finish
            text = choice.get("text") or (choice.get("delta") or {}).get("content") or ""
            if text:
                record.raw_text += text
                yield text
    finally:
        started = time.perf_counter()
        stream.close()
        record.seconds += time.perf_counter() - started
        counts = llama.counts
        # Sampling the end-of-generation token is not part of the completion.
        output = counts.samples - (1 if counts.ended else 0)
        record.add(prompt=counts.prompt_tokens, output=output, cached=counts.reused_tokens)
        record.finish_reason = finish


def retried(
    llama: Any,
    request: dict[str, Any],
    record: CompletionRecord,
    *,
    retries: int,
    clean: Callable[[Iterator[str]], Iterator[str]],
) -> Generator[str, None, None]:
    """A reply's cleaned pieces, asked again while it comes back empty.

    Each retry samples hotter (temperature at least 0.2, plus 0.4 a retry) with the next
    seed (a random one stays random).

    Args:
        llama: A model from :func:`~spri_graph.models.llama.load_llama`.
        request: ``create_chat_completion`` arguments.
        record: Where tokens, time and attempts are added.
        retries: Most retries.
        clean: Cleans the pieces (:func:`held_until_text` or :func:`trimmed`); a reply is
            empty when it yields nothing.

    Yields:
        The first non-empty reply's pieces.
    """
    temperature, seed = request.get("temperature", 0.0), request.get("seed", 0)
    for attempt in range(retries + 1):
        if attempt:
            request = {
                **request,
                "temperature": max(temperature, 0.2) + 0.4 * attempt,
                "seed": -1 if seed == -1 else seed + attempt,
            }
        record.attempts += 1
        pieces = completion_pieces(llama, request, record)
        got_text = False
        try:
            for piece in clean(pieces):
                got_text = True
                yield piece
        finally:
            pieces.close()
        if got_text:
            return


def held_until_text(pieces: Iterator[str]) -> Iterator[str]:
    r"""The pieces of a reply, leading whitespace held back until some text arrives.

    Example:
        >>> list(held_until_text(iter([" ", "\n", "Hi", " there"])))
        [' \nHi', ' there']
        >>> list(held_until_text(iter([" ", "\n"])))
        []
    """
    pending = ""
    for piece in pieces:
        if not piece.strip():
            pending += piece
            continue
        yield pending + piece
        yield from pieces
        return


def trimmed(pieces: Iterator[str], limit: int) -> Iterator[str]:
    r"""The pieces of a text without surrounding whitespace, cut at ``limit`` characters.

    Example:
        >>> list(trimmed(iter([" ", " Good", " start", ". ", "\n"]), 100))
        ['Good', ' start', '.']
        >>> "".join(trimmed(iter(["Good", " start", ". More"]), 12))
        'Good start.'
    """
    pending, size = "", 0
    for piece in pieces:
        if not size:
            piece = piece.lstrip()
        body = piece.rstrip()
        if not body:
            pending += piece
            continue
        out = (pending + body)[: limit - size]
        pending = piece[len(body) :]
        size += len(out)
        yield out.rstrip() if size >= limit else out
        if size >= limit:
            return
