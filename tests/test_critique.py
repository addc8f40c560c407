from __future__ import annotations

import pytest

from spri_graph import Critique, parse_critique


@pytest.mark.parametrize(
    ("text", "score", "feedback"),
    [
        ("Feedback: Clear and specific. [RESULT] 4", 4, "Clear and specific."),
        ("[RESULT] 2\n\nToo vague to guide anyone.", 2, "Too vague to guide anyone."),
        ("The principles are solid. [SCORE] 5", 5, "The principles are solid."),
        ("Good coverage overall. [Score: 3]", 3, "Good coverage overall."),
        ("Good coverage overall. [3]", 3, "Good coverage overall."),
        ("Misses the goal entirely.\nScore: 1", 1, "Misses the goal entirely."),
        ("Mostly follows them. 4/5", 4, "Mostly follows them."),
        ("Feedback: fine [RESULT]: (5)", 5, "fine"),
        ("## Feedback: Useful. [RESULT] 4\n#", 4, "Useful."),
    ],
)
def test_reads_every_marker(text: str, score: int, feedback: str) -> None:
    critique = parse_critique(text)
    assert critique.score == score
    assert critique.feedback == feedback
    assert critique.raw == text


@pytest.mark.parametrize(
    "text",
    [
        "Overall, these principles are comprehensive and detailed.",
        "[RESULT] 7",
        "[RESULT] 0 - nothing here",
        "Score: 10",
        "rated 4.5/5",
        "",
    ],
)
def test_no_score_is_none_never_invented(text: str) -> None:
    assert parse_critique(text).score is None


def test_result_marker_beats_numbers_in_prose() -> None:
    text = "Principle 2/5 is weak and point [1] is vague. [RESULT] 3"
    assert parse_critique(text).score == 3


def test_last_result_marker_is_the_verdict() -> None:
    assert parse_critique("Earlier I said [RESULT] 2 but on reflection [RESULT] 4").score == 4


def test_non_string_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="text must be a string"):
        parse_critique(None)  # type: ignore[arg-type]


def test_critique_rejects_out_of_range_scores() -> None:
    with pytest.raises(ValueError):
        Critique(feedback="x", score=6)
