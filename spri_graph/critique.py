"""Reading scores and feedback out of critic output.

Critics write free text. Prometheus-style critics end with ``[RESULT] N``, but real models
also put the marker first, write ``[SCORE] N``, ``[Score: N]``, ``Score: N``, ``N/5`` or a
bare trailing ``[N]``. :func:`parse_critique` reads all of these and never invents a score.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field

__all__ = [
    "Critique",
    "Judgment",
    "ScoredCritique",
    "clean_text",
    "parse_critique",
    "parse_judgment",
]


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
_MARKED_SCORE_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"\[\s*RESULT\s*\]\s*:?\s*" + _NUM, re.IGNORECASE),
    re.compile(r"\[\s*SCORE\s*\]\s*:?\s*" + _NUM, re.IGNORECASE),
    re.compile(r"\[\s*(?:RESULT|SCORE)\s*:\s*([1-5])\s*\]", re.IGNORECASE),
    re.compile(r"\[\s*([1-5])\s*\]\s*\W*\s*$"),
    re.compile(
        r"(?:^|\n)\W*(?:final\s+|overall\s+)?score\s*(?:\(1-5\))?\s*:\s*" + _NUM, re.IGNORECASE
    ),
)
# A score written in running text; read only when no marked score is present.
_PROSE_SCORE_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"(?<![\d.])([1-5])\s*/\s*5(?![\d])"),
)
_SCORE_PATTERNS = _MARKED_SCORE_PATTERNS + _PROSE_SCORE_PATTERNS
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


def _find_score(
    text: str, patterns: tuple[re.Pattern[str], ...] = _SCORE_PATTERNS
) -> re.Match[str] | None:
    for pattern in patterns:
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


# --------------------------------------------------------------------------- judge output


class Judgment(BaseModel):
    """A judge's grading of one response: written feedback and a 1-5 score.

    ``score`` is ``None`` when the judge's output carried no readable score in 1-5; it is a
    float because judges sometimes grade in halves (``<score>4.5</score>``).
    """

    feedback: str = Field(description="The judge's feedback on the response.")
    score: float | None = Field(
        default=None, ge=1, le=5, description="Score from 1 (worst) to 5 (best)."
    )
    raw: str | None = Field(default=None, description="The judge's raw output, when text.")


_ANY_NUM = r"\[?\s*\(?\s*(-?\d+(?:\.\d+)?)\s*\)?\s*\]?"  # any number; range-checked after
_OUT_OF_5 = r"(?:\s*(?:/|out\s+of)\s*5(?!\.?\d))?"
# Markers that say "this is the score". They take any number, so a marked score outside
# 1-5 reads as no score instead of falling through to numbers in the feedback.
_JUDGMENT_MARKERS: tuple[re.Pattern[str], ...] = (
    # <score>N</score>, also cut off (<score>4</score, <score>4) and as <score>[4]</score>.
    re.compile(r"<\s*score\s*>\s*" + _ANY_NUM + _OUT_OF_5 + r"\s*(?=<|$)", re.IGNORECASE),
    re.compile(
        r"\[\s*(?:RESULT|SCORE)\s*\]\s*:?\s*" + _ANY_NUM + _OUT_OF_5 + r"(?![\d.]*\d)",
        re.IGNORECASE,
    ),
    # ###Score: 5, **Score:** 4, and a stray chat-role label before the number.
    re.compile(
        r"(?:^|\n)[ \t#*_>|-]*(?:final\s+|overall\s+)?score[ \t*_]*(?:\(\s*1\s*-\s*5\s*\))?"
        r"[ \t*_]*:[\s*_]*(?:(?:assistant|ai)\s*:\s*)?" + _ANY_NUM + _OUT_OF_5 + r"(?![\d.]*\d)",
        re.IGNORECASE,
    ),
    re.compile(r"\bscore\s+of\s+\[\s*(-?\d+(?:\.\d+)?)\s*\]", re.IGNORECASE),
)
# Scores in running text: read only when no marker is present, and only when they agree.
_JUDGMENT_PROSE: tuple[re.Pattern[str], ...] = (
    re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*(?:/|out\s+of)\s*5(?!\.?\d)", re.IGNORECASE),
    re.compile(
        r"\brat(?:e|es|ed|ing)\b[^.\n]{0,60}?\bas\s+(?:an?\s+)?(\d+(?:\.\d+)?)(?![\d.]*\d)",
        re.IGNORECASE,
    ),
)
_FEEDBACK_TAG = re.compile(
    r"<\s*feedback\s*>(.*?)(?:<\s*/\s*feedback\s*>|(?=<\s*score)|$)", re.IGNORECASE | re.DOTALL
)
_DANGLING = re.compile(
    r"(?:(?:^|\n)[ \t#*_>]*score[ \t*_]*:?[\s*_]*|<\s*/?\s*(?:score)?\s*>?)\s*$", re.I
)
_STRAY_TAG = re.compile(r"<\s*/?\s*(?:feedback|score)\s*>", re.IGNORECASE)


def _in_range(value: str) -> float | None:
    number = float(value)
    return number if 1 <= number <= 5 else None


def parse_judgment(text: str) -> Judgment:
    r"""Parse an LLM judge's output into a :class:`Judgment`.

    Marked scores are read first, the last one winning: ``<score>N</score>`` (also when the
    closing tag is cut off, and ``<score>[N]</score>``), ``[RESULT] N``, ``[SCORE] N``,
    ``###Score: N`` / ``Score: N`` at the start of a line, ``score of [N]``, then the
    remaining markers :func:`parse_critique` reads (``[Score: N]``, a trailing ``[N]``).
    A marked score outside 1-5 gives ``None``: the output did carry a score, just not a
    valid one. Only when nothing is marked are numbers in running text read
    (``N/5``, ``N out of 5``, ``rate the response as a N``), and only when every such
    number agrees.

    Args:
        text: The judge's raw output.

    Returns:
        A :class:`Judgment`. ``feedback`` is the ``<feedback>`` block when there is one,
        else the text without the score marker and a leading ``Feedback:`` label.

    Example:
        >>> judgment = parse_judgment("<feedback>Accurate, long.</feedback><score>4</score>")
        >>> judgment.score, judgment.feedback
        (4.0, 'Accurate, long.')
        >>> parse_judgment("Clear steps, but it earns a score of 3 out of 5.").score
        3.0
        >>> parse_judgment("It would need sources to reach 5/5. [RESULT] 2").score
        2.0
        >>> parse_judgment("<feedback>Good.</feedback><score>7</score>").score is None
        True
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
    score: float | None = None
    match = None
    for pattern in _JUDGMENT_MARKERS:
        matches = list(pattern.finditer(text))
        if matches:
            match = matches[-1]
            score = _in_range(match.group(1))
            break
    # "a score of [4]" is part of a sentence: keep the sentence whole in the feedback.
    strip = match is not None and match.re is not _JUDGMENT_MARKERS[-1]
    if match is None:
        match = _find_score(text, _MARKED_SCORE_PATTERNS)
        if match is not None:
            score, strip = float(match.group(1)), True
    if match is None:
        values = {
            value
            for pattern in _JUDGMENT_PROSE
            for found in pattern.finditer(text)
            if (value := _in_range(found.group(1))) is not None
        }
        score = values.pop() if len(values) == 1 else None
    blocks = [block.strip() for block in _FEEDBACK_TAG.findall(text)]
    if any(blocks):
        feedback = [block for block in blocks if block][-1]
    else:
        feedback = text[: match.start()] + " " + text[match.end() :] if strip else text
        feedback = _STRAY_TAG.sub(" ", _DANGLING.sub("", feedback))
        feedback = _FEEDBACK_PREFIX.sub("", clean_text(feedback))
    feedback = re.sub(r"[ \t]{2,}", " ", feedback).strip()
    return Judgment(feedback=feedback, score=score, raw=text)
