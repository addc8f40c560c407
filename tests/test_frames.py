"""The frame cleaner on real replies of the embedded model, and on clean answers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from spri_graph.engine.prompts import SPRI_PROMPTS, spri_headings
from spri_graph.readers.frames import prompt_headings, strip_frames
from spri_graph.readers.rubric import parse_rubric, read_rubric_fields
from spri_graph.readers.scores import clean_text
from tests.conftest import reference_dir

SPRI = spri_headings()

# Frames our prompts (past and present) put in front of a small model, as they show up at
# the start of a line of its reply.
FRAMES = re.compile(
    r"(?im)^\W*(?:Respon(?:d|se)|Question|Refined \w+|Rules|Feedback(?: on [a-z ]+)?|"
    r"Principles for the answer|Conversation so far|Response Goal)\s*:"
)

# Replies of SmolLM2-135M-Instruct (the embedded model) to earlier versions of the SPRI
# prompts, which ended on a "### Response:" heading for the model to continue, with the
# text the cleaner keeps of each.
FRAMED = [
    json.loads(line)
    for line in (Path(__file__).parent / "data" / "framed_replies.jsonl").read_text().splitlines()
]


@pytest.mark.parametrize("item", FRAMED, ids=[f"{i}-{r['writing']}" for i, r in enumerate(FRAMED)])
def test_real_framed_replies_lose_their_frames(item: dict[str, str]) -> None:
    cleaned = strip_frames(item["reply"], SPRI, writing=item["writing"])
    assert cleaned == item["clean"]
    assert cleaned and not FRAMES.search(cleaned), cleaned


def test_the_captured_replies_have_frames_of_every_kind() -> None:
    replies = [item["reply"] for item in FRAMED]
    assert len(replies) >= 12
    for frame in ("### Respond:", "### Response:", "### Question:", "### Refined Response:"):
        assert any(frame in reply for reply in replies), frame


def _paper_texts() -> list[tuple[str, str]]:
    texts = []
    for path in sorted(reference_dir("spri_traces").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            trace = json.loads(line)
            for key, value in trace.items():
                if not isinstance(value, str) or key.endswith("_prompt") or "critique" in key:
                    continue
                if key.startswith("principle"):
                    texts.append(("principles", value))
                elif key.startswith(("init_response", "response_")):
                    texts.append(("response", value))
    return texts


def test_the_papers_principles_and_responses_pass_unchanged() -> None:
    texts = _paper_texts()
    assert len(texts) > 400 and {kind for kind, _ in texts} == {"principles", "response"}
    changed = [
        text for kind, text in texts if strip_frames(text, SPRI, writing=kind) != clean_text(text)
    ]
    assert changed == []


@pytest.mark.parametrize(
    "answer",
    [
        "Tell your manager first, in private.\n\n### Step 1: Pick a time\nChoose a calm moment.",
        "**Plan:**\n1. Rest.\n2. Ask for help.",
        "Goal: run 5 km.\nWeek 1: walk and jog.",
        "Principle: Be honest.\nPrinciple: Be kind.",
        "A: Yes.\nB: No.",
        "Say it plainly: you are running on empty, and you need the team's help.",
        "",
    ],
)
def test_clean_answers_pass_unchanged(answer: str) -> None:
    writing = "principles" if answer.startswith("Principle") else "response"
    assert strip_frames(answer, SPRI, writing=writing) == clean_text(answer)


def test_own_heading_is_a_frame_as_a_markdown_heading_or_alone() -> None:
    assert strip_frames("### Principles: Be kind.", SPRI, writing="principles") == "Be kind."
    assert (
        strip_frames("Be kind.\n### Principles:\nBe brief.", SPRI, writing="principles")
        == "Be kind."
    )
    assert (
        strip_frames("Principles:\nBe kind.", SPRI, writing="principles") == "Principles:\nBe kind."
    )


def test_a_reply_of_frames_alone_keeps_its_text() -> None:
    assert strip_frames("### Question: Why rest?\n### Principles:", SPRI) == "Why rest?"


def test_headings_come_from_the_prompts() -> None:
    writing = [p for key, p in SPRI_PROMPTS.items() if not key.endswith("_critique")]
    headings = prompt_headings(writing, extra=["### Question: {query}"])
    assert {"princi", "feedba", "questi"} <= headings.heads
    assert headings.echoed == {"questi", "feedba"}
    assert headings.head("Refined Principles") == "princi"
    assert headings.head("Step") is None
    assert headings.head("Answer") is None and headings.head("Answer", opening=True) == "answer"


def test_rubric_levels_lose_a_leading_stray_comma() -> None:
    text = "Criteria: Kind?\nScore 1: , This is how a cold reply looks.\n" + "\n".join(
        f"Score {n}:, Level {n}." for n in range(2, 6)
    )
    rubric = parse_rubric(text)
    assert rubric.levels[1] == "This is how a cold reply looks."
    assert [rubric.levels[n] for n in range(2, 6)] == [f"Level {n}." for n in range(2, 6)]
    fields = read_rubric_fields({"criteria": "Kind?", "score1_description": ", Cold."})
    assert fields is not None and fields.levels[1] == "Cold."


def test_real_rubric_fields_lose_their_leading_separator() -> None:
    # The embedded model's structured rubric: every level it wrote opens with ". ".
    data = json.loads((Path(__file__).parent / "data" / "rubric_stray_separator.json").read_text())
    written = data["fields"]
    assert all(written[f"score{n}_description"].startswith(". ") for n in range(1, 6))
    rubric = read_rubric_fields(written)
    assert rubric is not None
    for n in range(1, 6):
        assert rubric.levels[n] == written[f"score{n}_description"].removeprefix(". ")
    assert not re.search(r"(?m)^Score \d+: [,.;]", rubric.render())
