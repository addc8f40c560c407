"""Scripted models that replay a shared SPRI trace, replies chosen by the prompt.

Used by the speculative-drafting tests and ``benchmarks/latency.py``: the reply to a call
depends on what the prompt quotes, not on the order of the calls, so a sequential and a
speculative run of one trace can be compared exactly.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence

from langchain_core.messages import BaseMessage

from spri_graph.readers.scores import clean_text
from tests.fakes import EARLIER, PRINCIPLES_SECTION, ScriptedChatModel, spri_step


def series(trace: dict, first: str, prefix: str) -> list[str]:
    """A trace's first item and its numbered refinements (``prefix1``, ``prefix2``...)."""
    items, k = [trace[first]], 1
    while f"{prefix}{k}" in trace:
        items.append(trace[f"{prefix}{k}"])
        k += 1
    return items


def critiques(trace: dict, prefix: str) -> list[str]:
    """A trace's critiques, iteration 1 first."""
    return series(trace, f"{prefix}1", prefix)[1:]


WASTED = "(a response to principles that were later refined)"


def _prompt(messages: Sequence[BaseMessage]) -> str:
    return str(messages[-1].content)


def _between(text: str, start: str, end: str) -> str:
    return clean_text(text.split(start, 1)[1].split(end, 1)[0])


class _Replies:
    """Replies chosen by the prompt: the candidate it quotes picks the trace's next item.

    A candidate seen again (a trace may repeat itself) moves on to its next occurrence, in
    the order the prompts arrive; sequential and speculative runs send them in one order.
    """

    def __init__(self, items: list[str]) -> None:
        self.items = items
        self.cleaned = [clean_text(item) for item in items]
        self.seen: Counter[str] = Counter()

    def position(self, candidate: str) -> int:
        indexes = [i for i, text in enumerate(self.cleaned) if text == candidate]
        assert indexes, f"candidate not in the trace: {candidate[:80]!r}"
        k = self.seen[candidate]
        self.seen[candidate] += 1
        return indexes[min(k, len(indexes) - 1)]

    def after(self, candidate: str) -> str:
        return self.items[self.position(candidate) + 1]


def prompt_keyed_models(trace: dict) -> tuple[ScriptedChatModel, ScriptedChatModel]:
    """A base and a critic model whose replies depend on the prompt, not on call order."""
    principles = _Replies(series(trace, "principle_raw", "principle_refined_iter_"))
    responses = _Replies(series(trace, "init_response", "response_refined_iter_"))
    critiqued_principles = _Replies(principles.items)
    critiqued_responses = _Replies(responses.items)
    p_crit = critiques(trace, "principles_critique_iter_")
    r_crit = critiques(trace, "response_critique_iter_")
    final_principles = clean_text(trace["principle_final"])
    lock = threading.Lock()

    def base(messages: Sequence[BaseMessage]) -> str:
        step = spri_step(messages)
        with lock:
            system = str(messages[0].content)
            if step == "principles_refine":
                return principles.after(_between(system, *EARLIER["principles"]))
            if step == "principles_draft":
                return principles.items[0]
            if step == "response_refine":
                return responses.after(_between(system, *EARLIER["response"]))
            assert step == "response_draft", step
            if clean_text(system.split(PRINCIPLES_SECTION, 1)[1]) != final_principles:
                return WASTED
            return responses.items[0]

    def critic(messages: Sequence[BaseMessage]) -> str:
        text = _prompt(messages)
        with lock:
            if "### Principles to Evaluate:\n" in text:
                candidate = _between(text, "### Principles to Evaluate:\n", "\n\n### Score")
                return p_crit[critiqued_principles.position(candidate)]
            candidate = _between(text, "### Response to Evaluate:\n", "\n\n### Score")
            return r_crit[critiqued_responses.position(candidate)]

    return (
        ScriptedChatModel([base], cycle=True, name_="base"),
        ScriptedChatModel([critic], cycle=True, name_="critic"),
    )
