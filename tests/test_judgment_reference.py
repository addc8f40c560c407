"""parse_judgment on every judge output the paper released, file by file.

Per file: agreement with the paper's reader (``evaluator_LM-score``) on the records both
read, and Pearson with the human scores on those records, spri-graph's reading vs the
paper's. The figures are printed in the test summary.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import pytest

from spri_graph import parse_judgment
from tests.conftest import REFERENCE, reference_dir

FOLDER = "biggenbench_judgments"

# Records whose score the paper's code could not read, checked by hand: (file, line, id) ->
# the score the judge did give. Every other record the paper left unread carries no score
# on the 1-5 scale (cut off before the score, "###Score:" with nothing after it, an empty
# or "N/A" tag, "<score>0</score>", or a pairwise comparison with no grade).
PROMETHEUS = "prometheus-8x7b-v2__vanilla.jsonl"
MIXTRAL = "mixtral-8x7b-instruct-v01__seed-principles-as-rubrics.jsonl"
HAND_CHECKED = {
    # "...Therefore, the response earns a score of 4 out of 5." (no tags at all)
    (PROMETHEUS, 2768, "refinement_rationale_revision_3"): 4.0,
    # "<score>\n5\n</score>": the paper's reader did not allow line breaks in the tag.
    (PROMETHEUS, 2771, "refinement_code_revision_7"): 5.0,
    # "###Score:  \n\nAssistant:\n5": a stray chat-role label between marker and score.
    (PROMETHEUS, 2772, "refinement_llm_judge_relative_0"): 5.0,
    # "</feedback><score>4</score" (the closing tag is cut off).
    (PROMETHEUS, 2774, "theory_of_mind_multistep_tom_5"): 4.0,
    # "###Score:\n5"
    (PROMETHEUS, 2775, "refinement_llm_judge_relative_1"): 5.0,
    # "...I would rate the response as a 5, as it perfectly addresses..." then a cut-off
    # <feedback> block with no score.
    (PROMETHEUS, 2777, "planning_reward_modeling_2"): 5.0,
    # "###Score:  \n\nAssistant: \n5"
    (PROMETHEUS, 2778, "refinement_llm_judge_relative_4"): 5.0,
    # "###Score: 5" and variants after plain-text feedback.
    (MIXTRAL, 2725, "refinement_llm_judge_absolute_0"): 5.0,
    (MIXTRAL, 2749, "theory_of_mind_faux_pas_explanation_0"): 5.0,
    (MIXTRAL, 2752, "instruction_following_semantic_constraint_7"): 1.0,
    (MIXTRAL, 2763, "theory_of_mind_thinking_for_doing_6"): 4.0,
    (MIXTRAL, 2765, "planning_reward_modeling_0"): 4.0,
    (MIXTRAL, 2767, "reasoning_high_school_mwp_8"): 1.0,
    (MIXTRAL, 2773, "refinement_llm_judge_absolute_6"): 3.0,
    (MIXTRAL, 2777, "theory_of_mind_guess_the_emotion_5"): 3.0,
    # "###Score:\n2/5", "###Score: \n\n4 out of 5.", "###Score:\n\n3]"
    (MIXTRAL, 2726, "refinement_llm_judge_absolute_1"): 2.0,
    (MIXTRAL, 2727, "refinement_llm_judge_absolute_5"): 4.0,
    (MIXTRAL, 2742, "refinement_llm_judge_absolute_2"): 3.0,
    # "...according to the score rubric, a score of [4] is appropriate."
    (MIXTRAL, 2728, "refinement_llm_judge_absolute_6"): 4.0,
    # "</feedback>\n<score>5</score" (cut off)
    (MIXTRAL, 2729, "refinement_llm_judge_relative_0"): 5.0,
    # Plain-text feedback ending in "[5]" / "[3]" on its own line.
    (MIXTRAL, 2740, "refinement_llm_judge_absolute_0"): 5.0,
    (MIXTRAL, 2745, "refinement_llm_judge_absolute_6"): 3.0,
    (MIXTRAL, 2756, "refinement_llm_judge_absolute_4"): 5.0,
    # "Therefore, I would give the response a score of 5.]\n\n5"
    (MIXTRAL, 2744, "refinement_llm_judge_absolute_4"): 5.0,
}

# Records the paper read on the 1-5 scale and spri-graph leaves unread, checked by hand.
UNREAD_ON_PURPOSE = {
    # "<score>Creativity: 2.5/5, Presentation Quality: 3.5/5, Requirement Fulfillment: 4/5,
    # Overall: 3.3/5</score>": four scores in one tag, no single grade (the paper read 3.3).
    ("llama-3-1-70b-instruct__self-refine.jsonl", 2754, "reasoning_legal_reason_1"),
}


def _files() -> list[Any]:
    folder = REFERENCE / FOLDER
    names = sorted(path.name for path in folder.glob("*.jsonl")) if folder.is_dir() else []
    if not names:
        return [pytest.param(None, id="reference-missing")]
    return [pytest.param(name, id=name.removesuffix(".jsonl")) for name in names]


def pearson(xs: list[float], ys: list[float]) -> float:
    """Pearson correlation of two equally long lists."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    return sxy / math.sqrt(sxx * syy)


