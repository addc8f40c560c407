"""SPRIMiddleware inside ``create_agent`` agents, on scripted models."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, get_type_hints

import pytest
from langchain.agents import create_agent
from langchain.agents.middleware import (
    AgentState,
    HumanInTheLoopMiddleware,
    SummarizationMiddleware,
)
from langchain.agents.structured_output import ToolStrategy
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.tools import tool
from langgraph.cache.memory import InMemoryCache
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import CachePolicy, Command
from pydantic import BaseModel

from spri_graph import SPRIMiddleware
from spri_graph.agents.middleware import SPRIAgentState
from tests.fakes import EARLIER, ScriptedChatModel, all_text, spri_step

QUESTION = "What is 2 + 3, doubled?"
SYSTEM = "You are a careful calculator."
DRAFT_PRINCIPLES = "1. Be exact."
PRINCIPLES = "1. Show each step of the arithmetic."
ANSWER = "10"
REFINED = "2 + 3 = 5, and doubled that is 10."
SPRI_KEYS = {
    "spri_principles",
    "spri_principle_critiques",
    "spri_response_critiques",
    "spri_usage",
    "spri_turn",
    "spri_pending_turn",
}
PRIVATE_KEYS = {"spri_turn", "spri_pending_turn"}
EMPTY_USAGE = {
    "model_calls": 0,
    "critic_calls": 0,
    "input_tokens": 0,
    "output_tokens": 0,
    "total_tokens": 0,
}


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


def tool_call(name: str, call_id: str, **args: int) -> AIMessage:
    return AIMessage("", tool_calls=[{"name": name, "args": args, "id": call_id}])


def tool_loop(answer: str = ANSWER) -> list[AIMessage]:
    """The agent's replies: two tool calls, then the final answer."""
    return [
        tool_call("add", "call-add", a=2, b=3),
        tool_call("multiply", "call-mul", a=5, b=2),
        AIMessage(answer, id="answer-1"),
    ]


@dataclass
class Scenario:
    base: ScriptedChatModel
    critic: ScriptedChatModel
    agent_model: ScriptedChatModel
    agent: Any


def scenario(
    *,
    base: list[Any],
    critic: list[Any],
    agent_replies: list[Any] | None = None,
    middleware: list[Any] = (),
    **options: Any,
) -> Scenario:
    base_model, critic_model = ScriptedChatModel(base), ScriptedChatModel(critic)
    agent_model = ScriptedChatModel(tool_loop() if agent_replies is None else agent_replies)
    spri = SPRIMiddleware(base_model, critic_model=critic_model, **options)
    agent = create_agent(
        agent_model,
        tools=[add, multiply],
        system_prompt=SYSTEM,
        middleware=[spri, *middleware],
        checkpointer=InMemorySaver(),
    )
    return Scenario(base_model, critic_model, agent_model, agent)


def ask(question: str = QUESTION) -> dict[str, Any]:
    return {"messages": [HumanMessage(question)]}


def thread(name: str = "t") -> dict[str, Any]:
    return {"configurable": {"thread_id": name}}


def system_prompts(model: ScriptedChatModel) -> list[str]:
    prompts = []
    for call in model.calls:
        first = call["messages"][0]
        assert isinstance(first, SystemMessage), call["messages"]
        prompts.append(first.content)
    return prompts


def refine_scenario(**options: Any) -> Scenario:
    """Principles refined once; the final answer refined once."""
    return scenario(
        base=[DRAFT_PRINCIPLES, PRINCIPLES, REFINED],
        critic=[
            "Feedback: Too vague. [RESULT] 2",
            "Feedback: Clear. [RESULT] 5",
            "Feedback: Shows no steps. [RESULT] 2",
            "Feedback: Every step shown. [RESULT] 5",
        ],
        refine_answer=True,
        **options,
    )


# --------------------------------------------------------------------------- principles


