from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from spri_graph import plot_agreement  # noqa: E402
from tests.cli import spri  # noqa: E402
from tests.conftest import reference_dir  # noqa: E402

RECORDS = [
    {"task": "math", "human": 1, "judge": 1},
    {"task": "math", "human": 4, "judge": 5},
    {"task": "math", "human": 5, "judge": 4},
    {"task": "math", "human": 5, "judge": 5},
    {"task": "code", "human": 2, "judge": "<feedback>Ok.</feedback><score>2</score>"},
    {"task": "code", "human": 3, "judge": "no score"},
    {"task": "code", "human": 4, "judge": 3},
    {"human": 2, "judge": 2},
]


def titles(figure: object) -> list[str]:
    return [axes.get_title() for axes in figure.axes]  # type: ignore[attr-defined]


def test_one_panel_per_group_then_overall_with_pearson_in_the_title(tmp_path: Path) -> None:
    out = tmp_path / "agreement.png"
    figure = plot_agreement(RECORDS, human="human", pred="judge", by="task", parse=True, path=out)
    assert titles(figure) == [
        "code: r = 1.000 (n = 2)",
        "math: r = 0.907 (n = 4)",
        "(missing): r = n/a (n = 1)",
        "overall: r = 0.906 (n = 7)",
    ]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Every kept pair is a point; the unreadable one is dropped.
    overall = figure.axes[-1]
    assert len(overall.collections[0].get_offsets()) == 7
    assert overall.get_xlabel() == "human" and overall.get_ylabel() == "judge"


def test_without_groups_one_overall_panel() -> None:
    figure = plot_agreement(RECORDS, human="human", pred="judge")
    # Raw judge output is not read without parse=True: those pairs are dropped.
    assert titles(figure) == ["overall: r = 0.894 (n = 6)"]


def test_heatmap_counts_every_kept_pair(tmp_path: Path) -> None:
    figure = plot_agreement(
        RECORDS, human="human", pred="judge", parse=True, kind="heatmap", path=tmp_path / "h.svg"
    )
    counts = [int(text.get_text()) for text in figure.axes[0].texts]
    assert sum(counts) == 7
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == ["1", "2", "3", "4", "5"]
    assert (tmp_path / "h.svg").read_text().lstrip().startswith("<?xml")


def test_the_jitter_is_seeded() -> None:
    def points(seed: int) -> list:
        figure = plot_agreement(RECORDS, human="human", pred="judge", seed=seed, parse=True)
        return figure.axes[0].collections[0].get_offsets().tolist()

    assert points(1) == points(1) != points(2)


def test_integer_scales_get_a_tick_per_whole_score_and_visible_points() -> None:
    figure = plot_agreement(RECORDS, human="human", pred="judge", parse=True)
    axes = figure.axes[0]
    assert list(axes.get_xticks()) == [1, 2, 3, 4, 5]
    assert list(axes.get_yticks()) == [1, 2, 3, 4, 5]
    assert axes.get_ylim() == (0.5, 5.5)
    points = axes.collections[0]
    assert points.get_sizes()[0] >= 30 and points.get_alpha() >= 0.6


def test_fractional_scores_keep_matplotlibs_ticks() -> None:
    rows = [{"human": h, "judge": j} for h, j in [(1, 1.5), (3, 2.25), (5, 4.75)]]
    axes = plot_agreement(rows, human="human", pred="judge").axes[0]
    assert list(axes.get_xticks()) == [1, 2, 3, 4, 5]
    assert any(not float(tick).is_integer() for tick in axes.get_yticks())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "violin"}, "kind must be 'scatter' or 'heatmap'"),
        ({"columns": 0}, "columns must be an integer >= 1"),
        ({"jitter": 0.5}, "jitter must be a number from 0 to 0.5"),
        ({"pred": "nope"}, "pred: column 'nope' not found"),
        ({"by": "nope"}, "by: column 'nope' not found"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plot_agreement(RECORDS, **{"human": "human", "pred": "judge", **kwargs})


def test_missing_matplotlib_says_which_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"pip install 'spri-graph\[plot\]'"):
        plot_agreement(RECORDS, human="human", pred="judge")


def test_reference_judgments_per_capability(tmp_path: Path) -> None:
    path = reference_dir("biggenbench_judgments") / "gpt-4o-mini__vanilla.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    figure = plot_agreement(
        rows, human="human_score", pred="evaluator_LM-score", by="capability", kind="heatmap"
    )
    by_name = {title.split(":")[0]: title for title in titles(figure)}
    assert len(by_name) == 9  # eight capabilities and overall
    # The paper's figure for this judge on planning.
    assert by_name["planning"].startswith("planning: r = 0.620")


# --------------------------------------------------------------------------- spri agreement --plot


def write_records(path: Path) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in RECORDS))
    return path


def test_spri_agreement_plot_from_the_command_line(tmp_path: Path) -> None:
    import subprocess

    from tests.conftest import ROOT

    records, out = write_records(tmp_path / "scores.jsonl"), tmp_path / "agreement.png"
    done = subprocess.run(
        [sys.executable, "-m", "spri_graph.cli", "agreement", str(records), "--human", "human"]
        + ["--pred", "judge", "--by", "task", "--parse", "--plot", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert done.stderr.strip() == f"plot: {out}"
    lines = done.stdout.splitlines()
    assert any(line.startswith("dropped 1 of 8 pairs") for line in lines)  # the table as ever
    assert lines[-1].startswith("resolution of ")  # then each column's resolution


def test_spri_agreement_plot_heatmap_with_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from spri_graph.cli import main

    records, out = write_records(tmp_path / "scores.jsonl"), tmp_path / "agreement.svg"
    argv = ["agreement", str(records), "--human", "human", "--pred", "judge", "--json"]
    assert main([*argv, "--plot", str(out), "--plot-kind", "heatmap"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["overall"]["n"] == 6  # stdout stays JSON
    assert "<svg" in out.read_text()


@pytest.mark.parametrize(
    ("plot", "message"),
    [
        ("{tmp}/no/such/dir/p.png", "--plot"),
        ("{tmp}/p.nosuchformat", "--plot: Format 'nosuchformat' is not supported"),
    ],
)
def test_spri_agreement_plot_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], plot: str, message: str
) -> None:
    from spri_graph.cli import main

    records = write_records(tmp_path / "scores.jsonl")
    argv = ["agreement", str(records), "--human", "human", "--pred", "judge"]
    assert main([*argv, "--plot", plot.format(tmp=tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("spri: error: ") and message in err and len(err.splitlines()) == 1


def test_spri_agreement_help_lists_the_plot_options(capsys: pytest.CaptureFixture[str]) -> None:
    code, printed, _ = spri(capsys, "agreement", "--help")
    assert code == 0
    out = " ".join(printed.split())
    assert "--plot OUT.png" in out and "--plot-kind {scatter,heatmap}" in out
    assert "Pearson's r in each panel's title" in out
