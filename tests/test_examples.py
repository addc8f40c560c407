"""The examples run as written, on scripted models and (the agent) on the embedded model."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from tests.fakes import ScriptedChatModel

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_agent_node_appends_the_aligned_answer() -> None:
    example = load("agent_node")
    model = ScriptedChatModel(["1. Be honest.", "[RESULT] 5", "Tell them early.", "[RESULT] 4"])
    agent = example.build_agent(model)
    config = {"configurable": {"thread_id": "t"}}
    out = agent.invoke({"messages": [HumanMessage("How do I say I'm burnt out?")]}, config)
    assert isinstance(out["messages"][-1], AIMessage)
    assert out["messages"][-1].content == "Tell them early."
    assert len(out["messages"]) == 2


def test_principles_steer_the_chain() -> None:
    example = load("principles_steer_chain")
    model = ScriptedChatModel(["1. Weigh savings.", "[RESULT] 5", "Plan a sabbatical first."])
    answer = example.build_chain(model).invoke({"query": "Should I quit to travel?"})
    assert answer == "Plan a sabbatical first."
    system = model.calls[-1]["messages"][0]
    assert "1. Weigh savings." in system.content


def test_evaluator_in_a_langsmith_evaluation_loop() -> None:
    example = load("evaluate_with_langsmith")

    # One reply serves every step: the critic reads "[RESULT] 4" (accepted at threshold 4),
    # the graders read the marked <score>, and the rubric writer's text becomes the criteria.
    reply = "<feedback>Clear.</feedback><score>4</score> [RESULT] 4"
    model = ScriptedChatModel([reply], cycle=True)
    rows = example.evaluate(model)
    assert [row["question"] for row in sorted(rows, key=lambda r: r["question"])] == sorted(
        q for q, _ in example.QUESTIONS
    )
    for row in rows:
        assert set(row) == {"question", "spri_rubric_score", "vanilla_score"}
        assert row["vanilla_score"] == row["spri_rubric_score"] == 4.0


def test_agent_middleware_with_and_without_answer_refinement(capsys) -> None:
    example = load("agent_middleware")

    def tool_call(name: str, **args: float) -> AIMessage:
        return AIMessage("", tool_calls=[{"name": name, "args": args, "id": f"call-{name}"}])

    turn = [
        "1. Give the weekly total in miles.",  # principles, accepted at once
        "Feedback: Clear. [RESULT] 5",
        tool_call("km_to_miles", km=12),
        tool_call("multiply", a=7.456, b=7),
        "About 52.2 miles.",
    ]
    model = ScriptedChatModel(
        [
            *turn,
            *turn,
            "Feedback: Shows no steps. [RESULT] 2",  # the second run critiques the answer
            "12 km is 7.456 miles a day, so about 52.2 miles a week.",
            "Feedback: Follows them. [RESULT] 5",
        ]
    )
    plain, refined = example.main("I cycle 12 km a day. How many miles a week?", model)

    assert plain["messages"][-1].content == "About 52.2 miles."
    assert [m.content for m in plain["messages"] if m.type == "tool"] == ["7.456", "52.192"]
    assert "spri_response_critiques" not in plain
    assert refined["messages"][-1].content.startswith("12 km is 7.456 miles a day")
    assert [c.score for c in refined["spri_response_critiques"]] == [2, 5]
    assert model.remaining == 0
    # Every agent call of a turn had the principles in its system message.
    agent_calls = [c for c in model.calls if c["tools"]]
    assert len(agent_calls) == 6
    assert all("1. Give the weekly total" in c["messages"][0].content for c in agent_calls)

    printed = capsys.readouterr().out
    assert printed.count("tool call: km_to_miles({'km': 12}) -> 7.456\n") == 2
    assert printed.count("tool call: multiply({'a': 7.456, 'b': 7}) -> 52.192\n") == 2
    assert "state keys: spri_principle_critiques, spri_principles, spri_usage\n" in printed
    assert (
        "state keys: spri_principle_critiques, spri_principles, spri_response_critiques, "
        "spri_usage\n" in printed
    )
    assert "usage[principles]: 1 model calls, 1 critic calls" in printed
    assert "usage[response]: 1 model calls, 2 critic calls" in printed


@pytest.mark.integration
def test_agent_middleware_calls_a_tool_on_the_embedded_model(capsys) -> None:
    """On SmolLM2-135M the turn's first call is made to call ``km_to_miles``; then it answers."""
    from spri_graph.models import load_local_model

    example = load("agent_middleware")
    question = "I cycle 12 km a day. How many miles is that in a week?"
    for out in example.main(question, load_local_model(max_tokens=64)):
        messages = out["messages"]
        assert [m.type for m in messages[:3]] == ["human", "ai", "tool"]
        (call,) = messages[1].tool_calls
        assert call["name"] == "km_to_miles" and messages[2].tool_call_id == call["id"]
        # The loop went on with the tool's result, to an answer without tool calls.
        final = messages[-1]
        assert len(messages) >= 4 and final.type == "ai" and not final.tool_calls
        assert final.content.strip()
        # Principles written once for the turn: one draft and one refinement per re-critique.
        critiques = out["spri_principle_critiques"]
        assert out["spri_principles"].strip() and 1 <= len(critiques) <= 2
        assert out["spri_usage"]["principles"]["model_calls"] == len(critiques)
    assert capsys.readouterr().out.count("tool call: km_to_miles(") == 2