def test_principles_are_written_once_per_turn_across_a_tool_loop() -> None:
    s = scenario(
        base=[DRAFT_PRINCIPLES, PRINCIPLES],
        critic=["Feedback: Too vague. [RESULT] 2", "Feedback: Clear. [RESULT] 5"],
    )
    out = s.agent.invoke(ask(), thread())

    # One principles stage (draft, critique, refine, critique) for three model calls.
    assert len(s.base.calls) == 2 and len(s.critic.calls) == 2
    assert len(s.agent_model.calls) == 3
    assert QUESTION in s.base.calls[0]["messages"][-1].content
    # Every model call of the turn had the final principles in its system message.
    for prompt in system_prompts(s.agent_model):
        assert prompt.startswith(SYSTEM)
        assert PRINCIPLES in prompt and DRAFT_PRINCIPLES not in prompt
    # ... and the stored conversation does not.
    assert not any(isinstance(m, SystemMessage) for m in out["messages"])
    assert not any(PRINCIPLES in str(m.content) for m in out["messages"])
    assert [type(m) for m in out["messages"]] == [
        HumanMessage,
        AIMessage,
        ToolMessage,
        AIMessage,
        ToolMessage,
        AIMessage,
    ]
    assert out["messages"][-1].content == ANSWER

    assert out["spri_principles"] == PRINCIPLES
    assert [c.score for c in out["spri_principle_critiques"]] == [2, 5]
    usage = out["spri_usage"]
    assert set(usage) == {"principles"}
    assert usage["principles"]["model_calls"] == 2
    assert usage["principles"]["critic_calls"] == 2
    assert usage["principles"]["total_tokens"] > 0
    # Refinement is off: no answer critiques; the turn marker stays private.
    assert "spri_response_critiques" not in out and "spri_turn" not in out
    state = s.agent.get_state(thread()).values
    assert state["spri_turn"]["query"] == QUESTION
    assert state["spri_turn"]["message_id"] == out["messages"][0].id


def test_each_user_turn_gets_its_own_principles() -> None:
    second = "And 4 + 4?"
    s = scenario(
        base=[PRINCIPLES, "1. Add carefully."],
        critic=["[RESULT] 5", "[RESULT] 5"],
        agent_replies=[ANSWER, "8", "Still 8."],
    )
    s.agent.invoke(ask(), thread())
    out = s.agent.invoke(ask(second), thread())
    assert out["spri_principles"] == "1. Add carefully."
    # The second turn's principle writer sees the conversation so far.
    prompt = s.base.calls[1]["messages"][-1].content
    assert second in prompt
    assert f"Conversation so far:\nUser: {QUESTION}\nAssistant: {ANSWER}\n" in prompt
    first_turn, second_turn = system_prompts(s.agent_model)
    assert PRINCIPLES in first_turn and "1. Add carefully." in second_turn
    assert PRINCIPLES not in second_turn

    # A new run without a new user message stays in the same turn: no new principles.
    out = s.agent.invoke({"messages": []}, thread())
    assert out["messages"][-1].content == "Still 8."
    assert len(s.base.calls) == 2 and len(s.critic.calls) == 2
    assert "1. Add carefully." in system_prompts(s.agent_model)[-1]


def test_fixed_principles_make_no_principle_calls() -> None:
    s = scenario(base=[], critic=[], agent_replies=[ANSWER], principles="1. Give units.")
    out = s.agent.invoke(ask(), thread())
    assert s.base.calls == [] and s.critic.calls == []
    assert "1. Give units." in system_prompts(s.agent_model)[0]
    assert out["spri_principles"] == "1. Give units."
    assert out["spri_usage"] == {}


