"""Reading scores and feedback out of critic output.

Critics write free text. Prometheus-style critics end with ``[RESULT] N``, but real models
also put the marker first, write ``[SCORE] N``, ``[Score: N]``, ``Score: N``, ``N/5`` or a
bare trailing ``[N]``. :func:`parse_critique` reads all of these and never invents a score.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field

__all__ = ["Critique", "ScoredCritique", "parse_critique", "clean_text"]


class Critique(BaseModel):
    """One critique of a candidate: written feedback and a 1-5 score.

    ``score`` is ``None`` when the critic's output carried no readable score.
    """

    feedback: str = Field(description="Written feedback on the candidate.")
    score: int | None = Field(
        default=None, ge=1, le=5, description="Integer score from 1 (worst) to 5 (best)."
    )
    raw: str | None = Field(default=None, description="The critic's raw output, when text.")


class ScoredCritique(BaseModel):
    """Structured critic output: feedback first, then an integer score from 1 to 5."""

    feedback: str = Field(description="Concise feedback that justifies the score.")
    score: Literal[1, 2, 3, 4, 5] = Field(
        description="Integer score from 1 (worst) to 5 (best), following the rubric."
    )


_NUM = r"\(?\s*([1-5])(?:\.0+)?\s*\)?(?![\d.]*\d)"
# Ordered by how unambiguous the marker is; the first family that matches wins.
_SCORE_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"\[\s*RESULT\s*\]\s*:?\s*" + _NUM, re.IGNORECASE),
    re.compile(r"\[\s*SCORE\s*\]\s*:?\s*" + _NUM, re.IGNORECASE),
    re.compile(r"\[\s*(?:RESULT|SCORE)\s*:\s*([1-5])\s*\]", re.IGNORECASE),
    re.compile(r"\[\s*([1-5])\s*\]\s*\W*\s*$"),
    re.compile(
        r"(?:^|\n)\W*(?:final\s+|overall\s+)?score\s*(?:\(1-5\))?\s*:\s*" + _NUM, re.IGNORECASE
    ),
    re.compile(r"(?<![\d.])([1-5])\s*/\s*5(?![\d])"),
)
_FEEDBACK_PREFIX = re.compile(r"^\s*(?:#+\s*)?feedback\s*:\s*", re.IGNORECASE)


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


def _find_score(text: str) -> re.Match[str] | None:
    for pattern in _SCORE_PATTERNS:
        matches = list(pattern.finditer(text))
        if matches:
            # A marker written at the end is the critic's verdict; prefer the last one.
            return matches[-1]
    return None


def parse_critique(text: str) -> Critique:
    r"""Parse a critic's text output into a :class:`Critique`.

    The score is read only from ``text``; nothing else can move it. Markers understood:
    ``[RESULT] N`` (anywhere, also first), ``[SCORE] N``, ``[Score: N]``, a trailing ``[N]``,
    ``Score: N`` at the start of a line and ``N/5``. Only scores 1-5 are accepted.

    Args:
        text: The critic's raw output.

    Returns:
        A :class:`Critique` whose ``feedback`` has the score marker and a leading
        ``Feedback:`` label removed, and whose ``score`` is ``None`` when none was found.

    Example:
        >>> parse_critique("Feedback: Clear and specific. [RESULT] 4").score
        4
        >>> parse_critique("[RESULT] 2\n\nToo vague.").feedback
        'Too vague.'
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
    match = _find_score(text)
    score = int(match.group(1)) if match else None
    feedback = text
    if match:
        feedback = text[: match.start()] + " " + text[match.end() :]
    feedback = _FEEDBACK_PREFIX.sub("", clean_text(feedback))
    feedback = re.sub(r"[ \t]{2,}", " ", feedback).strip()
    return Critique(feedback=feedback, score=score, raw=text)
