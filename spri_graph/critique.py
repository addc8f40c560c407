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
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, Field, GetCoreSchemaHandler
from pydantic_core import core_schema

from spri_graph.judgment import (
    DEFAULT_SCALE,
    Judgment,
    Marker,
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


class Critique(dict[str, Any]):
    """One critique of a candidate: written feedback and an integer score on ``scale``.

    ``score`` is ``None`` when the critic's output carried no readable score. A critique
    is a ``dict`` with attribute access (``critique.score`` or ``critique["score"]``), so
    graph states holding critiques checkpoint, cache and serialize as plain data: resuming
    a thread from a persistent checkpointer needs no serializer allow-list. A critique
    restored from a checkpoint is a plain dict; :meth:`of` turns it back.

    Example:
        >>> critique = Critique(feedback="Too vague.", score=2)
        >>> critique.score, critique["feedback"]
        (2, 'Too vague.')
        >>> Critique.of({"feedback": "Too vague.", "score": 2}) == critique
        True
    """

    def __init__(
        self,
        feedback: str = "",
        score: int | None = None,
        raw: str | None = None,
        scale: Sequence[int] = DEFAULT_SCALE,
    ) -> None:
        low, high = check_scale(scale)
        if not isinstance(feedback, str):
            raise ValueError(f"feedback must be a string, got {type(feedback).__name__}")
        if score is not None and (
            isinstance(score, bool) or not isinstance(score, int) or not low <= score <= high
        ):
            raise ValueError(
                f"score must be an integer within the scale {(low, high)}, got {score!r}"
            )
        if raw is not None and not isinstance(raw, str):
            raise ValueError(f"raw must be a string or None, got {type(raw).__name__}")
        super().__init__(feedback=feedback, score=score, raw=raw)
        if (low, high) != DEFAULT_SCALE:
            self["scale"] = [low, high]

    @classmethod
    def of(cls, value: Mapping[str, Any]) -> Critique:
        """A :class:`Critique` from a critique or a mapping of its fields."""
        if isinstance(value, Critique):
            return value
        if not isinstance(value, Mapping):
            raise ValueError(f"a critique must be a mapping, got {type(value).__name__}")
        fields = {k: value[k] for k in ("feedback", "score", "raw", "scale") if k in value}
        return cls(**fields)

    @property
    def feedback(self) -> str:
        """Written feedback on the candidate."""
        return str(self["feedback"])

    @property
    def score(self) -> int | None:
        """Integer score on the scale, from low (worst) to high (best); ``None`` if unread."""
        return self.get("score")

    @property
    def raw(self) -> str | None:
        """The critic's raw output, when it wrote text."""
        return self.get("raw")

    @property
    def scale(self) -> tuple[int, int]:
        """The ``(low, high)`` scale of the score."""
        low, high = self.get("scale") or DEFAULT_SCALE
        return (low, high)

    def model_dump(self, *, exclude: Iterable[str] = (), **_: Any) -> dict[str, Any]:
        """The fields as a plain dict (the default scale left out), like a pydantic dump."""
        data: dict[str, Any] = {"feedback": self.feedback, "score": self.score, "raw": self.raw}
        if self.scale != DEFAULT_SCALE:
            data["scale"] = self.scale
        return {k: v for k, v in data.items() if k not in set(exclude)}

    def __repr__(self) -> str:
        return f"Critique(feedback={self.feedback!r}, score={self.score!r})"

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        """Validate as a dict of the fields and build a :class:`Critique` (for schemas)."""
        return core_schema.no_info_after_validator_function(cls.of, handler(dict[str, Any]))


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
