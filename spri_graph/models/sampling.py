"""Grammar-constrained sampling that checks the likeliest tokens first.

llama-cpp-python's sampler chain is: repetition penalties, grammar, top-k, typical, top-p,
min-p, temperature, draw. Its grammar step checks every token of the vocabulary against the
grammar (49,152 for SmolLM2) before top-k keeps the ``k`` best survivors; on a small model
that check costs more than the model itself (about 11 ms a token against 16 ms, measured on
one core).

:class:`GrammarFirstSampler` runs the same chain but checks the ``4k`` likeliest tokens
first. When at least ``k`` of them pass and rank above every token left out, they are
exactly the ``k`` best tokens the full check would keep, so the rest of the chain (and its
random draw) sees the same candidates and picks the same token; otherwise it checks the
whole vocabulary as before. Inside JSON strings most tokens pass and the short check
suffices; at punctuation few do, and the full check runs.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

__all__ = ["GrammarFirstSampler", "grammar_first_applies"]

TOKEN_DATA = np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True)
"""``llama_token_data`` as a numpy record."""


def grammar_first_applies(
    *, temp: float, top_k: int, mirostat_mode: int, logits_processor: object
) -> bool:
    """Whether :class:`GrammarFirstSampler` can stand in for a request's sampler chain.

    It needs a bounded candidate list (top-k with sampling, or greedy) and the standard
    chain (no mirostat, no logits processors such as ``logit_bias``).

    Example:
        >>> grammar_first_applies(temp=0.6, top_k=40, mirostat_mode=0, logits_processor=None)
        True
        >>> grammar_first_applies(temp=0.6, top_k=0, mirostat_mode=0, logits_processor=None)
        False
    """
    return logits_processor is None and not mirostat_mode and (temp == 0 or (temp > 0 < top_k))


class GrammarFirstSampler:
    """llama-cpp-python's grammar sampler chain, with the grammar checked on likely tokens first.

    It takes the place of ``Llama._sampler`` for one generation: ``Llama.sample`` calls
    :meth:`sample`.

    Args:
        llama: The loaded ``llama_cpp.Llama``.
        grammar: The ``llama_cpp.LlamaGrammar`` every token must keep valid.
        temp: Temperature; ``0`` picks the likeliest valid token.
        top_k: Candidates kept after the grammar.
        top_p: Nucleus probability.
        min_p: Least probability relative to the likeliest token.
        typical_p: Locally typical sampling's mass.
        repeat_penalty: Penalty on recently sampled tokens.
        frequency_penalty: Penalty per earlier occurrence.
        presence_penalty: Penalty on any earlier occurrence.
    """

    def __init__(
        self,
        llama: Any,
        grammar: Any,
        *,
        temp: float,
        top_k: int,
        top_p: float,
        min_p: float,
        typical_p: float,
        repeat_penalty: float,
        frequency_penalty: float,
        presence_penalty: float,
    ) -> None:
        import llama_cpp

        self._llama_cpp = llama_cpp
        self._n_vocab = llama._n_vocab
        self._penalties = llama_cpp.llama_sampler_init_penalties(
            self._n_vocab,
            llama.last_n_tokens_size,
            repeat_penalty,
            frequency_penalty,
            presence_penalty,
        )
        self._grammar = llama_cpp.llama_sampler_init_grammar(
            llama._model.vocab, grammar._grammar.encode(), grammar._root.encode()
        )
        self._rest = llama_cpp.llama_sampler_chain_init(
            llama_cpp.llama_sampler_chain_default_params()
        )
        if temp == 0:
            self._needed = 1
            stages = [llama_cpp.llama_sampler_init_greedy()]
        else:
            self._needed = top_k
            stages = [
                llama_cpp.llama_sampler_init_top_k(top_k),
                llama_cpp.llama_sampler_init_typical(typical_p, 1),
                llama_cpp.llama_sampler_init_top_p(top_p, 1),
                llama_cpp.llama_sampler_init_min_p(min_p, 1),
                llama_cpp.llama_sampler_init_temp(temp),
                llama_cpp.llama_sampler_init_dist(llama._seed),
            ]
        for stage in stages:
            llama_cpp.llama_sampler_chain_add(self._rest, stage)
        self.short_checks = 0
        """Tokens whose grammar check covered only the likeliest tokens."""
        self.full_checks = 0
        """Tokens whose grammar check covered the whole vocabulary."""
        self._ids = np.arange(self._n_vocab, dtype=np.intc)
        self._all = self._buffer(self._n_vocab)
        self._short = self._buffer(min(4 * self._needed, self._n_vocab))

    def _buffer(self, size: int) -> tuple[np.ndarray, Any]:
        data = np.zeros(size, dtype=TOKEN_DATA)
        array = self._llama_cpp.llama_token_data_array(
            data=data.ctypes.data_as(self._llama_cpp.llama_token_data_p),
            size=size,
            selected=-1,
            sorted=False,
        )
        return data, array

    def _apply(self, sampler: Any, buffer: tuple[np.ndarray, Any], size: int) -> None:
        _, array = buffer
        array.size, array.selected, array.sorted = size, -1, False
        self._llama_cpp.llama_sampler_apply(sampler, ctypes.byref(array))

    def sample(self, ctx: Any, idx: int) -> int:
        """Sample the token at ``idx`` of the context's last batch and accept it."""
        lib = self._llama_cpp
        logits = np.ctypeslib.as_array(lib.llama_get_logits_ith(ctx.ctx, idx), (self._n_vocab,))
        everything, _ = self._all
        everything["id"], everything["logit"], everything["p"] = self._ids, logits, 0.0
        self._apply(self._penalties, self._all, self._n_vocab)
        candidates = self._apply_grammar()
        data, array = candidates
        self._apply(self._rest, candidates, len(data))
        token = int(data["id"][array.selected])
        for sampler in (self._penalties, self._grammar, self._rest):
            lib.llama_sampler_accept(sampler, token)
        return token

    def _apply_grammar(self) -> tuple[np.ndarray, Any]:
        """Mask the tokens the grammar refuses; the buffer holding every candidate left."""
        data, _ = self._all
        short, _ = self._short
        size = len(short)
        if size < self._n_vocab:
            top = np.argpartition(data["logit"], self._n_vocab - size)[self._n_vocab - size :]
            short[:] = data[top]
            floor = float(short["logit"].min())
            self._apply(self._grammar, self._short, size)
            passed = np.isfinite(short["logit"])
            if np.count_nonzero(passed & (short["logit"] > floor)) >= self._needed:
                # The k best candidates are all here: the rest of the chain needs no others.
                self.short_checks += 1
                return self._short
        self._apply(self._grammar, self._all, self._n_vocab)
        self.full_checks += 1
        return self._all

    def close(self) -> None:
        """Free the llama.cpp samplers."""
        for name in ("_penalties", "_grammar", "_rest"):
            sampler = getattr(self, name, None)
            if sampler is not None:
                self._llama_cpp.llama_sampler_free(sampler)
                setattr(self, name, None)

    def __del__(self) -> None:
        self.close()
