r"""Criteria rubrics: a weighted checklist per instruction, its layouts, readers and score.

A criteria rubric (a :class:`Checklist`) lists what a response to *this* instruction must do,
each :class:`Criterion` with a weight class (``essential``, ``important``, ``optional``,
``pitfall``) or a numeric weight, and a kind: ``binary`` (met or not met) or ``ordinal``
(met to a degree, ``0/4`` .. ``4/4``). A pitfall names a mistake the instruction invites; a
response that falls into it is said to *meet* it, and that lowers the score.

Text layout (written by :meth:`Checklist.render`, read by :func:`parse_checklist`)::

    Criterion 1 [essential, binary]: The response names Paris as the capital.
    Criterion 2 [important, ordinal]: The response explains why.
    Criterion 3 [pitfall, binary]: The response calls Lyon the capital.
    Criterion 4 [weight 1.5, binary]: The response is one sentence.

A grading answers one line per criterion, ``Criterion N: met - reason`` (``not met``, or
``K/4`` for an ordinal one), read by :func:`read_criteria_grading`; structured output has the
fields of :func:`checklist_schema` and :func:`criteria_grading_schema`.

The score (:func:`criteria_score`), with weights ``essential`` 3, ``important`` 2,
``optional`` 1 and ``pitfall`` 2 (or the numeric weight; a negative one is a pitfall of that
size), each verdict ``v`` in ``[0, 1]`` (binary: 1 met, 0 not met; ordinal: ``K/4``):

    fraction = (sum(w * v, criteria) - sum(w * v, pitfalls)) / sum(w, criteria)

clipped to ``[0, 1]``, then ``score = low + fraction * (high - low)`` on the judge's scale. A
criterion with no readable verdict counts as not met (a pitfall as not hit); a grading with
no readable verdict at all has no score.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, create_model, field_validator
from typing_extensions import TypedDict

from spri_graph.readers.scores import Scale, check_scale

__all__ = [
    "CLASS_WEIGHTS",
    "Checklist",
    "Criterion",
    "CriterionKind",
    "CriterionResult",
    "CriterionVerdict",
    "WeightClass",
    "checklist_schema",
    "coerce_checklist",
    "criteria_grading_schema",
    "criteria_score",
    "criterion_verdict_schema",
    "PairwiseChoice",
    "generic_checklist",
    "pairwise_criteria_schema",
    "parse_checklist",
    "read_checklist_fields",
    "read_criteria_grading",
    "read_pairwise_criteria",
    "verdict_value",
]

WeightClass = Literal["essential", "important", "optional", "pitfall"]
"""A criterion's weight class (Rubrics as Rewards): what missing it, or hitting it, costs."""

CriterionKind = Literal["binary", "ordinal"]
"""``binary``: met or not met; ``ordinal``: met to a degree, ``0/4`` .. ``4/4``."""

CLASS_WEIGHTS: Mapping[WeightClass, float] = {
    "essential": 3.0,
    "important": 2.0,
    "optional": 1.0,
    "pitfall": 2.0,
}
"""The weight of each class (a pitfall's is what hitting it takes off)."""

CriterionVerdict = Literal["met", "not met", "0/4", "1/4", "2/4", "3/4", "4/4"]
"""A verdict on one criterion: binary ``met`` / ``not met``, ordinal ``K/4``."""

_VERDICTS: tuple[str, ...] = ("met", "not met", "0/4", "1/4", "2/4", "3/4", "4/4")
_CLASSES: tuple[str, ...] = ("essential", "important", "optional", "pitfall")


