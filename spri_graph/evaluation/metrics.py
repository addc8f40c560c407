"""Agreement between a judge's scores and human scores.

Pearson and Spearman correlation (:mod:`scipy.stats`), mean absolute error and
Krippendorff's alpha at the ordinal level (:mod:`krippendorff`), overall and grouped by a
column, and for a judge panel and each of its members (:func:`panel_agreement`). A pair
whose human or judge score is missing or unreadable is dropped and counted,
never guessed. These need the ``metrics`` extra: ``pip install 'spri-graph[metrics]'``; the
libraries are imported only when a metric is computed.

Example:
    >>> table = agreement_by(
    ...     [
    ...         {"task": "math", "human": 1, "judge": 1},
    ...         {"task": "math", "human": 4, "judge": 5},
    ...         {"task": "math", "human": 5, "judge": 4},
    ...         {"task": "code", "human": 2, "judge": "<score>2</score>"},
    ...         {"task": "code", "human": 3, "judge": "no score"},
    ...     ],
    ...     human="human",
    ...     pred="judge",
    ...     by="task",
    ...     parse=True,
    ... )
    >>> round(table.groups["math"].pearson, 3), table.overall.n, table.overall.dropped
    (0.885, 4, 1)
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from spri_graph.readers.scores import parse_judgment

__all__ = [
    "MISSING_GROUP",
    "Agreement",
    "AgreementTable",
    "Resolution",
    "agreement",
    "agreement_by",
    "panel_agreement",
    "read_score",
    "resolution",
]

MISSING_GROUP = "(missing)"
"""Group name for records that lack the ``by`` column."""

_METRICS = ("pearson", "spearman", "mae", "krippendorff_alpha")


def _libraries() -> tuple[Any, Any, Any]:
    try:
        import krippendorff
        import numpy
        import scipy.stats
    except ImportError as exc:
        raise ImportError(
            f"agreement metrics need the 'metrics' extra: pip install 'spri-graph[metrics]' ({exc})"
        ) from exc
    return numpy, scipy.stats, krippendorff


@dataclass(frozen=True)
class Agreement:
    """Agreement between paired human and judge scores.

    A metric is ``None`` when it is undefined for the kept pairs (fewer than two pairs, or
    scores that never vary).

    Attributes:
        n: Pairs kept (both scores readable).
        dropped: Pairs dropped because a score was missing or unreadable.
        unreadable_human: Dropped pairs whose human score was missing or unreadable.
        unreadable_pred: Dropped pairs whose judge score was missing or unreadable.
        pearson: Pearson correlation.
        spearman: Spearman rank correlation.
        mae: Mean absolute error.
        krippendorff_alpha: Krippendorff's alpha, ordinal level, judge and human as two coders.
    """

    n: int
    dropped: int
    unreadable_human: int
    unreadable_pred: int
    pearson: float | None
    spearman: float | None
    mae: float | None
    krippendorff_alpha: float | None

    def as_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class AgreementTable:
    """Agreement overall and per group (see :func:`agreement_by`)."""

    overall: Agreement
    groups: dict[str, Agreement] = field(default_factory=dict)
    by: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """``{"by", "groups": {name: metrics}, "overall": metrics}``, JSON-ready."""
        return {
            "by": self.by,
            "groups": {name: value.as_dict() for name, value in self.groups.items()},
            "overall": self.overall.as_dict(),
        }

    def format(self, digits: int = 3) -> str:
        """The table as aligned text, metrics rounded to ``digits`` decimals.

        Example:
            >>> print(agreement_by([{"h": 1, "p": 2}, {"h": 3, "p": 3}], human="h", pred="p")
            ...       .format())  # doctest: +NORMALIZE_WHITESPACE
            group n dropped pearson spearman mae alpha
            overall 2 0 1.000 1.000 0.500 0.833
        """
        header = ("group", "n", "dropped", "pearson", "spearman", "mae", "alpha")
        rows = [
            (name, str(value.n), str(value.dropped))
            + tuple(
                "-" if getattr(value, m) is None else f"{getattr(value, m):.{digits}f}"
                for m in _METRICS
            )
            for name, value in [*self.groups.items(), ("overall", self.overall)]
        ]
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        lines = [
            "  ".join(
                cell.ljust(width) if i == 0 else cell.rjust(width)
                for i, (cell, width) in enumerate(zip(row, widths, strict=True))
            )
            for row in [header, *rows]
        ]
        return "\n".join(lines)


def read_score(value: Any, *, parse: bool = False) -> float | None:
    """Read one score, or ``None`` when it is missing or unreadable.

    Numbers (and strings holding just a number) are read as they are; ``None``, NaN,
    booleans and anything else are unreadable. With ``parse=True`` other strings are read
    as raw judge output with :func:`spri_graph.parse_judgment`.

    Example:
        >>> read_score(4), read_score("4.5"), read_score(None), read_score(float("nan"))
        (4.0, 4.5, None, None)
        >>> read_score("<feedback>Good.</feedback><score>5</score>", parse=True)
        5.0
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return parse_judgment(value).score if parse else None
        return number if math.isfinite(number) else None
    return None


