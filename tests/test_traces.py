"""Replay the SPRI paper's own traces: same finals, same number of critiques per stage."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spri_graph import create_spri_graph
from spri_graph.readers.scores import clean_text
from tests.conftest import REFERENCE, reference_dir
from tests.fakes import ScriptedChatModel

# Six generic principles, as the paper's "default principles" seed file used.
SEEDS = [
    {
        "query": "What's the appropriate way to greet a client from Saudi Arabia?",
        "principles": "Respect the cultural and social norms of the person being greeted.",
    },
    {
        "query": "Why don't more people with disabilities pursue careers in certain fields?",
        "principles": "Name systemic barriers and biases; avoid stereotypes.",
    },
]


def _traces() -> Iterator[Any]:
    folder = REFERENCE / "spri_traces"
    if not folder.is_dir():
        yield pytest.param(None, id="reference-missing")
        return
    for path in sorted(folder.glob("*.jsonl")):
        with path.open() as fh:
            for n, line in enumerate(fh, 1):
                yield pytest.param((path.name, json.loads(line)), id=f"{path.stem}:{n}")


def _series(trace: dict, first: str, prefix: str) -> list[str]:
    items, k = [trace[first]], 1
    while f"{prefix}{k}" in trace:
        items.append(trace[f"{prefix}{k}"])
        k += 1
    return items


def _critiques(trace: dict, prefix: str) -> list[str]:
    return _series(trace, f"{prefix}1", prefix)[1:]


def _scripts(trace: dict) -> tuple[ScriptedChatModel, ScriptedChatModel]:
    base = _series(trace, "principle_raw", "principle_refined_iter_") + _series(
        trace, "init_response", "response_refined_iter_"
    )
    critic = _critiques(trace, "principles_critique_iter_")
    critic += _critiques(trace, "response_critique_iter_")
    return ScriptedChatModel(base, name_="base"), ScriptedChatModel(critic, name_="critic")


def _graph(name: str, base: ScriptedChatModel, critic: ScriptedChatModel):
    return create_spri_graph(
        base,
        critic_model=critic,
        threshold=4,
        max_iterations=4,
        parse_retries=0,
        seed_examples=SEEDS if name.startswith("seed-default") else None,
    ).compile()


def _check(trace: dict, out: dict, base: ScriptedChatModel, critic: ScriptedChatModel) -> None:
    assert out["principles"] == clean_text(trace["principle_final"])
    assert out["response"] == clean_text(trace["response_final"])
    assert len(out["principle_critiques"]) == trace["iteration_principle"]
    assert len(out["response_critiques"]) == trace["iteration_response"]
    # Nothing but one base call per draft/refinement and one critic call per critique.
    assert base.remaining == 0 and critic.remaining == 0
    usage = out["usage"]
    assert usage["principles"]["critic_calls"] == trace["iteration_principle"]
    assert usage["response"]["critic_calls"] == trace["iteration_response"]
    assert usage["principles"]["model_calls"] == trace["iteration_principle"]  # 1 + (K-1)
    assert usage["response"]["model_calls"] == trace["iteration_response"]


@pytest.mark.parametrize("item", list(_traces()))
def test_replay_trace(item: tuple[str, dict] | None) -> None:
    if item is None:
        reference_dir("spri_traces")
    name, trace = item
    base, critic = _scripts(trace)
    out = _graph(name, base, critic).invoke(
        {"query": trace["Reddit Post"], "goal": trace["appraisal_dimension_aim"]}
    )
    _check(trace, out, base, critic)


async def test_replay_all_traces_async() -> None:
    folder = reference_dir("spri_traces")
    count = 0
    for path in sorted(Path(folder).glob("*.jsonl")):
        for line in path.open():
            trace = json.loads(line)
            base, critic = _scripts(trace)
            out = await _graph(path.name, base, critic).ainvoke(
                {"query": trace["Reddit Post"], "goal": trace["appraisal_dimension_aim"]}
            )
            _check(trace, out, base, critic)
            count += 1
    assert count == 90