class Criterion(BaseModel):
    """One criterion of a checklist.

    Give ``importance`` (a weight class), or ``weight`` (a number; negative means a pitfall
    of that size), or both (the number then sets the size of the class). With neither, the
    criterion is ``important``.

    Example:
        >>> Criterion(text="Names Paris.", importance="essential").weight_value
        3.0
        >>> c = Criterion(text="Calls Lyon the capital.", weight=-1)
        >>> c.pitfall, c.weight_value, c.label
        (True, 1.0, 'weight -1')
    """

    text: str = Field(description="What the response must do (or, a pitfall, must not do).")
    importance: WeightClass | None = Field(default=None, description="The weight class.")
    weight: float | None = Field(default=None, description="A numeric weight instead.")
    kind: CriterionKind = Field(default="binary", description="binary or ordinal.")

    @field_validator("text")
    @classmethod
    def _non_empty(cls, text: str) -> str:
        if not text.strip():
            raise ValueError("a criterion's text must be non-empty")
        return text.strip()

    @property
    def pitfall(self) -> bool:
        """Whether meeting the criterion is a mistake that lowers the score."""
        return self.importance == "pitfall" or (self.weight is not None and self.weight < 0)

    @property
    def weight_value(self) -> float:
        """The criterion's weight, a size (never negative)."""
        if self.weight is not None:
            return abs(float(self.weight))
        return CLASS_WEIGHTS[self.importance or "important"]

    @property
    def label(self) -> str:
        """The weight as written in the text layout: the class, or ``weight N``."""
        if self.weight is not None and self.importance is None:
            return f"weight {self.weight:g}"
        if self.weight is not None:
            return f"{self.importance}, weight {self.weight:g}"
        return self.importance or "important"


class Checklist(BaseModel):
    """A criteria rubric: the weighted criteria a response to one instruction is graded on.

    The criteria (non-pitfall) weights must sum to more than zero.

    Example:
        >>> checklist = Checklist(items=[
        ...     Criterion(text="Names Paris.", importance="essential"),
        ...     Criterion(text="Calls Lyon the capital.", importance="pitfall"),
        ... ])
        >>> print(checklist.render())
        Criterion 1 [essential, binary]: Names Paris.
        Criterion 2 [pitfall, binary]: Calls Lyon the capital.
    """

    items: list[Criterion] = Field(description="The criteria, in order (numbered from 1).")

    @field_validator("items")
    @classmethod
    def _positive_weights(cls, items: list[Criterion]) -> list[Criterion]:
        if not items:
            raise ValueError("a checklist needs at least one criterion")
        if sum(c.weight_value for c in items if not c.pitfall) <= 0:
            raise ValueError(
                "the weights of a checklist's criteria (pitfalls aside) sum to zero; give at "
                "least one criterion a positive weight"
            )
        return items

    def render(self) -> str:
        """The checklist in its text layout (the prompts show it this way)."""
        return "\n".join(
            f"Criterion {n} [{c.label}, {c.kind}]: {c.text}" for n, c in enumerate(self.items, 1)
        )


_GENERIC_TEXT = "The response fulfils the instruction helpfully, accurately and completely."


def generic_checklist() -> Checklist:
    """The one-criterion checklist of the vanilla judge, and the fallback for an empty one."""
    return Checklist(items=[Criterion(text=_GENERIC_TEXT, importance="essential")])


# --------------------------------------------------------------------------- reading rubrics

