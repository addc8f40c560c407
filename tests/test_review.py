"""Human review of principles: interrupt after the principles stage, then approve or edit."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.types import Command

from spri_graph import Critique, create_spri_graph
from tests.conftest import ROOT
from tests.fakes import PRINCIPLES_SECTION, ScriptedChatModel, all_text

QUERY = "How do I tell my team I am burning out?"
EDITED = "1. Name the workload, not the people.\n2. Ask for one concrete change."


def review_graph(base: ScriptedChatModel, critic: ScriptedChatModel, checkpointer: Any) -> Any:
    return create_spri_graph(base, critic_model=critic, review_principles=True).compile(
        checkpointer=checkpointer
    )


def scripted() -> tuple[ScriptedChatModel, ScriptedChatModel]:
    """Principles P1 -> refined P2 (scores 2 then 5); then response R1 accepted at once."""
    base = ScriptedChatModel(["P1", "P2", "R1"], name_="base")
    critic = ScriptedChatModel(
        ["Feedback: too vague. [RESULT] 2", "Feedback: clear. [RESULT] 5", "[RESULT] 5"],
        name_="critic",
    )
    return base, critic


def thread(name: str = "t1") -> dict:
    return {"configurable": {"thread_id": name}}


def run(graph: Any, inputs: Any, config: dict, mode: str) -> dict:
    if mode == "async":
        return asyncio.run(graph.ainvoke(inputs, config))
    return graph.invoke(inputs, config)


def response_prompt(base: ScriptedChatModel) -> str:
    """The prompt of the response draft: the base model's first call after the principles."""
    return all_text(base.calls[2]["messages"])


def check_paused(graph: Any, out: dict, config: dict) -> dict:
    """The run stopped at the review with the principles and their critiques on show."""
    assert "response" not in out
    (pending,) = out["__interrupt__"]
    request = pending.value
    assert request["principles"] == "P2"
    assert [(c["feedback"], c["score"]) for c in request["principle_critiques"]] == [
        ("too vague.", 2),
        ("clear.", 5),
    ]
    assert "True to approve" in request["instructions"]
    assert "error" not in request
    assert graph.get_state(config).next == ("review_principles",)
    return request


MODES = ["sync", "async"]
APPROVALS = [True, "approve", {"action": "approve"}]
EDITS = [EDITED, {"principles": EDITED}, f"  {EDITED}\n"]


# --------------------------------------------------------------------------- in memory


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("answer", APPROVALS, ids=repr)
def test_interrupt_then_approve_keeps_the_principles(mode: str, answer: Any) -> None:
    base, critic = scripted()
    graph = review_graph(base, critic, InMemorySaver())
    out = run(graph, {"query": QUERY}, thread(), mode)
    check_paused(graph, out, thread())
    # Nothing of the response stage ran before the review.
    assert len(base.calls) == 2 and len(critic.calls) == 2

    out = run(graph, Command(resume=answer), thread(), mode)
    assert out["principles"] == "P2"
    assert out["response"] == "R1"
    assert f"{PRINCIPLES_SECTION}P2" in response_prompt(base)
    assert base.remaining == 0 and critic.remaining == 0
    assert graph.get_state(thread()).next == ()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("answer", EDITS, ids=["text", "dict", "padded"])
def test_interrupt_then_edit_replaces_the_principles(mode: str, answer: Any) -> None:
    base, critic = scripted()
    graph = review_graph(base, critic, InMemorySaver())
    check_paused(graph, run(graph, {"query": QUERY}, thread(), mode), thread())

    out = run(graph, Command(resume=answer), thread(), mode)
    assert out["principles"] == EDITED
    assert out["response"] == "R1"
    # Both the writer and the critic of the response saw the edited principles only.
    assert f"{PRINCIPLES_SECTION}{EDITED}\n" in response_prompt(base)
    assert "P2" not in response_prompt(base)
    response_critique = critic.calls[2]["messages"][-1].content
    assert EDITED in response_critique and "P2" not in response_critique
    # The critiques shown at the review are kept with the run.
    assert [c.score for c in out["principle_critiques"]] == [2, 5]


