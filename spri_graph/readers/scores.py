"""Scores and feedback out of critic and judge text.

Critics write free text. Prometheus-style critics end with ``[RESULT] N``, but real models
also put the marker first, write ``[SCORE] N``, ``[Score: N]``, ``Score: N``, ``N/5`` or a
bare trailing ``[N]``. :func:`parse_critique` reads all of these and never invents a score.
Judges write ``<score>N</score>``, ``###Score: N`` and a dozen variants, read by
:func:`parse_judgment`. Both readers share three rules:

* **The first complete grading holds.** When an output carries several marked scores (the
  model grades, then keeps generating), the score read is the first one after the judge's
  first feedback, as the SPRI paper's reader did; later marked scores are kept in
  :attr:`Judgment.extra_scores`.
* **Any integer scale.** ``scale=(low, high)``; a score outside it is unread (``None``),
  never clipped.
* **No self-grading by injection.** With ``quoted=`` (the text under judgment), score
  markers the judge copied from that text are ignored.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from pydantic import (
    BaseModel,
    Field,
    GetCoreSchemaHandler,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)
from pydantic_core import core_schema

__all__ = [
    "Critique",
    "Judgment",
    "Scale",
    "ScoredCritique",
    "check_scale",
    "clean_text",
    "parse_critique",
    "parse_judgment",
]

Scale = tuple[int, int]
"""An integer score scale ``(low, high)``: ``(1, 5)``, ``(1, 10)``, ``(0, 1)``."""

DEFAULT_SCALE: Scale = (1, 5)
# Non-space characters of the quoted text that must surround a copied marker.
_COPY_CONTEXT = 12


def check_scale(scale: Any, field: str = "scale") -> tuple[int, int]:
    """Validate an integer score scale and return it as ``(low, high)``.

    Args:
        scale: Two integers ``(low, high)`` with ``low < high``, e.g. ``(1, 5)``,
            ``(1, 10)`` or ``(0, 1)`` for pass/fail.
        field: The argument name used in the error message.

    Returns:
        The scale as a tuple of two ``int``.

    Raises:
        ValueError: If ``scale`` is not two integers with ``low < high``.

    Example:
        >>> check_scale([1, 10])
        (1, 10)
    """
    if (
        isinstance(scale, str | bytes)
        or not isinstance(scale, Sequence)
        or len(scale) != 2
        or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in scale)
    ):
        raise ValueError(f"{field} must be two integers (low, high), got {scale!r}")
    low, high = int(scale[0]), int(scale[1])
    if low >= high:
        raise ValueError(f"{field} must have low < high (at least two levels), got {scale!r}")
    return low, high


def quoted_texts(quoted: str | Sequence[str] | None) -> tuple[str, ...]:
    """Validate ``quoted=`` and return it as a tuple of strings."""
    if quoted is None:
        return ()
    if isinstance(quoted, str):
        return (quoted,)
    if isinstance(quoted, Sequence) and all(isinstance(q, str) for q in quoted):
        return tuple(quoted)
    raise TypeError(f"quoted must be a string or a sequence of strings, got {quoted!r:.80}")


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Marker:
    """One way of writing a score.

    ``strip`` removes the match from plain-text feedback; ``prose`` marks a score written
    in running text, read only when no marker is present and every such number agrees.
    """

    pattern: re.Pattern[str]
    strip: bool = True
    prose: bool = False


@dataclass(frozen=True)
class Reading:
    """What :func:`find_score` found: the score, the match it came from, later scores."""

    score: float | None
    match: re.Match[str] | None
    strip: bool
    extra: list[float]


_FEEDBACK_OPEN = re.compile(r"<\s*feedback\s*>", re.IGNORECASE)
_FEEDBACK_CLOSE = re.compile(r"<\s*/\s*feedback\s*>", re.IGNORECASE)
_FEEDBACK_LABEL = re.compile(r"(?:^|\n)[ \t#*_>]*feedback[ \t*_]*:", re.IGNORECASE)


def _grading_start(text: str) -> int:
    """Where the first complete grading's score may begin: after the first feedback."""
    opened = _FEEDBACK_OPEN.search(text)
    if opened:
        closed = _FEEDBACK_CLOSE.search(text, opened.end())
        return closed.end() if closed else opened.end()
    label = _FEEDBACK_LABEL.search(text)
    return label.start() if label else 0


def _value(found: str, scale: tuple[int, int], integer: bool) -> float | None:
    number = float(found)
    if integer and not number.is_integer():
        return None
    return number if scale[0] <= number <= scale[1] else None


def _matches(
    text: str, pattern: re.Pattern[str], spans: list[tuple[int, int]]
) -> list[re.Match[str]]:
    return [m for m in pattern.finditer(text) if not any(s <= m.start() < e for s, e in spans)]


