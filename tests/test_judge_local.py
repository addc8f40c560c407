"""The judge graph and the evaluator on the embedded local model (llama.cpp, SmolLM2-135M).

The model is tiny, so these tests check what must hold whatever it writes. With the default
settings the local model grades and writes rubrics as structured output, so every
judgment has a score on its scale and an instance-specific rubric (never the generic
fallback). One refinement round at most keeps the run short; the evaluator shares the
graph's node cache, so it re-grades the same five pairs from the cache when the graph test
ran first (and runs the model itself when run alone). The refinement paths are covered with
scripted models in test_judge.py.
"""

from __future__ import annotations

import asyncio

import pytest
from langgraph.types import CachePolicy

from spri_graph import (
    GENERIC_RUBRIC,
    Rubric,
    create_async_spri_evaluator,
    create_judge_graph,
    resolve_model,
)
from spri_graph.caching import judge_cache
from spri_graph.models import is_local_model, local_model_available

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not local_model_available(), reason="needs spri-graph[local]"),
]

PAIRS = [
    ("Give one tip for sleeping better.", "Keep a regular bedtime, even on weekends."),
    ("What is the capital of France?", "Paris."),
    ("Write a haiku about rain.", "Soft rain on the roof / the garden drinks slowly / grey sky"),
    ("Explain why the sky is blue to a child.", "Air scatters blue sunlight the most."),
    ("Translate 'thank you' into Spanish.", "Gracias."),
]


@pytest.fixture(scope="module")
def local() -> object:
    model = resolve_model("local")
    assert is_local_model(model)
    return model


@pytest.fixture(scope="module")
def cache() -> object:
    return judge_cache()


def check_rubric(rubric: Rubric) -> None:
    assert isinstance(rubric, Rubric) and rubric.scale == (1, 5)
    assert rubric.criteria.strip()
    assert all(description.strip() for description in rubric.descriptions)
    # Written for the instruction: not one level is the generic fallback's.
    assert not set(rubric.descriptions) & set(GENERIC_RUBRIC.descriptions)


def test_default_judge_scores_five_pairs(local: object, cache: object) -> None:
    graph = create_judge_graph(local, max_iterations=1, cache_policy=CachePolicy())
    outs = graph.compile(cache=cache).batch(
        [{"instruction": instruction, "response": response} for instruction, response in PAIRS]
    )
    for out in outs:
        check_rubric(out["rubric"])
        assert out["score"] in (1, 2, 3, 4, 5)
        assert isinstance(out["feedback"], str)
        # Structured critics always score; one critique per stage.
        critiques = [*out["rubric_critiques"], *out["judgment_critiques"]]
        assert [c.score in (1, 2, 3, 4, 5) for c in critiques] == [True, True]
        for stage in ("rubric", "judgment"):
            usage = out["usage"][stage]
            assert (usage["model_calls"], usage["critic_calls"]) == (1, 1)
            assert usage["output_tokens"] > 0


def test_async_evaluator_scores_five_pairs(local: object, cache: object) -> None:
    evaluator = create_async_spri_evaluator(local, max_iterations=1, cache=cache)

    async def grade_all() -> list[dict]:
        return [
            await evaluator(inputs={"question": instruction}, outputs={"answer": response})
            for instruction, response in PAIRS
        ]

    for result in asyncio.run(grade_all()):
        assert result["key"] == "spri_rubric_score"
        assert result["score"] in (1, 2, 3, 4, 5)
        assert isinstance(result["comment"], str)
        check_rubric(Rubric(**result["metadata"]["rubric"]))
        assert len(result["metadata"]["judgment_critic_scores"]) == 1
