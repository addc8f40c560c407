"""``LocalChatModel``: a chat model that runs a GGUF file in-process through llama.cpp.

Every call streams (``_generate`` adds up ``_stream``'s chunks, as langchain-ollama does),
so retries of empty replies, usage and response metadata are the same whether a reply is
invoked, streamed, or invoked under a streaming callback (LangGraph's
``stream_mode="messages"``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.language_models.chat_models import generate_from_stream
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableBinding
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from spri_graph.models.completion import (
    CompletionRecord,
    chat_messages,
    completion_pieces,
    held_until_text,
    retried,
    trimmed,
)
from spri_graph.models.grammar import (
    TextThenChoice,
    choice_grammar,
    choice_label,
    forced_tool,
    opens_tool_call,
    parsed_tool_call,
    text_instruction,
    text_then_choice,
    tool_call_grammar,
    tool_choice_instruction,
    tool_grammar,
    tool_instruction,
    with_instruction,
)
from spri_graph.models.llama import check_chat_format, default_gguf_path, gguf_file, load_llama

__all__ = ["LocalChatModel", "is_local_model", "load_local_model"]


def load_local_model(
    path: str | None = None, *, field: str = "model", **kwargs: Any
) -> BaseChatModel:
    """Return a chat model for a GGUF file (default: the embedded SmolLM2-135M-Instruct).

    Nothing is loaded here: llama.cpp loads the file on the first call, once per process.

    Args:
        path: Path of a ``.gguf`` file; ``None`` for the embedded model.
        field: Argument name used in error messages.
        **kwargs: :class:`LocalChatModel` settings (e.g. ``temperature``, ``max_tokens``,
            ``chat_format="chatml"`` for a file without a chat template).

    Returns:
        A :class:`LocalChatModel`.

    Raises:
        ValueError: If llama-cpp-python or the embedded model is not installed, the file is
            missing or not a GGUF file, or a setting is invalid; the message names ``field``.

    Example:
        >>> load_local_model("/no/such/model.gguf", field="--model")
        Traceback (most recent call last):
        ...
        ValueError: --model: GGUF file not found: '/no/such/model.gguf'
    """
    gguf = gguf_file(path, field=field)
    try:
        return LocalChatModel(model_path=str(gguf), **kwargs)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        raise ValueError(f"{field}: invalid local model setting ({problems})") from None


def is_local_model(model: object) -> bool:
    """Whether ``model`` runs in-process through llama.cpp (it then gets a structured critic).

    Bound models (``model.bind(...)``, ``model.with_config(...)``) count as their model.

    Example:
        >>> is_local_model("local"), is_local_model(None)
        (False, False)
    """
    while isinstance(model, RunnableBinding):
        model = model.bound
    return isinstance(model, LocalChatModel)


@dataclass
class _Plan:
    """One call: the llama.cpp request; the forced tool and its shape, or the tools offered."""

    request: dict[str, Any]
    tool: dict[str, Any] | None = None
    shape: TextThenChoice | None = None
    offered: list[dict[str, Any]] | None = None
    """Tools the model may call or not (bound without a forced choice)."""


class LocalChatModel(BaseChatModel):
    """A chat model that runs a GGUF file in-process through llama.cpp (llama-cpp-python).

    The default file is the embedded SmolLM2-135M-Instruct (``spri-graph[local]``); get one
    with ``load_local_model(**settings)``, ``resolve_model("local")`` or
    ``resolve_model("gguf:/path/model.gguf")``. The weights load on the first call and once
    per process, shared by every instance with the same file and load settings; calls to
    one loaded model run one at a time.

    Settings (every one is a constructor keyword; the sampling ones can also be passed to a
    single call, e.g. ``model.invoke(prompt, max_tokens=16)``):

    * ``max_tokens`` (256): most tokens in a text reply (llama.cpp may sample up to three
      more to finish a character cut between tokens); ``max_tool_tokens`` (unless set,
      twice ``max_tokens``: 512) for a tool call's JSON, ``max_string_chars`` (unless set,
      ``max_tokens`` x 25/16: 400) for each string in it.
    * ``temperature`` (0.6), ``top_p`` (0.95), ``top_k`` (40), ``repeat_penalty`` (1.1):
      sampling; ``stop``: extra stop sequences.
    * ``seed`` (0): the same messages with the same settings get the same reply, call
      after call and in any process; ``-1`` samples a new reply each time.
    * ``n_threads`` (``None``: ``$SPRI_LLAMA_THREADS``, else the physical cores; one in a
      forked worker), ``n_ctx`` (4096), ``n_batch`` (512), ``chat_format`` (``None``: the
      file's template), ``q8_0_weights`` (True), ``prompt_cache_mb`` (128): how the weights
      load and run; they are fixed when the model loads.
    * ``two_step_structured`` (True), ``empty_retries`` (2), ``streaming`` (False): see
      below.

    Replies report ``usage_metadata`` (prompt tokens restored from earlier prompts as
    ``input_token_details["cache_read"]``) and, in ``response_metadata``,
    ``llama_seconds``: the time spent inside llama.cpp. ``stream()`` yields tokens as they
    are sampled; ``invoke()`` adds them up, so both behave the same.

    Structured output (``with_structured_output``, or ``bind_tools`` with a forced tool) is
    grammar-constrained: llama.cpp can only sample tokens that keep the reply valid JSON
    for the schema, so a critique always carries an integer score. A schema of one text
    field then one choice (``ScoredCritique``: feedback, then a score from 1 to 5) is
    written in two steps, for speed: the text without a grammar, then, after a label
    (``Score:``), the choice under a grammar that allows only its values. Strings in tool
    arguments hold at most ``max_string_chars`` characters. Tools bound without a forced
    choice (``bind_tools(tools)``, as agents do) are listed in the instructions; a reply
    that opens a JSON object becomes a call of one of them (written under their grammar),
    any other reply stays text. SmolLM2-135M itself seldom chooses a tool.

    A reply with no text (tiny models sometimes stop at once) is asked again, up to
    ``empty_retries`` times, at a higher temperature and another seed.

    Example:
        >>> from spri_graph.readers.scores import ScoredCritique
        >>> model = load_local_model(max_tokens=8, temperature=0.6, seed=0)
        >>> reply = model.invoke("Say hi.")
        >>> 0 < reply.usage_metadata["output_tokens"] <= 8
        True
        >>> model.invoke("Say hi.").text == reply.text  # the same seed, the same reply
        True
        >>> model.invoke("Say hi.", max_tokens=2).response_metadata["finish_reason"]
        'length'
        >>> grade = model.with_structured_output(ScoredCritique).invoke("Grade: 'Drink water.'")
        >>> grade.score in (1, 2, 3, 4, 5)
        True
    """

    model_path: str
    """Path of the GGUF file."""
    chat_format: str | None = None
    """llama-cpp-python chat format (``"chatml"``, ``"gemma"``, ...); ``None`` for the file's
    own chat template."""
    n_ctx: int = Field(default=4096, ge=256)
    """Context window in tokens (prompt and reply)."""
    n_threads: int | None = Field(default=None, ge=1)
    """CPU threads, fixed when the weights load; ``None`` for
    :func:`~spri_graph.models.default_threads`: the count set for the process
    (:func:`~spri_graph.models.set_default_threads`, ``$SPRI_LLAMA_THREADS``; one in a
    forked synthesis worker), else the physical cores."""
    n_batch: int = Field(default=512, ge=1)
    """Prompt tokens evaluated per batch."""
    prompt_cache_mb: int = Field(default=128, ge=0)
    """Memory for the llama.cpp states of earlier prompts, so a prompt that starts like an
    earlier one is evaluated from where they differ; ``0`` keeps none."""
    temperature: float = Field(default=0.6, ge=0.0)
    """Sampling temperature; lower makes SmolLM2-135M echo the prompt instead of answering."""
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    top_k: int = Field(default=40, ge=0)
    repeat_penalty: float = Field(default=1.1, ge=0.0)
    max_tokens: int = Field(default=256, ge=1)
    """Most tokens in a text reply, so a small model cannot ramble on."""
    max_tool_tokens: int = Field(default=512, ge=16)
    """Most tokens in a tool call's JSON arguments; unless set, twice ``max_tokens``."""
    max_string_chars: int = Field(default=400, ge=1)
    """Most characters in each string of a tool call's arguments; unless set,
    ``max_tokens`` x 25/16."""
    q8_0_weights: bool = True
    """Run the embedded model from a Q8_0 copy of its Q4_1 weights, made once in the cache
    folder: llama.cpp evaluates prompts about 1.8x faster with it on a CPU (see
    :mod:`~spri_graph.models.weights`). Other GGUF files load as they are."""
    two_step_structured: bool = True
    """Write a schema of one text field then one choice (a critique) in two steps: the text
    without a grammar, then the choice under a grammar of its values; ``False`` writes the
    whole JSON under a grammar (slower: every token is checked against it)."""
    seed: int = 0
    """Sampling seed, for reproducible replies (the same messages and settings give the same
    reply, in any process); ``-1`` for a random one."""
    stop: list[str] | None = None
    """Extra stop sequences."""
    empty_retries: int = Field(default=2, ge=0)
    """Re-asks when a text reply is empty."""
    streaming: bool = False
    """Stream from ``invoke`` too (replies are the same either way)."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("model_path")
    @classmethod
    def _existing_file(cls, value: str) -> str:
        if not Path(value).is_file():
            raise ValueError(f"GGUF file not found: {value!r}")
        return value

    @field_validator("chat_format")
    @classmethod
    def _known_chat_format(cls, value: str | None) -> str | None:
        return None if value is None else check_chat_format(value)

    @model_validator(mode="after")
    def _structured_bounds_follow_max_tokens(self) -> LocalChatModel:
        # A structured reply is capped with the text ones: its JSON gets twice max_tokens,
        # each of its strings max_tokens x 25/16 characters (512 and 400 for the default).
        if "max_tool_tokens" not in self.model_fields_set:
            object.__setattr__(self, "max_tool_tokens", max(16, 2 * self.max_tokens))
        if "max_string_chars" not in self.model_fields_set:
            object.__setattr__(self, "max_string_chars", max(1, self.max_tokens * 25 // 16))
        return self

    @property
    def _llm_type(self) -> str:
        return "llama-cpp-local"

    @property
    def model_name(self) -> str:
        """The GGUF file's name."""
        return Path(self.model_path).name

    @property
    def weights_label(self) -> str:
        """The GGUF file's name, and the weights llama.cpp runs (the embedded model's Q8_0 copy).

        Example:
            >>> LocalChatModel.model_construct(
            ...     model_path="/models/other.gguf", q8_0_weights=True
            ... ).weights_label
            'other.gguf'
        """
        embedded = default_gguf_path()
        if self.q8_0_weights and embedded is not None and Path(self.model_path) == embedded:
            return f"{self.model_name}, run from its Q8_0 copy"
        return self.model_name

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_path": self.model_path,
            "chat_format": self.chat_format,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "llama-cpp"
        params["ls_model_name"] = self.model_name
        return params

    def client(self) -> tuple[Any, Any]:
        """The loaded ``llama_cpp.Llama`` (loading it on first use) and the lock guarding it."""
        return load_llama(
            self.model_path,
            n_ctx=self.n_ctx,
            n_threads=self.n_threads,
            n_batch=self.n_batch,
            chat_format=self.chat_format,
            prompt_cache_mb=self.prompt_cache_mb,
            q8_0_weights=self.q8_0_weights,
        )

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | bool | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools; a forced tool's arguments are grammar-constrained JSON.

        Args:
            tools: Tools as Pydantic models, functions, ``BaseTool`` or OpenAI tool dicts.
            tool_choice: A tool name (or ``{"type": "function", "function": {"name": ...}}``)
                to force it; ``"any"``, ``"required"`` or ``True`` force the only tool;
                ``None`` or ``"auto"`` let the model call a tool or answer in text;
                ``"none"`` (or ``False``) makes it answer in text.
            **kwargs: Further call arguments to bind.

        Returns:
            The model with the tools bound.

        Raises:
            ValueError: If ``tool_choice`` names no bound tool, or asks for "any" of several.
        """
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        forced = forced_tool(formatted, tool_choice)
        choice: str | dict[str, Any] | None = None
        if forced is not None:
            choice = {"type": "function", "function": {"name": forced["function"]["name"]}}
        elif tool_choice in ("none", False):
            choice = "none"
        return super().bind(tools=formatted, tool_choice=choice, **kwargs)

    def _plan(
        self, messages: Sequence[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> _Plan:
        call = dict(kwargs)
        call.pop("ls_structured_output_format", None)
        call.pop("stream", None)
        tools, choice = call.pop("tools", None), call.pop("tool_choice", None)
        tool = forced_tool(tools, choice)
        chat = chat_messages(messages)
        request: dict[str, Any] = {
            "messages": chat,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "repeat_penalty": self.repeat_penalty,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
            "stop": [*(self.stop or []), *(stop or [])],
        }
        plan = _Plan(request, tool)
        if tool is None and tools and choice not in ("none", False):
            plan.offered = tools
            request["messages"] = with_instruction(chat, tool_choice_instruction(tools))
        if tool is not None:
            parameters = tool["function"].get("parameters") or {"type": "object"}
            plan.shape = text_then_choice(parameters) if self.two_step_structured else None
            if plan.shape is not None:
                words = max(5, round(self.max_string_chars / 7, -1))
                instruction = text_instruction(plan.shape, int(words))
                request["max_tokens"] = min(self.max_tool_tokens, self.max_string_chars)
            else:
                instruction = tool_instruction(tool)
                request["grammar"] = tool_grammar(
                    json.dumps(parameters, sort_keys=True), self.max_string_chars
                )
                # The grammar forces the JSON's keys and punctuation, so the repeat penalty
                # only weighs the words the model picks; without it a small model can loop
                # ("1.1.1.1...") until the token budget cuts the JSON off.
                request["max_tokens"] = self.max_tool_tokens
            request["messages"] = with_instruction(chat, instruction)
        request.update(call)
        return plan

    def _choice(self, llama: Any, plan: _Plan, record: CompletionRecord) -> Any:
        r"""Sample the choice of a text-then-choice tool after its text; return the value.

        The reply goes on from the text as sampled, e.g. ``"...feedback\n\nScore: "``, so
        llama.cpp finds the prompt and the text in its context and evaluates only the
        label; the choice is held to the allowed values by a grammar.
        """
        shape = plan.shape
        assert shape is not None
        label = choice_label(shape)
        ids = llama.counts.prompt_ids + llama.tokenize(
            (record.raw_text + label).encode(), add_bos=False, special=False
        )
        keep = ("temperature", "top_p", "top_k", "seed", "logit_bias")
        request = {
            **{key: plan.request[key] for key in keep if key in plan.request},
            "prompt": ids,
            "grammar": choice_grammar(shape.words),
            "max_tokens": max(len(word) for word in shape.words),
        }
        word = "".join(completion_pieces(llama, request, record)).strip()
        return shape.choices[shape.words.index(word)] if word in shape.words else word

    def _chunks(
        self, llama: Any, plan: _Plan, record: CompletionRecord
    ) -> Iterator[tuple[str, AIMessageChunk]]:
        """The reply as (token text, message chunk) pairs."""
        if plan.offered is not None:
            yield from self._text_or_tool_call(llama, plan, record, plan.offered)
            return
        if plan.tool is None:
            for piece in retried(
                llama, plan.request, record, retries=self.empty_retries, clean=held_until_text
            ):
                yield piece, AIMessageChunk(content=piece)
            return
        call_id = f"call_{uuid.uuid4().hex[:12]}"
        name = plan.tool["function"]["name"]
        first = True

        def args_chunk(args: str) -> AIMessageChunk:
            nonlocal first
            chunk = AIMessageChunk(
                content="",
                tool_call_chunks=[
                    {
                        "type": "tool_call_chunk",
                        "name": name if first else None,
                        "args": args,
                        "id": call_id if first else None,
                        "index": 0,
                    }
                ],
            )
            first = False
            return chunk

        if plan.shape is None:
            record.attempts += 1
            for piece in completion_pieces(llama, plan.request, record):
                yield piece, args_chunk(piece)
            return
        shape, texts = plan.shape, list[str]()
        opening = "{" + json.dumps(shape.text_field) + ': "'

        def bounded(pieces: Iterator[str]) -> Iterator[str]:
            return trimmed(pieces, self.max_string_chars)

        pieces = retried(llama, plan.request, record, retries=self.empty_retries, clean=bounded)
        for piece in pieces:
            escaped = json.dumps(piece, ensure_ascii=False)[1:-1]
            yield piece, args_chunk(escaped if texts else opening + escaped)
            texts.append(piece)
        text_finish = record.finish_reason
        value = self._choice(llama, plan, record)
        record.finish_reason = text_finish
        closing = f'", {json.dumps(shape.choice_field)}: {json.dumps(value)}}}'
        yield "", args_chunk(closing if texts else opening + closing)

    def _text_or_tool_call(
        self, llama: Any, plan: _Plan, record: CompletionRecord, tools: list[dict[str, Any]]
    ) -> Iterator[tuple[str, AIMessageChunk]]:
        """A text reply, or a tool call when the reply opens with a JSON object.

        The reply is sampled without a grammar; if its first text opens a JSON object, it is
        written again from the same prompt under a grammar of calls to the bound tools.
        """
        pieces = retried(
            llama, plan.request, record, retries=self.empty_retries, clean=held_until_text
        )
        first = next(pieces, None)
        if first is None:
            return
        if not opens_tool_call(first):
            yield first, AIMessageChunk(content=first)
            for piece in pieces:
                yield piece, AIMessageChunk(content=piece)
            return
        pieces.close()
        keep = ("temperature", "top_p", "top_k", "repeat_penalty", "seed")
        request = {
            **{key: plan.request[key] for key in keep if key in plan.request},
            "prompt": llama.counts.prompt_ids,
            "grammar": tool_call_grammar(json.dumps(tools, sort_keys=True), self.max_string_chars),
            "max_tokens": self.max_tool_tokens,
        }
        text = "".join(completion_pieces(llama, request, record))
        call = parsed_tool_call(text, tools)
        if call is None:  # cut off by the token budget: the text as it came
            yield text, AIMessageChunk(content=text)
            return
        name, args = call
        tool_call = tool_call_chunk(
            name=name, args=json.dumps(args), id=f"call_{uuid.uuid4().hex[:12]}", index=0
        )
        yield "", AIMessageChunk(content="", tool_call_chunks=[tool_call])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        plan = self._plan(messages, stop, kwargs)
        llama, lock = self.client()
        record = CompletionRecord()
        with lock:
            for text, chunk in self._chunks(llama, plan, record):
                generation = ChatGenerationChunk(message=chunk)
                if run_manager and text:
                    run_manager.on_llm_new_token(text, chunk=generation)
                yield generation
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata=record.usage,
                response_metadata={
                    "model_name": self.model_name,
                    "model_provider": "llama-cpp",
                    "finish_reason": record.finish_reason,
                    "llama_seconds": record.seconds,
                    "attempts": record.attempts,
                },
                chunk_position="last",
            ),
            generation_info={"finish_reason": record.finish_reason},
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        result = generate_from_stream(self._stream(messages, stop, run_manager, **kwargs))
        result.llm_output = {"model_name": self.model_name}
        return result
