"""Reading scores and feedback out of critic output.

Critics write free text. Prometheus-style critics end with ``[RESULT] N``, but real models
also put the marker first, write ``[SCORE] N``, ``[Score: N]``, ``Score: N``, ``N/5`` or a
bare trailing ``[N]``. :func:`parse_critique` reads all of these and never invents a score.
Judges' gradings are read by :func:`parse_judgment` (defined in :mod:`spri_graph.judgment`,
re-exported here) with the same rules: the first complete grading holds, any integer
scale, and markers copied from the quoted text do not count.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, Field

from spri_graph.judgment import (
    DEFAULT_SCALE,
    Judgment,
    Marker,
    OnScale,
    check_scale,
    clean_feedback,
    parse_judgment,
    quoted_texts,
    read_grading,
    without,
)

__all__ = [
    "Critique",
    "Judgment",
    "ScoredCritique",
    "check_scale",
    "clean_text",
    "parse_critique",
    "parse_judgment",
]


class Critique(OnScale):
    """One critique of a candidate: written feedback and an integer score on ``scale``.

    ``score`` is ``None`` when the critic's output carried no readable score. Dumps leave
    out the default ``(1, 5)`` scale.
    """

    feedback: str = Field(description="Written feedback on the candidate.")
    score: int | None = Field(
        default=None, description="Integer score on the scale, from low (worst) to high (best)."
    )
    raw: str | None = Field(default=None, description="The critic's raw output, when text.")
    scale: tuple[int, int] = Field(default=DEFAULT_SCALE, description="The (low, high) scale.")


class ScoredCritique(BaseModel):
    """Structured critic output: feedback first, then an integer score from 1 to 5."""

    feedback: str = Field(description="Concise feedback that justifies the score.")
    score: Literal[1, 2, 3, 4, 5] = Field(
        description="Integer score from 1 (worst) to 5 (best), following the rubric."
    )


def clean_text(text: str) -> str:
    r"""Strip surrounding whitespace and Markdown ``#`` marks from model output.

    Args:
        text: Raw model output.

    Returns:
        The text without leading/trailing whitespace and ``#`` characters.

    Example:
        >>> clean_text("\n## 1. Be kind.\n#")
        '1. Be kind.'
    """
    return text.strip().strip("#").strip()


_NUM = r"\(?\s*(-?\d+(?:\.\d+)?)\s*\)?(?![\d.]*\d)"  # any number; checked against the scale


@lru_cache(maxsize=32)
def critique_markers(scale: tuple[int, int]) -> tuple[Marker, ...]:
    """The ways of writing a score :func:`parse_critique` reads on ``scale``, in order."""
    i = re.IGNORECASE
    return (
        Marker(re.compile(r"\[\s*RESULT\s*\]\s*:?\s*" + _NUM, i)),
        Marker(re.compile(r"\[\s*SCORE\s*\]\s*:?\s*" + _NUM, i)),
        Marker(re.compile(r"\[\s*(?:RESULT|SCORE)\s*:\s*(-?\d+(?:\.\d+)?)\s*\]", i)),
        Marker(re.compile(r"\[\s*(-?\d+(?:\.\d+)?)\s*\]\s*\W*\s*$")),
        Marker(
            re.compile(
                r"(?:^|\n)\W*(?:final\s+|overall\s+)?score\s*(?:\(\s*-?\d+\s*-\s*-?\d+\s*\))?"
                r"\s*:\s*" + _NUM,
                i,
            )
        ),
        # A score written in running text; read only when no marked score is present.
        Marker(re.compile(rf"(?<![\d.])(\d+(?:\.\d+)?)\s*/\s*{scale[1]}(?!\d)"), prose=True),
    )


def parse_critique(
    text: str,
    *,
    scale: tuple[int, int] = DEFAULT_SCALE,
    quoted: str | Sequence[str] | None = None,
) -> Critique:
    r"""Parse a critic's text output into a :class:`Critique`.

    The score is read only from ``text``; nothing else can move it. Markers understood:
    ``[RESULT] N`` (anywhere, also first), ``[SCORE] N``, ``[Score: N]``, a trailing ``[N]``,
    ``Score: N`` at the start of a line and ``N/5`` (``N/high`` on another scale). When the
    critic wrote several, the first complete grading holds: the first marker after its
    first ``Feedback:``, or the first marker when the score comes first. Only whole numbers
    on ``scale`` are accepted; a marked score off the scale reads as ``None``.

    Args:
        text: The critic's raw output.
        scale: The integer ``(low, high)`` scale the critic scored on.
        quoted: The candidate under critique (or several). Score markers the critic copied
            from it, e.g. principles ending in ``[RESULT] 5``, are ignored.

    Returns:
        A :class:`Critique` whose ``feedback`` has the score marker and a leading
        ``Feedback:`` label removed, and whose ``score`` is ``None`` when none was found.

    Raises:
        TypeError: If ``text`` is not a string, or ``quoted`` not strings.
        ValueError: If ``scale`` is not two integers with ``low < high``.

    Example:
        >>> parse_critique("Feedback: Clear and specific. [RESULT] 4").score
        4
        >>> parse_critique("[RESULT] 2\n\nToo vague.").feedback
        'Too vague.'
        >>> parse_critique("Feedback: Concrete. [RESULT] 8", scale=(1, 10)).score
        8
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
    scale = check_scale(scale)
    reading = read_grading(
        text, critique_markers(scale), scale=scale, integer=True, quoted=quoted_texts(quoted)
    )
    score = None if reading.score is None else int(reading.score)
    feedback = clean_feedback(without(text, reading.match if reading.strip else None))
    return Critique(feedback=feedback, score=score, raw=text, scale=scale)
