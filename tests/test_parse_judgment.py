"""parse_judgment on synthetic outputs and on every judge output the paper released."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from spri_graph import Judgment, parse_judgment
from tests.conftest import reference_dir

FILES = (
    "gpt-4o-mini__vanilla.jsonl",
    "gpt-4o-mini__gold-rubrics.jsonl",
    "prometheus-8x7b-v2__vanilla.jsonl",
)

# Records whose score the paper's code could not read, checked by hand: (file, line, id) ->
# the score the judge did give. Every other unread record carries no score at all (cut off
# before the score, "###Score:" with nothing after it, or a pairwise comparison with no grade).
HAND_CHECKED = {
    # "...Therefore, the response earns a score of 4 out of 5." (no tags at all)
    ("prometheus-8x7b-v2__vanilla.jsonl", 2768, "refinement_rationale_revision_3"): 4.0,
    # "<score>\n5\n</score>": the paper's reader did not allow line breaks in the tag.
    ("prometheus-8x7b-v2__vanilla.jsonl", 2771, "refinement_code_revision_7"): 5.0,
    # "###Score:  \n\nAssistant:\n5": a stray chat-role label between marker and score.
    ("prometheus-8x7b-v2__vanilla.jsonl", 2772, "refinement_llm_judge_relative_0"): 5.0,
    # "</feedback><score>4</score" (the closing tag is cut off).
    ("prometheus-8x7b-v2__vanilla.jsonl", 2774, "theory_of_mind_multistep_tom_5"): 4.0,
    # "###Score:\n5"
    ("prometheus-8x7b-v2__vanilla.jsonl", 2775, "refinement_llm_judge_relative_1"): 5.0,
    # "...I would rate the response as a 5, as it perfectly addresses..." then a cut-off
    # <feedback> block with no score.
    ("prometheus-8x7b-v2__vanilla.jsonl", 2777, "planning_reward_modeling_2"): 5.0,
    # "###Score:  \n\nAssistant: \n5"
    ("prometheus-8x7b-v2__vanilla.jsonl", 2778, "refinement_llm_judge_relative_4"): 5.0,
}


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize(
    ("text", "score", "feedback"),
    [
        ("<feedback>Accurate.</feedback><score>4</score>", 4.0, "Accurate."),
        ("<feedback>\nAccurate.\n</feedback>\n\n<score>\n5\n</score>", 5.0, "Accurate."),
        ("<feedback>Accurate.</feedback><score>[2]</score>", 2.0, "Accurate."),
        ("<feedback>Accurate.</feedback><score>4.5</score>", 4.5, "Accurate."),
        ("<feedback>Accurate.</feedback><score>4</score", 4.0, "Accurate."),
        ("<feedback>Accurate.</feedback><score>3", 3.0, "Accurate."),
        ("Accurate.</feedback><score>4</score>", 4.0, "Accurate."),
        ("Feedback: Accurate but long. [RESULT] 3", 3.0, "Accurate but long."),
        ("[RESULT] 2\nMisses the second question.", 2.0, "Misses the second question."),
        ("Accurate.\n\n###Score: 5", 5.0, "Accurate."),
        ("Accurate.\n\n**Score:** 4", 4.0, "Accurate."),
        ("Accurate.\n\n###Score:  \n\nAssistant:\n5", 5.0, "Accurate."),
        ("Accurate.\nScore: 2/5", 2.0, "Accurate."),
        ("Accurate, so 2/5.", 2.0, "Accurate, so 2/5."),
        ("It earns 4 out of 5.", 4.0, "It earns 4 out of 5."),
        ("I give it a score of [4].", 4.0, "I give it a score of [4]."),
        ("Good coverage. [Score: 3]", 3.0, "Good coverage."),
        ("Good coverage. [3]", 3.0, "Good coverage."),
        ("I would rate the response as a 5.", 5.0, "I would rate the response as a 5."),
    ],
)
def test_reads_every_judge_format(text: str, score: float, feedback: str) -> None:
    judgment = parse_judgment(text)
    assert judgment == Judgment(feedback=feedback, score=score, raw=text)


@pytest.mark.parametrize(
    "text",
    [
        "The response is accurate and well organised.",
        "<feedback>Accurate.</feedback><score",
        "<feedback>Accurate.</feedback><",
        "Accurate.\n\n###Score:",
        "<feedback>Accurate.</feedback><score>N/A</score>",
        "",
    ],
)
def test_no_score_is_none_never_invented(text: str) -> None:
    assert parse_judgment(text).score is None


@pytest.mark.parametrize(
    "text",
    [
        "<feedback>Good.</feedback><score>6</score>",
        "<feedback>Good.</feedback><score>0</score>",
        "<feedback>Good.</feedback><score>-1</score>",
        "Good. [RESULT] 10",
        "Good.\nScore: 7",
        "It scores 6/5.",
    ],
)
def test_never_a_score_outside_one_to_five(text: str) -> None:
    assert parse_judgment(text).score is None


@pytest.mark.parametrize(
    "text",
    [
        # A marked score that is out of range does not fall back to the prose number.
        "<feedback>A solid 4/5 answer.</feedback><score>9</score>",
        # Numbers in the prose disagree: nothing is unambiguous.
        "Clarity 3/5, accuracy 4/5.",
    ],
)
def test_ambiguous_or_invalid_marks_give_none(text: str) -> None:
    assert parse_judgment(text).score is None


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ("<feedback>Not a 5 out of 5: one step is wrong.</feedback><score>3</score>", 3.0),
        ("It falls short of 5/5 and of a score of 4. [RESULT] 2", 2.0),
        ("I would rate it as a 5 in style.\n###Score: 3", 3.0),
    ],
)
def test_marked_score_beats_numbers_in_the_feedback(text: str, score: float) -> None:
    assert parse_judgment(text).score == score


def test_last_marked_score_is_the_verdict() -> None:
    text = "<score>2</score> On reflection: <feedback>Better.</feedback><score>4</score>"
    assert parse_judgment(text).score == 4.0


def test_non_string_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="text must be a string"):
        parse_judgment(None)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- reference data


def test_agrees_with_the_papers_reader_on_every_released_judgment(
    record_property: Callable[[str, object], None],
) -> None:
    folder = reference_dir("biggenbench_judgments")
    read = agree = unread = newly_read = 0
    disagreements: list[str] = []
    new_reads: dict[tuple[str, int, str], float | None] = {}
    for name in FILES:
        with (folder / name).open() as fh:
            for line_no, line in enumerate(fh, 1):
                record = json.loads(line)
                theirs = record["evaluator_LM-score"]
                ours = parse_judgment(record["evaluator_LM-response"]).score
                if ours is not None:
                    assert 1 <= ours <= 5
                if theirs is not None:
                    read += 1
                    if ours == float(theirs):
                        agree += 1
                    else:
                        disagreements.append(f"{name}:{line_no} paper={theirs} ours={ours}")
                else:
                    unread += 1
                    if ours is not None:
                        newly_read += 1
                        new_reads[(name, line_no, record["id"])] = ours
    rate = agree / read
    summary = (
        f"parse_judgment vs the paper's reader on {len(FILES)} BiGGen-Bench judge files: "
        f"agrees on {agree}/{read} records it read ({rate:.2%}); "
        f"reads {newly_read} of the {unread} records it could not read"
    )
    print(summary)
    record_property("summary", summary)
    assert read == 2780 + 2780 + 2765
    assert rate >= 0.995, disagreements[:20]
    # Every newly read record was checked by hand against its text.
    assert new_reads == HAND_CHECKED
