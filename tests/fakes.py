"""Scripted fake chat models for unit tests (no network, deterministic)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import PrivateAttr

from spri_graph.engine.prompts import SPRI_PROMPTS

Reply = str | dict | AIMessage | BaseException | Callable[[Sequence[BaseMessage]], Any]

PRINCIPLES_SECTION = "Principles for the answer:\n"
"""Where the response prompts' system message quotes the principles."""
EARLIER = {
    "principles": ("Earlier principles for this question:\n", "\n\nFeedback on them:"),
    "response": ("An earlier answer to this question:\n", "\n\nFeedback on that answer:"),
}
"""Where a refine prompt's system message quotes the candidate, by stage: (before, after)."""

SPRIStep = Literal[
    "principles_draft", "principles_refine", "response_draft", "response_refine", "critique"
]


def _literal_pieces(prompt: ChatPromptTemplate, index: int) -> list[str]:
    """The fixed text of one of a prompt's messages, split where its variables go."""
    message = prompt.format_messages(**{name: "\0" for name in prompt.input_variables})[index]
    return str(message.content).split("\0")


def _content(message: BaseMessage | dict[str, Any]) -> str:
    return str(message["content"] if isinstance(message, dict) else message.content)


def spri_step(messages: Sequence[BaseMessage | dict[str, Any]]) -> SPRIStep:
    """Which default SPRI prompt ``messages`` were made from, read from the prompts' own text.

    Messages may be LangChain messages or OpenAI-style dicts (as a server receives them).
    """
    last, first = _content(messages[-1]), _content(messages[0])
    if "[RESULT]" in last:
        return "critique"
    for key in ("principles_refine", "response_refine"):  # their system message's last words
        if _literal_pieces(SPRI_PROMPTS[key], 0)[-1] in first:
            return key  # type: ignore[return-value]
    if max(_literal_pieces(SPRI_PROMPTS["principles_draft"], -1), key=len) in last:
        return "principles_draft"
    return "response_draft"


def all_text(messages: Sequence[BaseMessage | dict[str, Any]]) -> str:
    """The content of every message, one after another."""
    return "\n".join(_content(m) for m in messages)


class ScriptedChatModel(BaseChatModel):
    """Returns scripted replies in order and records every call.

    A reply may be a string (the message text), a dict (tool-call arguments, used when tools
    are bound, e.g. by ``with_structured_output``), an ``AIMessage``, an exception (raised),
    or a callable of the prompt messages returning any of these.
    Each reply reports usage of one token per word.
    """

    replies: list[Any]
    name_: str = "scripted"
    cycle: bool = False
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _index: int = PrivateAttr(default=0)
    _calls: list[dict[str, Any]] = PrivateAttr(default_factory=list)
    _tools: list[dict] | None = PrivateAttr(default=None)
    _parent: Any = PrivateAttr(default=None)

    def __init__(self, replies: Iterable[Reply], **kwargs: Any) -> None:
        super().__init__(replies=list(replies), **kwargs)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        # What the script says, for cache keys: callables by name, so keys are stable.
        replies = [
            r if isinstance(r, str | dict) else getattr(r, "__qualname__", type(r).__name__)
            for r in self.replies
        ]
        return {"name": self.name_, "replies": replies}

    @property
    def calls(self) -> list[dict[str, Any]]:
        """Recorded calls: ``{"messages", "tags", "metadata", "run_name"}``."""
        return self._calls

    @property
    def remaining(self) -> int:
        return len(self.replies) - self._index

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:  # noqa: D102
        bound = self.model_copy()
        bound._lock = self._lock
        bound._calls = self._calls
        bound._tools = [convert_to_openai_tool(t) for t in tools]
        bound._parent = self  # share the script position
        return bound

    def _next(self, messages: Sequence[BaseMessage]) -> Any:
        owner = self._parent or self
        with owner._lock:
            if owner._index >= len(owner.replies):
                if not owner.cycle or not owner.replies:
                    raise AssertionError(
                        f"{owner.name_}: script exhausted after {owner._index} calls; "
                        f"last prompt: {messages[-1].content!r:.200}"
                    )
                owner._index = 0
            reply = owner.replies[owner._index]
            owner._index += 1
        if callable(reply) and not isinstance(reply, BaseException):
            reply = reply(messages)
        return reply

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        reply = self._next(messages)
        self._calls.append({"messages": list(messages), "tools": self._tools})
        if isinstance(reply, BaseException):
            raise reply
        if isinstance(reply, dict):
            assert self._tools, "a dict reply needs bound tools"
            name = self._tools[0]["function"]["name"]
            message = AIMessage(
                content="",
                tool_calls=[{"name": name, "args": reply, "id": f"call_{uuid.uuid4().hex[:8]}"}],
            )
        elif isinstance(reply, AIMessage):
            message = reply
        else:
            message = AIMessage(content=str(reply))
        words_in = sum(len(str(m.content).split()) for m in messages)
        words_out = len(str(message.content).split()) or 1
        message = message.model_copy(
            update={
                "usage_metadata": {
                    "input_tokens": words_in,
                    "output_tokens": words_out,
                    "total_tokens": words_in + words_out,
                }
            }
        )
        return ChatResult(generations=[ChatGeneration(message=message)])


def transient_error(status: int = 503) -> Exception:
    """An exception shaped like a provider's HTTP error (``status_code`` set)."""

    class ProviderError(Exception):
        status_code = status

    return ProviderError(f"HTTP {status}: service unavailable")