def test_every_released_judge_file_is_covered() -> None:
    names = {path.name for path in reference_dir(FOLDER).glob("*.jsonl")}
    assert names >= {
        "gpt-4o-mini__vanilla.jsonl",
        "gpt-4o-mini__gold-rubrics.jsonl",
        "llama-3-1-70b-instruct__self-refine.jsonl",
        MIXTRAL,
        PROMETHEUS,
    }


@pytest.mark.parametrize("name", _files())
def test_agrees_with_the_papers_reader(
    name: str | None, record_property: Callable[[str, object], None]
) -> None:
    folder = reference_dir(FOLDER)
    assert name is not None
    both = agree = multi = disagreeing_blocks = 0
    human: list[float] = []
    paper: list[float] = []
    ours: list[float] = []
    last: list[float] = []  # the policy not chosen: the last grading instead of the first
    disagreements: list[str] = []
    paper_only: list[float] = []
    unread_in_scale: set[tuple[str, int, str]] = set()
    new_reads: dict[tuple[str, int, str], float] = {}
    with (folder / name).open() as fh:
        for line_no, line in enumerate(fh, 1):
            record = json.loads(line)
            theirs = record["evaluator_LM-score"]
            judgment = parse_judgment(record["evaluator_LM-response"])
            score = judgment.score
            if judgment.extra_scores:
                multi += 1
                disagreeing_blocks += any(extra != score for extra in judgment.extra_scores)
            if score is not None:
                assert 1 <= score <= 5
            if theirs is not None and score is not None:
                both += 1
                agree += score == float(theirs)
                if score != float(theirs):
                    disagreements.append(f"{name}:{line_no} paper={theirs} ours={score}")
                human.append(record["human_score"])
                paper.append(float(theirs))
                ours.append(score)
                later = [x for x in judgment.extra_scores if 1 <= x <= 5]
                last.append(later[-1] if later else score)
            elif theirs is not None:
                paper_only.append(float(theirs))
                if 1 <= theirs <= 5:
                    unread_in_scale.add((name, line_no, record["id"]))
            elif score is not None:
                new_reads[(name, line_no, record["id"])] = score
    rate = agree / both
    r_ours, r_paper, r_last = pearson(human, ours), pearson(human, paper), pearson(human, last)
    agree_last = sum(a == b for a, b in zip(last, paper, strict=True)) / both
    summary = (
        f"{name}: agrees with the paper's reader on {agree}/{both} records both read "
        f"({rate:.2%}); Pearson with humans {r_ours:.4f} (paper's reading {r_paper:.4f}); "
        f"{multi} outputs with several gradings ({disagreeing_blocks} whose later blocks "
        f"disagree; reading the last grading instead: {agree_last:.2%}, Pearson {r_last:.4f}); "
        f"left unread of the paper's reads: {len(paper_only)} "
        f"({len(paper_only) - len(unread_in_scale)} off the 1-5 scale); "
        f"newly read: {len(new_reads)}"
    )
    record_property("summary", summary)
    assert rate >= 0.995, disagreements[:20]
    assert r_ours >= r_paper - 1e-12
    # The paper read these, spri-graph does not: off the scale (0, 7, 64/100...) or checked.
    assert unread_in_scale == {key for key in UNREAD_ON_PURPOSE if key[0] == name}
    # Every record read that the paper could not read was checked by hand against its text.
    assert new_reads == {key: v for key, v in HAND_CHECKED.items() if key[0] == name}
