"""Preference pairs, comparison sets and targets of ``synthesize``, on scripted models."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage

from spri_graph.synthesis import synthesize
from spri_graph.synthesis.output import encode_line, output_record, preference_pairs
from tests.fakes import ScriptedChatModel, all_text, spri_step

QUESTION = re.compile(r"(question \d+)")
SEEDS = [
    {"query": "How do I greet a guest?", "principles": "1. Be warm."},
    {"query": "How do I say no?", "principles": "2. Be honest and kind."},
]


def number(query: str) -> int:
    return int(query.split()[-1])


def scored(messages: Sequence[BaseMessage]) -> str:
    """Record ``n`` by ``n % 4``: 1 and 3 pass at once; 2 scores 2, 3, then 5 as it is
    refined; 0 scores 2 however often it is refined. Principles always pass."""
    prompt = str(messages[-1].content)
    query = QUESTION.search(all_text(messages)).group(1)  # type: ignore[union-attr]
    n = number(query)
    step = spri_step(messages)
    if "Principles to Evaluate" in prompt:
        return "Feedback: useful. [RESULT] 5"
    if step == "critique":
        candidate = prompt.split("Response to Evaluate:\n", 1)[1].split("\n\n###", 1)[0]
        rounds = candidate.count("better ")
        score = 5 if n % 2 else (2 if n % 4 == 0 else (2, 3, 5)[min(rounds, 2)])
        return f"Feedback: round {rounds} of {query}. [RESULT] {score}"
    if step == "response_refine":
        system = str(messages[0].content)
        earlier = system.split("An earlier answer to this question:\n", 1)[1]
        return "better " + earlier.split("\n\nFeedback on that answer:", 1)[0]
    if step == "principles_draft":
        return f"Principles for {query}."
    return f"Answer to {query}."


def model() -> ScriptedChatModel:
    return ScriptedChatModel([scored], cycle=True)


def records(n: int) -> list[dict[str, Any]]:
    return [{"id": f"r{i}", "instruction": f"question {i}"} for i in range(1, n + 1)]


def rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_pairs_come_exactly_from_the_refined_records_that_improved(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    report = synthesize(
        records(8), model=model(), output=out, formats=("sft", "dpo"), max_iterations=3
    )
    sft, dpo = rows(out), rows(tmp_path / "out.dpo.jsonl")
    assert report.completed == 8 and report.pairs_path == tmp_path / "out.dpo.jsonl"
    assert sorted(p["id"] for p in dpo) == ["r2", "r6"]  # improved; r4, r8 never did
    assert (report.pairs, report.first_passed, report.not_improved) == (2, 4, 2)
    by_id = {line["id"]: line for line in sft}
    assert by_id["r2"]["response_drafts"] == [
        "Answer to question 2.",
        "better Answer to question 2.",
        "better better Answer to question 2.",
    ]
    pair = next(p for p in dpo if p["id"] == "r2")
    assert pair["prompt"] == [{"role": "user", "content": "question 2"}]
    assert pair["chosen"] == [
        {"role": "assistant", "content": "better better Answer to question 2."}
    ]
    assert pair["rejected"] == [{"role": "assistant", "content": "Answer to question 2."}]
    assert (pair["chosen_score"], pair["rejected_score"]) == (5, 2)
    assert pair["principles"] == "Principles for question 2."
    assert pair["feedback"] == "round 0 of question 2."
    assert "preference pairs: 2 (4 records passed at the first draft" in report.summary()


def test_successive_pairs_each_refinement_with_the_one_before(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    synthesize(
        records(4),
        model=model(),
        output=out,
        formats=("sft", "dpo"),
        pairs="successive",
        max_iterations=3,
    )
    dpo = rows(tmp_path / "out.dpo.jsonl")
    assert [(p["id"], p["pair"], p["rejected_score"], p["chosen_score"]) for p in dpo] == [
        ("r2", 0, 2, 3),
        ("r2", 1, 3, 5),
    ]
    assert dpo[1]["rejected"][0]["content"] == "better Answer to question 2."


def test_sft_alone_writes_no_pairs_file(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    report = synthesize(records(2), model=model(), output=out, max_iterations=3)
    assert report.pairs_path is None and not (tmp_path / "out.dpo.jsonl").exists()
    assert "preference pairs" not in report.summary()


def test_both_files_load_with_datasets(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    out = tmp_path / "out.jsonl"
    synthesize(records(8), model=model(), output=out, formats=("sft", "dpo"), max_iterations=3)
    sft = datasets.load_dataset("json", data_files=str(out), split="train")
    dpo = datasets.load_dataset("json", data_files=str(tmp_path / "out.dpo.jsonl"), split="train")
    assert sft.num_rows == 8 and sft[0]["messages"][0]["role"] == "user"
    assert dpo.num_rows == 2
    assert {"prompt", "chosen", "rejected"} <= set(dpo.column_names)
    assert dpo[0]["chosen"][0]["role"] == "assistant"


def test_resume_cuts_pairs_of_records_whose_sft_line_was_not_written(tmp_path: Path) -> None:
    # What a kill between a record's pairs and its SFT line leaves: its pairs, then a
    # second record's pairs torn mid-line.
    out, dpo = tmp_path / "out.jsonl", tmp_path / "out.dpo.jsonl"
    synthesize(records(8), model=model(), output=out, formats=("sft", "dpo"), max_iterations=3)
    sft_lines = out.read_text().splitlines(keepends=True)
    kept = [line for line in sft_lines if json.loads(line)["id"] not in ("r2", "r6")]
    out.write_text("".join(kept))
    pairs = dpo.read_text().splitlines(keepends=True)
    dpo.write_text(pairs[0] + pairs[1][:20])
    report = synthesize(
        records(8), model=model(), output=out, formats=("sft", "dpo"), max_iterations=3
    )
    assert report.skipped == 6 and report.completed == 2 and report.repaired == 2
    assert sorted(line["id"] for line in rows(out)) == [f"r{i}" for i in range(1, 9)]
    assert sorted(p["id"] for p in rows(dpo)) == ["r2", "r6"]
    assert dpo.read_bytes().endswith(b"\n")


def test_pairs_file_with_a_kept_line_after_an_orphan_is_refused(tmp_path: Path) -> None:
    out, dpo = tmp_path / "out.jsonl", tmp_path / "out.dpo.jsonl"
    line = output_record("r1", "question 1", {"response": "a", "principles": ""})
    out.write_bytes(encode_line(line))
    dpo.write_text('{"id": "r9"}\n{"id": "r1"}\n')
    with pytest.raises(ValueError, match="pairs file cannot be resumed"):
        synthesize(records(2), model=model(), output=out, formats=("sft", "dpo"))


def test_preference_pairs_need_readable_scores() -> None:
    line = {
        "id": "a",
        "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "b"}],
        "response_drafts": ["a", "b"],
        "response_critiques": [{"feedback": "?", "score": None}, {"feedback": "", "score": 5}],
    }
    assert preference_pairs(line) == []


# --------------------------------------------------------------------------- methods


def prompts_of(scripted: ScriptedChatModel) -> list[str]:
    return [all_text(call["messages"]) for call in scripted.calls]


def test_direct_makes_one_response_call_without_principles(tmp_path: Path) -> None:
    scripted, out = model(), tmp_path / "out.jsonl"
    report = synthesize(records(4), model=scripted, output=out, method="direct")
    assert report.method == "direct" and "method: direct" in report.summary()
    for line in rows(out):
        assert line["principles"] == "" and line["principle_critiques"] == []
        assert len(line["response_drafts"]) == 1 and len(line["response_critiques"]) == 1
        assert line["usage"]["response"]["model_calls"] == 1
        assert line["messages"][1]["content"] == f"Answer to {line['messages'][0]['content']}."
    assert report.model_calls == 4 and report.critic_calls == 4
    assert not any("Principles" in prompt for prompt in prompts_of(scripted))


def test_self_refine_loops_on_a_generic_standard(tmp_path: Path) -> None:
    scripted, out = model(), tmp_path / "out.jsonl"
    synthesize(records(4), model=scripted, output=out, method="self-refine", max_iterations=3)
    by_id = {line["id"]: line for line in rows(out)}
    assert len(by_id["r2"]["response_drafts"]) == 3 and len(by_id["r1"]["response_drafts"]) == 1
    assert by_id["r2"]["messages"][1]["content"] == "better better Answer to question 2."
    assert all(line["principles"] == "" for line in by_id.values())
    prompts = prompts_of(scripted)
    assert not any("Principles" in prompt for prompt in prompts)
    assert any("How helpful, correct and clear" in prompt for prompt in prompts)


def test_seed_principles_guide_the_response_loop(tmp_path: Path) -> None:
    scripted, out = model(), tmp_path / "out.jsonl"
    synthesize(
        records(2),
        model=scripted,
        output=out,
        method="seed-principles",
        seed_examples=SEEDS,
        formats=("sft", "dpo"),
        max_iterations=3,
    )
    fixed = "1. Be warm.\n\n2. Be honest and kind."
    lines = rows(out)
    assert all(line["principles"] == fixed for line in lines)
    assert all("principles" not in line["usage"] for line in lines)  # no principle stage
    prompts = prompts_of(scripted)
    assert not any(spri_step(call["messages"]) == "principles_draft" for call in scripted.calls)
    assert all(fixed in prompt for prompt in prompts)
    assert [p["principles"] for p in rows(tmp_path / "out.dpo.jsonl")] == [fixed]


def test_spri_and_comparison_sets_share_the_line_format(tmp_path: Path) -> None:
    keys = set()
    for method in ("spri", "direct", "self-refine", "seed-principles"):
        out = tmp_path / f"{method}.jsonl"
        synthesize(records(2), model=model(), output=out, method=method, seed_examples=SEEDS)
        keys.add(frozenset(key for line in rows(out) for key in line))
    assert len(keys) == 1


# --------------------------------------------------------------------------- targets


def test_target_stops_once_the_output_holds_n_records(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    report = synthesize(records(10), model=model(), output=out, target=3, concurrency=2)
    assert report.completed == 3 and report.target_reached and len(rows(out)) == 3
    assert "target: 3 records (reached)" in report.summary()
    again = synthesize(records(10), model=model(), output=out, target=5, concurrency=2)
    assert again.skipped == 3 and again.completed == 2 and len(rows(out)) == 5
    done = synthesize(records(10), model=model(), output=out, target=5)
    assert done.completed == 0 and done.target_reached


def test_target_passed_counts_only_records_whose_final_critique_passed(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    report = synthesize(
        records(12),
        model=model(),
        output=out,
        target=4,
        target_passed=True,
        concurrency=1,
        max_iterations=3,
    )
    lines = rows(out)
    finals = [line["response_critiques"][-1]["score"] for line in lines]
    assert sum(score >= 4 for score in finals) == 4 and report.passed == 4
    assert report.target_reached and finals[-1] >= 4
    assert [line["id"] for line in lines] == ["r1", "r2", "r3", "r4", "r5"]  # r4 did not pass


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"formats": ("sft", "kto")}, "formats: unknown format 'kto'"),
        ({"formats": "sft"}, "formats must be a tuple"),
        ({"formats": ("dpo",)}, "formats: 'sft' is always written"),
        ({"pairs": "all"}, "pairs must be one of"),
        ({"method": "greedy"}, "method must be one of"),
        ({"method": "seed-principles"}, "seed_examples: method 'seed-principles' needs"),
        ({"target": 0}, "target must be an integer >= 1"),
        ({"target_passed": True}, "target_passed: needs a target"),
        ({"method": "direct", "batch": True}, "method: 'direct' runs without batch"),
        ({"method": "direct", "prompts": {"response_draft": "x"}}, "prompts: unknown prompt"),
    ],
)
def test_bad_arguments_are_refused_before_any_model_call(
    tmp_path: Path, arguments: dict[str, Any], message: str
) -> None:
    scripted = model()
    with pytest.raises(ValueError, match=re.escape(message)):
        synthesize(records(2), model=scripted, output=tmp_path / "out.jsonl", **arguments)
    assert scripted.calls == [] and not (tmp_path / "out.jsonl").exists()


def test_asynthesize_writes_the_same_pairs(tmp_path: Path) -> None:
    import asyncio

    from spri_graph.synthesis import asynthesize

    out = tmp_path / "out.jsonl"
    report = asyncio.run(
        asynthesize(records(8), model=model(), output=out, formats=("sft", "dpo"), max_iterations=3)
    )
    assert report.pairs == 2
    assert sorted(p["id"] for p in rows(tmp_path / "out.dpo.jsonl")) == ["r2", "r6"]


def test_a_kept_speculative_draft_is_the_first_of_the_drafts(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    synthesize(
        records(2),
        model=model(),
        output=out,
        formats=("sft", "dpo"),
        speculative=True,
        max_iterations=3,
    )
    by_id = {line["id"]: line for line in rows(out)}
    assert by_id["r2"]["response_drafts"][0] == "Answer to question 2."
    assert len(by_id["r2"]["response_drafts"]) == len(by_id["r2"]["response_critiques"]) == 3
    assert [p["id"] for p in rows(tmp_path / "out.dpo.jsonl")] == ["r2"]


def test_forked_workers_write_pairs_and_stop_at_the_target(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    report = synthesize(
        records(8),
        model=model(),
        output=out,
        formats=("sft", "dpo"),
        max_iterations=3,
        workers=2,
        concurrency=2,
    )
    assert report.pairs == 2
    assert sorted(p["id"] for p in rows(tmp_path / "out.dpo.jsonl")) == ["r2", "r6"]
    target = tmp_path / "target.jsonl"
    stopped = synthesize(
        records(8), model=model(), output=target, target=3, workers=2, concurrency=2
    )
    assert stopped.target_reached and len(rows(target)) == 3
