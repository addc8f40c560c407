from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import pytest
from langchain_core.messages import BaseMessage

from spri_graph import Rubric, create_judge_panel, create_spri_evaluator, panel_agreement
from spri_graph.judges.panel import aggregate_scores
from tests.fakes import ScriptedChatModel

INSTRUCTION = "Name a prime number greater than 10."
RESPONSE = "11 is prime."
INPUT = {"instruction": INSTRUCTION, "response": RESPONSE}
RUBRIC = (
    "Criteria: Is the number prime and greater than 10?\n"
    "Score 1: No number.\nScore 2: Not prime.\nScore 3: Prime but not above 10.\n"
    "Score 4: Correct, no reason.\nScore 5: Correct, with a reason."
)
MODES = ["sync", "async"]


def run(graph: Any, inputs: dict, mode: str = "sync", **kwargs: Any) -> dict:
    if mode == "async":
        return asyncio.run(graph.ainvoke(inputs, **kwargs))
    return graph.invoke(inputs, **kwargs)


def grading(score: Any, feedback: str = "Correct.") -> str:
    return f"<feedback>{feedback}</feedback><score>{score}</score>"


def panel(
    replies: Sequence[Any], **kwargs: Any
) -> tuple[Any, ScriptedChatModel, list[ScriptedChatModel]]:
    writer = ScriptedChatModel([RUBRIC, "Feedback: Checkable. [RESULT] 5"], name_="writer")
    judges = [ScriptedChatModel([reply], name_=f"judge{i}") for i, reply in enumerate(replies)]
    graph = create_judge_panel(judges, rubric_model=writer, **kwargs).compile()
    return graph, writer, judges


def prompt(model: ScriptedChatModel) -> str:
    return "\n".join(str(m.content) for m in model.calls[0]["messages"])


@pytest.mark.parametrize("mode", MODES)
def test_every_judge_grades_with_the_one_rubric(mode: str) -> None:
    graph, writer, judges = panel([grading(5, "Has a reason."), grading(4), grading(4)])
    out = run(graph, INPUT, mode)
    assert out["score"] == pytest.approx(13 / 3)
    assert out["scores"] == [5.0, 4.0, 4.0]
    assert out["abstained"] == 0
    assert [(j["judge"], j["index"], j["score"]) for j in out["judgments"]] == [
        ("judge0", 0, 5.0),
        ("judge1", 1, 4.0),
        ("judge2", 2, 4.0),
    ]
    assert out["judgments"][0]["feedback"] == "Has a reason."
    assert out["feedback"].splitlines()[0] == "[judge0] Has a reason."
    assert isinstance(out["rubric"], Rubric)
    assert [c.score for c in out["rubric_critiques"]] == [5]
    # One rubric, written once from the instruction alone; every judge sees it.
    assert len(writer.calls) == 2 and RESPONSE not in prompt(writer)
    assert all("Correct, with a reason." in prompt(judge) for judge in judges)
    assert all(RESPONSE in prompt(judge) for judge in judges)
    assert out["usage"]["rubric"]["model_calls"] == 1
    assert out["usage"]["judgment"]["model_calls"] == 3
    assert out["judgments"][1]["usage"]["model_calls"] == 1
    assert set(out) == {
        "score",
        "scores",
        "abstained",
        "feedback",
        "judgments",
        "rubric",
        "rubric_critiques",
        "usage",
    }


@pytest.mark.parametrize(
    ("how", "expected"), [("mean", 13 / 3), ("median", 4.0), ("majority", 4.0)]
)
def test_aggregates(how: str, expected: float) -> None:
    graph, _, _ = panel([grading(5), grading(4), grading(4)], aggregate=how)
    assert run(graph, INPUT)["score"] == pytest.approx(expected)


@pytest.mark.parametrize("mode", MODES)
def test_an_unreadable_judge_abstains_and_is_counted(mode: str) -> None:
    graph, _, _ = panel([grading(5), "I would rather not say.", grading(3)])
    out = run(graph, INPUT, mode)
    assert out["scores"] == [5.0, None, 3.0]
    assert (out["abstained"], out["score"]) == (1, 4.0)
    assert "[judge1]" not in out["feedback"]


