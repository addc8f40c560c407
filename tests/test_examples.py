"""The examples run as written, on scripted models."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

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