@pytest.mark.parametrize("speculative", [False, True])
def test_cached_principles_skip_the_principles_stage(speculative: bool) -> None:
    base, critic = ScriptedChatModel([PRINCIPLES]), ScriptedChatModel(["[RESULT] 5"])
    spri = SPRIMiddleware(
        base,
        critic_model=critic,
        cache_policy=CachePolicy(ttl=600),
        cache=InMemoryCache(),
        speculative=speculative,
    )
    agent = create_agent(ScriptedChatModel([ANSWER, ANSWER]), middleware=[spri])
    first = agent.invoke(ask())
    second = agent.invoke(ask())
    assert len(base.calls) == 1 and len(critic.calls) == 1
    assert second["spri_principles"] == first["spri_principles"] == PRINCIPLES
    assert second["spri_principle_critiques"] == first["spri_principle_critiques"]


def test_goal_from_the_agent_context_reaches_the_principle_writer() -> None:
    @dataclass
    class Context:
        goal: str | None = None

    base, critic = ScriptedChatModel([PRINCIPLES]), ScriptedChatModel(["[RESULT] 5"])
    agent = create_agent(
        ScriptedChatModel([ANSWER]),
        middleware=[SPRIMiddleware(base, critic_model=critic)],
        context_schema=Context,
    )
    agent.invoke(ask(), context=Context(goal="Answer in one line."))
    assert "Response Goal: Answer in one line." in base.calls[0]["messages"][-1].content


def test_spri_calls_run_under_the_agents_callbacks() -> None:
    class Recorder(BaseCallbackHandler):
        def __init__(self) -> None:
            self.chat_starts = 0

        def on_chat_model_start(self, *args: Any, **kwargs: Any) -> None:
            self.chat_starts += 1

    s = refine_scenario()
    recorder = Recorder()
    s.agent.invoke(ask(), {**thread(), "callbacks": [recorder]})
    made = len(s.base.calls) + len(s.critic.calls) + len(s.agent_model.calls)
    assert made == 10 and recorder.chat_starts == made


# --------------------------------------------------------------------------- the final answer


def test_refine_answer_replaces_the_final_answer_in_place() -> None:
    s = refine_scenario()
    out = s.agent.invoke(ask(), thread())

    final = out["messages"][-1]
    assert isinstance(final, AIMessage) and final.content == REFINED
    assert final.id == "answer-1"  # replaced, not appended
    assert len(out["messages"]) == 6
    assert [c.score for c in out["spri_response_critiques"]] == [2, 5]
    assert out["spri_usage"]["response"]["model_calls"] == 1
    assert out["spri_usage"]["response"]["critic_calls"] == 2
    assert out["spri_usage"]["principles"]["critic_calls"] == 2

    # Tool-calling responses were never critiqued: the answer critiques read the final
    # answer (then its refinement) against the turn's question and principles.
    answer_critiques = [c["messages"][-1].content for c in s.critic.calls[2:]]
    assert len(answer_critiques) == 2
    assert f"Response to Evaluate:\n{ANSWER}\n" in answer_critiques[0]
    assert f"Response to Evaluate:\n{REFINED}\n" in answer_critiques[1]
    for prompt in answer_critiques:
        assert QUESTION in prompt and PRINCIPLES in prompt
    refine_prompt = str(s.base.calls[-1]["messages"][0].content)
    assert "Shows no steps." in refine_prompt
    assert f"{EARLIER['response'][0]}{ANSWER}{EARLIER['response'][1]}" in refine_prompt


def test_an_answer_that_passes_is_kept() -> None:
    s = scenario(
        base=[PRINCIPLES],
        critic=["[RESULT] 5", "Feedback: Follows them. [RESULT] 4"],
        agent_replies=[AIMessage(ANSWER, id="answer-1")],
        refine_answer=True,
    )
    out = s.agent.invoke(ask(), thread())
    assert out["messages"][-1].content == ANSWER and out["messages"][-1].id == "answer-1"
    assert [c.score for c in out["spri_response_critiques"]] == [4]
    assert out["spri_usage"]["response"]["model_calls"] == 0
    assert len(s.base.calls) == 1


