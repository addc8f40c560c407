"""Judges on any integer scale, and structured grading (scripted models)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from langchain_core.messages import AIMessage

from spri_graph import (
    GENERIC_RUBRIC,
    Rubric,
    agreement,
    create_fixed_rubric_judge,
    create_judge,
    create_rubric_graph,
    create_spri_evaluator,
    create_vanilla_judge,
    parse_rubric,
)
from spri_graph.judges.base import JudgeSettings, grading_schema, read_grading, resolve_judge_output
from spri_graph.models import load_local_model, local_model_available
from spri_graph.readers.rubric import coerce_rubric, generic_rubric, rubric_schema
from tests.fakes import ScriptedChatModel

INPUT = {"instruction": "Name the capital of France.", "response": "Paris."}
TEN = "Criteria: Is the capital named?\n" + "\n".join(
    f"Score {n}: Level {n} of ten." for n in range(1, 11)
)
PASS_FAIL = "Criteria: Is Paris named?\nScore 0: Another city or none.\nScore 1: Paris."


def prompt_text(call: dict) -> str:
    return "\n".join(str(m.content) for m in call["messages"])


def models(base: list[Any], critic: list[Any]) -> tuple[ScriptedChatModel, ScriptedChatModel]:
    return ScriptedChatModel(base, name_="base"), ScriptedChatModel(critic, name_="critic")


FACTORIES: list[Callable[..., Any]] = [
    create_judge,
    create_rubric_graph,
    create_vanilla_judge,
    create_fixed_rubric_judge,
    create_spri_evaluator,
]


# --------------------------------------------------------------------------- scales


def test_ten_point_rubric_and_grading() -> None:
    base, critic = models(
        [TEN, "<feedback>Names Paris.</feedback><score>8</score>"], ["[RESULT] 5", "[RESULT] 5"]
    )
    out = create_judge(base, critic_model=critic, scale=(1, 10)).compile().invoke(INPUT)
    rubric = out["rubric"]
    assert rubric.scale == (1, 10) and len(rubric.descriptions) == 10
    assert rubric.levels[10] == "Level 10 of ten."
    assert out["score"] == 8.0
    rubric_prompt, grading_prompt = (prompt_text(call) for call in base.calls)
    assert "Score 10: (what a response that deserves 10 looks like)" in rubric_prompt
    assert "1, 2, 3, 4, 5, 6, 7, 8, 9 and 10" in rubric_prompt
    assert "an integer from 1 to 10" in grading_prompt
    assert "Score 10: Level 10 of ten." in grading_prompt
    # The critics keep their own 1-5 scale.
    assert "an integer from 1 to 5" in prompt_text(critic.calls[1])
    assert "gives no score from 1 to 10" in prompt_text(critic.calls[1])


def test_pass_fail_scale_reads_zero() -> None:
    base, critic = models(
        [PASS_FAIL, "<feedback>Names Lyon.</feedback><score>0</score>"], ["[RESULT] 5"] * 2
    )
    graph = create_judge(base, critic_model=critic, scale=(0, 1)).compile()
    out = graph.invoke({**INPUT, "response": "Lyon."})
    assert out["score"] == 0.0
    assert out["rubric"].levels == {0: "Another city or none.", 1: "Paris."}
    assert out["rubric"].model_dump() == {
        "criteria": "Is Paris named?",
        "score0_description": "Another city or none.",
        "score1_description": "Paris.",
    }


@pytest.mark.parametrize(
    ("scale", "reply"),
    [((1, 10), "<score>11</score>"), ((0, 1), "<score>2</score>"), ((1, 5), "<score>0</score>")],
)
def test_score_outside_the_scale_is_unread_not_clipped(scale: tuple, reply: str) -> None:
    model = ScriptedChatModel([f"<feedback>Fine.</feedback>{reply}"])
    out = create_vanilla_judge(model, scale=scale).compile().invoke(INPUT)
    assert out["score"] is None and out["feedback"] == "Fine."


@pytest.mark.parametrize(
    "scale",
    [(5, 5), (5, 1), (1,), (1, 2, 3), (1.0, 5), ("1", "5"), "1-5", (True, 2), None],
    ids=repr,
)
@pytest.mark.parametrize("factory", FACTORIES, ids=lambda f: f.__name__)
def test_bad_scale_fails_naming_scale_before_any_call(
    factory: Callable[..., Any], scale: Any
) -> None:
    model = ScriptedChatModel([])
    with pytest.raises(ValueError, match=r"^scale must"):
        factory(model, scale=scale)
    assert model.calls == []


def test_critic_threshold_stays_on_the_critics_scale() -> None:
    with pytest.raises(ValueError, match="threshold must be an integer from 1 to 5, got 8"):
        create_judge(ScriptedChatModel([]), scale=(1, 10), threshold=8)
    # A critique of 4 (of 5) accepts a rubric on a 1-10 judge.
    base, critic = models([TEN, "<score>7</score>"], ["[RESULT] 4", "[RESULT] 4"])
    graph = create_judge(base, critic_model=critic, scale=(1, 10), threshold=4).compile()
    out = graph.invoke(INPUT)
    assert [c.score for c in out["rubric_critiques"]] == [4] and out["score"] == 7.0


def test_vanilla_judge_uses_the_generic_rubric_of_its_scale() -> None:
    model = ScriptedChatModel(["<score>1</score>"])
    out = create_vanilla_judge(model, scale=(0, 1)).compile().invoke(INPUT)
    assert out["rubric"] == generic_rubric((0, 1)) and out["score"] == 1.0
    assert generic_rubric((0, 1)).render() in prompt_text(model.calls[0])
    assert generic_rubric((1, 5)) == GENERIC_RUBRIC
    assert len(set(generic_rubric((1, 10)).descriptions)) == 10


def test_fixed_rubric_must_match_the_scale() -> None:
    model = ScriptedChatModel(["<score>9</score>"])
    judge = create_fixed_rubric_judge(model, rubric=TEN, scale=(1, 10)).compile()
    assert judge.invoke(INPUT)["score"] == 9.0
    with pytest.raises(ValueError, match="rubric has score levels 1-5, but the judge's scale is"):
        create_fixed_rubric_judge(model, rubric=GENERIC_RUBRIC, scale=(1, 10))
    with pytest.raises(ValueError, match="rubric has score levels 0-1"):
        judge.invoke({**INPUT, "rubric": parse_rubric(PASS_FAIL, scale=(0, 1))})
    with pytest.raises(ValueError, match="score1_description..score10_description; bad or"):
        judge.invoke({**INPUT, "rubric": GENERIC_RUBRIC.model_dump()})
    assert len(model.calls) == 1


def test_rubric_type_keeps_the_five_level_api() -> None:
    rubric = Rubric(criteria="C?", **{f"score{n}_description": f"L{n}" for n in range(1, 6)})
    assert rubric.score3_description == "L3" and rubric.scale == (1, 5)
    assert Rubric(**rubric.model_dump()) == rubric
    assert parse_rubric(rubric.render()) == rubric
    pass_fail = parse_rubric(PASS_FAIL, scale=(0, 1))
    with pytest.raises(AttributeError, match="no score 5"):
        _ = pass_fail.score5_description
    with pytest.raises(ValueError, match="at least two score levels"):
        Rubric(criteria="C?", score1_description="Only one.")
    with pytest.raises(ValueError, match="consecutive"):
        Rubric(criteria="C?", score1_description="a", score3_description="b")
    assert coerce_rubric(PASS_FAIL, scale=(0, 1)) == pass_fail


def test_parse_rubric_on_ten_levels_fills_gaps_from_its_generic_rubric() -> None:
    rubric = parse_rubric("Criteria: Named?\nScore 1: No.\nScore 10: Yes.", scale=(1, 10))
    assert rubric.levels[1] == "No." and rubric.levels[10] == "Yes."
    assert rubric.levels[5] == generic_rubric((1, 10)).levels[5]
    # A level outside the scale is not a level.
    assert parse_rubric("Criteria: Named?\nScore 7: Yes.").criteria.startswith("Named?")


def test_evaluator_normalizes_any_scale_to_zero_one() -> None:
    def reply(messages: Any) -> str:
        text = "\n".join(str(m.content) for m in messages)
        if text.rstrip().endswith("### Rubric:"):
            return TEN
        if text.rstrip().endswith("### Feedback:"):
            return "Feedback: Fine. [RESULT] 5"
        return "<feedback>Names Paris.</feedback><score>8</score>"

    model = ScriptedChatModel([reply], cycle=True)
    evaluator = create_spri_evaluator(model, scale=(1, 10), normalize=True)
    result = evaluator(inputs=INPUT["instruction"], outputs=INPUT["response"])
    assert result["score"] == pytest.approx(7 / 9)
    assert result["metadata"]["raw_score"] == 8.0 and result["metadata"]["scale"] == [1, 10]
    assert "score_1_to_5" not in result["metadata"]
    assert len(result["metadata"]["rubric"]) == 11


def test_evaluator_with_a_given_judge_takes_its_scale_for_normalizing() -> None:
    judge = create_vanilla_judge(ScriptedChatModel(["<score>1</score>"]), scale=(0, 1))
    evaluator = create_spri_evaluator(judge=judge, scale=(0, 1), normalize=True)
    assert evaluator(inputs="Capital?", outputs="Paris.")["score"] == 1.0
    with pytest.raises(ValueError, match="judge_output: these configure the built-in judge"):
        create_spri_evaluator(judge=judge, judge_output="text")


def test_agreement_metrics_take_scores_on_any_scale() -> None:
    result = agreement([1, 4, 7, 10, 0], [2, 4, 8, 10, 1])
    assert result.n == 5 and result.pearson > 0.95


# --------------------------------------------------------------------------- structured


def test_structured_rubric_and_grading() -> None:
    rubric = {"criteria": "Is Paris named?", **{f"score{n}_description": f"L{n}" for n in (1, 2)}}
    base = ScriptedChatModel(
        [
            {
                **rubric,
                "score3_description": "L3",
                "score4_description": "",
                "score5_description": "L5",
            },
            "Feedback: Clear levels. [RESULT] 5",
            {"feedback": "Names Paris.", "score": 5},
            "Feedback: Fair. [RESULT] 5",
        ]
    )
    out = create_judge(base, judge_output="structured").compile().invoke(INPUT)
    assert out["score"] == 5.0 and out["feedback"] == "Names Paris."
    assert out["rubric"].score5_description == "L5"
    # An empty level gets the generic description, as in text.
    assert out["rubric"].score4_description == GENERIC_RUBRIC.score4_description
    tools = [call["tools"] for call in base.calls]
    assert tools[0][0]["function"]["name"] == "ScoringRubric"
    assert tools[2][0]["function"]["name"] == "Grading"
    # The critic shares the model and still writes text, without tools.
    assert tools[1] is None and tools[3] is None
    assert "as the fields of the structured answer" in prompt_text(base.calls[0])
    for stage in ("rubric", "judgment"):
        usage = out["usage"][stage]
        assert (usage["model_calls"], usage["critic_calls"]) == (1, 1)
        assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_structured_grading_on_ten_points_with_a_structured_critic(mode: str) -> None:
    base = ScriptedChatModel(
        [
            {"criteria": "Named?", **{f"score{n}_description": f"L{n}" for n in range(1, 11)}},
            {"feedback": "Names Paris.", "score": 9},
        ]
    )
    critic = ScriptedChatModel([{"feedback": "ok", "score": 5}, {"feedback": "ok", "score": 5}])
    graph = create_judge(
        base,
        critic_model=critic,
        scale=(1, 10),
        judge_output="structured",
        critic_output="structured",
    ).compile()
    out = graph.invoke(INPUT) if mode == "sync" else asyncio.run(graph.ainvoke(INPUT))
    assert out["score"] == 9.0 and out["rubric"].levels[10] == "L10"
    schema = base.calls[1]["tools"][0]["function"]["parameters"]["properties"]["score"]
    assert (schema["minimum"], schema["maximum"]) == (1, 10)


@pytest.mark.parametrize(
    "reply",
    [
        {"feedback": "Too high.", "score": 7},
        AIMessage(content="<feedback>Plain text.</feedback><score>4</score>"),
    ],
    ids=["out-of-scale", "text-instead"],
)
def test_structured_grading_readings(reply: Any) -> None:
    model = ScriptedChatModel([reply])
    out = create_vanilla_judge(model, judge_output="structured").compile().invoke(INPUT)
    if isinstance(reply, dict):
        assert out["score"] is None and out["feedback"] == "Too high."
    else:
        assert out["score"] == 4.0 and out["feedback"] == "Plain text."
    assert out["usage"]["judgment"]["model_calls"] == 1


def test_cut_off_structured_rubric_is_read_as_far_as_it_goes() -> None:
    cut = AIMessage(
        content="",
        invalid_tool_calls=[
            {
                "type": "invalid_tool_call",
                "name": "ScoringRubric",
                "args": '{"criteria": "Named?", "score1_description": "No.", "score2_desc',
                "id": "call_1",
                "error": "unreadable JSON",
            }
        ],
    )
    base = ScriptedChatModel([cut, "[RESULT] 5"])
    out = create_rubric_graph(base, judge_output="structured").compile().invoke(INPUT)
    assert out["rubric"].criteria == "Named?" and out["rubric"].score1_description == "No."
    assert out["rubric"].score2_description == GENERIC_RUBRIC.score2_description


@pytest.mark.skipif(not local_model_available(), reason="needs spri-graph[local]")
def test_structured_is_the_default_for_the_local_model_only() -> None:
    local = load_local_model()
    settings = JudgeSettings.from_options(local, {}, caller="test")
    assert settings.judge_output == "structured" and settings.models.critic_output == "structured"
    assert (
        JudgeSettings.from_options(ScriptedChatModel([]), {}, caller="test").judge_output == "text"
    )
    text = JudgeSettings.from_options(local, {"judge_output": "text"}, caller="test")
    assert text.judge_output == "text"
    assert resolve_judge_output(None, local.bind(stop=["x"])) == "structured"


def test_bad_judge_output_names_the_argument() -> None:
    for factory in FACTORIES:
        with pytest.raises(ValueError, match="judge_output must be 'text', 'structured' or None"):
            factory(ScriptedChatModel([]), judge_output="json")


def test_schemas_follow_the_scale() -> None:
    assert list(rubric_schema((0, 1)).model_fields) == [
        "criteria",
        "score0_description",
        "score1_description",
    ]
    assert grading_schema((0, 1)).model_json_schema()["properties"]["score"]["minimum"] == 0
    reading = read_grading(
        AIMessage('{"feedback": "ok", "score": "1"}'), scale=(0, 1), structured=True
    )
    assert reading.score == 1.0
