"""GRPO closed offline: the tiny policy trained on SPRI rewards from the embedded model."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from spri_graph import UsageCallback
from spri_graph.models import load_local_model
from spri_graph.rewards import create_spri_reward
from tests.training.conftest import CPU_RUN

pytestmark = pytest.mark.integration

QUESTIONS = ["What is 2+2?", "Name a primary colour."]


def test_grpo_steps_reach_the_trainer_with_spri_rewards(policy_dir: Path, tmp_path: Path) -> None:
    judge = load_local_model(max_tokens=32, max_tool_tokens=96, max_string_chars=120)
    counter = UsageCallback()
    reward = create_spri_reward(
        judge,
        max_iterations=1,
        cache=tmp_path / "rubrics.sqlite",
        config={"callbacks": [counter]},
    )
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": q}]} for q in QUESTIONS])
    args = GRPOConfig(
        output_dir=str(tmp_path / "grpo"),
        per_device_train_batch_size=2,
        num_generations=2,
        max_completion_length=12,
        max_steps=1,
        learning_rate=1e-5,
        beta=0.0,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        shuffle_dataset=False,
        **CPU_RUN,
    )
    trainer = GRPOTrainer(
        model=str(policy_dir), reward_funcs=reward, args=args, train_dataset=dataset
    )
    trainer.train()

    logged = [entry for entry in trainer.state.log_history if "rewards/spri_reward/mean" in entry]
    assert len(logged) == 1
    means = [entry["rewards/spri_reward/mean"] for entry in logged]
    assert all(math.isfinite(mean) and 0.0 <= mean <= 1.0 for mean in means), means
    assert all(math.isfinite(entry["loss"]) for entry in logged)
    # The last step's completions were graded with the judge's rubric for its prompt.
    details = reward.last_details
    assert len(details) == 2 and {d["prompt"] for d in details} <= set(QUESTIONS)
    assert any(d["score"] is not None for d in details)
    assert counter.usage["model_calls"] > 0
