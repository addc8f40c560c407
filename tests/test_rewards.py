"""SPRI as a TRL reward: one rubric per prompt, cached; formats, concurrency, group mode, verl."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage

from spri_graph.rewards import (
    AsyncSPRIReward,
    SPRIReward,
    create_async_spri_reward,
    create_spri_reward,
)
from tests.fakes import ScriptedChatModel

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = ["What is 2+2?", "Name a primary colour."]
G = 8


def call_kind(messages: Sequence[BaseMessage]) -> str:
    """Which judge prompt a call is: rubric_* / judgment_* / group."""
    text = str(messages[-1].content)
    if "How useful is the rubric" in text:
        return "rubric_critique"
    if "### Refined Rubric:" in text:
        return "rubric_refine"
    if "How faithfully does the grading" in text:
        return "judgment_critique"
    if "### Refined Grading:" in text:
        return "judgment_refine"
    if "### Responses to Evaluate:" in text:
        return "group"
    if text.rstrip().endswith("### Grading:"):
        return "judgment_draft"
    if text.rstrip().endswith("### Rubric:"):
        return "rubric_draft"
    raise AssertionError(f"unknown prompt: {text[:200]!r}")


def _words_score(response: str) -> str:
    if "UNREADABLE" in response:
        return "I would rather not say."
    score = min(5, max(1, len(response.split())))
    return f"<feedback>{len(response.split())} words.</feedback><score>{score}</score>"


def judge_reply(messages: Sequence[BaseMessage]) -> str:
    """A deterministic judge: a rubric per instruction, a score of one per word (at most 5)."""
    kind = call_kind(messages)
    text = str(messages[-1].content)
    if kind in ("rubric_critique", "judgment_critique"):
        return "Feedback: Specific and faithful. [RESULT] 5"
    if kind == "rubric_draft":
        instruction = text.split("### Instruction:\n", 1)[1].split("\n\n", 1)[0]
        levels = "\n".join(f"Score {n}: {n} words." for n in range(1, 6))
        return f"Criteria: Does it answer {instruction!r} at length?\n{levels}"
    responses = re.findall(r"<<<BEGIN RESPONSE[^>]*>>>\n(.*?)\n<<<END", text, re.S)
    if kind == "group":
        lines = [f"Response {n}: {_words_score(r)}" for n, r in enumerate(responses, 1)]
        return "\n".join(lines)
    return _words_score(responses[0])


def judge_model() -> ScriptedChatModel:
    return ScriptedChatModel([judge_reply], cycle=True, name_="reward-judge")


def kinds(model: ScriptedChatModel) -> Counter[str]:
    return Counter(call_kind(call["messages"]) for call in model.calls)


def rubric_calls(model: ScriptedChatModel) -> int:
    return sum(n for kind, n in kinds(model).items() if kind.startswith("rubric"))


def batch(prompts: list[Any], epoch: int = 0) -> tuple[list[Any], list[str]]:
    """TRL's layout: each prompt repeated G times, completions of 1..G words (new each epoch)."""
    repeated = [p for p in prompts for _ in range(G)]
    completions = [" ".join([f"word{epoch}"] * (n % G + 1)) for n in range(len(repeated))]
    return repeated, completions


def test_one_rubric_per_prompt_and_none_in_a_second_epoch() -> None:
    model = judge_model()
    reward = create_spri_reward(model)
    prompts, completions = batch(PROMPTS)
    rewards = reward(prompts=prompts, completions=completions)
    assert kinds(model)["rubric_draft"] == len(PROMPTS)
    assert kinds(model)["judgment_draft"] == len(prompts)
    assert rewards[:5] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert all(0.0 <= r <= 1.0 for r in rewards if r is not None)
    first = rubric_calls(model)

    prompts, completions = batch(PROMPTS, epoch=1)  # a later epoch: new completions
    before = len(model.calls)
    reward(prompts=prompts, completions=completions)
    assert rubric_calls(model) == first
    assert kinds(model)["judgment_draft"] == 2 * len(prompts)
    assert len(model.calls) - before == 2 * len(prompts)  # a grading and its critique each


