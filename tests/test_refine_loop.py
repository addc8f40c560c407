"""create_refine_loop and add_refine_loop on their own, on scripted models."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated, Any

import pytest
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from spri_graph import Critique, RefineLoop, StageUsage, add_refine_loop, create_refine_loop
from spri_graph.engine.steps import CandidateModel, merge_usage
from tests.fakes import ScriptedChatModel

SNAPSHOTS = Path(__file__).parent / "snapshots"

DRAFT = ChatPromptTemplate.from_template("Write a haiku about {topic}.")
CRITIQUE = ChatPromptTemplate.from_template("Grade this haiku:\n{candidate}")
REFINE = ChatPromptTemplate.from_template("Rewrite:\n{candidate}\nFeedback: {feedback}")
INPUTS = {"inputs": {"topic": "rain"}}


def loop_graph(base: list[Any], critic: list[Any], **options: Any) -> Any:
    base_model = ScriptedChatModel(base, name_="base")
    critic_model = ScriptedChatModel(critic, name_="critic")
    builder = create_refine_loop(
        base_model,
        critic_model=critic_model,
        draft_prompt=DRAFT,
        critique_prompt=CRITIQUE,
        refine_prompt=REFINE,
        **options,
    )
    return builder, base_model, critic_model


def run(graph: Any, inputs: Any, mode: str, config: Any = None) -> dict[str, Any]:
    if mode == "async":
        return asyncio.run(graph.ainvoke(inputs, config))  # type: ignore[no-any-return]
    return graph.invoke(inputs, config)  # type: ignore[no-any-return]


def scores(out: dict[str, Any]) -> list[int | None]:
    return [Critique.of(c).score for c in out["critiques"]]


# --------------------------------------------------------------------------- one loop


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_loop_drafts_critiques_and_refines_until_the_critic_accepts(mode: str) -> None:
    builder, base, critic = loop_graph(
        ["Rain falls.", "Soft rain on the roof."],
        ["Feedback: flat. [RESULT] 2", "Feedback: vivid. [RESULT] 5"],
    )
    out = run(builder.compile(), INPUTS, mode)
    assert out["candidate"] == "Soft rain on the roof."
    assert scores(out) == [2, 5]
    assert [Critique.of(c).feedback for c in out["critiques"]] == ["flat.", "vivid."]
    # The prompts got the state's inputs, the candidate and the critic's feedback.
    assert base.calls[0]["messages"][-1].content == "Write a haiku about rain."
    assert critic.calls[0]["messages"][-1].content == "Grade this haiku:\nRain falls."
    assert base.calls[1]["messages"][-1].content == "Rewrite:\nRain falls.\nFeedback: flat."
    usage = out["usage"]["refine"]
    assert (usage["model_calls"], usage["critic_calls"]) == (2, 2)
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] > 0


def test_the_stage_name_names_the_nodes_and_the_usage() -> None:
    builder, _, _ = loop_graph(["A haiku."], ["[RESULT] 5"], name="haiku")
    assert {"haiku_draft", "haiku_critique", "haiku_refine"} <= set(builder.nodes)
    assert set(builder.compile().invoke(INPUTS)["usage"]) == {"haiku"}


# --------------------------------------------------------------------------- the stop rule


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_score_at_the_threshold_ends_the_loop(mode: str) -> None:
    builder, base, _ = loop_graph(["A haiku."], ["Feedback: fine. [RESULT] 3"], threshold=3)
    out = run(builder.compile(), INPUTS, mode)
    assert (out["candidate"], scores(out), len(base.calls)) == ("A haiku.", [3], 1)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_max_iterations_bounds_the_critiques(mode: str) -> None:
    builder, base, critic = loop_graph(
        ["v1", "v2", "v3"], ["[RESULT] 1", "[RESULT] 2", "[RESULT] 2"], max_iterations=2
    )
    out = run(builder.compile(), INPUTS, mode)
    # Two critiques (of the draft and of one refinement), both below the threshold: the
    # loop ends on the second candidate, without a third.
    assert (out["candidate"], scores(out)) == ("v2", [1, 2])
    assert (len(base.calls), len(critic.calls)) == (2, 2)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_an_unreadable_score_ends_the_loop_keeping_the_candidate(mode: str) -> None:
    builder, base, critic = loop_graph(
        ["A haiku.", "never written"], ["It is fine, I suppose."], parse_retries=0
    )
    out = run(builder.compile(), INPUTS, mode)
    assert out["candidate"] == "A haiku." and scores(out) == [None]
    assert out["critiques"][0].raw == "It is fine, I suppose."
    assert (len(base.calls), len(critic.calls)) == (1, 1)


def test_an_unreadable_score_is_asked_again_before_the_loop_ends() -> None:
    builder, _, critic = loop_graph(
        ["A haiku."], ["It is fine.", "Feedback: fine. [RESULT] 4"], parse_retries=1
    )
    out = builder.compile().invoke(INPUTS)
    assert scores(out) == [4] and len(critic.calls) == 2
    assert "[RESULT]" in critic.calls[1]["messages"][-1].content  # the format reminder
    assert out["usage"]["refine"]["critic_calls"] == 2


def test_per_run_context_overrides_the_threshold() -> None:
    builder, base, _ = loop_graph(["v1", "v2"], ["[RESULT] 3", "[RESULT] 5"])
    graph = builder.compile()
    assert scores(graph.invoke(INPUTS, context={"threshold": 3})) == [3]
    assert len(base.calls) == 1


# --------------------------------------------------------------------------- add_refine_loop


class PoemState(TypedDict, total=False):
    topic: str
    poem: str
    poem_critiques: list[Critique]
    usage: Annotated[dict[str, StageUsage], merge_usage]
    published: str


def poem_loop(base: ScriptedChatModel, critic: ScriptedChatModel) -> RefineLoop:
    return RefineLoop(
        name="poem",
        model=base,
        critic_model=critic,
        draft_prompt=DRAFT,
        critique_prompt=CRITIQUE,
        refine_prompt=REFINE,
        candidate_key="poem",
        critiques_key="poem_critiques",
        prompt_inputs=lambda state: {"topic": state["topic"]},
    )


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_add_refine_loop_wires_the_loop_into_a_graph_and_ends_at_then(mode: str) -> None:
    base = ScriptedChatModel(["Rain.", "Rain on tin."])
    critic = ScriptedChatModel(["[RESULT] 2", "[RESULT] 4"])
    builder = StateGraph(PoemState)
    first = add_refine_loop(builder, poem_loop(base, critic), then="publish")
    builder.add_node("publish", lambda state: {"published": state["poem"].upper()})
    builder.add_edge(START, first)
    builder.add_edge("publish", END)
    assert first == "poem_draft"
    out = run(builder.compile(), {"topic": "rain"}, mode)
    assert out["published"] == "RAIN ON TIN."  # `then` ran once, on the accepted poem
    assert [c.score for c in out["poem_critiques"]] == [2, 4]
    assert out["usage"]["poem"]["model_calls"] == 2


def test_the_loop_ends_where_then_says() -> None:
    builder = StateGraph(PoemState)
    first = add_refine_loop(
        builder, poem_loop(ScriptedChatModel([]), ScriptedChatModel([])), then="publish"
    )
    builder.add_node("publish", lambda state: {})
    builder.add_edge(START, first)
    builder.add_edge("publish", END)
    edges = {(e.source, e.target, e.data) for e in builder.compile().get_graph().edges}
    assert ("poem_critique", "publish", "done") in edges
    assert ("poem_critique", "poem_refine", "refine") in edges
    assert ("poem_refine", "poem_critique", None) in edges


# --------------------------------------------------------------------------- drawing


def test_the_drawn_loop_matches_the_snapshot() -> None:
    builder, _, _ = loop_graph([], [])
    mermaid = builder.compile().get_graph().draw_mermaid()
    snapshot = SNAPSHOTS / "refine_loop.mmd"
    if os.environ.get("UPDATE_SNAPSHOTS") or not snapshot.exists():
        snapshot.write_text(mermaid)
    assert mermaid == snapshot.read_text()
    assert "refine_critique -. &nbsp;refine&nbsp; .-> refine_refine;" in mermaid
    assert "refine_critique -. &nbsp;done&nbsp; .-> __end__;" in mermaid


# --------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_checkpointed_loop_stops_before_a_refinement_and_resumes(mode: str) -> None:
    builder, base, critic = loop_graph(["v1", "v2"], ["[RESULT] 2", "[RESULT] 5"])
    graph = builder.compile(checkpointer=InMemorySaver(), interrupt_before=["refine_refine"])
    config = {"configurable": {"thread_id": "haiku-1"}}
    run(graph, INPUTS, mode, config)
    paused = graph.get_state(config)
    assert paused.next == ("refine_refine",)
    assert paused.values["candidate"] == "v1" and len(paused.values["critiques"]) == 1
    out = run(graph, None, mode, config)  # resume: the critiques come back from the checkpoint
    assert (out["candidate"], scores(out)) == ("v2", [2, 5])
    assert out["usage"]["refine"]["model_calls"] == 2 and len(base.calls) == 2
    assert len(critic.calls) == 2
    # Another thread starts afresh.
    other = {"configurable": {"thread_id": "haiku-2"}}
    assert graph.get_state(other).values == {}


# --------------------------------------------------------------------------- output modes


class _Candidates(Runnable[Any, Any]):
    """A CandidateModel: drafts and refinements go to one model, other calls to another."""

    def __init__(self, plain: ScriptedChatModel, candidates: ScriptedChatModel) -> None:
        self.plain, self.candidates = plain, candidates

    def invoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
        return self.plain.invoke(input, config, **kwargs)

    async def ainvoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
        return await self.plain.ainvoke(input, config, **kwargs)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_drafts_and_refinements_ask_for_candidates_and_the_critique_does_not(mode: str) -> None:
    plain = ScriptedChatModel(["[RESULT] 2", "[RESULT] 5"], name_="plain")
    writer = ScriptedChatModel(["v1", "v2"], name_="writer")
    model = _Candidates(plain, writer)
    assert isinstance(model, CandidateModel)
    builder = create_refine_loop(
        model,  # type: ignore[arg-type]
        draft_prompt=DRAFT,
        critique_prompt=CRITIQUE,
        refine_prompt=REFINE,
    )
    out = run(builder.compile(), INPUTS, mode)
    assert (out["candidate"], scores(out)) == ("v2", [2, 5])
    assert (len(writer.calls), len(plain.calls)) == (2, 2)  # no tracing metadata read
