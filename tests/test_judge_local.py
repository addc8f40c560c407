"""The judge graph and the evaluator on the embedded local model (llama.cpp, SmolLM2-135M).

The model is tiny, so these tests check what must hold whatever it writes. With the default
settings the local model grades and writes rubrics as structured output, so every
judgment has a score on its scale and an instance-specific rubric (never the generic
fallback). One refinement round at most keeps the run short.

The same two pairs go through ``spri judge --json``, the judge graph and the evaluator. The
runs share one SQLite node cache and one test process (tests/conftest.py), so when the
module runs as a whole the model grades each pair once (in the CLI test, which runs first)
and the graph and the evaluator re-read those gradings; a test run alone runs the model
itself. The refinement paths are covered with scripted models in test_judge.py.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from langgraph.types import CachePolicy

from spri_graph import (
    GENERIC_RUBRIC,
    Rubric,
    create_async_spri_evaluator,
    create_judge,
    resolve_model,
)
from spri_graph.cli import main
from spri_graph.engine.caching import judge_cache
from spri_graph.models import is_local_model, local_model_available

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not local_model_available(), reason="needs spri-graph[local]"),
]

PAIRS = [
    ("Give one tip for sleeping better.", "Keep a regular bedtime, even on weekends."),
    ("Write a haiku about rain.", "Soft rain on the roof / the garden drinks slowly / grey sky"),
]


@pytest.fixture(scope="module")
def local() -> object:
    model = resolve_model("local")
    assert is_local_model(model)
    return model


@pytest.fixture(scope="module")
def cache_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("judge_local") / "cache.sqlite"


def check_rubric(rubric: Rubric) -> None:
    assert isinstance(rubric, Rubric) and rubric.scale == (1, 5)
    assert rubric.criteria.strip()
    assert all(description.strip() for description in rubric.descriptions)
    # Written for the instruction: not one level is the generic fallback's.
    assert not set(rubric.descriptions) & set(GENERIC_RUBRIC.descriptions)


def test_spri_judge_json_scores_two_pairs_with_no_configuration(
    cache_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for instruction, response in PAIRS:
        args = ["judge", "--instruction", instruction, "--response", response, "--json"]
        code = main([*args, "--max-iterations", "1", "--cache", str(cache_file)])
        out = json.loads(capsys.readouterr().out)
        assert code == 0
        assert out["score"] in (1, 2, 3, 4, 5), out
        check_rubric(Rubric(**out["rubric"]))


def test_default_judge_scores_two_pairs(local: object, cache_file: Path) -> None:
    graph = create_judge(local, max_iterations=1, cache_policy=CachePolicy())
    outs = graph.compile(cache=judge_cache(cache_file)).batch(
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


def test_async_evaluator_scores_two_pairs(local: object, cache_file: Path) -> None:
    evaluator = create_async_spri_evaluator(local, max_iterations=1, cache=judge_cache(cache_file))

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