def test_persistent_cache_serves_rubrics_to_a_new_process(tmp_path: Path) -> None:
    cache = tmp_path / "rubrics.sqlite"
    model = judge_model()
    prompts, completions = batch(PROMPTS)
    create_spri_reward(model, cache=cache)(prompts=prompts, completions=completions)
    assert kinds(model)["rubric_draft"] == len(PROMPTS)

    script = f"""
import json
from spri_graph.rewards import create_spri_reward
from tests.test_rewards import batch, judge_model, kinds, rubric_calls
model = judge_model()
reward = create_spri_reward(model, cache={str(cache)!r})
prompts, completions = batch({PROMPTS!r}, epoch=2)
rewards = reward(prompts=prompts, completions=completions)
print(json.dumps({{"rubric": rubric_calls(model), "kinds": kinds(model), "rewards": rewards}}))
"""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["rubric"] == 0
    assert out["kinds"] == {"judgment_draft": 2 * G, "judgment_critique": 2 * G}
    assert len(out["rewards"]) == 2 * G


def test_conversational_format_and_dataset_columns() -> None:
    model = judge_model()
    reward = create_spri_reward(model, reference_key="answer")
    prompts = [
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}],
        [{"role": "user", "content": [{"type": "text", "text": "Name a colour."}]}],
    ]
    completions = [
        [{"role": "assistant", "content": "It is four"}],
        [{"role": "assistant", "content": "Red"}],
    ]
    rewards = reward(
        prompts=prompts, completions=completions, answer=["4", "Blue"], trainer_state=object()
    )
    assert rewards == [0.5, 0.0]
    details = reward.last_details
    assert details[0]["prompt"] == "system: Be brief.\n\nuser: What is 2+2?"
    assert details[1]["prompt"] == "Name a colour."
    assert details[0]["completion"] == "It is four"
    assert details[0]["score"] == 3.0 and details[0]["feedback"] == "3 words."
    assert details[0]["levels"]["3"] == "3 words."
    assert "Does it answer" in details[0]["criteria"]
    shown = [str(c["messages"][-1].content) for c in model.calls]
    assert any("### Reference Answer (Score 5):\nBlue" in text for text in shown)


def test_standard_format_raw_scale_logging_and_empty_completion() -> None:
    model = judge_model()
    logged: dict[str, Any] = {}
    metrics: dict[str, float] = {}
    reward = create_spri_reward(model, normalize=False, name="judge")
    rewards = reward(
        prompts=["Say hi.", "Say hi.", "Say hi."],
        completions=["hi there", "", "UNREADABLE"],
        log_extra=logged.__setitem__,
        log_metric=metrics.__setitem__,
    )
    assert rewards == [2.0, 1.0, None]
    assert [d["mode"] for d in reward.last_details] == ["single", "empty", "single"]
    assert kinds(model)["judgment_draft"] == 2  # the empty completion makes no call
    assert logged["judge_feedback"][0] == "2 words."
    assert metrics["judge/unreadable"] == pytest.approx(1 / 3)
    assert reward.__name__ == "judge"


def test_unreadable_grading_is_none_in_the_async_form_too() -> None:
    reward = create_async_spri_reward(judge_model())
    rewards = asyncio.run(reward(prompts=["Q?", "Q?"], completions=["UNREADABLE", "one two"]))
    assert rewards == [None, 0.25]
    assert reward.last_details[0]["score"] is None