@pytest.mark.parametrize("mode", MODES)
def test_a_failing_judge_fails_the_run_after_its_retries(mode: str) -> None:
    from tests.fakes import transient_error

    graph, _, judges = panel([grading(5), transient_error(), grading(4)])
    judges[1].replies.append(ValueError("model gone"))
    with pytest.raises(ValueError, match="model gone"):
        run(graph, INPUT, mode)
    assert len(judges[1].calls) == 2  # the transient error was retried


@pytest.mark.parametrize("mode", MODES)
def test_too_few_readable_judges_give_no_score(mode: str) -> None:
    graph, _, _ = panel([grading(5), "No idea.", "Cannot grade."])
    out = run(graph, INPUT, mode)  # default minimum: a majority, 2 of 3
    assert (out["score"], out["abstained"], out["scores"]) == (None, 2, [5.0, None, None])
    assert out["judgments"][0]["feedback"] == "Correct."  # still kept


def test_a_lower_minimum_accepts_fewer_judges() -> None:
    graph, _, _ = panel([grading(5), "No idea.", "Cannot grade."], min_judges=1)
    assert run(graph, INPUT)["score"] == 5.0


def test_majority_without_a_majority_gives_no_score() -> None:
    graph, _, _ = panel([grading(5), grading(4), grading(3)], aggregate="majority")
    out = run(graph, INPUT)
    assert (out["score"], out["abstained"]) == (None, 0)


@pytest.mark.parametrize("mode", MODES)
def test_judges_grade_concurrently(mode: str) -> None:
    barrier = threading.Barrier(3, timeout=30)

    def together(messages: Sequence[BaseMessage]) -> str:
        barrier.wait()  # breaks unless all three judges are grading at once
        return grading(4)

    graph, _, _ = panel([together, together, together])
    assert run(graph, INPUT, mode)["scores"] == [4.0, 4.0, 4.0]


def test_reference_answer_reaches_the_rubric_writer_and_the_judges() -> None:
    graph, writer, judges = panel([grading(5), grading(5)], reference_free=False)
    run(graph, {**INPUT, "reference_answer": "13, since it has no divisors."})
    assert "13, since it has no divisors." in prompt(writer)
    assert all("13, since it has no divisors." in prompt(judge) for judge in judges)


def test_panel_as_the_judge_of_an_evaluator() -> None:
    graph, _, _ = panel([grading(5, "Reasoned."), grading(3, "Terse.")])
    result = create_spri_evaluator(judge=graph)(inputs=INSTRUCTION, outputs=RESPONSE)
    assert result["score"] == 4.0
    assert result["comment"] == "[judge0] Reasoned.\n[judge1] Terse."


def test_agreement_of_the_panel_and_each_judge() -> None:
    outputs = [
        {"score": 4.5, "scores": [5, 4], "judgments": [{"judge": "m"}, {"judge": "n"}]},
        {"score": 2.0, "scores": [2, None]},
        {"score": None, "scores": [None, None]},
        {"score": 3.0, "scores": [3, 3]},
    ]
    result = panel_agreement([5, 2, 3, 3], outputs)
    assert list(result) == ["panel", "m", "n"]
    assert (result["panel"].n, result["panel"].dropped) == (3, 1)
    assert (result["m"].n, result["n"].n) == (3, 2)
    assert result["m"].pearson == pytest.approx(1.0)
    twice = panel_agreement([5], [{"scores": [5, 4], "judgments": [{"judge": "m"}] * 2}])
    assert list(twice) == ["panel", "m #1", "m #2"]
    with pytest.raises(ValueError, match="human and outputs must pair up"):
        panel_agreement([1, 2], outputs)


def test_aggregate_scores() -> None:
    assert aggregate_scores([4, None, 5]) == 4.5
    assert aggregate_scores([1, 2, 5], "median") == 2.0
    assert aggregate_scores([None, None]) is None
    assert aggregate_scores([4, 4, 5, 5], "majority") is None
    assert aggregate_scores([4, 4, 5], "majority", min_judges=4) is None


def test_pass_fail_panel() -> None:
    rubric = "Criteria: Prime above 10?\nScore 0: No.\nScore 1: Yes."
    writer = ScriptedChatModel([rubric, "Feedback: Clear. [RESULT] 5"])
    judges = [ScriptedChatModel([grading(s)]) for s in (1, 1, 0)]
    graph = create_judge_panel(judges, rubric_model=writer, scale=(0, 1), aggregate="majority")
    out = run(graph.compile(), INPUT)
    assert (out["score"], out["scores"]) == (1.0, [1.0, 1.0, 0.0])
    assert out["rubric"].scale == (0, 1)
    assert "Score 1: Yes." in prompt(judges[2])


