"""On the embedded model, no result carries the frames of our own prompts.

SmolLM2-135M-Instruct writes weak prose, but the principles, the answers, the SFT lines and
the rubric levels it yields must not carry the headings our prompts use: they are asked as
chat turns with no heading left for the model to continue, and what it still copies is
stripped (:mod:`spri_graph.readers.frames`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from spri_graph import create_rubric_graph, synthesize
from spri_graph.models import LocalChatModel, load_local_model, local_model_available

pytestmark = pytest.mark.integration

QUESTIONS = [
    "How do I tell my team I am burning out?",
    "My landlord will not return my deposit. What should I do?",
]

# The headings our prompts use (and earlier versions used), as a reply would copy them.
FRAME_PATTERNS = {
    "Respond:": r"Respond\s*:",
    "### Response": r"#+\s*Response",
    "Response:": r"(?m)^\W*Response\s*:",
    "### Refined": r"#+\s*Refined",
    "Question:": r"Question\s*:",
    "### Rules": r"#+\s*Rules",
    "Principles for the answer:": r"Principles for the answer\s*:",
    "Feedback on ...:": r"Feedback on (?:your answer|these principles)\s*:",
    "### Principles": r"#+\s*Principles?\b",
    "### Conversation so far": r"Conversation so far\s*:",
    "### Response Goal": r"Response Goal\s*:",
    "Score N: ,": r"Score \d+\s*:\s*[,.;]",
}


def frames_in(text: str) -> list[str]:
    return [name for name, pattern in FRAME_PATTERNS.items() if re.search(pattern, text)]


@pytest.fixture(scope="module")
def model() -> LocalChatModel:
    assert local_model_available(), "the 'local' extra is part of the test environment"
    local = load_local_model(max_tokens=128)
    assert isinstance(local, LocalChatModel)
    return local


def test_synthesized_principles_and_answers_carry_no_frames(
    model: LocalChatModel, tmp_path: Path
) -> None:
    out = tmp_path / "sft.jsonl"
    records = [{"id": i, "instruction": q} for i, q in enumerate(QUESTIONS)]
    report = synthesize(
        records,
        model=model,
        output=out,
        concurrency=1,
        max_iterations=1,
    )
    assert report.completed == len(QUESTIONS)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(line["id"] for line in lines) == list(range(len(QUESTIONS)))
    for line in lines:
        user, assistant = line["messages"]
        assert user["content"] == QUESTIONS[line["id"]]
        for text in (line["principles"], assistant["content"]):
            assert text.strip(), line
            assert frames_in(text) == [], text


def test_rubric_levels_carry_no_frames(model: LocalChatModel) -> None:
    graph = create_rubric_graph(model, max_iterations=1, parse_retries=0).compile()
    for question in QUESTIONS:
        rubric = graph.invoke({"instruction": question})["rubric"]
        assert sorted(rubric.levels) == [1, 2, 3, 4, 5]
        for text in [rubric.criteria, *rubric.levels.values()]:
            assert text.strip() and frames_in(text) == [], text
        assert frames_in(rubric.render()) == [], rubric.render()
