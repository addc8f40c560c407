"""Speculative drafting: the same results as a sequential run, with the waits overlapped."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, get_type_hints

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.prompts import ChatPromptTemplate
from langgraph.graph import StateGraph

from spri_graph import RefineLoop, SPRIState, add_refine_loop, create_spri_graph
from spri_graph.alignment.spri import RESPONSE_SPECULATED
from spri_graph.engine.steps import discard, empty_usage
from spri_graph.readers.scores import clean_text
from tests.conftest import reference_dir
from tests.fakes import ScriptedChatModel, all_text, spri_step
from tests.test_traces import SEEDS
from tests.trace_models import prompt_keyed_models


def _all_traces() -> Iterator[tuple[str, dict]]:
    folder = reference_dir("spri_traces")
    for path in sorted(Path(folder).glob("*.jsonl")):
        for line in path.open():
            yield path.name, json.loads(line)


def _run(name: str, trace: dict, *, speculative: bool) -> dict[str, Any]:
    base, critic = prompt_keyed_models(trace)
    graph = create_spri_graph(
        base,
        critic_model=critic,
        parse_retries=0,
        seed_examples=SEEDS if name.startswith("seed-default") else None,
        speculative=speculative,
    ).compile()
    return graph.invoke({"query": trace["Reddit Post"], "goal": trace["appraisal_dimension_aim"]})


def _result(out: dict[str, Any]) -> dict[str, Any]:
    return {
        key: out[key]
        for key in ("principles", "response", "principle_critiques", "response_critiques")
    }


def test_speculative_and_sequential_runs_agree_on_every_shared_trace() -> None:
    kept = wasted = 0
    for name, trace in _all_traces():
        sequential = _run(name, trace, speculative=False)
        speculative = _run(name, trace, speculative=True)
        assert _result(speculative) == _result(sequential), trace["Reddit ID"]
        assert speculative["response"] == clean_text(trace["response_final"])
        assert speculative["usage"]["response"] == sequential["usage"]["response"]
        if "speculation" in speculative["usage"]:
            wasted += 1
            assert trace["iteration_principle"] > 1
        else:
            kept += 1
            assert trace["iteration_principle"] == 1
    assert kept + wasted == 90 and kept > 0 and wasted > 0


async def test_speculative_async_matches_sync_on_a_refined_and_an_accepted_trace() -> None:
    traces = list(_all_traces())
    accepted = next(t for t in traces if t[1]["iteration_principle"] == 1)
    refined = next(t for t in traces if t[1]["iteration_principle"] > 1)
    for name, trace in (accepted, refined):
        base, critic = prompt_keyed_models(trace)
        graph = create_spri_graph(
            base,
            critic_model=critic,
            parse_retries=0,
            seed_examples=SEEDS if name.startswith("seed-default") else None,
            speculative=True,
        ).compile()
        query = {"query": trace["Reddit Post"], "goal": trace["appraisal_dimension_aim"]}
        out = await graph.ainvoke(query)
        assert _result(out) == _result(_run(name, trace, speculative=False))


def _timed(reply: str, delay: float, log: list[tuple[str, float, float]], label: str) -> Callable:
    def answer(messages: Sequence[BaseMessage]) -> str:
        start = time.monotonic()
        time.sleep(delay)
        log.append((label, start, time.monotonic()))
        return reply

    return answer


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_the_first_critique_and_the_response_draft_overlap_in_time(mode: str) -> None:
    log: list[tuple[str, float, float]] = []
    base = ScriptedChatModel(
        [
            _timed("1. Be kind.", 0.0, log, "principles_draft"),
            _timed("Say it kindly.", 0.3, log, "response_draft"),
        ]
    )
    critic = ScriptedChatModel(
        [
            _timed("Feedback: useful. [RESULT] 5", 0.3, log, "principles_critique"),
            _timed("Feedback: follows them. [RESULT] 5", 0.0, log, "response_critique"),
        ]
    )
    graph = create_spri_graph(base, critic_model=critic, speculative=True).compile()
    query = {"query": "How do I say no to my boss?"}
    out = graph.invoke(query) if mode == "sync" else await graph.ainvoke(query)
    assert out["response"] == "Say it kindly."
    spans = {label: (start, end) for label, start, end in log}
    critique, draft = spans["principles_critique"], spans["response_draft"]
    assert draft[0] < critique[1] and critique[0] < draft[1]  # the two calls overlap
    assert out["usage"]["response"]["model_calls"] == 1 and "speculation" not in out["usage"]


async def test_a_wasted_draft_does_not_hold_up_the_loop() -> None:
    # The critic rejects the first principles quickly; the speculative draft is slow and
    # must be abandoned, not awaited.
    drafts: list[str] = []

    def base(messages: Sequence[BaseMessage]) -> str:
        step, text = spri_step(messages), all_text(messages)
        if step == "response_draft":
            drafts.append(text)
            if "v1" in text:
                time.sleep(2.0)
            return "An answer."
        return "Principles v2." if step == "principles_refine" else "Principles v1."

    critic = ScriptedChatModel(
        ["Feedback: vague. [RESULT] 2", "Feedback: good. [RESULT] 5", "Feedback: ok [RESULT] 5"]
    )
    graph = create_spri_graph(
        ScriptedChatModel([base], cycle=True), critic_model=critic, speculative=True
    ).compile()
    start = time.monotonic()
    out = await graph.ainvoke({"query": "Q?"})
    assert time.monotonic() - start < 1.5
    assert out["principles"] == "Principles v2." and out["response"] == "An answer."
    assert out["usage"]["speculation"]["model_calls"] == 1
    assert any("v2" in d for d in drafts)


def test_speculative_needs_no_review_and_a_bool() -> None:
    model = ScriptedChatModel([])
    with pytest.raises(ValueError, match="speculative: cannot be combined with review"):
        create_spri_graph(model, speculative=True, review_principles=True)
    with pytest.raises(ValueError, match="speculative must be True or False"):
        create_spri_graph(model, speculative="yes")  # type: ignore[arg-type]


def test_the_drawn_graph_shows_the_speculative_shortcut() -> None:
    graph = create_spri_graph(ScriptedChatModel([]), speculative=True).compile()
    mermaid = graph.get_graph().draw_mermaid()
    assert "principles_critique -. &nbsp;drafted&nbsp; .-> response_critique" in mermaid


class _DelayedDrafts(BaseChatModel):
    """A base model that replies by prompt and records every completion and cancellation.

    The response draft on the first principles (the speculative one) says it has started,
    waits until the critic has rejected those principles, then takes ``delay`` seconds:
    time.sleep on the sync path, asyncio.sleep (which a cancellation stops) on the async
    path.
    """

    events: Any  # the test's list itself (a list field would be copied)
    started: Any
    rejected: Any
    delay: float = 0.3

    @property
    def _llm_type(self) -> str:
        return "delayed-drafts"

    def _reply(self, messages: list[BaseMessage]) -> tuple[str, bool]:
        step = spri_step(messages)
        if step == "response_draft":
            return "An answer.", "v1" in all_text(messages)
        return ("Principles v2." if step == "principles_refine" else "Principles v1."), False

    def _result(self, reply: str, speculative: bool) -> ChatResult:
        self.events.append(f"completed:{'speculative' if speculative else reply}")
        usage = {"input_tokens": 10, "output_tokens": 3, "total_tokens": 13}
        message = AIMessage(reply, usage_metadata=usage)  # type: ignore[arg-type]
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        reply, speculative = self._reply(messages)
        if speculative:
            self.started.set()
            self.rejected.wait(30)
            time.sleep(self.delay)
        return self._result(reply, speculative)

    async def _agenerate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        reply, speculative = self._reply(messages)
        if speculative:
            self.started.set()
            try:
                while not self.rejected.is_set():
                    await asyncio.sleep(0.01)
                await asyncio.sleep(self.delay)
            except asyncio.CancelledError:
                self.events.append("cancelled:speculative")
                raise
        return self._result(reply, speculative)


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_discarded_draft_is_cancelled_async_and_waited_for_and_counted_sync(
    mode: str,
) -> None:
    events: list[str] = []
    started, rejected = threading.Event(), threading.Event()

    def reject(messages: Sequence[BaseMessage]) -> str:
        assert started.wait(30)  # the draft is under way: dropping it cannot unmake it
        events.append("rejected")
        rejected.set()
        return "Feedback: vague. [RESULT] 2"

    base = _DelayedDrafts(events=events, started=started, rejected=rejected)
    critic = ScriptedChatModel([reject, "Feedback: good. [RESULT] 5", "Feedback: ok [RESULT] 5"])
    graph = create_spri_graph(base, critic_model=critic, speculative=True).compile()
    query = {"query": "Q?"}
    out = graph.invoke(query) if mode == "sync" else await graph.ainvoke(query)
    after = events[events.index("rejected") + 1 :]
    completed_after_discard = after.count("completed:speculative")
    assert out["principles"] == "Principles v2." and out["response"] == "An answer."
    if mode == "async":  # cancelled: nothing completes, no tokens to count
        assert completed_after_discard == 0 and "cancelled:speculative" in after
        assert out["usage"]["speculation"] == {**empty_usage(), "model_calls": 1}
    else:  # a started thread cannot be stopped: it completes, and its tokens are counted
        assert completed_after_discard == 1
        assert out["usage"]["speculation"] == {
            **empty_usage(),
            "model_calls": 1,
            "input_tokens": 10,
            "output_tokens": 3,
            "total_tokens": 13,
        }


def test_the_speculative_slot_is_a_declared_state_key() -> None:
    assert RESPONSE_SPECULATED in get_type_hints(SPRIState)
    out = create_spri_graph(
        ScriptedChatModel(["1. Be kind.", "Kindly."]),
        critic_model=ScriptedChatModel(["[RESULT] 5", "[RESULT] 5"]),
        speculative=True,
    ).compile()
    updates = list(out.stream({"query": "Q?"}, stream_mode="updates"))
    critique = next(u["principles_critique"] for u in updates if "principles_critique" in u)
    assert critique[RESPONSE_SPECULATED] is True


def test_speculate_needs_a_loop_with_a_speculated_key() -> None:
    model = ScriptedChatModel([])
    prompt = ChatPromptTemplate.from_template("{candidate}")
    first, ahead = (
        RefineLoop(
            name=name,
            model=model,
            draft_prompt=prompt,
            critique_prompt=prompt,
            refine_prompt=prompt,
            candidate_key=name,
            critiques_key=f"{name}_critiques",
        )
        for name in ("first", "ahead")
    )
    with pytest.raises(ValueError, match="speculate: loop 'ahead' needs a speculated_key"):
        add_refine_loop(StateGraph(dict), first, then="ahead_draft", speculate=ahead)


def test_a_call_dropped_before_it_started_is_never_made_and_costs_nothing() -> None:
    pending: Future[AIMessage] = Future()  # queued, not running yet
    dropped = discard(pending)
    assert not dropped.started and pending.cancelled()
    assert dropped.usage() == empty_usage()


def test_a_started_call_that_was_dropped_costs_one_call_and_its_tokens() -> None:
    tokens = {"input_tokens": 4, "output_tokens": 1, "total_tokens": 5}
    reply = AIMessage("x", usage_metadata=tokens)  # type: ignore[arg-type]
    running: Future[AIMessage] = Future()
    assert running.set_running_or_notify_cancel()
    running.set_result(reply)
    assert discard(running).usage() == {
        **empty_usage(),
        "model_calls": 1,
        "input_tokens": 4,
        "output_tokens": 1,
        "total_tokens": 5,
    }