def _defined(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def agreement(human: Iterable[Any], pred: Iterable[Any], *, parse: bool = False) -> Agreement:
    """Agreement between paired human and judge scores.

    Args:
        human: Human scores.
        pred: Judge scores, paired with ``human`` by position.
        parse: Read judge scores given as raw judge output with
            :func:`spri_graph.parse_judgment`.

    Returns:
        The :class:`Agreement`; unreadable pairs are dropped and counted.

    Raises:
        ValueError: If the two sequences differ in length.
        ImportError: If the ``metrics`` extra is not installed.

    Example:
        >>> result = agreement([1, 2, 3, 4], [1, 2, 4, None])
        >>> result.n, result.dropped, round(result.pearson, 3), round(result.mae, 3)
        (3, 1, 0.982, 0.333)
    """
    human, pred = list(human), list(pred)
    if len(human) != len(pred):
        raise ValueError(
            f"human and pred must pair up: got {len(human)} human and {len(pred)} judge scores"
        )
    np, stats, krippendorff = _libraries()
    kept_h: list[float] = []
    kept_p: list[float] = []
    bad_h = bad_p = 0
    for h_value, p_value in zip(human, pred, strict=True):
        h, p = read_score(h_value), read_score(p_value, parse=parse)
        bad_h += h is None
        bad_p += p is None
        if h is not None and p is not None:
            kept_h.append(h)
            kept_p.append(p)
    n = len(kept_h)
    h_arr, p_arr = np.asarray(kept_h, dtype=float), np.asarray(kept_p, dtype=float)
    pearson = spearman = alpha = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant input: undefined, reported as None
        if n >= 2:
            pearson = _defined(stats.pearsonr(h_arr, p_arr).statistic)
            spearman = _defined(stats.spearmanr(h_arr, p_arr).statistic)
        if n >= 1 and len(set(kept_h) | set(kept_p)) >= 2:
            alpha = _defined(
                krippendorff.alpha(
                    reliability_data=np.vstack([h_arr, p_arr]), level_of_measurement="ordinal"
                )
            )
    return Agreement(
        n=n,
        dropped=len(human) - n,
        unreadable_human=bad_h,
        unreadable_pred=bad_p,
        pearson=pearson,
        spearman=spearman,
        mae=float(np.mean(np.abs(h_arr - p_arr))) if n else None,
        krippendorff_alpha=alpha,
    )


def panel_agreement(
    human: Sequence[Any], outputs: Sequence[Mapping[str, Any]]
) -> dict[str, Agreement]:
    """Agreement with human scores of a panel and of each of its judges.

    Args:
        human: Human scores, one per panel output.
        outputs: The panel's outputs (:class:`PanelOutput`), in the same order.

    Returns:
        ``{"panel": Agreement, "<judge>": Agreement, ...}``; a judge's name that occurs
        twice in the panel gets its position: ``"<judge> #2"``. Abstentions are dropped
        and counted, as :func:`~spri_graph.agreement` does.

    Raises:
        ValueError: If ``human`` and ``outputs`` differ in length.
        ImportError: If the ``metrics`` extra is not installed.
    """
    if len(human) != len(outputs):
        raise ValueError(
            f"human and outputs must pair up: got {len(human)} human scores and "
            f"{len(outputs)} panel outputs"
        )
    result: dict[str, Agreement] = {
        "panel": agreement(human, [out.get("score") for out in outputs])
    }
    judgments: list[Mapping[str, Any]] = next(
        (out["judgments"] for out in outputs if out.get("judgments")), []
    )
    names = Counter(judgment["judge"] for judgment in judgments)
    for i, judgment in enumerate(judgments):
        name = (
            judgment["judge"] if names[judgment["judge"]] == 1 else f"{judgment['judge']} #{i + 1}"
        )
        scores = [(out.get("scores") or [None] * len(judgments))[i] for out in outputs]
        result[name] = agreement(human, scores)
    return result


def agreement_by(
    records: Iterable[Mapping[str, Any]],
    *,
    human: str,
    pred: str,
    by: str | None = None,
    parse: bool = False,
) -> AgreementTable:
    """Agreement between two score columns of records, overall and per group.

    Args:
        records: Dict-like records (e.g. the lines of a JSONL file).
        human: Column with the human scores.
        pred: Column with the judge scores (numbers, or raw judge output with ``parse``).
        by: Column to group by; records without it form the group ``"(missing)"``.
        parse: Read ``pred`` strings with :func:`spri_graph.parse_judgment`.

    Returns:
        An :class:`AgreementTable` with groups sorted by name, ``"(missing)"`` last.

    Raises:
        ValueError: If no record has the ``human``, ``pred`` or ``by`` column.
        ImportError: If the ``metrics`` extra is not installed.
    """
    rows: Sequence[Mapping[str, Any]] = list(records)
    for role, column in (("human", human), ("pred", pred), ("by", by)):
        if column is not None and not any(column in row for row in rows):
            seen = sorted({key for row in rows for key in row})
            raise ValueError(
                f"{role}: column {column!r} not found in any record"
                + (f"; columns: {', '.join(seen)}" if seen else "; there are no records")
            )
    groups: dict[str, list[Mapping[str, Any]]] = {}
    if by is not None:
        for row in rows:
            key = row.get(by)
            groups.setdefault(MISSING_GROUP if key is None else str(key), []).append(row)

    def measure(subset: Sequence[Mapping[str, Any]]) -> Agreement:
        return agreement(
            [row.get(human) for row in subset], [row.get(pred) for row in subset], parse=parse
        )

    return AgreementTable(
        overall=measure(rows),
        groups={
            name: measure(groups[name])
            for name in sorted(groups, key=lambda name: (name == MISSING_GROUP, name))
        },
        by=by,
    )


@dataclass(frozen=True)
class Resolution:
    """How finely a column of scores tells responses apart.

    A judge whose scores pile up at the top of its scale, in few distinct values, cannot
    rank the responses it grades, however well it agrees on average.

    Attributes:
        scores: Readable scores counted.
        unreadable: Missing or unreadable scores (not counted).
        ceiling: The top of the scale.
        at_ceiling: The share of the readable scores at (or above) the ceiling, 0-1;
            ``None`` with no readable score.
        distinct: The number of distinct readable scores.
    """

    scores: int
    unreadable: int
    ceiling: float
    at_ceiling: float | None
    distinct: int

    def as_dict(self) -> dict[str, Any]:
        """The figures as a JSON-ready dict."""
        return {
            "scores": self.scores,
            "unreadable": self.unreadable,
            "ceiling": self.ceiling,
            "at_ceiling": self.at_ceiling,
            "distinct": self.distinct,
        }


def resolution(scores: Iterable[Any], *, ceiling: float = 5, parse: bool = False) -> Resolution:
    """The share of ``scores`` at the ``ceiling`` and how many distinct values they take.

    Scores are read with :func:`read_score` (``parse`` as there); unreadable ones are
    counted apart.

    Raises:
        ValueError: If ``ceiling`` is not a finite number.

    Example:
        >>> r = resolution([5, 5, 4.5, 5, None], ceiling=5)
        >>> r.at_ceiling, r.distinct, r.unreadable
        (0.75, 2, 1)
    """
    if isinstance(ceiling, bool) or not isinstance(ceiling, numbers.Real):
        raise ValueError(f"ceiling must be a number, got {ceiling!r}")
    if not math.isfinite(float(ceiling)):
        raise ValueError(f"ceiling must be finite, got {ceiling!r}")
    read = [read_score(value, parse=parse) for value in scores]
    found = [value for value in read if value is not None]
    top = float(ceiling)
    return Resolution(
        scores=len(found),
        unreadable=len(read) - len(found),
        ceiling=top,
        at_ceiling=sum(value >= top for value in found) / len(found) if found else None,
        distinct=len(set(found)),
    )
