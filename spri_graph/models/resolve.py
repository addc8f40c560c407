"""Model resolution: strings, chat model objects, OpenAI-compatible servers, the local model.

``resolve_model`` turns what a user passes as ``model=`` into a chat model, once, at
factory time:

* a :class:`~langchain_core.language_models.BaseChatModel` (or any Runnable) - used as is;
* ``None`` - ``$SPRI_MODEL`` if set, else the embedded local model (``spri-graph[local]``);
* ``"local"`` - the embedded local model; ``"gguf:/path/model.gguf"`` - any GGUF file
  (``chat_format="chatml"``, ``"gemma"``, ... for a file without a chat template);
* with ``base_url=`` (or ``$OPENAI_BASE_URL`` for ``"openai-compatible:NAME"``) - an
  OpenAI-compatible server through ``langchain-openai``;
* any other string - :func:`langchain.chat_models.init_chat_model` style
  ``"provider:model"`` (e.g. ``"openai:gpt-4o-mini"``).

Strings resolved to OpenAI's clients (``"openai:..."``, ``"azure_openai:..."``,
OpenAI-compatible servers) get ``max_retries=0`` unless it is passed: the graphs' retry
policy is the one retry layer.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable

from spri_graph.models.chat import load_local_model
from spri_graph.models.llama import LOCAL_EXTRA, local_model_available

__all__ = ["ModelSpec", "resolve_model", "resolve_model_cached"]

ModelSpec = str | BaseChatModel | Runnable[Any, Any] | None
"""What ``model=`` accepts."""

_NO_MODEL = (
    "no model configured: pass model='provider:name' (e.g. 'openai:gpt-4o-mini'), "
    f"set SPRI_MODEL, or install the embedded local model with {LOCAL_EXTRA}"
)


def _one_retry_layer(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` for OpenAI's client with its own retries off unless ``max_retries`` is set.

    The graphs retry a transient model error themselves (``retry_policy``, by default
    :func:`~spri_graph.default_retry_policy`: four attempts with growing waits). A client
    that also retried each attempt twice would send twelve requests for one failing call.
    """
    return {"max_retries": 0, **kwargs}


def _init_chat_model(name: str, field: str, **kwargs: Any) -> BaseChatModel:
    from langchain.chat_models import init_chat_model

    if name.startswith(("openai:", "azure_openai:")):
        kwargs = _one_retry_layer(kwargs)
    try:
        model: BaseChatModel = init_chat_model(name, **kwargs)
        return model
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

        def with_structured_output(
            self,
            schema: Any = None,
            *,
            method: Literal["function_calling", "json_mode", "json_schema"] = "function_calling",
            **kwargs: Any,
        ) -> Runnable[Any, Any]:
            return super().with_structured_output(schema, method=method, **kwargs)

        def _get_request_payload(
            self, input_: Any, *, stop: Any = None, **kwargs: Any
        ) -> dict[str, Any]:
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
    kwargs = _one_retry_layer(kwargs)
    try:
        chat_openai: Any = _compatible_chat_openai()
        model: BaseChatModel = chat_openai(model=name, base_url=base_url, api_key=api_key, **kwargs)
        return model
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"{field}: cannot use model {name!r}: {exc}") from exc


def resolve_model(
    model: ModelSpec,
    *,
    field: str = "model",
    base_url: str | None = None,
    chat_format: str | None = None,
    **kwargs: Any,
) -> BaseChatModel | Runnable[Any, Any]:
    """Resolve ``model=`` into a chat model.

    Args:
        model: A chat model, a model string, or ``None`` for the default model.
        field: Argument name used in error messages.
        base_url: Base URL of an OpenAI-compatible server; the string then names the
            server's model (a ``"openai:"`` prefix is optional).
        chat_format: For local models only: how llama.cpp formats chats, by
            llama-cpp-python's names (``"chatml"``, ``"gemma"``, ``"llama-3"``, ...), for a
            GGUF file without a chat template; ``None`` uses the file's template.
        **kwargs: Passed to the chat model's constructor (e.g. ``temperature``).

    Returns:
        The chat model.

    Raises:
        ValueError: If the string names an unknown provider, a missing package, a missing
            GGUF file, or no model can be found, or ``chat_format`` is given for a model
            that is not local; the message names ``field``.

    Example:
        >>> from langchain_core.language_models import GenericFakeChatModel
        >>> fake = GenericFakeChatModel(messages=iter(["hi"]))
        >>> resolve_model(fake) is fake
        True
    """
    if chat_format is not None:
        kwargs["chat_format"] = chat_format
    if isinstance(model, Runnable):
        if chat_format is not None:
            raise ValueError(f"chat_format: only GGUF models take a chat format, not {field}")
        return model
    if model is None:
        env = os.environ.get("SPRI_MODEL", "").strip()
        if env:
            return resolve_model(
                env, field=f"{field} (from SPRI_MODEL)", base_url=base_url, **kwargs
            )
        if not local_model_available():
            raise ValueError(f"{field}: {_NO_MODEL}")
        return load_local_model(field=field, **kwargs)
    if not isinstance(model, str):
        raise ValueError(
            f"{field} must be a model string or a BaseChatModel, got {type(model).__name__}"
        )
    name = model.strip()
    if not name:
        raise ValueError(f"{field} must not be empty; {_NO_MODEL}")
    if name == "local":
        if not local_model_available():
            raise ValueError(f"{field}: the local model needs {LOCAL_EXTRA}")
        return load_local_model(field=field, **kwargs)
    if name.startswith("gguf:"):
        return load_local_model(name.removeprefix("gguf:"), field=field, **kwargs)
    if chat_format is not None:
        raise ValueError(
            f"{field}: only GGUF models ('local', 'gguf:PATH') take a chat format, not {name!r}"
        )
    if base_url or name.startswith("openai-compatible:"):
        return _openai_compatible(
            name.split(":", 1)[1] if ":" in name else name,
            field=field,
            base_url=base_url,
            **kwargs,
        )
    return _init_chat_model(name, field, **kwargs)


@functools.lru_cache(maxsize=32)
def resolve_model_cached(name: str, *, field: str = "model") -> BaseChatModel | Runnable[Any, Any]:
    """Resolve a model string once per process (used for per-run context overrides)."""
    return resolve_model(name, field=field)