class Overlap:
    """A judge reply that records how many calls run at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = 0
        self.most = 0

    def __call__(self, messages: Sequence[BaseMessage]) -> str:
        with self.lock:
            self.active += 1
            self.most = max(self.most, self.active)
        time.sleep(0.05)
        with self.lock:
            self.active -= 1
        return judge_reply(messages)


@pytest.mark.parametrize("form", ["sync", "async"])
def test_gradings_overlap(form: str) -> None:
    overlap = Overlap()
    model = ScriptedChatModel([overlap], cycle=True)
    prompts, completions = batch(PROMPTS[:1])
    if form == "async":
        reward: Any = create_async_spri_reward(model, max_concurrency=4)
        assert isinstance(reward, AsyncSPRIReward)
        assert asyncio.iscoroutinefunction(type(reward).__call__)
        rewards = asyncio.run(reward(prompts=prompts, completions=completions))
    else:
        reward = create_spri_reward(model, max_concurrency=4)
        assert isinstance(reward, SPRIReward)
        rewards = reward(prompts=prompts, completions=completions)
    assert len(rewards) == G
    assert 2 <= overlap.most <= 4


def test_group_mode_grades_a_group_in_one_call_and_keeps_its_order() -> None:
    model = judge_model()
    reward = create_spri_reward(model, group=True)
    prompts, completions = batch(PROMPTS)
    rewards = reward(prompts=prompts, completions=completions)
    assert kinds(model)["group"] == len(PROMPTS)
    assert kinds(model)["rubric_draft"] == len(PROMPTS)
    assert "judgment_draft" not in kinds(model)
    for start in (0, G):
        group = rewards[start : start + G]
        lengths = [len(c.split()) for c in completions[start : start + G]]
        assert all(r is not None for r in group)
        for i in range(G):
            for j in range(G):
                if lengths[i] < lengths[j] <= 5:
                    assert group[i] < group[j]  # type: ignore[operator]
    assert {d["mode"] for d in reward.last_details} == {"group"}
    # The group prompt holds the prompt's rubric and all its completions.
    group_prompt = str(model.calls[-1]["messages"][-1].content)
    assert "Score Rubric:\nCriteria: Does it answer" in group_prompt
    assert group_prompt.count("<<<BEGIN RESPONSE") == G


def test_group_mode_reads_a_missing_score_as_none() -> None:
    model = ScriptedChatModel(
        [
            "Criteria: Brief?\nScore 1: Long.\nScore 5: Brief.",
            "Feedback: Fine. [RESULT] 5",
            "Response 1: <score>5</score>\nResponse 3: <score>9</score>",
        ]
    )
    rewards = create_spri_reward(model, group=True)(prompts=["Q?"] * 3, completions=["a", "b", "c"])
    assert rewards == [1.0, None, None]


def test_verl_adapter() -> None:
    model = judge_model()
    reward = create_spri_reward(model, reference_key="ground_truth")
    out = reward.compute_score("gsm8k", "it is four", "4", {"question": "What is 2+2?"})
    assert out == {"score": 0.5, "judge_score": 3.0, "graded": True}
    shown = [str(c["messages"][-1].content) for c in model.calls]
    assert any("### Reference Answer (Score 5):\n4" in text for text in shown)
    unread = reward.compute_score("gsm8k", "UNREADABLE", "4", {"question": "What is 2+2?"})
    assert unread == {"score": 0.0, "judge_score": None, "graded": False}
    assert kinds(model)["rubric_draft"] == 1
    async_reward = create_async_spri_reward(judge_model())
    out = asyncio.run(async_reward.compute_score("x", "one two", None, {"question": "Q?"}))
    assert out["score"] == 0.25
    with pytest.raises(ValueError, match=r"extra_info\['question'\]"):
        reward.compute_score("gsm8k", "four", "4", {})


@pytest.mark.parametrize(
    ("prompts", "completions", "columns", "message"),
    [
        (["a", "b"], ["x"], {}, "same length, got 2 and 1"),
        ([1], ["x"], {}, "prompts must be strings"),
        ([{"text": "a"}], ["x"], {}, "prompts must be strings"),
        (["a"], [[{"role": "assistant"}]], {}, "completions must be strings"),
        (["a"], [[{"role": "assistant", "content": 3}]], {}, "content must be text"),
        ("a", ["x"], {}, "prompts must be a list"),
    ],
)
def test_bad_inputs_raise_before_any_model_call(
    prompts: Any, completions: Any, columns: dict[str, Any], message: str
) -> None:
    model = ScriptedChatModel([])
    with pytest.raises(ValueError, match=message):
        create_spri_reward(model)(prompts=prompts, completions=completions, **columns)
    with pytest.raises(ValueError, match=message):
        asyncio.run(create_async_spri_reward(model)(prompts=prompts, completions=completions))
    assert model.calls == []


def test_a_missing_reference_column_raises_before_any_model_call() -> None:
    model = ScriptedChatModel([])
    reward = create_spri_reward(model, reference_key="answer")
    with pytest.raises(ValueError, match="needs a 'answer' column"):
        reward(prompts=["a"], completions=["x"])
    with pytest.raises(ValueError, match="one non-empty reference answer"):
        reward(prompts=["a"], completions=["x"], answer=[""])
    assert model.calls == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"group": "yes"}, "group must be True or False"),
        ({"cache": 3}, "cache must be"),
        ({"reference_key": ""}, "reference_key"),
        ({"name": "a b"}, "name must be an identifier"),
        ({"max_iterations": 0}, "max_iterations"),
        ({"scale": (3, 3)}, "scale"),
    ],
)
def test_bad_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        create_spri_reward(ScriptedChatModel([]), **options)


CHECKLIST = (
    "Criterion 1 [essential, binary]: The response answers in at least two words.\n"
    "Criterion 2 [optional, binary]: The response has at least four words.\n"
    "Criterion 3 [pitfall, binary]: The response has more than six words."
)


def criteria_kind(messages: Sequence[BaseMessage]) -> str:
    """Which criteria prompt a call is: draft / critique / refine / grade / grade_each / group."""
    text = "\n".join(str(m.content) for m in messages)
    if "### Responses to Evaluate:" in text:
        return "group"
    if "### Checklist to Evaluate:" in text:
        return "critique"
    if "### Refined Checklist:" in text:
        return "refine"
    if "### Criterion:\n" in text:
        return "grade_each"
    if text.rstrip().endswith("### Verdicts:"):
        return "grade"
    if text.rstrip().endswith("### Checklist:"):
        return "draft"
    raise AssertionError(f"unknown prompt: {text[-200:]!r}")


def criteria_reply(messages: Sequence[BaseMessage]) -> str:
    """A deterministic criteria judge: thresholds on the response's word count."""
    kind = criteria_kind(messages)
    text = "\n".join(str(m.content) for m in messages)
    if kind == "critique":
        return "Feedback: Specific, checkable, with a pitfall. [RESULT] 5"
    if kind in ("draft", "refine"):
        return CHECKLIST
    responses = re.findall(r"<<<BEGIN RESPONSE[^>]*>>>\n(.*?)\n<<<END", text, re.S)
    if kind == "group":
        return "\n".join(
            f"Response {n}: <score>{min(5, len(r.split()))}</score>"
            for n, r in enumerate(responses, 1)
        )
    words = len(responses[0].split())
    met = {1: words >= 2, 2: words >= 4, 3: words > 6}
    numbers = [int(n) for n in re.findall(r"Criterion (\d) \[", text)]
    return "\n".join(
        f"Criterion {n}: {'met' if met[n] else 'not met'} - {words} words." for n in numbers
    )


