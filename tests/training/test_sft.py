"""SFT on what ``spri synthesize`` writes: the tiny policy's loss is finite and goes down."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from datasets import load_dataset
from trl import SFTConfig, SFTTrainer

from spri_graph import synthesize
from tests.fakes import ScriptedChatModel
from tests.training.conftest import train_losses

pytestmark = pytest.mark.integration

RECORDS = [
    ("q1", "Say hello to a new colleague.", "Welcome aboard, it is good to have you here."),
    ("q2", "Give one tip for sleeping well.", "Keep the same bedtime every night."),
    ("q3", "Thank a friend for their help.", "Thank you, your help meant a lot to me."),
    ("q4", "Suggest a short walk.", "Let us walk around the block before lunch."),
]


def synthesized(path: Path) -> Path:
    """Chat-format SFT data from ``synthesize`` on a scripted model (one record at a time)."""
    replies: list[str] = []
    for _, _, response in RECORDS:
        replies += ["1. Be warm and brief.", "Feedback: Clear. [RESULT] 5"]
        replies += [response, "Feedback: Follows them. [RESULT] 5"]
    records = [{"id": rid, "instruction": q} for rid, q, _ in RECORDS]
    report = synthesize(records, model=ScriptedChatModel(replies), output=path, concurrency=1)
    assert report.completed == len(RECORDS) and report.failed == 0
    return path


def test_sft_on_synthesized_records_lowers_the_loss(policy_dir: Path, tmp_path: Path) -> None:
    data = synthesized(tmp_path / "sft.jsonl")
    lines = [json.loads(line) for line in data.read_text().splitlines()]
    assert [m["role"] for m in lines[0]["messages"]] == ["user", "assistant"]
    dataset = load_dataset("json", data_files=str(data), split="train").select_columns(["messages"])
    losses = train_losses(
        SFTTrainer,
        SFTConfig,
        policy_dir,
        dataset,
        tmp_path / "sft",
        per_device_train_batch_size=4,
        num_train_epochs=2,
        max_length=48,
        learning_rate=1e-4,
    )
    assert len(losses) == 2
    assert all(math.isfinite(loss) for loss in losses)
    assert losses[-1] < losses[0]