@pytest.mark.parametrize("answer", [42, "", "   ", False, {"principles": ""}, ["P9"]], ids=repr)
def test_unreadable_answer_asks_again_and_the_thread_stays_usable(answer: Any) -> None:
    base, critic = scripted()
    graph = review_graph(base, critic, InMemorySaver())
    graph.invoke({"query": QUERY}, thread())

    out = graph.invoke(Command(resume=answer), thread())
    (pending,) = out["__interrupt__"]
    assert pending.value["principles"] == "P2"
    assert pending.value["error"].startswith(f"review: cannot use {answer!r}")
    assert "expected True to approve or edited principles" in pending.value["error"]
    assert "response" not in out and len(base.calls) == 2

    out = graph.invoke(Command(resume=EDITED), thread())
    assert out["principles"] == EDITED and out["response"] == "R1"
    assert EDITED in response_prompt(base)


def test_threads_are_reviewed_independently() -> None:
    base = ScriptedChatModel(["PA", "PB", "RA", "RB"])
    critic = ScriptedChatModel(["[RESULT] 5"] * 4)
    graph = review_graph(base, critic, InMemorySaver())
    graph.invoke({"query": "Question A?"}, thread("a"))
    graph.invoke({"query": "Question B?"}, thread("b"))
    assert graph.get_state(thread("a")).interrupts[0].value["principles"] == "PA"
    assert graph.get_state(thread("b")).interrupts[0].value["principles"] == "PB"

    graph.invoke(Command(resume="Edited B"), thread("b"))
    graph.invoke(Command(resume=True), thread("a"))
    assert graph.get_state(thread("b")).values["principles"] == "Edited B"
    assert graph.get_state(thread("a")).values["principles"] == "PA"
    assert f"{PRINCIPLES_SECTION}Edited B" in all_text(base.calls[2]["messages"])
    assert f"{PRINCIPLES_SECTION}PA" in all_text(base.calls[3]["messages"])


def test_stream_shows_the_interrupt_as_an_update() -> None:
    base, critic = scripted()
    graph = review_graph(base, critic, InMemorySaver())
    updates = list(graph.stream({"query": QUERY}, thread(), stream_mode="updates"))
    assert [next(iter(u)) for u in updates] == [
        "prepare",
        "principles_draft",
        "principles_critique",
        "principles_refine",
        "principles_critique",
        "__interrupt__",
    ]
    resumed = list(graph.stream(Command(resume=EDITED), thread(), stream_mode="updates"))
    assert resumed[0] == {"review_principles": {"principles": EDITED}}
    assert [next(iter(u)) for u in resumed][1:] == [
        "response_draft",
        "response_critique",
        "finalize",
    ]


def test_without_review_there_is_no_pause() -> None:
    base, critic = scripted()
    graph = create_spri_graph(base, critic_model=critic).compile(checkpointer=InMemorySaver())
    out = graph.invoke({"query": QUERY}, thread())
    assert "__interrupt__" not in out and out["response"] == "R1"
    assert "review_principles" not in graph.get_graph().nodes


# --------------------------------------------------------------------------- SQLite


@pytest.mark.parametrize("answer", [True, EDITED], ids=["approve", "edit"])
def test_sqlite_checkpointer_in_one_process(tmp_path: Path, answer: Any) -> None:
    base, critic = scripted()
    with sqlite3.connect(tmp_path / "review.sqlite", check_same_thread=False) as conn:
        graph = review_graph(base, critic, SqliteSaver(conn))
        check_paused(graph, graph.invoke({"query": QUERY}, thread()), thread())
        out = graph.invoke(Command(resume=answer), thread())
    expected = "P2" if answer is True else EDITED
    assert out["principles"] == expected
    assert f"{PRINCIPLES_SECTION}{expected}" in response_prompt(base)


def test_async_sqlite_checkpointer(tmp_path: Path) -> None:
    base, critic = scripted()

    async def main() -> dict:
        async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "review.sqlite")) as saver:
            graph = review_graph(base, critic, saver)
            out = await graph.ainvoke({"query": QUERY}, thread())
            assert out["__interrupt__"][0].value["principles"] == "P2"
            return await graph.ainvoke(Command(resume=EDITED), thread())

    out = asyncio.run(main())
    assert out["principles"] == EDITED
    assert EDITED in response_prompt(base)


