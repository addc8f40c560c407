"""DPO on the preference pairs ``synthesize`` writes: TRL's ``DPOTrainer`` reads the file as is."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import pytest
from datasets import load_dataset
from langchain_core.messages import BaseMessage
from trl import DPOConfig, DPOTrainer

from spri_graph import synthesize
from tests.fakes import ScriptedChatModel, all_text, spri_step
from tests.training.conftest import train_losses

pytestmark = pytest.mark.integration

RECORDS = [
    ("q1", "Say hello to a new colleague.", "Hi.", "Welcome aboard, it is good to have you."),
    ("q2", "Give one tip for sleeping well.", "Sleep.", "Keep the same bedtime every night."),
    ("q3", "Thank a friend for their help.", "Thanks.", "Thank you, your help meant a lot."),
    ("q4", "Suggest a short walk.", "Walk.", "Let us walk around the block before lunch."),
]
FIRST = {query: first for _, query, first, _ in RECORDS}
FINAL = {query: final for _, query, _, final in RECORDS}


def reply(messages: Sequence[BaseMessage]) -> str:
    """The first draft is terse and scores 2; its refinement scores 5."""
    prompt = str(messages[-1].content)
    query = next(q for q in FIRST if q in all_text(messages))
    step = spri_step(messages)
    if "Principles to Evaluate" in prompt:
        return "Feedback: Useful. [RESULT] 5"
    if step == "critique":
        final = FINAL[query] in prompt
        return f"Feedback: {'Warm' if final else 'Too terse'}. [RESULT] {5 if final else 2}"
    if step == "response_refine":
        return FINAL[query]
    if step == "principles_draft":
        return "1. Be warm and specific."
    return FIRST[query]


def synthesized(path: Path) -> Path:
    """Preference pairs from ``synthesize(formats=("sft", "dpo"))`` on a scripted model."""
    records = [{"id": rid, "instruction": query} for rid, query, _, _ in RECORDS]
    model = ScriptedChatModel([reply], cycle=True)
    report = synthesize(records, model=model, output=path, formats=("sft", "dpo"))
    assert report.completed == len(RECORDS) and report.pairs == len(RECORDS)
    assert report.pairs_path is not None
    return report.pairs_path


def test_dpo_on_synthesized_pairs_has_a_finite_loss(policy_dir: Path, tmp_path: Path) -> None:
    pairs = synthesized(tmp_path / "sft.jsonl")
    first = json.loads(pairs.read_text().splitlines()[0])
    assert first["chosen"] == [{"role": "assistant", "content": FINAL[RECORDS[0][1]]}]
    dataset = load_dataset("json", data_files=str(pairs), split="train")  # as written
    losses = train_losses(
        DPOTrainer,
        DPOConfig,
        policy_dir,
        dataset,
        tmp_path / "dpo",
        per_device_train_batch_size=2,
        max_steps=2,
        max_length=64,
        learning_rate=1e-5,
    )
    assert len(losses) == 2
    assert all(math.isfinite(loss) for loss in losses)
