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

import functools
import os
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable

__all__ = [
    "ModelSpec",
    "is_local_model",
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


def _openai_compatible(
    name: str, *, field: str, base_url: str | None = None, **kwargs: Any
) -> BaseChatModel:
    from langchain_openai import ChatOpenAI

    base_url = base_url or os.environ.get("OPENAI_BASE_URL")
    api_key = os.environ.get("OPENAI_API_KEY") or ("not-needed" if base_url else None)
    if api_key is None:
        raise ValueError(
            f"{field}: {name!r} needs OPENAI_API_KEY, or a base URL for an OpenAI-compatible "
            "server (--base-url / OPENAI_BASE_URL)"
        )
    try:
        return ChatOpenAI(model=name, base_url=base_url, api_key=api_key, **kwargs)
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


def local_model_available() -> bool:
    """Whether the embedded local model (``spri-graph[local]``) is installed."""
    raise NotImplementedError


def is_local_model(model: object) -> bool:
    """Whether ``model`` runs in-process through llama.cpp (it then gets a structured critic)."""
    return False


def load_local_model(
    path: str | None = None, *, field: str = "model", **kwargs: Any
) -> BaseChatModel:
    """Return a chat model for a GGUF file (default: the embedded SmolLM2-135M-Instruct)."""
    raise NotImplementedError