def test_out_of_scale_score_abstains() -> None:
    graph, _, _ = panel([grading(5), grading(7), grading(4)])  # 7 is off the 1-5 scale
    out = run(graph, INPUT)
    assert (out["scores"], out["abstained"], out["score"]) == ([5.0, None, 4.0], 1, 4.5)


@pytest.mark.parametrize("mode", MODES)
def test_structured_judges(mode: str) -> None:
    graph, _, judges = panel(
        [{"feedback": "Right.", "score": 5}, {"feedback": "Terse.", "score": 4}],
        judge_output="structured",
    )
    out = run(graph, INPUT, mode)
    assert (out["scores"], out["score"]) == ([5.0, 4.0], 4.5)
    assert all(judge.calls[0]["tools"] for judge in judges)


@pytest.mark.parametrize("mode", MODES)
def test_a_cached_rerun_makes_no_model_calls(mode: str) -> None:
    from langgraph.types import CachePolicy

    from spri_graph.engine.caching import judge_cache

    writer = ScriptedChatModel([RUBRIC, "Feedback: Checkable. [RESULT] 5"], name_="writer")
    judges = [ScriptedChatModel([grading(s)], name_=f"judge{s}") for s in (5, 4)]
    builder = create_judge_panel(judges, rubric_model=writer, cache_policy=CachePolicy())
    compiled = builder.compile(cache=judge_cache())
    first = run(compiled, INPUT, mode)
    again = run(compiled, INPUT, mode)
    assert len(writer.calls) == 2 and all(len(judge.calls) == 1 for judge in judges)
    assert (again["score"], again["scores"]) == (first["score"], first["scores"]) == (4.5, [5, 4])


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"judges": []}, "judges must list at least one judge model"),
        ({"judges": "local"}, "judges must be a list of models, got str"),
        ({"min_judges": 4}, r"min_judges must be at most the number of judges \(3\), got 4"),
        ({"min_judges": 0}, "min_judges must be an integer >= 1"),
        ({"aggregate": "mode"}, "aggregate must be one of mean, median, majority"),
        ({"prompts": {"pairwise_grade": "x"}}, "prompts: unknown prompt 'pairwise_grade'"),
        ({"max_iterations": 0}, "max_iterations must be"),
    ],
)
def test_bad_settings_fail_before_any_model_call(kwargs: dict, message: str) -> None:
    judges = [ScriptedChatModel([], name_=f"j{i}") for i in range(3)]
    with pytest.raises(ValueError, match=message):
        create_judge_panel(**{"judges": judges, **kwargs})
    assert all(judge.calls == [] for judge in judges)


def test_a_context_model_is_refused_before_any_model_call() -> None:
    from spri_graph import SPRIContext

    graph, writer, judges = panel([grading(5)])
    with pytest.raises(ValueError, match="context model: a panel grades with its own judges"):
        graph.invoke(INPUT, context=SPRIContext(model="openai:gpt-4o-mini"))
    assert writer.calls == [] and judges[0].calls == []


@pytest.mark.parametrize("mode", MODES)
def test_bad_input_fails_before_any_model_call(mode: str) -> None:
    graph, writer, judges = panel([grading(5)])
    with pytest.raises(ValueError, match="response: missing"):
        run(graph, {"instruction": INSTRUCTION}, mode)
    assert writer.calls == [] and judges[0].calls == []


# --------------------------------------------------------------------------- local model


@pytest.mark.integration
def test_panel_of_two_on_the_local_model() -> None:
    from spri_graph import resolve_model
    from spri_graph.models import local_model_available

    if not local_model_available():
        pytest.skip("the embedded local model is not installed (spri-graph[local])")
    local = resolve_model("local")
    graph = create_judge_panel([local, local], max_iterations=1).compile()
    out = graph.invoke(INPUT)
    # The pipeline, not the quality of a 135M model.
    assert len(out["judgments"]) == 2 and len(out["scores"]) == 2
    assert out["abstained"] == sum(score is None for score in out["scores"])
    assert all(score is None or 1 <= score <= 5 for score in out["scores"])
    readable = [score for score in out["scores"] if score is not None]
    assert out["score"] == (sum(readable) / 2 if len(readable) == 2 else None)
    assert isinstance(out["rubric"], Rubric)
    assert out["usage"]["judgment"]["model_calls"] == 2