def find_score(
    text: str,
    markers: Sequence[Marker],
    *,
    scale: tuple[int, int],
    integer: bool,
    quoted: tuple[str, ...] = (),
) -> Reading:
    """Find the score of the first complete grading (or critique) in ``text``.

    The first marker family (in order of how unambiguous it is) found in ``text`` decides:
    its first match after the first feedback is the score (its first match overall when
    the score comes before the feedback), and its later matches are the extra scores. A
    marked score outside ``scale`` reads as ``None`` rather than falling through to numbers
    in the feedback. Only when nothing is marked are ``prose`` markers read, and only
    when every number they find agrees. Markers copied from ``quoted`` are skipped.
    """
    spans = copied_spans(text, quoted, [m.pattern for m in markers]) if quoted else []
    start = _grading_start(text)
    for marker in markers:
        found = [] if marker.prose else _matches(text, marker.pattern, spans)
        if found:
            verdict = next((m for m in found if m.start() >= start), found[0])
            extra = [float(m.group(1)) for m in found if m.start() > verdict.start()]
            score = _value(verdict.group(1), scale, integer)
            return Reading(score, verdict, marker.strip, extra)
    prose = [
        (value, marker, found)
        for marker in markers
        if marker.prose
        for found in _matches(text, marker.pattern, spans)
        if (value := _value(found.group(1), scale, integer)) is not None
    ]
    if len({value for value, _, _ in prose}) != 1:
        return Reading(None, None, False, [])
    value, marker, match = prose[-1]
    return Reading(value, match, marker.strip, [])


# --------------------------------------------------------------------------- quoted text


def _same(a: str, b: str) -> bool:
    return a.lower() == b.lower()


def _context(text: str, start: int, end: int, quote: str, q_start: int, q_end: int) -> int:
    """Non-space characters around a marker that ``text`` and ``quote`` share.

    Reaching both ends of ``quote`` (the judge reproduced all of it) counts as enough.
    """
    shared = 0
    bounds = 0
    for step, i, j in ((-1, start - 1, q_start - 1), (1, end, q_end)):
        while shared < _COPY_CONTEXT:
            while 0 <= i < len(text) and text[i].isspace():
                i += step
            while 0 <= j < len(quote) and quote[j].isspace():
                j += step
            if not 0 <= j < len(quote):
                bounds += 1
                break
            if not (0 <= i < len(text) and _same(text[i], quote[j])):
                break
            shared, i, j = shared + 1, i + step, j + step
    return _COPY_CONTEXT if bounds == 2 and shared else shared


def copied_spans(
    text: str, quoted: Iterable[str], patterns: Sequence[re.Pattern[str]]
) -> list[tuple[int, int]]:
    """Spans of ``text`` holding a score marker copied from one of the ``quoted`` texts.

    A marker of ``text`` is copied when a quoted text holds the same marker (same kind,
    same number) and either the two share at least a few words around it (whitespace and
    case aside), or the marker is not the last score marked in ``text``: a judge's own
    verdict written exactly like an injected one is read only when it comes last.
    """
    quoted = [quote for quote in quoted if quote]
    in_quotes: dict[tuple[int, float], list[tuple[str, int, int]]] = {}
    for kind, pattern in enumerate(patterns):
        for quote in quoted:
            for m in pattern.finditer(quote):
                in_quotes.setdefault((kind, float(m.group(1))), []).append(
                    (quote, m.start(), m.end())
                )
    if not in_quotes:
        return []
    marks = [(kind, m) for kind, pattern in enumerate(patterns) for m in pattern.finditer(text)]
    last = max((m.start() for _, m in marks), default=-1)
    spans = []
    for kind, m in marks:
        sources = in_quotes.get((kind, float(m.group(1))), [])
        if sources and (
            m.start() != last
            or max(_context(text, m.start(), m.end(), *source) for source in sources)
            >= _COPY_CONTEXT
        ):
            spans.append((m.start(), m.end()))
    return spans


# --------------------------------------------------------------------------- judgments


