from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from spri_graph.evaluation.metrics import MISSING_GROUP, agreement, agreement_by, read_score
from tests.conftest import reference_dir


def load(name: str) -> list[dict]:
    path = reference_dir("biggenbench_judgments") / name
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_reproduces_the_papers_per_capability_pearson() -> None:
    table = agreement_by(
        load("gpt-4o-mini__vanilla.jsonl"),
        human="human_score",
        pred="evaluator_LM-score",
        by="capability",
    )
    assert round(table.groups["planning"].pearson, 3) == 0.620
    assert round(table.groups["safety"].pearson, 3) == 0.112
    assert sorted(table.groups) == [
        "grounding",
        "instruction_following",
        "planning",
        "reasoning",
        "refinement",
        "safety",
        "theory_of_mind",
        "tool_usage",
    ]
    assert sum(g.n for g in table.groups.values()) == table.overall.n == 2780
    assert table.overall.dropped == 0


def test_unreadable_scores_are_counted_and_dropped_on_real_judge_output() -> None:
    records = load("prometheus-8x7b-v2__vanilla.jsonl")
    table = agreement_by(records, human="human_score", pred="evaluator_LM-score", by="capability")
    # The paper's reader left 13 records without a score.
    assert (table.overall.n, table.overall.dropped, table.overall.unreadable_pred) == (
        2765,
        13,
        13,
    )
    parsed = agreement_by(records, human="human_score", pred="evaluator_LM-response", parse=True)
    # parse_judgment reads 7 of those 13 from the raw output.
    assert (parsed.overall.n, parsed.overall.dropped) == (2772, 6)


def test_metrics_match_their_definitions() -> None:
    human = [1, 2, 3, 4, 5, 3, 2]
    pred = [2, 2, 3, 5, 4, 3, 1]
    result = agreement(human, pred)

    def ranks(values: list[int]) -> list[float]:  # average rank of ties, 1-based
        ordered = sorted(values)
        return [ordered.index(v) + (ordered.count(v) + 1) / 2 for v in values]

    assert result.pearson == pytest.approx(np.corrcoef(human, pred)[0, 1])
    assert result.spearman == pytest.approx(np.corrcoef(ranks(human), ranks(pred))[0, 1])
    assert result.mae == pytest.approx(np.mean(np.abs(np.subtract(human, pred))))
    assert 0 < result.krippendorff_alpha < 1


def test_perfect_agreement() -> None:
    result = agreement([1, 2, 3, 4, 5], [1.0, 2.0, 3.0, 4.0, 5.0])
    assert (result.pearson, result.spearman, result.mae, result.krippendorff_alpha) == (
        pytest.approx(1.0),
        pytest.approx(1.0),
        0.0,
        pytest.approx(1.0),
    )


def test_ordinal_alpha_punishes_far_disagreement_more_than_near() -> None:
    human = [1, 2, 3, 4, 5, 1, 2, 3, 4, 5]
    near = [2, 1, 4, 3, 4, 1, 3, 2, 5, 5]
    far = [5, 1, 4, 3, 1, 1, 3, 2, 5, 2]
    assert agreement(human, near).krippendorff_alpha > agreement(human, far).krippendorff_alpha


def test_missing_and_unreadable_pairs_are_dropped_and_counted() -> None:
    human = [1, 2, None, 4, 5, "n/a", 3]
    pred = [1, float("nan"), 3, "4", True, 2, "<score>3</score>"]
    result = agreement(human, pred)
    assert (result.n, result.dropped) == (2, 5)
    assert (result.unreadable_human, result.unreadable_pred) == (2, 3)
    assert agreement(human, pred, parse=True).n == 3


def test_undefined_metrics_are_none() -> None:
    constant = agreement([3, 3, 3], [3, 3, 3])
    assert (constant.pearson, constant.spearman, constant.krippendorff_alpha) == (None,) * 3
    assert constant.mae == 0.0
    assert agreement([1, 5, 3], [2, 2, 2]).pearson is None
    single = agreement([4], [5])
    assert (single.n, single.pearson, single.spearman, single.mae) == (1, None, None, 1.0)
    empty = agreement([None], [1])
    assert (empty.n, empty.dropped, empty.mae, empty.krippendorff_alpha) == (0, 1, None, None)


def test_length_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="got 2 human and 3 judge scores"):
        agreement([1, 2], [1, 2, 3])


@pytest.mark.parametrize(
    ("value", "parse", "score"),
    [
        (4, False, 4.0),
        (4.5, False, 4.5),
        (" 3 ", False, 3.0),
        (np.int64(2), False, 2.0),
        (None, False, None),
        (float("nan"), False, None),
        (float("inf"), False, None),
        (True, False, None),
        ([4], False, None),
        ("<feedback>ok</feedback><score>5</score>", False, None),
        ("<feedback>ok</feedback><score>5</score>", True, 5.0),
        ("no score here", True, None),
    ],
)
def test_read_score(value: object, parse: bool, score: float | None) -> None:
    assert read_score(value, parse=parse) == score


def test_groups_sorted_with_missing_group_and_pooled_overall() -> None:
    records = [
        {"h": 1, "p": 1, "g": "b"},
        {"h": 2, "p": 3, "g": "b"},
        {"h": 5, "p": 5, "g": "a"},
        {"h": 4, "p": 4, "g": "a"},
        {"h": 3, "p": 2},
    ]
    table = agreement_by(records, human="h", pred="p", by="g")
    assert list(table.groups) == ["a", "b", MISSING_GROUP]
    assert table.groups["b"].mae == 0.5 and table.groups[MISSING_GROUP].n == 1
    assert table.overall.n == 5
    assert table.overall.pearson == pytest.approx(
        np.corrcoef([1, 2, 5, 4, 3], [1, 3, 5, 4, 2])[0, 1]
    )
    data = table.as_dict()
    assert data["by"] == "g" and data["groups"]["a"]["n"] == 2 and data["overall"]["n"] == 5
    text = table.format(2)
    assert text.splitlines()[0].split() == [
        "group",
        "n",
        "dropped",
        "pearson",
        "spearman",
        "mae",
        "alpha",
    ]
    assert text.splitlines()[2].split()[:2] == ["b", "2"]
    assert text.splitlines()[-1].split()[0] == "overall"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"human": "nope", "pred": "p"},
            "human: column 'nope' not found in any record; columns: h, p",
        ),
        ({"human": "h", "pred": "nope"}, "pred: column 'nope' not found"),
        ({"human": "h", "pred": "p", "by": "nope"}, "by: column 'nope' not found"),
    ],
)
def test_unknown_columns_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        agreement_by([{"h": 1, "p": 2}], **kwargs)


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "krippendorff", None)
    with pytest.raises(ImportError, match=r"pip install 'spri-graph\[metrics\]'"):
        agreement([1, 2], [1, 2])