def test_structured_responses_are_not_refined() -> None:
    class Result(BaseModel):
        value: int

    s = scenario(
        base=[PRINCIPLES],
        critic=["[RESULT] 5"],
        agent_replies=[
            AIMessage("", tool_calls=[{"name": "Result", "args": {"value": 10}, "id": "r"}])
        ],
        refine_answer=True,
    )
    agent = create_agent(
        s.agent_model,
        tools=[add],
        middleware=[SPRIMiddleware(s.base, critic_model=s.critic, refine_answer=True)],
        response_format=ToolStrategy(Result),
    )
    out = agent.invoke(ask())
    assert out["structured_response"] == Result(value=10)
    assert PRINCIPLES in system_prompts(s.agent_model)[0]
    assert len(s.critic.calls) == 1  # the principles' critique only
    assert "spri_response_critiques" in out and out["spri_response_critiques"] == []


# --------------------------------------------------------------------------- composition


def test_resume_after_human_review_keeps_the_turns_principles() -> None:
    review = HumanInTheLoopMiddleware({"multiply": True})
    s = scenario(
        base=[PRINCIPLES, REFINED],
        critic=["[RESULT] 5", "Feedback: Shows no steps. [RESULT] 2", "[RESULT] 5"],
        middleware=[review],
        refine_answer=True,
    )
    paused = s.agent.invoke(ask(), thread())
    (request,) = paused["__interrupt__"]
    assert request.value["action_requests"][0]["name"] == "multiply"
    assert len(s.agent_model.calls) == 2
    assert (len(s.base.calls), len(s.critic.calls)) == (1, 1)

    out = s.agent.invoke(Command(resume={"decisions": [{"type": "approve"}]}), thread())
    # The resumed turn reused its principles: no principle calls after the pause.
    assert len(s.agent_model.calls) == 3
    assert all(PRINCIPLES in prompt for prompt in system_prompts(s.agent_model))
    assert (len(s.base.calls), len(s.critic.calls)) == (2, 3)
    assert out["spri_usage"]["principles"]["critic_calls"] == 1
    # Critiques from before the pause come back from the checkpoint as plain data.
    assert [c["score"] for c in out["spri_principle_critiques"]] == [5]
    assert [c["score"] for c in out["spri_response_critiques"]] == [2, 5]
    assert out["messages"][-1].content == REFINED
    assert [m.content for m in out["messages"] if isinstance(m, ToolMessage)] == ["5", "10"]


def test_summarization_mid_turn_keeps_principles_and_question() -> None:
    summary = ScriptedChatModel(["The user asked for 2 + 3 doubled; 2 + 3 is 5."])
    s = refine_scenario(
        middleware=[SummarizationMiddleware(summary, trigger=("messages", 4), keep=("messages", 2))]
    )
    out = s.agent.invoke(ask(), thread())
    assert len(summary.calls) == 1
    # The human message was summarized away mid-turn ...
    assert not any(m.content == QUESTION for m in out["messages"])
    assert "summary" in out["messages"][0].content
    # ... yet every model call kept the principles, and the answer was still critiqued
    # against the turn's question.
    assert len(s.agent_model.calls) == 3
    assert all(PRINCIPLES in prompt for prompt in system_prompts(s.agent_model))
    assert (len(s.base.calls), len(s.critic.calls)) == (3, 4)
    assert QUESTION in s.critic.calls[-1]["messages"][-1].content
    assert out["messages"][-1].content == REFINED


def test_stream_mode_messages() -> None:
    s = refine_scenario()
    streamed = list(s.agent.stream(ask(), thread(), stream_mode="messages"))
    nodes = {meta["langgraph_node"] for _, meta in streamed}
    # The agent's own messages stream; SPRI's calls run in nested graphs and stay out of
    # the top-level stream (``subgraphs=True`` shows them).
    assert nodes == {"model", "tools"}
    assert "answer-1" in {message.id for message, _ in streamed}
    final = s.agent.get_state(thread()).values["messages"][-1]
    assert (final.id, final.content) == ("answer-1", REFINED)

    s = refine_scenario()
    nested = [
        (namespace, meta["langgraph_node"])
        for namespace, (_, meta) in s.agent.stream(
            ask(), thread(), stream_mode="messages", subgraphs=True
        )
        if namespace
    ]
    assert [node for _, node in nested] == [
        "principles_draft",
        "principles_critique",
        "principles_refine",
        "principles_critique",
        "response_critique",
        "response_refine",
        "response_critique",
    ]
    assert nested[0][0][0].startswith("SPRIMiddleware.before_agent:")
    assert nested[-1][0][0].startswith("SPRIMiddleware.after_model:")