def criteria_model() -> ScriptedChatModel:
    return ScriptedChatModel([criteria_reply], cycle=True, name_="criteria-judge")


def criteria_kinds(model: ScriptedChatModel) -> Counter[str]:
    return Counter(criteria_kind(call["messages"]) for call in model.calls)


def test_criteria_rewards_one_checklist_per_prompt_and_none_in_a_second_epoch() -> None:
    model = criteria_model()
    metrics: dict[str, float] = {}
    reward = create_spri_reward(model, rubric_style="criteria")
    prompts, completions = batch(PROMPTS)
    rewards = reward(prompts=prompts, completions=completions, log_metric=metrics.__setitem__)
    assert criteria_kinds(model) == {"draft": 2, "critique": 2, "grade": 2 * G}
    # Weights 3 (essential) + 1 (optional) = 4; the pitfall takes 2 off when hit.
    # 1 word: nothing met; 2-3: the essential (3/4); 4-6: both (4/4); 7-8: both, pitfall hit.
    by_words = dict(zip([len(c.split()) for c in completions[:G]], rewards[:G], strict=True))
    assert by_words[1] == 0.0
    assert by_words[2] == by_words[3] == pytest.approx(0.75)
    assert by_words[4] == by_words[6] == 1.0
    assert by_words[7] == by_words[8] == 0.5
    detail = reward.last_details[3]  # 4 words
    assert detail["criteria"] == CHECKLIST and detail["levels"] == {}
    results = detail["criteria_results"]
    assert results is not None
    assert [(r["criterion"], r["verdict"], r["pitfall"]) for r in results] == [
        (1, "met", False),
        (2, "met", False),
        (3, "not met", True),
    ]
    assert results[0]["reason"] == "4 words."
    assert metrics["spri_reward/criteria_met"] == pytest.approx(
        sum((n >= 2) + (n >= 4) for n in range(1, G + 1)) / (2 * G)
    )

    prompts, completions = batch(PROMPTS, epoch=1)
    before = criteria_kinds(model)
    reward(prompts=prompts, completions=completions)
    grown = criteria_kinds(model) - before
    assert grown == {"grade": 2 * G}  # no checklist call in a later epoch


