"""One llama.cpp chat completion as a stream of text pieces, with its tokens and time.

:func:`completion_pieces` runs a streamed ``create_chat_completion`` and adds what it
cost to a :class:`Tally`; :func:`retried` asks again while a reply comes back empty;
:func:`held_until_text` and :func:`trimmed` clean a reply's pieces as they stream.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

from langchain_core.messages import BaseMessage, convert_to_openai_messages
from langchain_core.messages.ai import UsageMetadata

__all__ = [
    "Tally",
    "chat_messages",
    "completion_pieces",
    "held_until_text",
    "retried",
    "trimmed",
]


@dataclass
class Tally:
    """What the llama.cpp completions of one model call added up to."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    """Prompt tokens not evaluated again (kept from, or restored to, an earlier prompt)."""
    seconds: float = 0.0
    """Time spent inside llama.cpp."""
    attempts: int = 0
    finish_reason: str | None = None
    raw_text: str = ""
    """The text of the last completion, as sampled."""

    def usage(self) -> UsageMetadata:
        """The tally as LangChain usage metadata (cached tokens as ``cache_read``)."""
        usage: dict[str, Any] = {
            "input_tokens": self.prompt_tokens,
            "output_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }
        if self.cached_tokens:
            usage["input_token_details"] = {"cache_read": self.cached_tokens}
        return cast("UsageMetadata", usage)


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
    llama: Any, request: dict[str, Any], tally: Tally
) -> Generator[str, None, None]:
    """Run one streamed llama.cpp completion, yielding its text as it is sampled.

    A request with ``messages`` is a chat completion; one with a ``prompt`` (tokens) is a
    plain completion. Closing the iterator early stops the completion (its finish reason
    is then ``"length"``). Tokens come from the model's ``counts`` (see
    :class:`~spri_graph.models.llama.LlamaCounts`), time from around each step only.

    Args:
        llama: A model from :func:`~spri_graph.models.llama.load_llama`.
        request: ``create_chat_completion`` or ``create_completion`` arguments.
        tally: Where tokens, time and the finish reason are added.

    Yields:
        The reply's text pieces.
    """
    complete = llama.create_completion if "prompt" in request else llama.create_chat_completion
    stream = complete(stream=True, **request)
    finish = "length"  # unless llama.cpp says otherwise: stopped by the caller
    tally.raw_text = ""
    try:
        while True:
            started = time.perf_counter()
            part = next(stream, None)
            tally.seconds += time.perf_counter() - started
            if part is None:
                break
            choice = part["choices"][0]
            finish = choice.get("finish_reason") or finish
            text = choice.get("text") or (choice.get("delta") or {}).get("content") or ""
            if text:
                tally.raw_text += text
                yield text
    finally:
        started = time.perf_counter()
        stream.close()
        tally.seconds += time.perf_counter() - started
        counts = llama.counts
        tally.prompt_tokens += counts.prompt_tokens
        tally.cached_tokens += counts.reused_tokens
        # Sampling the end-of-generation token is not part of the completion.
        tally.completion_tokens += counts.samples - (1 if counts.ended else 0)
        tally.finish_reason = finish


def retried(
    llama: Any,
    request: dict[str, Any],
    tally: Tally,
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
        tally: Where tokens, time and attempts are added.
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
        tally.attempts += 1
        pieces = completion_pieces(llama, request, tally)
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
