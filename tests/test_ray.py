"""synthesize_dataset on a local Ray instance with a scripted model."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage

from spri_graph.engine.options import LoopSettings
from tests.fakes import ScriptedChatModel
from tests.test_options import BAD, SHARED, built_settings, option_value  # noqa: F401
from tests.test_synthesize import query_of, reply

ROOT = Path(__file__).resolve().parent.parent


def failing_on_13(messages: Sequence[BaseMessage]) -> Any:
    if query_of(messages) == "question 13":
        raise ValueError("the endpoint rejects this prompt")
    return reply(messages)


def make_model() -> ScriptedChatModel:
    """Built on each Ray worker: the scripted model holds a lock, so it is not picklable."""
    return ScriptedChatModel([failing_on_13], cycle=True)


@pytest.fixture(scope="module")
def ray_local() -> Iterator[Any]:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    pythonpath = os.pathsep.join([str(ROOT), str(ROOT / "tests")])
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        runtime_env={"env_vars": {"PYTHONPATH": pythonpath, "RAY_USAGE_STATS_ENABLED": "0"}},
    )
    try:
        yield ray
    finally:
        ray.shutdown()


def test_every_record_comes_back_exactly_once(ray_local: Any) -> None:
    from spri_graph.synthesis.ray import synthesize_dataset

    rows = [{"id": f"r{i}", "instruction": f"question {i}"} for i in range(120)]
    ds = ray_local.data.from_items(rows)
    out = synthesize_dataset(
        ds, model=make_model, concurrency_per_worker=8, workers=2, batch_size=16
    ).take_all()
    ids = [row["id"] for row in out]
    assert sorted(ids) == sorted(r["id"] for r in rows) and len(ids) == len(set(ids))
    by_id = {row["id"]: row for row in out}
    failed = by_id.pop("r13")
    assert failed["error"] == "ValueError: the endpoint rejects this prompt"
    assert failed["messages"] is None
    assert all(row["error"] is None for row in by_id.values())
    row = by_id["r7"]
    assert [(m["role"], m["content"]) for m in row["messages"]] == [
        ("user", "question 7"),
        ("assistant", "Answer to question 7."),
    ]
    assert row["principles"] == "Principles for question 7."
    assert row["principle_critiques"][0]["score"] == 5
    assert row["usage"]["response"]["critic_calls"] == 1


def test_an_unpicklable_model_is_refused_before_anything_runs(ray_local: Any) -> None:
    from spri_graph.synthesis.ray import synthesize_dataset

    ds = ray_local.data.from_items([{"id": 1, "instruction": "question 1"}])
    with pytest.raises(ValueError, match="model: ScriptedChatModel cannot be pickled"):
        synthesize_dataset(ds, model=make_model())
    with pytest.raises(ValueError, match="factory must take no arguments"):
        synthesize_dataset(ds, model=lambda name: make_model())
    with pytest.raises(ValueError, match="concurrency_per_worker must be an integer >= 1"):
        synthesize_dataset(ds, model=make_model, concurrency_per_worker=0)
    with pytest.raises(TypeError, match="unexpected keyword argument 'review_principles'"):
        synthesize_dataset(ds, model=make_model, review_principles=True)


def test_importing_the_module_does_not_import_ray() -> None:
    code = "import sys, spri_graph.synthesis.ray; print('ray' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_missing_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from spri_graph.synthesis.ray import synthesize_dataset

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"pip install 'spri-graph\[ray\]'"):
        synthesize_dataset(object(), model="openai:gpt-4o-mini")  # type: ignore[arg-type]


# The shared loop options reach synthesize_dataset as they reach every other entry point
# (tests/test_options.py); here, on this module's Ray instance.
def test_synthesize_dataset_takes_checks_and_refuses_the_options(
    ray_local: Any,
    built_settings: list[LoopSettings],  # noqa: F811 - the fixture imported above
) -> None:
    from spri_graph.synthesis.ray import synthesize_dataset

    ds = ray_local.data.from_items([{"id": 1, "instruction": "question 1"}])
    for name in SHARED:
        value = option_value("create_spri_graph", name)
        if name == "critic_model":
            value = "openai:gpt-4o-mini"  # sent to the workers as a string
        synthesize_dataset(ds, model="local", **{name: value})
        assert any(getattr(s, name) == value for s in built_settings), name
    with pytest.raises(TypeError, match="unexpected keyword argument 'treshold'"):
        synthesize_dataset(ds, model="local", treshold=4)
    for name, bad in BAD.items():
        with pytest.raises(ValueError, match=f"^{name} must be"):
            synthesize_dataset(ds, model="local", **{name: bad})