_CRITERION_LINE = re.compile(
    r"^[\s#*_>|-]*(?:criterion|item)?[\s*_]*\(?(\d+)[\s*_]*[).:]?[\s*_]*"
    r"\[([^\]]*)\][\s*_]*[:.\u2013\u2014-]?[\s*_]*(.+)$",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _criterion(tags: str, text: str) -> Criterion | None:
    words = tags.lower()
    importance = next((c for c in _CLASSES if c in words), None)
    number = _NUMBER.search(words)
    kind: CriterionKind = "ordinal" if "ordinal" in words else "binary"
    weight = float(number.group()) if number else None
    try:
        return Criterion(text=text, importance=importance, weight=weight, kind=kind)  # type: ignore[arg-type]
    except ValidationError:
        return None


def _completed(items: Sequence[Criterion]) -> Checklist:
    try:
        return Checklist(items=list(items))
    except ValidationError:  # no criterion, or only pitfalls: add the generic one
        return Checklist(items=[*generic_checklist().items, *items])


def parse_checklist(text: str) -> Checklist:
    r"""Read a checklist written in the ``Criterion N [class, kind]: text`` layout.

    Also reads ``N. [class, kind] text`` lines, Markdown emphasis around them, and a JSON
    object with the :func:`checklist_schema` fields. Never fails: with no criterion (or
    only pitfalls) the generic criterion is added (:func:`generic_checklist`).

    Example:
        >>> checklist = parse_checklist(
        ...     "Criterion 1 [Essential, binary]: Names Paris.\n"
        ...     "**Criterion 2 [pitfall]:** Calls Lyon the capital."
        ... )
        >>> [(c.importance, c.pitfall) for c in checklist.items]
        [('essential', False), ('pitfall', True)]
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        try:
            found = read_checklist_fields(json.loads(text[start : end + 1]))
        except ValueError:
            found = None
        if found is not None:
            return found
    items = []
    for line in text.splitlines():
        match = _CRITERION_LINE.match(line)
        if match and (item := _criterion(match.group(2), match.group(3).strip(" *_"))):
            items.append(item)
    return _completed(items)


def read_checklist_fields(data: Any) -> Checklist | None:
    """The checklist in structured output (the fields of :func:`checklist_schema`).

    Returns:
        The :class:`Checklist` (completed as in :func:`parse_checklist`), or ``None`` when
        ``data`` holds no criteria list.

    Example:
        >>> read_checklist_fields({"criteria": [{"text": "Polite.", "importance": "optional"}]})
        Checklist(items=[Criterion(text='Polite.', importance='optional', weight=None, kind='binary')])
    """  # noqa: E501
    if not isinstance(data, Mapping):
        return None
    raw = data.get("criteria", data.get("items"))
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        return None
    items = []
    for entry in raw:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("text"), str):
            continue
        importance = str(entry.get("importance") or "").strip().lower() or None
        try:
            items.append(
                Criterion(
                    text=entry["text"],
                    importance=importance if importance in _CLASSES else None,  # type: ignore[arg-type]
                    weight=entry.get("weight"),
                    kind="ordinal" if entry.get("kind") == "ordinal" else "binary",
                )
            )
        except ValidationError:
            continue
    return _completed(items)


def coerce_checklist(value: Any, field: str = "rubric") -> Checklist:
    """Accept a :class:`Checklist`, a dict of its fields (``items`` or ``criteria``), or text.

    Raises:
        ValueError: Naming ``field``, if the value is none of these, or its criteria's
            weights (pitfalls aside) sum to zero.

    Example:
        >>> coerce_checklist({"items": [{"text": "Calls Lyon the capital.", "weight": -2}]})
        Traceback (most recent call last):
        ...
        ValueError: rubric: the weights of a checklist's criteria (pitfalls aside) sum to zero; give at least one criterion a positive weight
    """  # noqa: E501
    if isinstance(value, Checklist):
        return value
    if isinstance(value, Mapping):
        raw = value.get("items", value.get("criteria"))
        try:
            return Checklist(items=raw)
        except ValidationError as error:
            reasons = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in error.errors())
            raise ValueError(f"{field}: {reasons}") from None
    if isinstance(value, str):
        if not value.strip():
            raise ValueError(f"{field} must be non-empty checklist text")
        items = [
            item
            for line in value.splitlines()
            if (match := _CRITERION_LINE.match(line))
            and (item := _criterion(match.group(2), match.group(3).strip(" *_")))
        ]
        return coerce_checklist({"items": items}, field)
    raise ValueError(
        f"{field} must be a Checklist, a dict of its fields or checklist text, "
        f"got {type(value).__name__}"
    )


# --------------------------------------------------------------------------- schemas


class _SchemaCriterion(BaseModel):
    """One criterion of the checklist."""

    text: str = Field(description="What a response to this instruction must do, checkably.")
    importance: WeightClass = Field(description="essential, important, optional or pitfall.")
    kind: CriterionKind = Field(description="binary (met or not) or ordinal (to a degree).")


class _SchemaChecklist(BaseModel):
    """A weighted checklist for grading responses to one instruction."""

    criteria: list[_SchemaCriterion] = Field(
        min_length=1, max_length=12, description="The criteria, most important first."
    )


def checklist_schema(scale: Scale = (1, 5)) -> type[BaseModel]:
    """The structured-output schema of a checklist (tool name ``Checklist``).

    One field, ``criteria``: a list of ``{text, importance, kind}`` (1 to 12). The scale
    does not change it (the score is mapped onto the scale); it is taken to match
    :func:`~spri_graph.readers.rubric.rubric_schema`.
    """
    check_scale(scale)
    return _SchemaChecklistTool


_SchemaChecklistTool = create_model(
    "Checklist",
    __doc__=_SchemaChecklist.__doc__,
    __base__=_SchemaChecklist,
)


class _SchemaOneVerdict(BaseModel):
    """The verdict on one criterion: a one-line reason, then the verdict."""

    reason: str = Field(description="One line: why the verdict.")
    verdict: CriterionVerdict = Field(
        description="met or not met (binary); 0/4 to 4/4 (ordinal). A pitfall is met when "
        "the response falls into it."
    )


class _SchemaVerdict(BaseModel):
    """The verdict on one criterion of the checklist."""

    criterion: int = Field(ge=1, description="The criterion's number.")
    reason: str = Field(description="One line: why the verdict.")
    verdict: CriterionVerdict = Field(
        description="met or not met (binary); 0/4 to 4/4 (ordinal). A pitfall is met when "
        "the response falls into it."
    )


class _SchemaGrading(BaseModel):
    """A grading of one response by a checklist: a verdict per criterion."""

    results: list[_SchemaVerdict] = Field(
        min_length=1, max_length=12, description="One verdict per criterion, in order."
    )


_GradingTool = create_model(
    "CriteriaGrading", __doc__=_SchemaGrading.__doc__, __base__=_SchemaGrading
)
_VerdictTool = create_model(
    "CriterionGrading", __doc__=_SchemaOneVerdict.__doc__, __base__=_SchemaOneVerdict
)


def criteria_grading_schema() -> type[BaseModel]:
    """The structured-output schema of a grading by checklist (tool ``CriteriaGrading``).

    One field, ``results``: a list of ``{criterion, reason, verdict}``.
    """
    return _GradingTool


def criterion_verdict_schema() -> type[BaseModel]:
    """The structured-output schema of one criterion's grading (tool ``CriterionGrading``).

    Fields: ``reason``, then ``verdict`` (one text field, then one choice: the embedded
    local model writes the reason freely and then only a valid verdict).
    """
    return _VerdictTool


# --------------------------------------------------------------------------- grading


class CriterionResult(TypedDict):
    """The grading of one criterion.

    Attributes:
        criterion: Its number, from 1.
        text: Its text.
        weight: Its weight (a size; see ``pitfall``).
        pitfall: Whether meeting it lowers the score.
        kind: ``binary`` or ``ordinal``.
        verdict: The verdict as written (``met``, ``not met``, ``K/4``), or ``None`` unread.
        value: The verdict in ``[0, 1]``, or ``None`` unread.
        reason: The one-line reason.
    """

    criterion: int
    text: str
    weight: float
    pitfall: bool
    kind: str
    verdict: str | None
    value: float | None
    reason: str


def verdict_value(verdict: str) -> float | None:
    """A verdict in ``[0, 1]``: ``met`` 1, ``not met`` 0, ``K/4`` K/4; else ``None``.

    Example:
        >>> verdict_value("Not met"), verdict_value("3/4"), verdict_value("maybe")
        (0.0, 0.75, None)
    """
    words = verdict.strip().lower().strip(" .*_`\"'")
    if words in ("met", "yes", "pass", "hit"):
        return 1.0
    if words in ("not met", "unmet", "no", "fail", "not hit"):
        return 0.0
    if match := re.fullmatch(r"([0-4])\s*/\s*4", words):
        return int(match.group(1)) / 4
    return None


_VERDICT_LINE = re.compile(
    r"^[\s#*_>|-]*(?:criterion|item)[\s*_]*(\d+)[\s*_]*(?:\([^)]*\))?[\s*_]*[:.=\u2013\u2014-]"
    r"[\s*_]*(not\s+met|met|[0-4]\s*/\s*4)\b[\s*_]*(?:[-:;,.\u2013\u2014][\s*_]*)?(.*)$",
    re.IGNORECASE,
)


def _normal(text: str) -> str:
    return " ".join(text.lower().split())


def _copied(line: str, quoted: Sequence[str]) -> bool:
    normal = _normal(line).strip(" *_#>|-")
    return bool(normal) and any(normal in quote for quote in quoted)


def _text_verdicts(text: str, quoted: Sequence[str]) -> dict[int, tuple[str, str]]:
    """``{criterion: (verdict, reason)}`` from the text layout; the last line per criterion.

    A line that the text under judgment also holds (copied from it) is not read.
    """
    found: dict[int, tuple[str, str]] = {}
    for line in text.splitlines():
        match = _VERDICT_LINE.match(line)
        if match and not _copied(line, quoted):
            verdict = " ".join(match.group(2).lower().split())
            if "/" in verdict:  # "3 / 4"
                verdict = verdict.replace(" ", "")
            found[int(match.group(1))] = (verdict, match.group(3).strip(" *_"))
    return found


def _field_verdicts(fields: Mapping[str, Any]) -> dict[int, tuple[str, str]]:
    raw = fields.get("results")
    entries = raw if isinstance(raw, Sequence) and not isinstance(raw, str) else [fields]
    found: dict[int, tuple[str, str]] = {}
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        number, verdict = entry.get("criterion"), entry.get("verdict")
        if isinstance(number, int) and not isinstance(number, bool) and isinstance(verdict, str):
            reason = entry.get("reason")
            found[number] = (
                verdict.strip().lower(),
                reason.strip() if isinstance(reason, str) else "",
            )
    return found


def read_criteria_grading(
    checklist: Checklist,
    *,
    text: str = "",
    fields: Mapping[str, Any] | None = None,
    quoted: str | Sequence[str] | None = None,
    only: int | None = None,
) -> list[CriterionResult]:
    """The per-criterion results of a grading: structured ``fields`` first, else ``text``.

    Args:
        checklist: The checklist graded by.
        text: The grader's text (``Criterion N: met - reason`` lines).
        fields: The structured answer's fields (:func:`criteria_grading_schema`, or one
            :func:`criterion_verdict_schema` result), if any.
        quoted: The text under judgment: a verdict line copied from it is not read.
        only: Read this criterion alone (a structured verdict is its verdict, whatever
            number it names); the result list then holds that one criterion.

    Example:
        >>> checklist = parse_checklist("Criterion 1 [essential]: Names Paris.")
        >>> [r["value"] for r in read_criteria_grading(checklist, text="Criterion 1: met - yes")]
        [1.0]
    """
    if quoted is None:
        quoted = ()
    elif isinstance(quoted, str):
        quoted = (quoted,)
    if not all(isinstance(q, str) for q in quoted):
        raise TypeError(f"quoted must be a string or a sequence of strings, got {quoted!r:.80}")
    quotes = [_normal(q) for q in quoted]
    found: dict[int, tuple[str, str]] = {}
    if fields is not None:
        if only is not None and "results" not in fields:  # one verdict: it is ``only``'s
            fields = {**fields, "criterion": only}
        found = _field_verdicts(fields)
    if not found:
        found = _text_verdicts(text, quotes)
        if only is not None and only not in found and len(found) == 1:
            found = {only: next(iter(found.values()))}
    numbers = [only] if only is not None else range(1, len(checklist.items) + 1)
    results = []
    for number in numbers:
        criterion = checklist.items[number - 1]
        verdict, reason = found.get(number, (None, ""))
        value = None if verdict is None else verdict_value(verdict)
        results.append(
            CriterionResult(
                criterion=number,
                text=criterion.text,
                weight=criterion.weight_value,
                pitfall=criterion.pitfall,
                kind=criterion.kind,
                verdict=verdict if value is not None else None,
                value=value,
                reason=reason,
            )
        )
    return results


def criteria_score(results: Sequence[Mapping[str, Any]], scale: Scale = (1, 5)) -> float | None:
    """The weighted score of per-criterion results on ``scale`` (formula: module docs).

    Returns:
        The score, or ``None`` when no criterion has a readable verdict.

    Raises:
        ValueError: If the criteria's weights (pitfalls aside) sum to zero.

    Example:
        >>> met = {"weight": 3.0, "pitfall": False, "value": 1.0}
        >>> missed = {"weight": 1.0, "pitfall": False, "value": 0.0}
        >>> hit = {"weight": 2.0, "pitfall": True, "value": 1.0}
        >>> criteria_score([met, missed], (1, 5)), criteria_score([met, missed, hit], (0, 1))
        (4.0, 0.25)
    """
    low, high = check_scale(scale)
    total = sum(r["weight"] for r in results if not r["pitfall"])
    if total <= 0:
        raise ValueError("the criteria's weights (pitfalls aside) sum to zero")
    if all(r["value"] is None for r in results):
        return None
    gained = sum(r["weight"] * (r["value"] or 0.0) for r in results if not r["pitfall"])
    lost = sum(r["weight"] * (r["value"] or 0.0) for r in results if r["pitfall"])
    fraction = min(1.0, max(0.0, float(gained - lost) / float(total)))
    return round(low + fraction * (high - low), 6)


# --------------------------------------------------------------------------- pairwise

PairwiseChoice = Literal["A", "B", "tie"]
"""Which of two responses does better on one criterion (on a pitfall: avoids it)."""


class _SchemaChoice(BaseModel):
    """Which response does better on one criterion."""

    criterion: int = Field(ge=1, description="The criterion's number.")
    reason: str = Field(description="One line: why.")
    better: PairwiseChoice = Field(
        description="A, B or tie. On a pitfall, the response that avoids the mistake."
    )


class _SchemaPairwise(BaseModel):
    """A comparison of two responses by a checklist: the better one per criterion."""

    results: list[_SchemaChoice] = Field(
        min_length=1, max_length=12, description="One choice per criterion, in order."
    )


_PairwiseTool = create_model(
    "CriteriaComparison", __doc__=_SchemaPairwise.__doc__, __base__=_SchemaPairwise
)


def pairwise_criteria_schema() -> type[BaseModel]:
    """The structured-output schema of a comparison by checklist (``CriteriaComparison``)."""
    return _PairwiseTool


_CHOICE_LINE = re.compile(
    r"^[\s#*_>|-]*(?:criterion|item)[\s*_]*(\d+)[\s*_]*[:.=\u2013\u2014-][\s*_]*"
    r"(?:response[\s*_]+)?(A|B|tie)\b[\s*_]*(?:[-:;,.\u2013\u2014][\s*_]*)?(.*)$",
    re.IGNORECASE,
)


def read_pairwise_criteria(
    checklist: Checklist,
    *,
    text: str = "",
    fields: Mapping[str, Any] | None = None,
    quoted: Sequence[str] = (),
) -> dict[int, tuple[PairwiseChoice, str]]:
    """``{criterion: (better, reason)}`` of a comparison, in the order shown (A first).

    Structured ``fields`` first, else ``Criterion N: A - reason`` lines of ``text`` (the
    last line per criterion; a line copied from a ``quoted`` response is not read).
    Criteria with no readable choice are left out.

    Example:
        >>> checklist = parse_checklist("Criterion 1 [essential]: Names Paris.")
        >>> read_pairwise_criteria(checklist, text="Criterion 1: B - B names Paris.")
        {1: ('B', 'B names Paris.')}
    """
    quotes = [_normal(q) for q in quoted]
    found: dict[int, tuple[PairwiseChoice, str]] = {}
    entries = fields.get("results") if fields is not None else None
    for entry in entries if isinstance(entries, Sequence) and not isinstance(entries, str) else []:
        if isinstance(entry, Mapping) and isinstance(entry.get("criterion"), int):
            better = str(entry.get("better") or "").strip()
            choice = "tie" if better.lower() == "tie" else better.upper()
            if choice in ("A", "B", "tie"):
                reason = entry.get("reason")
                found[entry["criterion"]] = (
                    choice,  # type: ignore[assignment]
                    reason.strip() if isinstance(reason, str) else "",
                )
    if not found:
        for line in text.splitlines():
            match = _CHOICE_LINE.match(line)
            if match and not _copied(line, quotes):
                better = match.group(2)
                choice = "tie" if better.lower() == "tie" else better.upper()
                found[int(match.group(1))] = (choice, match.group(3).strip(" *_"))  # type: ignore[assignment]
    return {n: found[n] for n in range(1, len(checklist.items) + 1) if n in found}