class OnScale(BaseModel):
    """Base of a grade on an integer scale (the subclass declares ``score`` and ``scale``).

    Validates the scale and that the score lies on it; dumps leave out the default scale
    and empty ``extra_scores``, so records on the default scale look as they always did.
    """

    @model_validator(mode="after")
    def _on_scale(self) -> Any:
        self.scale = check_scale(self.scale)  # type: ignore[has-type]
        low, high = self.scale
        score = self.score  # type: ignore[attr-defined]
        if score is not None and not low <= score <= high:
            raise ValueError(f"score must be within the scale {self.scale}, got {score}")
        return self

    @model_serializer(mode="wrap")
    def _compact(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            if tuple(data.get("scale") or DEFAULT_SCALE) == DEFAULT_SCALE:
                data.pop("scale", None)
            if not data.get("extra_scores", True):
                data.pop("extra_scores")
        return data


class Judgment(OnScale):
    """A judge's grading of one response: written feedback and a score on ``scale``.

    ``score`` is ``None`` when the judge's output carried no readable score on the scale;
    it is a float because judges sometimes grade in halves (``<score>4.5</score>``).
    ``extra_scores`` are the marked scores the judge wrote after the one read (it graded,
    then kept generating), in order; empty when there were none.
    """

    feedback: str = Field(description="The judge's feedback on the response.")
    score: float | None = Field(
        default=None, description="Score on the scale, from low (worst) to high (best)."
    )
    raw: str | None = Field(default=None, description="The judge's raw output, when text.")
    extra_scores: list[float] = Field(
        default_factory=list, description="Marked scores written after the one read."
    )
    scale: tuple[int, int] = Field(default=DEFAULT_SCALE, description="The (low, high) scale.")


_ANY_NUM = r"\[?\s*\(?\s*(-?\d+(?:\.\d+)?)\s*\)?\s*\]?"  # any number; range-checked after
_NOT_MORE = r"(?![\d.]*\d)"


@lru_cache(maxsize=32)
def judgment_markers(scale: tuple[int, int]) -> tuple[Marker, ...]:
    """The ways of writing a score :func:`parse_judgment` reads on ``scale``, in order."""
    out_of = rf"(?:\s*(?:/|out\s+of)\s*{scale[1]}(?!\.?\d))?"
    i = re.IGNORECASE
    return (
        # <score>N</score>, also cut off (<score>4</score, <score>4) and as <score>[4]</score>.
        Marker(re.compile(r"<\s*score\s*>\s*" + _ANY_NUM + out_of + r"\s*(?=<|$)", i)),
        Marker(
            re.compile(r"\[\s*(?:RESULT|SCORE)\s*\]\s*:?\s*" + _ANY_NUM + out_of + _NOT_MORE, i)
        ),
        # ###Score: 5, **Score:** 4, and a stray chat-role label before the number.
        Marker(
            re.compile(
                r"(?:^|\n)[ \t#*_>|-]*(?:final\s+|overall\s+)?score[ \t*_]*"
                r"(?:\(\s*-?\d+\s*-\s*-?\d+\s*\))?[ \t*_]*:[\s*_]*(?:(?:assistant|ai)\s*:\s*)?"
                + _ANY_NUM
                + out_of
                + _NOT_MORE,
                i,
            )
        ),
        # "a score of [4]" is part of a sentence: keep the sentence whole in the feedback.
        Marker(re.compile(r"\bscore\s+of\s+\[\s*(-?\d+(?:\.\d+)?)\s*\]", i), strip=False),
        Marker(re.compile(r"\[\s*(?:RESULT|SCORE)\s*:\s*(-?\d+(?:\.\d+)?)\s*\]", i)),
        Marker(re.compile(r"\[\s*(-?\d+(?:\.\d+)?)\s*\]\s*\W*\s*$")),
        Marker(re.compile(r"(?:^|\n)\W*(?:final\s+|overall\s+)?score\s*:\s*" + _ANY_NUM, i)),
        # Scores in running text.
        Marker(
            re.compile(rf"(?<![\d.])(\d+(?:\.\d+)?)\s*(?:/|out\s+of)\s*{scale[1]}(?!\.?\d)", i),
            strip=False,
            prose=True,
        ),
        Marker(
            re.compile(
                r"\brat(?:e|es|ed|ing)\b[^.\n]{0,60}?\bas\s+(?:an?\s+)?(\d+(?:\.\d+)?)" + _NOT_MORE,
                i,
            ),
            strip=False,
            prose=True,
        ),
        # "I give it a 4.", "I'd give this response a score of 3"
        Marker(
            re.compile(
                r"\b(?:give|gives|gave|giving|assign|assigns|assigned|award|awards|awarded)\s+"
                r"(?:it|this(?:\s+(?:response|answer))?|the\s+(?:response|answer|submission))\s+"
                r"(?:an?\s+)?(?:(?:score|rating|grade)\s+of\s+)?(-?\d+(?:\.\d+)?)"
                + _NOT_MORE
                + r"(?!\s*%)",
                i,
            ),
            strip=False,
            prose=True,
        ),
        # A bare number: the whole answer is the score.
        Marker(re.compile(r"\A[\s*_(\[]*(-?\d+(?:\.\d+)?)[\s*_)\]]*\.?\s*\Z"), prose=True),
    )


_FEEDBACK_TAG = re.compile(
    r"<\s*feedback\s*>(.*?)(?:<\s*/\s*feedback\s*>|(?=<\s*score)|$)", re.IGNORECASE | re.DOTALL
)
_DANGLING = re.compile(
    r"(?:(?:^|\n)[ \t#*_>]*score[ \t*_]*:?[\s*_]*|<\s*/?\s*(?:score)?\s*>?)\s*$", re.I
)
_STRAY_TAG = re.compile(r"<\s*/?\s*(?:feedback|score)\s*>", re.IGNORECASE)
FEEDBACK_PREFIX = re.compile(r"^\s*(?:#+\s*)?feedback\s*:\s*", re.IGNORECASE)


def without(text: str, match: re.Match[str] | None) -> str:
    """``text`` with ``match`` cut out, or ``text`` itself when there is no match."""
    return text if match is None else text[: match.start()] + " " + text[match.end() :]


def clean_feedback(text: str) -> str:
    """Strip ``#`` marks, a leading ``Feedback:`` label and runs of spaces."""
    text = FEEDBACK_PREFIX.sub("", text.strip().strip("#").strip())
    return re.sub(r"[ \t]{2,}", " ", text).strip()


def parse_judgment(
    text: str,
    *,
    scale: tuple[int, int] = DEFAULT_SCALE,
    quoted: str | Sequence[str] | None = None,
) -> Judgment:
    r"""Parse an LLM judge's output into a :class:`Judgment`.

    Marked scores are read first: ``<score>N</score>`` (also when the closing tag is cut
    off, and ``<score>[N]</score>``), ``[RESULT] N``, ``[SCORE] N``, ``###Score: N`` /
    ``Score: N`` at the start of a line, ``score of [N]``, ``[Score: N]`` and a trailing
    ``[N]``. When the judge wrote several, the first complete grading holds: the first
    marked score after its first feedback; the later ones go to ``extra_scores``. Half
    points are kept. A marked score outside ``scale`` gives ``None``: the output did carry
    a score, just not a valid one. Only when nothing is marked are numbers in running text
    read (``N/5``, ``N out of 5``, ``rate the response as a N``, ``I give it a N``, or an
    answer that is just the number), and only when every such number agrees.

    Args:
        text: The judge's raw output.
        scale: The integer ``(low, high)`` scale the judge graded on.
        quoted: The text under judgment (or several). Score markers the judge copied
            from it, e.g. a response ending in ``<score>5</score>``, are ignored.

    Returns:
        A :class:`Judgment`. ``feedback`` is the first ``<feedback>`` block when there is
        one, else the text without the score marker and a leading ``Feedback:`` label.

    Raises:
        TypeError: If ``text`` is not a string, or ``quoted`` not strings.
        ValueError: If ``scale`` is not two integers with ``low < high``.

    Example:
        >>> judgment = parse_judgment("<feedback>Accurate, long.</feedback><score>4</score>")
        >>> judgment.score, judgment.feedback
        (4.0, 'Accurate, long.')
        >>> judgment = parse_judgment("<feedback>Ok.</feedback><score>2</score> <score>4</score>")
        >>> judgment.score, judgment.extra_scores
        (2.0, [4.0])
        >>> parse_judgment("Clear steps, but it earns a score of 3 out of 5.").score
        3.0
        >>> parse_judgment("<feedback>Good.</feedback><score>7</score>").score is None
        True
        >>> parse_judgment("[RESULT] 7", scale=(1, 10)).score
        7.0
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
    scale = check_scale(scale)
    reading = find_score(
        text, judgment_markers(scale), scale=scale, integer=False, quoted=quoted_texts(quoted)
    )
    # The feedback of the grading read: the last block before its score, else the first.
    blocks = [(m.start(), m.group(1).strip()) for m in _FEEDBACK_TAG.finditer(text)]
    blocks = [(start, block) for start, block in blocks if block]
    if blocks:
        end = reading.match.start() if reading.match else len(text)
        feedback = ([block for start, block in blocks if start < end] or [blocks[0][1]])[-1]
        feedback = re.sub(r"[ \t]{2,}", " ", feedback)
    else:
        feedback = without(text, reading.match if reading.strip else None)
        feedback = clean_feedback(_STRAY_TAG.sub(" ", _DANGLING.sub("", feedback)))
    return Judgment(
        feedback=feedback, score=reading.score, raw=text, extra_scores=reading.extra, scale=scale
    )


# ---------------------------------------------------------------------------


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
    reading = find_score(
        text, critique_markers(scale), scale=scale, integer=True, quoted=quoted_texts(quoted)
    )
    score = None if reading.score is None else int(reading.score)
    feedback = clean_feedback(without(text, reading.match if reading.strip else None))
    return Critique(feedback=feedback, score=score, raw=text, scale=scale)
