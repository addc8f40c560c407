"""Speculative SPRI on the embedded model: the same principles and response as a sequential run.

A speculative run drafts the response from the first principles while the critic grades
them, and keeps that draft only if the principles pass. On a model whose replies depend on
the prompt alone (the embedded model with its fixed default seed), it must end where a
sequential run ends, whether the draft was kept (threshold 1: the first principles pass)
or dropped for refined principles (threshold 5), on the sync and the async path.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from spri_graph import create_spri_graph
from spri_graph.models import (
    LocalChatModel,
    load_local_model,
    loaded_llama_count,
    local_model_available,
)

pytestmark = pytest.mark.integration

QUERY = "How do I tell my team I am burning out?"


@pytest.fixture(scope="module")
def local() -> LocalChatModel:
    assert local_model_available(), "the 'local' extra is part of the test environment"
    model = load_local_model(max_tokens=48)
    assert isinstance(model, LocalChatModel)
    return model


def run(model: LocalChatModel, *, speculative: bool, threshold: int, use_async: bool) -> Any:
    graph = create_spri_graph(
        model, speculative=speculative, threshold=threshold, max_iterations=2
    ).compile()
    inputs = {"query": QUERY}
    return asyncio.run(graph.ainvoke(inputs)) if use_async else graph.invoke(inputs)


@pytest.mark.parametrize("threshold", [1, 5])
def test_speculative_equals_sequential_on_the_embedded_model(
    local: LocalChatModel, threshold: int
) -> None:
    sequential = run(local, speculative=False, threshold=threshold, use_async=False)
    assert sequential["principles"].strip() and sequential["response"].strip()
    loads = loaded_llama_count()
    for stage, key in (("principles", "principle_critiques"), ("response", "response_critiques")):
        critiques = sequential[key]
        assert 1 <= len(critiques) <= 2
        # The local critic is structured by default: every critique carries a score.
        assert all(c["score"] in (1, 2, 3, 4, 5) for c in critiques)
        usage = sequential["usage"][stage]
        # One draft, then one refine per critique that asked for one.
        assert usage["critic_calls"] == usage["model_calls"] == len(critiques)
        assert usage["output_tokens"] > 0
    refined = len(sequential["principle_critiques"]) > 1
    assert refined == (threshold == 5 and sequential["principle_critiques"][0]["score"] < 5)
    # Both drivers where the early draft may be dropped (threshold 5), the sync one otherwise.
    for use_async in (False, True) if threshold == 5 else (False,):
        speculative = run(local, speculative=True, threshold=threshold, use_async=use_async)
        assert speculative["principles"] == sequential["principles"], use_async
        assert speculative["response"] == sequential["response"], use_async
        assert speculative["principle_critiques"] == sequential["principle_critiques"]
        assert speculative["response_critiques"] == sequential["response_critiques"]
        # The early draft was dropped (and its cost counted) when the principles were refined.
        assert ("speculation" in speculative["usage"]) is refined, use_async
    assert loaded_llama_count() == loads  # every run used the model already loaded
