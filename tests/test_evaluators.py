from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Sequence
from typing import Any
from unittest import mock

import langsmith
import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langsmith import Client
from langsmith import testing as ls_testing
from langsmith.schemas import Example

from spri_graph import create_vanilla_judge
from spri_graph.evaluation.evaluators import create_async_spri_evaluator, create_spri_evaluator
from tests.fakes import ScriptedChatModel

RUBRIC = "Criteria: Is the capital named?\nScore 1: No city.\nScore 5: The right city."


def judge_model(score: int | str = 4, seen: list[str] | None = None) -> ScriptedChatModel:
    """A model that answers every judge prompt by what it asks for, in any order."""

    def reply(messages: Sequence[BaseMessage]) -> str:
        text = "\n".join(str(m.content) for m in messages)
        if seen is not None:
            seen.append(text)
        if text.rstrip().endswith("### Rubric:"):
            return RUBRIC
        if text.rstrip().endswith("### Feedback:"):
            return "Feedback: Follows the task. [RESULT] 5"
        return f"<feedback>Names the city.</feedback><score>{score}</score>"

    return ScriptedChatModel([reply], cycle=True)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Fail any socket connection or DNS lookup, and record the attempt."""
    attempts: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(args[1:] or args)
        raise OSError("network use in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


# --------------------------------------------------------------------------- direct calls


def test_evaluator_returns_key_score_comment_and_rubric() -> None:
    model = judge_model(4)
    evaluator = create_spri_evaluator(model)
    result = evaluator(
        inputs={"question": "What is the capital of France?"}, outputs={"answer": "Paris."}
    )
    assert result["key"] == "spri_rubric_score"
    assert (result["score"], result["comment"]) == (4.0, "Names the city.")
    assert result["metadata"]["rubric"]["score5_description"] == "The right city."
    assert result["metadata"]["rubric_critic_scores"] == [5]
    assert result["metadata"]["judgment_critic_scores"] == [5]
    grading_prompt = "\n".join(str(m.content) for m in model.calls[2]["messages"])
    assert "What is the capital of France?" in grading_prompt and "Paris." in grading_prompt


@pytest.mark.parametrize(
    ("inputs", "outputs"),
    [
        ("What is the capital of France?", "Paris."),
        ({"input": "What is the capital of France?"}, {"output": "Paris."}),
        ({"only": "What is the capital of France?"}, {"text": "Paris."}),
        (
            {"messages": [HumanMessage("What is the capital of France?")]},
            {"messages": [AIMessage("Paris.")]},
        ),
        (
            {"messages": [{"role": "user", "content": "What is the capital of France?"}]},
            {"messages": [{"role": "assistant", "content": "Paris."}]},
        ),
    ],
    ids=["strings", "usual-keys", "single-value", "messages", "openai-messages"],
)
def test_evaluator_finds_the_instruction_and_response(inputs: Any, outputs: Any) -> None:
    seen: list[str] = []
    result = create_spri_evaluator(judge_model(3, seen))(inputs=inputs, outputs=outputs)
    assert result["score"] == 3.0
    assert "What is the capital of France?" in seen[0]
    assert "Paris." in seen[2]


def test_explicit_keys_and_normalized_score() -> None:
    seen: list[str] = []
    evaluator = create_spri_evaluator(
        judge_model(5, seen),
        instruction_key="task",
        response_key="final",
        feedback_key="capital",
        normalize=True,
    )
    result = evaluator(
        inputs={"task": "Name it.", "other": "x"}, outputs={"final": "Paris", "n": 1}
    )
    assert (result["key"], result["score"]) == ("capital", 1.0)
    assert result["metadata"]["score_1_to_5"] == 5.0
    assert "Name it." in seen[0]


def test_unreadable_grading_gives_score_none() -> None:
    result = create_spri_evaluator(judge_model("n/a"), max_iterations=1)(
        inputs="Capital of France?", outputs="Paris."
    )
    assert result["score"] is None and result["metadata"]["score_1_to_5"] is None


def test_reference_outputs_reach_the_prompts_only_without_reference_free() -> None:
    seen: list[str] = []
    evaluator = create_spri_evaluator(judge_model(4, seen), reference_free=False)
    evaluator(inputs="Capital of France?", outputs="Paris.", reference_outputs={"answer": "Paris"})
    assert all("### Reference Answer (Score 5):\nParis" in text for text in seen)
    seen.clear()
    create_spri_evaluator(judge_model(4, seen))(
        inputs="Capital of France?", outputs="Paris.", reference_outputs={"answer": "SECRET"}
    )
    assert all("SECRET" not in text for text in seen)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"inputs": None, "outputs": "x"}, "inputs must be a string or a dict, got NoneType"),
        ({"inputs": {"a": "x", "b": "y"}, "outputs": "x"}, "inputs: cannot tell which key"),
        ({"inputs": "Q?", "outputs": {}}, "outputs: cannot tell which key"),
        ({"inputs": "Q?", "outputs": ""}, "response must be a non-empty string"),
        ({"inputs": {"question": 3}, "outputs": "x"}, "instruction must be a string, got int"),
    ],
)
def test_bad_evaluator_arguments_fail_before_any_model_call(kwargs: dict, message: str) -> None:
    model = judge_model()
    with pytest.raises(ValueError, match=message):
        create_spri_evaluator(model)(**kwargs)
    assert model.calls == []


def test_explicit_key_that_is_missing_names_the_keys() -> None:
    model = judge_model()
    with pytest.raises(ValueError, match="inputs: no key 'task'; keys: question"):
        create_spri_evaluator(model, instruction_key="task")(inputs={"question": "Q"}, outputs="A")


def test_missing_reference_is_a_clear_error_when_required() -> None:
    model = judge_model()
    with pytest.raises(ValueError, match="reference_answer: missing"):
        create_spri_evaluator(model, reference_free=False)(
            inputs="Q?", outputs="A.", reference_outputs={}
        )
    assert model.calls == []


def test_baseline_judge_as_an_evaluator() -> None:
    model = ScriptedChatModel(["<feedback>Fine.</feedback><score>2</score>"])
    evaluator = create_spri_evaluator(judge=create_vanilla_judge(model), feedback_key="vanilla")
    result = evaluator(inputs="Q?", outputs="A.")
    assert (result["key"], result["score"], result["comment"]) == ("vanilla", 2.0, "Fine.")
    assert len(model.calls) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"feedback_key": ""}, "feedback_key must be a non-empty string"),
        ({"normalize": "yes"}, "normalize must be True or False"),
        ({"threshold": 9}, "threshold must be an integer from 1 to 5, got 9"),
        ({"judge": object(), "model": None}, "judge must be a judge graph"),
        ({"judge": "x", "model": judge_model()}, "model: pass either model or judge="),
    ],
)
def test_bad_settings_raise_at_creation(kwargs: dict, message: str) -> None:
    kwargs = {"model": judge_model(), **kwargs}
    with pytest.raises(ValueError, match=message):
        create_spri_evaluator(**kwargs)
    with pytest.raises(ValueError, match=message):
        create_async_spri_evaluator(**kwargs)


def test_loop_settings_with_a_given_judge_are_rejected() -> None:
    judge = create_vanilla_judge(ScriptedChatModel([]))
    with pytest.raises(ValueError, match="max_iterations: these configure the built-in judge"):
        create_spri_evaluator(judge=judge, max_iterations=2)


def test_async_twin_matches_the_sync_evaluator() -> None:
    arguments = {"inputs": {"question": "Capital?"}, "outputs": {"answer": "Paris"}}
    sync_result = create_spri_evaluator(judge_model(4))(**arguments)
    async_result = asyncio.run(create_async_spri_evaluator(judge_model(4))(**arguments))
    assert async_result == sync_result
    assert async_result["score"] == 4.0


# --------------------------------------------------------------------------- LangSmith


def offline_client() -> Client:
    """A LangSmith client that is never reached: upload is off and server info is given."""
    return Client(api_key="offline", api_url="http://127.0.0.1:9", info={})


def examples() -> list[Example]:
    dataset = uuid.uuid4()
    return [
        Example(
            id=uuid.uuid4(),
            dataset_id=dataset,
            inputs={"question": f"What is the capital of {country}?"},
            outputs={"answer": city},
        )
        for country, city in [("France", "Paris"), ("Peru", "Lima"), ("Kenya", "Nairobi")]
    ]


def target(inputs: dict) -> dict:
    return {"answer": "It is " + inputs["question"].split()[-1].rstrip("?") + "'s capital."}


def test_runs_inside_langsmith_evaluate_without_uploading(no_network: list[Any]) -> None:
    model = judge_model(4)
    results = langsmith.evaluate(
        target,
        data=examples(),
        evaluators=[create_spri_evaluator(model)],
        upload_results=False,
        disable_evaluator_tracing=True,
        client=offline_client(),
    )
    rows = list(results)
    assert len(rows) == 3
    for row in rows:
        [feedback] = row["evaluation_results"]["results"]
        assert (feedback.key, feedback.score, feedback.comment) == (
            "spri_rubric_score",
            4.0,
            "Names the city.",
        )
    assert len(model.calls) == 3 * 4  # rubric, its critique, grading, its critique
    assert no_network == []


def test_async_evaluator_runs_inside_langsmith_aevaluate(no_network: list[Any]) -> None:
    async def atarget(inputs: dict) -> dict:
        return target(inputs)

    async def main() -> list[Any]:
        results = await langsmith.aevaluate(
            atarget,
            data=examples(),
            evaluators=[create_async_spri_evaluator(judge_model(2))],
            upload_results=False,
            disable_evaluator_tracing=True,
            client=offline_client(),
        )
        return [row async for row in results]

    rows = asyncio.run(main())
    assert sorted(r["evaluation_results"]["results"][0].score for r in rows) == [2.0, 2.0, 2.0]
    assert no_network == []


# The LangSmith pytest integration, with a stand-in client that records what it is sent.
_SUITE_CLIENT = mock.MagicMock(spec=Client)
_SUITE_CLIENT.api_url = "http://127.0.0.1:9"
_SUITE_CLIENT.has_dataset.return_value = False
for _method, _kind in (
    (_SUITE_CLIENT.create_dataset, "datasets"),
    (_SUITE_CLIENT.create_project, "projects"),
):
    _method.return_value = mock.MagicMock(id=uuid.uuid4(), url=f"http://127.0.0.1:9/{_kind}/suite")
    _method.return_value.name = "spri-graph-evaluators"  # "name" is not a MagicMock argument


@pytest.fixture
def langsmith_suite(monkeypatch: pytest.MonkeyPatch, no_network: list[Any]) -> Any:
    """Turn LangSmith test tracking on, tracing to the stand-in client only."""
    from langsmith import utils as ls_utils

    monkeypatch.delenv("LANGSMITH_TEST_TRACKING", raising=False)
    ls_utils.get_env_var.cache_clear()
    _SUITE_CLIENT.reset_mock(return_value=False)
    with langsmith.tracing_context(client=_SUITE_CLIENT, enabled=True):
        yield _SUITE_CLIENT
    ls_utils.get_env_var.cache_clear()
    assert no_network == []


@pytest.mark.langsmith(client=_SUITE_CLIENT, test_suite_name="spri-graph-evaluators")
def test_works_in_the_langsmith_pytest_integration(langsmith_suite: Any) -> None:
    evaluator = create_spri_evaluator(judge_model(4))
    inputs, outputs = {"question": "What is the capital of Peru?"}, {"answer": "Lima."}
    ls_testing.log_inputs(inputs)
    ls_testing.log_outputs(outputs)
    result = evaluator(inputs=inputs, outputs=outputs)
    ls_testing.log_feedback(key=result["key"], score=result["score"])
    logged = [
        call.kwargs
        for call in langsmith_suite.create_feedback.call_args_list
        if call.kwargs.get("key") == "spri_rubric_score"
    ]
    assert [entry["score"] for entry in logged] == [4.0]