def test_criteria_rewards_graded_one_call_per_criterion_match_the_joint_grading() -> None:
    prompts, completions = batch(PROMPTS[:1])
    joint = create_spri_reward(criteria_model(), rubric_style="criteria")
    model = criteria_model()
    each = create_spri_reward(model, rubric_style="criteria", criteria_grading="each")
    assert each(prompts=prompts, completions=completions) == joint(
        prompts=prompts, completions=completions
    )
    assert criteria_kinds(model)["grade_each"] == 3 * G
    assert [r["criterion"] for r in each.last_details[0]["criteria_results"] or []] == [1, 2, 3]


def test_criteria_rewards_async_and_on_the_raw_scale() -> None:
    prompts, completions = batch(PROMPTS)
    sync = create_spri_reward(criteria_model(), rubric_style="criteria", scale=(1, 10))
    reward = create_async_spri_reward(
        criteria_model(), rubric_style="criteria", scale=(1, 10), normalize=False
    )
    raw = asyncio.run(reward(prompts=prompts, completions=completions))
    expected = sync(prompts=prompts, completions=completions)
    assert [1 + 9 * r for r in expected if r is not None] == pytest.approx(raw)
    assert min(raw) == 1.0 and max(raw) == 10.0


def test_group_mode_grades_by_the_checklist() -> None:
    model = criteria_model()
    reward = create_spri_reward(model, rubric_style="criteria", group=True)
    prompts, completions = batch(PROMPTS[:1])
    rewards = reward(prompts=prompts, completions=completions)
    assert criteria_kinds(model)["group"] == 1
    assert rewards == [min(5, n) / 4 - 0.25 for n in range(1, G + 1)]
    group_prompt = "\n".join(str(m.content) for m in model.calls[-1]["messages"])
    assert "### Score Rubric:\n" + CHECKLIST in group_prompt
    assert reward.last_details[0]["criteria_results"] is None


def test_an_unknown_rubric_style_is_refused_before_any_model_call() -> None:
    model = ScriptedChatModel([])
    with pytest.raises(ValueError, match="rubric_style"):
        create_spri_reward(model, rubric_style="checklist")  # type: ignore[typeddict-item]
    assert model.calls == []


def test_a_persistent_cache_serves_checklists_to_a_new_reward(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "rubrics.sqlite"
    prompts, completions = batch(PROMPTS)
    first = create_spri_reward(criteria_model(), rubric_style="criteria", cache=cache)
    expected = first(prompts=prompts, completions=completions)
    model = criteria_model()
    again = create_spri_reward(model, rubric_style="criteria", cache=cache)
    prompts, completions = batch(PROMPTS, epoch=1)
    assert again(prompts=prompts, completions=completions) == expected
    assert criteria_kinds(model) == {"grade": 2 * G}
    assert again.last_details[0]["criteria"] == CHECKLIST
    assert "Blocked deserialization" not in caplog.text  # the cache's serializer allows it
