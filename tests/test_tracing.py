"""Traces read like the algorithm: named model runs, nested under their graph nodes.

The run tree is collected locally with ``langchain_core``'s run collector, the same runs a
LangSmith tracer would send, so no LangSmith server is needed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.tracers.run_collector import RunCollectorCallbackHandler
from langchain_core.tracers.schemas import Run

from spri_graph import create_principles_graph, create_spri_graph
from spri_graph.engine.prompts import FORMAT_REMINDER
from tests.fakes import ScriptedChatModel

QUERY = "How do I tell my team I am burning out?"

# Principles: draft, two refinements (scores 2, 3, 5). Response: draft, one refinement.
BASE = ["P1", "P2", "P3", "R1", "R2"]
CRITIC = [
    "Feedback: vague. [RESULT] 2",
    "Feedback: closer. [RESULT] 3",
    "Feedback: good. [RESULT] 5",
    "Feedback: off-topic. [RESULT] 3",
    "Feedback: aligned. [RESULT] 5",
]
# (stage, step, iteration, the model's reply) for every model call, in order.
EXPECTED = [
    ("principles", "draft", 0, "P1"),
    ("principles", "critique", 1, CRITIC[0]),
    ("principles", "refine", 1, "P2"),
    ("principles", "critique", 2, CRITIC[1]),
    ("principles", "refine", 2, "P3"),
    ("principles", "critique", 3, CRITIC[2]),
    ("response", "draft", 0, "R1"),
    ("response", "critique", 1, CRITIC[3]),
    ("response", "refine", 1, "R2"),
    ("response", "critique", 2, CRITIC[4]),
]


def walk(run: Run, parent: Run | None = None) -> list[tuple[Run, Run | None]]:
    """Every run of the tree with its parent, depth first in start order."""
    found = [(run, parent)]
    for child in sorted(run.child_runs, key=lambda r: r.start_time):
        found += walk(child, run)
    return found


def collect(graph: Any, mode: str, config: dict | None = None) -> Run:
    collector = RunCollectorCallbackHandler()
    config = {**(config or {}), "callbacks": [collector]}
    if mode == "async":
        asyncio.run(graph.ainvoke({"query": QUERY}, config))
    else:
        graph.invoke({"query": QUERY}, config)
    (root,) = collector.traced_runs
    return root


def metadata(run: Run) -> dict[str, Any]:
    return (run.extra or {}).get("metadata", {})


def reply_text(run: Run) -> str:
    return run.outputs["generations"][0][0]["text"]


def prompt_text(run: Run) -> str:
    (prompt,) = run.inputs["prompts"]
    return prompt


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_full_run_with_two_refinements_reads_like_the_algorithm(mode: str) -> None:
    base = ScriptedChatModel(BASE, name_="base")
    critic = ScriptedChatModel(CRITIC, name_="critic")
    graph = create_spri_graph(base, critic_model=critic).compile()
    root = collect(
        graph,
        mode,
        {"run_name": "support-bot", "tags": ["my-app"], "metadata": {"request_id": "r-7"}},
    )
    runs = walk(root)
    parents = {id(run): parent for run, parent in runs}
    llm_runs = [run for run, _ in runs if run.run_type == "llm"]

    assert root.name == "support-bot" and root.parent_run_id is None
    assert root.outputs["principles"] == "P3" and root.outputs["response"] == "R2"
    assert len(llm_runs) == len(EXPECTED) == len(BASE) + len(CRITIC)

    for run, (stage, step, iteration, reply) in zip(llm_runs, EXPECTED, strict=True):
        label = f"spri:{stage}:{step}"
        node = f"{stage}_{step}"
        assert run.name == label
        assert {"spri", f"spri:{stage}", label, "my-app"} <= set(run.tags)
        meta = metadata(run)
        assert (meta["spri_stage"], meta["spri_step"], meta["spri_iteration"]) == (
            stage,
            step,
            iteration,
        ), label
        assert meta["langgraph_node"] == node
        assert meta["request_id"] == "r-7"
        assert reply_text(run) == reply
        # Nesting: model run -> the graph's run of the node that made the call -> the root.
        node_run = parents[id(run)]
        assert (node_run.name, node_run.run_type) == (node, "chain")
        assert parents[id(node_run)] is root
        assert any(tag.startswith("graph:step:") for tag in node_run.tags)
        assert metadata(node_run)["langgraph_step"] == meta["langgraph_step"]
        assert "spri_step" not in metadata(node_run)  # the step's labels are the call's own
        # Each graph node run holds this one model call.
        assert [r.name for r, p in runs if p is node_run and r.run_type == "llm"] == [label]

    # The algorithm's data flows through the trace: each refine sees the previous
    # candidate and the critic's feedback; each critique grades the latest candidate.
    by_label = [(run.name, run) for run in llm_runs]
    assert "P1" in prompt_text(by_label[2][1]) and "vague." in prompt_text(by_label[2][1])
    assert "P2" in prompt_text(by_label[3][1])
    assert "P2" in prompt_text(by_label[4][1]) and "closer." in prompt_text(by_label[4][1])
    assert "P3" in prompt_text(by_label[6][1])  # the response is written from P3
    assert "R1" in prompt_text(by_label[8][1]) and "off-topic." in prompt_text(by_label[8][1])

    # The graph's top level lists the nodes in the order they ran.
    assert [child.name for child in sorted(root.child_runs, key=lambda r: r.start_time)] == [
        "prepare",
        "principles_draft",
        "principles_critique",
        "principles_refine",
        "principles_critique",
        "principles_refine",
        "principles_critique",
        "response_draft",
        "response_critique",
        "response_refine",
        "response_critique",
        "finalize",
    ]


def test_compiled_graph_name_is_the_root_run_name() -> None:
    base = ScriptedChatModel(["P1"])
    critic = ScriptedChatModel(["[RESULT] 5"])
    graph = create_principles_graph(base, critic_model=critic).compile(name="principles")
    root = collect(graph, "sync")
    assert root.name == "principles"
    assert [r.name for r, _ in walk(root) if r.run_type == "llm"] == [
        "spri:principles:draft",
        "spri:principles:critique",
    ]


def test_critique_retry_keeps_name_and_iteration() -> None:
    base = ScriptedChatModel(["P1"])
    critic = ScriptedChatModel(["Looks fine to me.", "Feedback: fine. [RESULT] 4"])
    graph = create_principles_graph(base, critic_model=critic, parse_retries=1).compile()
    runs = walk(collect(graph, "sync"))
    parents = {id(run): parent for run, parent in runs}
    critiques = [r for r, _ in runs if r.name == "spri:principles:critique"]
    assert len(critiques) == 2
    assert [metadata(r)["spri_iteration"] for r in critiques] == [1, 1]
    # Both attempts belong to the same critique node run.
    assert parents[id(critiques[0])] is parents[id(critiques[1])]
    # The second attempt carries the unreadable reply and the format reminder.
    assert "Looks fine to me." not in prompt_text(critiques[0])
    assert "Looks fine to me." in prompt_text(critiques[1])
    assert FORMAT_REMINDER in prompt_text(critiques[1])


def test_structured_critic_runs_under_the_critique_name() -> None:
    base = ScriptedChatModel(["P1", "P2"])
    critic = ScriptedChatModel([{"feedback": "vague", "score": 2}, {"feedback": "ok", "score": 4}])
    graph = create_principles_graph(base, critic_model=critic, critic_output="structured")
    runs = walk(collect(graph.compile(), "sync"))
    children: dict[int, list[Run]] = {}
    for run, parent in runs:
        if parent is not None:
            children.setdefault(id(parent), []).append(run)

    def descendants(run: Run) -> list[Run]:
        found = []
        for child in children.get(id(run), []):
            found += [child, *descendants(child)]
        return found

    named = [r for r, _ in runs if r.name == "spri:principles:critique"]
    assert [metadata(r)["spri_iteration"] for r in named] == [1, 2]
    for iteration, run in enumerate(named, 1):
        # The critic's structured call is one chain named for the step, holding the model run.
        (llm,) = [r for r in descendants(run) if r.run_type == "llm"]
        assert "spri:principles:critique" in llm.tags
        assert (metadata(llm)["spri_step"], metadata(llm)["spri_iteration"]) == (
            "critique",
            iteration,
        )
    other_llms = [r.name for r, _ in runs if r.run_type == "llm" and "critique" not in r.name]
    assert "spri:principles:draft" in other_llms and "spri:principles:refine" in other_llms
