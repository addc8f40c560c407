"""Criteria rubrics on the embedded local model (llama.cpp, SmolLM2-135M).

The model is tiny, so this checks what must hold whatever it writes: with structured output
(the local model's default) its grammar yields a checklist with at least one criterion of
its own, every criterion gets a verdict, and the score lies on the judge's scale.
"""

from __future__ import annotations

import pytest

from spri_graph import create_judge
from spri_graph.models import is_local_model, load_local_model, local_model_available
from spri_graph.readers.criteria import Checklist, generic_checklist

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not local_model_available(), reason="needs spri-graph[local]"),
]


@pytest.mark.parametrize("grading", ["joint", "each"])
def test_a_criteria_judge_on_the_local_model_scores_on_its_scale(grading: str) -> None:
    model = load_local_model(max_tokens=64, max_tool_tokens=192, max_string_chars=80)
    assert is_local_model(model)
    judge = create_judge(
        model,
        rubric_style="criteria",
        criteria_grading=grading,  # type: ignore[arg-type]
        max_iterations=1,
        scale=(1, 10),
    )
    out = judge.compile().invoke(
        {"instruction": "What is the capital of France?", "response": "Paris."}
    )
    checklist = out["rubric"]
    assert isinstance(checklist, Checklist) and checklist.items
    assert checklist != generic_checklist()
    assert all(item.text.strip() for item in checklist.items)
    assert len(out["criteria_results"]) == len(checklist.items)
    assert out["score"] is not None and 1 <= out["score"] <= 10