def test_async_run_matches_the_sync_run() -> None:
    def run(use_async: bool) -> tuple[Any, ...]:
        s = refine_scenario(middleware=[HumanInTheLoopMiddleware({"add": False})])
        if use_async:
            out = asyncio.run(s.agent.ainvoke(ask(), thread()))
        else:
            out = s.agent.invoke(ask(), thread())
        return (
            [(type(m).__name__, m.content) for m in out["messages"]],
            out["messages"][-1].id,
            out["spri_principles"],
            out["spri_principle_critiques"],
            out["spri_response_critiques"],
            out["spri_usage"],
            system_prompts(s.agent_model),
            [c["messages"] for c in s.base.calls],
            [c["messages"] for c in s.critic.calls],
        )

    sync, async_ = run(False), run(True)
    assert sync == async_
    assert sync[0][-1] == ("AIMessage", REFINED)


def test_state_keys_do_not_clash_with_the_agents() -> None:
    agent_keys = set(get_type_hints(AgentState, include_extras=True))
    assert {"messages", "structured_response", "jump_to"} <= agent_keys
    added = set(get_type_hints(SPRIAgentState, include_extras=True)) - agent_keys
    assert added == SPRI_KEYS
    others = [HumanInTheLoopMiddleware({}), SummarizationMiddleware(ScriptedChatModel([]))]
    for middleware in others:
        assert not added & set(get_type_hints(middleware.state_schema, include_extras=True))

    class Result(BaseModel):
        value: int

    spri = SPRIMiddleware(ScriptedChatModel([]), refine_answer=True)
    agent = create_agent(
        ScriptedChatModel([]),
        tools=[add],
        middleware=[spri, *others],
        response_format=ToolStrategy(Result),
    )
    assert set(agent.channels) >= SPRI_KEYS
    assert set(agent.get_input_jsonschema()["properties"]) == {"messages"}
    output = set(agent.get_output_jsonschema()["properties"])
    assert output >= SPRI_KEYS - PRIVATE_KEYS and not PRIVATE_KEYS & output
    assert "structured_response" in output


# --------------------------------------------------------------------------- bad input


