"""The judge graph and the evaluator on the embedded local model (llama.cpp, SmolLM2-135M).

The model is tiny, so these tests check what must hold whatever it writes: a complete
rubric, a score in 1-5 or ``None``, critiques with structured scores, and usage recorded.
One run each (about eight model calls in all) keeps them within the CI budget; the loop's
refinement paths are covered with scripted models in test_judge.py.
"""

from __future__ import annotations

import asyncio

import pytest

from spri_graph import Rubric, create_async_spri_evaluator, create_judge_graph, resolve_model
from spri_graph.models import is_local_model

pytestmark = pytest.mark.integration

INPUT = {
    "instruction": "Give one tip for sleeping better.",
    "response": "Keep a regular bedtime, even on weekends.",
}


@pytest.fixture(scope="module")
def local() -> object:
    model = resolve_model("local")
    assert is_local_model(model)
    return model


def check(out: dict) -> None:
    rubric = out["rubric"]
    assert isinstance(rubric, Rubric)
    assert rubric.criteria.strip()
    assert len(rubric.descriptions) == 5
    assert all(description.strip() for description in rubric.descriptions)
    assert out["score"] is None or 1 <= out["score"] <= 5
    assert isinstance(out["feedback"], str)
    # A structured critic always scores.
    for critique in [*out["rubric_critiques"], *out["judgment_critiques"]]:
        assert critique.score in (1, 2, 3, 4, 5)


def test_judge_graph_on_the_local_model(local: object) -> None:
    graph = create_judge_graph(local, critic_output="structured", max_iterations=1).compile()
    out = graph.invoke(INPUT)
    check(out)
    assert len(out["rubric_critiques"]) == 1 and len(out["judgment_critiques"]) == 1
    assert out["usage"]["rubric"]["model_calls"] == 1
    assert out["usage"]["judgment"]["critic_calls"] == 1
    assert out["usage"]["judgment"]["output_tokens"] > 0


def test_async_evaluator_on_the_local_model(local: object) -> None:
    evaluator = create_async_spri_evaluator(local, critic_output="structured", max_iterations=1)
    result = asyncio.run(
        evaluator(inputs={"question": INPUT["instruction"]}, outputs={"answer": INPUT["response"]})
    )
    assert result["key"] == "spri_rubric_score"
    assert result["score"] is None or 1 <= result["score"] <= 5
    assert isinstance(result["comment"], str)
    assert all(value.strip() for value in result["metadata"]["rubric"].values())
    assert len(result["metadata"]["judgment_critic_scores"]) == 1
