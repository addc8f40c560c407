"""Plots of judge scores against human scores, one panel per group.

:func:`plot_agreement` draws, for each group of records (e.g. each BiGGen-Bench capability)
and overall, the judge's score against the human score, as a jittered scatter or a heatmap
of counts, with the Pearson correlation in each panel's title. It reads scores as
:func:`~spri_graph.agreement_by` does (unreadable pairs are dropped and counted) and needs
the ``plot`` and ``metrics`` extras: ``pip install 'spri-graph[plot,metrics]'``. It draws on a
:class:`matplotlib.figure.Figure` of its own, without pyplot's global state, so it works
headless, in threads and in notebooks alike.

Example:
    >>> records = [{"human": h, "judge": j, "task": t} for h, j, t in [
    ...     (1, 1, "math"), (4, 5, "math"), (5, 4, "math"), (2, 2, "code"), (3, 4, "code"),
    ... ]]
    >>> figure = plot_agreement(records, human="human", pred="judge", by="task")
    >>> [axes.get_title() for axes in figure.axes]
    ['code: r = 1.000 (n = 2)', 'math: r = 0.885 (n = 3)', 'overall: r = 0.866 (n = 5)']
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from spri_graph.evaluation.metrics import MISSING_GROUP, Agreement, agreement_by, read_score

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_agreement"]

PlotKind = Literal["scatter", "heatmap"]
_OVERALL = "overall"


def _matplotlib() -> type[Figure]:
    try:
        from matplotlib.figure import Figure as FigureClass
    except ImportError as exc:
        raise ImportError(
            f"plots need the 'plot' extra: pip install 'spri-graph[plot]' ({exc})"
        ) from exc
    return FigureClass


def _pairs(
    rows: Iterable[Mapping[str, Any]], human: str, pred: str, parse: bool
) -> list[tuple[float, float]]:
    pairs = []
    for row in rows:
        h, p = read_score(row.get(human)), read_score(row.get(pred), parse=parse)
        if h is not None and p is not None:
            pairs.append((h, p))
    return pairs


def _title(name: str, metrics: Agreement) -> str:
    r = "n/a" if metrics.pearson is None else f"{metrics.pearson:.3f}"
    return f"{name}: r = {r} (n = {metrics.n})"


def _levels(values: Iterable[float]) -> list[float]:
    found = sorted(set(values))
    if found and all(value.is_integer() for value in found):
        return [float(v) for v in range(int(found[0]), int(found[-1]) + 1)]
    return found


def _integer_ticks(values: Sequence[float]) -> list[int] | None:
    """Every whole score from the lowest to the highest, when all ``values`` are whole."""
    if not values or not all(value.is_integer() for value in values):
        return None
    return list(range(int(min(values)), int(max(values)) + 1))


def _scatter(axes: Axes, pairs: Sequence[tuple[float, float]], jitter: float, seed: int) -> None:
    rng = random.Random(seed)
    xs = [h + rng.uniform(-jitter, jitter) for h, _ in pairs]
    ys = [p + rng.uniform(-jitter, jitter) for _, p in pairs]
    # Opaque enough that a lone point shows, with a white edge that keeps the points of a
    # jittered cloud apart.
    axes.scatter(xs, ys, s=36, alpha=0.7, edgecolors="white", linewidths=0.5, zorder=2)
    if pairs:
        low = min(min(h, p) for h, p in pairs)
        high = max(max(h, p) for h, p in pairs)
        axes.plot([low, high], [low, high], color="grey", linewidth=0.8, linestyle="--")
    for ticks, set_ticks, set_limits in (
        (_integer_ticks([h for h, _ in pairs]), axes.set_xticks, axes.set_xlim),
        (_integer_ticks([p for _, p in pairs]), axes.set_yticks, axes.set_ylim),
    ):
        if ticks is not None:  # an integer scale: no half-point ticks
            set_ticks(ticks)
            set_limits(ticks[0] - 0.5, ticks[-1] + 0.5)


def _heatmap(axes: Axes, pairs: Sequence[tuple[float, float]]) -> None:
    xs, ys = _levels(h for h, _ in pairs), _levels(p for _, p in pairs)
    counts = [[0] * len(xs) for _ in ys]
    for h, p in pairs:
        counts[ys.index(p)][xs.index(h)] += 1
    axes.imshow(counts, origin="lower", cmap="Blues", aspect="auto")
    peak = max((max(row) for row in counts), default=0)
    for row, line in enumerate(counts):
        for column, count in enumerate(line):
            if count:
                color = "white" if count > peak / 2 else "black"
                axes.text(column, row, str(count), ha="center", va="center", color=color, size=8)
    axes.set_xticks(range(len(xs)), [f"{x:g}" for x in xs])
    axes.set_yticks(range(len(ys)), [f"{y:g}" for y in ys])


def plot_agreement(
    records: Iterable[Mapping[str, Any]],
    *,
    human: str,
    pred: str,
    by: str | None = None,
    parse: bool = False,
    kind: PlotKind = "scatter",
    path: str | Path | None = None,
    columns: int = 4,
    jitter: float = 0.15,
    seed: int = 0,
) -> Figure:
    """Draw judge scores against human scores, per group and overall.

    Args:
        records: Dict-like records (e.g. the lines of a JSONL file).
        human: Column with the human scores (the x axis).
        pred: Column with the judge scores (the y axis); raw judge output with ``parse``.
        by: Column to group by: one panel per group, then one for all records. ``None``
            draws the overall panel alone.
        parse: Read ``pred`` strings with :func:`spri_graph.parse_judgment`.
        kind: ``"scatter"`` (points jittered by up to ``jitter`` so equal pairs show as a
            cloud, with the diagonal of perfect agreement; an axis whose scores are all
            whole numbers has a tick per whole score) or ``"heatmap"`` (the count of
            records for each pair of scores).
        path: Save the figure there too (the format follows the suffix: ``.png``,
            ``.svg``, ``.pdf``...).
        columns: Most panels per row.
        jitter: Largest jitter of a scatter point, in score units.
        seed: Seed of the jitter, so a plot is the same on every run.

    Returns:
        The :class:`matplotlib.figure.Figure`; each panel's title reads
        ``"<group>: r = <Pearson> (n = <pairs>)"`` (``n/a`` when undefined).

    Raises:
        ValueError: If a column is found in no record, ``kind`` is unknown, or ``columns``
            or ``jitter`` is out of range.
        ImportError: If the ``plot`` or ``metrics`` extra is not installed.
    """
    if kind not in ("scatter", "heatmap"):
        raise ValueError(f"kind must be 'scatter' or 'heatmap', got {kind!r}")
    if isinstance(columns, bool) or not isinstance(columns, int) or columns < 1:
        raise ValueError(f"columns must be an integer >= 1, got {columns!r}")
    if not isinstance(jitter, int | float) or not 0 <= jitter < 0.5:
        raise ValueError(f"jitter must be a number from 0 to 0.5 (excluded), got {jitter!r}")
    rows = list(records)
    table = agreement_by(rows, human=human, pred=pred, by=by, parse=parse)
    figure_class = _matplotlib()
    groups: dict[str, list[Mapping[str, Any]]] = {}
    if by is not None:
        for row in rows:
            key = row.get(by)
            groups.setdefault(MISSING_GROUP if key is None else str(key), []).append(row)
    panels = [(name, groups[name], metrics) for name, metrics in table.groups.items()]
    panels.append((_OVERALL, rows, table.overall))
    width = min(columns, len(panels))
    height = math.ceil(len(panels) / width)
    figure = figure_class(figsize=(3.4 * width, 3.2 * height), layout="constrained")
    for i, (name, subset, metrics) in enumerate(panels):
        axes = figure.add_subplot(height, width, i + 1)
        pairs = _pairs(subset, human, pred, parse)
        if kind == "scatter":
            _scatter(axes, pairs, jitter, seed)
        else:
            _heatmap(axes, pairs)
        axes.set_title(_title(name, metrics), fontsize=9)
        axes.set_xlabel(human, fontsize=8)
        axes.set_ylabel(pred, fontsize=8)
        axes.tick_params(labelsize=7)
    if path is not None:
        figure.savefig(path, dpi=120)
    return figure