def test_bad_options_fail_when_the_middleware_is_built() -> None:
    model = ScriptedChatModel([])
    with pytest.raises(ValueError, match="refine_answer=True needs principles"):
        SPRIMiddleware(model, principles=False, refine_answer=True)
    with pytest.raises(TypeError, match="speculate"):
        SPRIMiddleware(model, speculate=True)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="threshold must be an integer from 1 to 5, got 9"):
        SPRIMiddleware(model, threshold=9)
    with pytest.raises(ValueError, match="max_iterations"):
        SPRIMiddleware(model, max_iterations=0)
    with pytest.raises(ValueError, match="principles must be"):
        SPRIMiddleware(model, principles="  ")
    with pytest.raises(ValueError, match="refine_answer must be"):
        SPRIMiddleware(model, refine_answer="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="speculative must be True or False"):
        SPRIMiddleware(model, speculative="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="speculative=True .* needs principles=True"):
        SPRIMiddleware(model, principles="1. Be brief.", speculative=True)
    with pytest.raises(ValueError, match="bogus"):
        SPRIMiddleware(model, prompts={"bogus": "{query}"})
    with pytest.raises(ValueError, match="critic_model"):
        SPRIMiddleware(model, critic_model="nonexistent-provider:some-model")
    # Both off is allowed: the middleware then does nothing.
    SPRIMiddleware(model, principles=False)


@pytest.mark.parametrize(
    ("messages", "error"),
    [
        ([], "no messages"),
        ([AIMessage("Hello!")], "no human message"),
        ([HumanMessage("   ")], "the last human message has no text"),
    ],
)
def test_a_turn_without_a_question_fails_before_any_model_call(
    messages: list[Any], error: str
) -> None:
    s = scenario(base=[PRINCIPLES], critic=["[RESULT] 5"], agent_replies=[ANSWER])
    with pytest.raises(ValueError, match=error):
        s.agent.invoke({"messages": messages}, thread())
    assert s.base.calls == s.critic.calls == s.agent_model.calls == []


def test_a_goal_that_is_not_a_string_fails() -> None:
    s = scenario(base=[PRINCIPLES], critic=["[RESULT] 5"], agent_replies=[ANSWER])
    with pytest.raises(ValueError, match="context goal must be a string"):
        s.agent.invoke(ask(), thread(), context={"goal": 3})


# --------------------------------------------------------------------------- speculative


def keyed_agent(messages: Sequence[BaseMessage]) -> AIMessage:
    """The agent's reply, chosen by its prompt: principles in use and tool results so far."""
    tag = "p1" if PRINCIPLES in str(messages[0].content) else "p0"
    turn = max(i for i, m in enumerate(messages) if isinstance(m, HumanMessage))
    tools = sum(isinstance(m, ToolMessage) for m in messages[turn:])
    if tools == 0:
        return tool_call("add", f"call-add-{tag}-{turn}", a=2, b=3)
    if tools == 1:
        return tool_call("multiply", f"call-mul-{tag}-{turn}", a=5, b=2)
    return AIMessage(ANSWER, id=f"answer-{tag}-{turn}")


def keyed_spri(messages: Sequence[BaseMessage]) -> str:
    """The SPRI base model's reply, chosen by the step its prompt asks for."""
    step = spri_step(messages)
    if step == "principles_refine":
        return PRINCIPLES
    if step == "principles_draft":
        return DRAFT_PRINCIPLES
    assert step == "response_refine", all_text(messages)[-200:]
    return REFINED


def keyed_critic(draft_score: int) -> Callable[[Sequence[BaseMessage]], str]:
    """The critic's reply, chosen by the candidate its prompt quotes."""

    def critique(messages: Sequence[BaseMessage]) -> str:
        prompt = str(messages[-1].content)
        if f"Response to Evaluate:\n{ANSWER}\n" in prompt:
            return "Feedback: Shows no steps. [RESULT] 2"
        if "Response to Evaluate:" in prompt:
            return "Feedback: Every step shown. [RESULT] 5"
        if DRAFT_PRINCIPLES in prompt:
            return f"Feedback: Draft. [RESULT] {draft_score}"
        return "Feedback: Clear. [RESULT] 5"

    return critique


def keyed_scenario(*, speculative: bool, draft_score: int, **options: Any) -> Scenario:
    base = ScriptedChatModel([keyed_spri], cycle=True)
    critic = ScriptedChatModel([keyed_critic(draft_score)], cycle=True)
    agent_model = ScriptedChatModel([keyed_agent], cycle=True)
    spri = SPRIMiddleware(base, critic_model=critic, speculative=speculative, **options)
    agent = create_agent(
        agent_model,
        tools=[add, multiply],
        system_prompt=SYSTEM,
        middleware=[spri],
        checkpointer=InMemorySaver(),
    )
    return Scenario(base, critic, agent_model, agent)


def two_turns(s: Scenario, mode: str) -> list[dict[str, Any]]:
    async def arun() -> list[dict[str, Any]]:
        return [await s.agent.ainvoke(ask(q), thread()) for q in (QUESTION, "And 4 + 4?")]

    if mode == "async":
        return asyncio.run(arun())
    return [s.agent.invoke(ask(q), thread()) for q in (QUESTION, "And 4 + 4?")]


def shape(messages: Sequence[BaseMessage]) -> list[tuple[Any, ...]]:
    """Messages without their generated ids."""
    return [(m.type, m.content, getattr(m, "tool_calls", None)) for m in messages]


def turn_result(out: dict[str, Any]) -> dict[str, Any]:
    usage = {stage: u for stage, u in out["spri_usage"].items() if stage != "speculation"}
    return {
        "messages": shape(out["messages"]),
        "answer_id": out["messages"][-1].id,
        "spri": {k: v for k, v in out.items() if k.startswith("spri_") and k != "spri_usage"},
        "usage": usage,
    }


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(("draft_score", "refine_answer"), [(5, False), (2, False), (2, True)])
def test_speculative_turns_match_sequential_turns(
    mode: str, draft_score: int, refine_answer: bool
) -> None:
    runs = {}
    for speculative in (False, True):
        s = keyed_scenario(
            speculative=speculative, draft_score=draft_score, refine_answer=refine_answer
        )
        runs[speculative] = (s, two_turns(s, mode))
    (seq, seq_outs), (spec, spec_outs) = runs[False], runs[True]
    assert [turn_result(o) for o in spec_outs] == [turn_result(o) for o in seq_outs]
    # The same SPRI calls, in the same order.
    for model in ("base", "critic"):
        assert [c["messages"] for c in getattr(spec, model).calls] == [
            c["messages"] for c in getattr(seq, model).calls
        ]
    # The agent made the sequential run's calls, plus one wasted call per refined turn.
    seq_calls = [shape(c["messages"]) for c in seq.agent_model.calls]
    spec_calls = [shape(c["messages"]) for c in spec.agent_model.calls]
    wasted = [c for c in spec_calls if c not in seq_calls]
    assert len(spec_calls) == len(seq_calls) + len(wasted)
    assert all(c in spec_calls for c in seq_calls)
    if draft_score == 5:  # the draft principles passed: each turn's early call was kept
        assert wasted == []
        assert all("speculation" not in out["spri_usage"] for out in spec_outs)
    else:
        # One early call per turn was dropped (cancelled, maybe before it started).
        assert len(wasted) <= 2 and all(DRAFT_PRINCIPLES in c[0][1] for c in wasted)
        for out in spec_outs:
            assert out["spri_usage"]["speculation"]["model_calls"] == 1
    state, seq_state = (x.agent.get_state(thread()).values for x in (spec, seq))
    question = next(m for m in reversed(state["messages"]) if isinstance(m, HumanMessage))
    assert state["spri_turn"] == {**seq_state["spri_turn"], "message_id": question.id}
    assert state["spri_pending_turn"] is None
    if refine_answer:
        assert spec_outs[-1]["messages"][-1].content == REFINED


def timed(reply: Callable[[Sequence[BaseMessage]], Any], log: list, label: str) -> Callable:
    def answer(messages: Sequence[BaseMessage]) -> Any:
        start = time.monotonic()
        time.sleep(0.2)
        log.append((label, start, time.monotonic()))
        return reply(messages)

    return answer


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_the_principle_critique_and_the_first_model_call_overlap(mode: str) -> None:
    log: list[tuple[str, float, float]] = []
    s = keyed_scenario(speculative=True, draft_score=5)
    s.critic.replies[:] = [timed(keyed_critic(5), log, "critique")]
    s.agent_model.replies[:] = [timed(keyed_agent, log, "model"), keyed_agent, keyed_agent]
    s.agent_model.cycle = False
    out = (
        asyncio.run(s.agent.ainvoke(ask(), thread()))
        if mode == "async"
        else s.agent.invoke(ask(), thread())
    )
    assert out["messages"][-1].content == ANSWER and len(s.agent_model.calls) == 3
    (_, c0, c1), (_, m0, m1) = sorted(log, key=lambda span: span[0])
    assert m0 < c1 and c0 < m1  # the two calls ran at the same time


def test_a_wasted_early_call_is_not_waited_for_on_the_async_path() -> None:
    started, release, returned = threading.Event(), threading.Event(), threading.Event()

    def slow_when_early(messages: Sequence[BaseMessage]) -> AIMessage:
        if DRAFT_PRINCIPLES in str(messages[0].content):
            started.set()
            release.wait(30)
            returned.set()
        return keyed_agent(messages)

    def critic_after_the_early_call_started(messages: Sequence[BaseMessage]) -> str:
        started.wait(30)
        return keyed_critic(2)(messages)

    s = keyed_scenario(speculative=True, draft_score=2)
    s.agent_model.replies[:] = [slow_when_early]
    s.critic.replies[:] = [critic_after_the_early_call_started]

    async def arun() -> tuple[dict[str, Any], bool]:
        out = await s.agent.ainvoke(ask(), thread())
        ended_first = started.is_set() and not returned.is_set()
        release.set()  # the scripted call's thread ends; asyncio.run waits for its executor
        return out, ended_first

    try:
        out, ended_before_the_early_call = asyncio.run(arun())
    finally:
        release.set()
    assert ended_before_the_early_call
    assert out["spri_principles"] == PRINCIPLES
    assert out["messages"][1].tool_calls[0]["id"].startswith("call-add-p1")
    assert out["spri_usage"]["speculation"] == {**EMPTY_USAGE, "model_calls": 1}


def test_a_wasted_early_call_on_the_sync_path_is_waited_for_and_counted() -> None:
    # A thread cannot stop a call that has started: the turn waits for it once the
    # principles are final, and counts the tokens its reply reports. A call the pool had
    # not started yet is never made and costs nothing (which one happens depends on timing).
    s = keyed_scenario(speculative=True, draft_score=2)
    out = s.agent.invoke(ask(), thread())
    early = [c for c in s.agent_model.calls if DRAFT_PRINCIPLES in str(c["messages"][0].content)]
    assert len(early) <= 1
    words_in = sum(len(str(m.content).split()) for m in early[0]["messages"]) if early else 0
    made = len(early)
    assert out["spri_usage"]["speculation"] == {
        **EMPTY_USAGE,
        "model_calls": made,
        "input_tokens": words_in,
        "output_tokens": made,
        "total_tokens": words_in + made,
    }
    assert out["messages"][1].tool_calls[0]["id"].startswith("call-add-p1")


@pytest.mark.parametrize("draft_score", [5, 2])
def test_speculative_stream_mode_messages_shows_no_wasted_call(draft_score: int) -> None:
    s = keyed_scenario(speculative=True, draft_score=draft_score)
    streamed = [m for m, _ in s.agent.stream(ask(), thread(), stream_mode="messages")]
    calls = [c["id"] for m in streamed for c in getattr(m, "tool_calls", None) or []]
    tag = "p0" if draft_score == 5 else "p1"
    # The first model call streams once (a kept early call as a whole message), the
    # wasted one never.
    assert calls == [f"call-add-{tag}-1", f"call-mul-{tag}-1"]
    assert streamed[-1].content == ANSWER


def test_speculative_resume_after_human_review_keeps_the_turns_principles() -> None:
    s = keyed_scenario(speculative=True, draft_score=2)
    agent = create_agent(
        s.agent_model,
        tools=[add, multiply],
        system_prompt=SYSTEM,
        middleware=[
            SPRIMiddleware(s.base, critic_model=s.critic, speculative=True),
            HumanInTheLoopMiddleware({"multiply": True}),
        ],
        checkpointer=InMemorySaver(),
    )
    paused = agent.invoke(ask(), thread())
    assert "__interrupt__" in paused
    calls = (len(s.base.calls), len(s.critic.calls))
    assert calls == (2, 2)
    out = agent.invoke(Command(resume={"decisions": [{"type": "approve"}]}), thread())
    assert (len(s.base.calls), len(s.critic.calls)) == calls
    assert out["messages"][-1].content == ANSWER
    assert all(PRINCIPLES in p for p in system_prompts(s.agent_model)[1:])