@pytest.mark.parametrize("allowlist", [False, True])
def test_checkpointed_critiques_are_plain_data_read_back_without_warnings(
    caplog: pytest.LogCaptureFixture, allowlist: bool
) -> None:
    base, critic = scripted()
    serde = JsonPlusSerializer(allowed_msgpack_modules=[Critique]) if allowlist else None
    graph = review_graph(base, critic, InMemorySaver(serde=serde))
    with caplog.at_level(logging.WARNING, logger="langgraph.checkpoint.serde"):
        graph.invoke({"query": QUERY}, thread())
        values = graph.get_state(thread()).values
        out = graph.invoke(Command(resume=True), thread())
    # Read back from the checkpoint, critiques are dicts; Critique.of restores them, and the
    # graph's output holds Critique objects again.
    assert [Critique.of(c).score for c in values["principle_critiques"]] == [2, 5]
    assert all(isinstance(c, Critique) for c in out["principle_critiques"])
    assert [c.score for c in out["principle_critiques"]] == [2, 5]
    assert not [r for r in caplog.records if "Critique" in r.getMessage()]


# --------------------------------------------------------------------------- fresh process

RESUME_SCRIPT = textwrap.dedent(
    """
    import json, sqlite3, sys
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.types import Command
    from spri_graph import Critique, create_spri_graph
    from tests.fakes import ScriptedChatModel

    path, serde_mode, answer = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    # Only the response stage is left to run in this process.
    base = ScriptedChatModel(["R-fresh"])
    critic = ScriptedChatModel(["Feedback: follows them. [RESULT] 4"])
    serde = (
        JsonPlusSerializer(allowed_msgpack_modules=[Critique])
        if serde_mode == "allowlist" else None
    )
    conn = sqlite3.connect(path, check_same_thread=False)
    graph = create_spri_graph(base, critic_model=critic, review_principles=True).compile(
        checkpointer=SqliteSaver(conn, serde=serde)
    )
    config = {"configurable": {"thread_id": "fresh"}}
    paused = graph.get_state(config)
    out = graph.invoke(Command(resume=answer), config)
    print(json.dumps({
        "next_before": list(paused.next),
        "shown": paused.interrupts[0].value["principles"],
        "critique_types": sorted({type(c).__name__ for c in out["principle_critiques"]}),
        "scores": [c.score for c in out["principle_critiques"]],
        "principles": out["principles"],
        "response": out["response"],
        "response_prompt": base.calls[0]["messages"][0].content,
        "left": [base.remaining, critic.remaining],
    }))
    """
)


@pytest.mark.parametrize("serde_mode", ["default", "strict", "allowlist"])
@pytest.mark.parametrize("answer", [True, EDITED], ids=["approve", "edit"])
def test_resume_from_a_fresh_process_on_the_same_sqlite_file(
    tmp_path: Path, serde_mode: str, answer: Any
) -> None:
    db = tmp_path / "review.sqlite"
    base, critic = scripted()
    with sqlite3.connect(db, check_same_thread=False) as conn:
        graph = review_graph(base, critic, SqliteSaver(conn))
        check_paused(graph, graph.invoke({"query": QUERY}, thread("fresh")), thread("fresh"))
    conn.close()

    script = tmp_path / "resume.py"
    script.write_text(RESUME_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("LANGGRAPH_STRICT_MSGPACK", None)
    if serde_mode == "strict":
        env["LANGGRAPH_STRICT_MSGPACK"] = "true"
    proc = subprocess.run(
        [sys.executable, str(script), str(db), serde_mode, json.dumps(answer)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = "P2" if answer is True else EDITED
    assert result["next_before"] == ["review_principles"]
    assert result["shown"] == "P2"
    assert result["principles"] == expected
    assert result["response"] == "R-fresh"
    assert result["response_prompt"].endswith(f"{PRINCIPLES_SECTION}{expected}")
    assert result["left"] == [0, 0]
    # The critiques made before the pause come back as Critique objects, never blocked.
    assert result["critique_types"] == ["Critique"]
    assert result["scores"] == [2, 5]
    # Critiques are plain data in the checkpoint: no warning with any serializer.
    assert "Blocked deserialization" not in proc.stderr
    assert "unregistered type" not in proc.stderr, proc.stderr
