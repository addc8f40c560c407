"""Cached, costed judging: LangGraph's node cache keyed on what each node would send.

Build a judge with ``cache_policy=CachePolicy()`` and compile it with a cache; re-running
the same judging (same instruction, response, reference, models, prompts, scale and output
mode) then makes no model calls::

    from langgraph.types import CachePolicy

    judge = create_judge(model, cache_policy=CachePolicy())
    graph = judge.compile(cache=judge_cache("judgments.sqlite"))  # or judge_cache() in memory

Every model node's key holds the identity of its models (class and identifying
parameters, e.g. model name and temperature), the prompt it would send (which holds the
instruction, the response, the rubric, the scale and the answer format), the per-run models
of the graph's context, and what it appends to. ``CachePolicy(ttl=...)`` makes entries
expire after ``ttl`` seconds.

**Clearing.** ``graph.clear_cache()`` clears every node's entries (``clear_cache(["grade"])``
some nodes'), ``cache.clear()`` the whole cache, and deleting the SQLite file does the same
for a persistent cache.

**Cost.** Every judgment reports its model calls and tokens per stage in ``usage``. A node
served from the cache is not run: its state update, usage included, is the one recorded
when it ran, so ``usage`` is what the judgment cost when it was made. To count what a run
really spends, pass a :class:`~spri_graph.engine.steps.UsageCallback` as a callback: it
sees only real model calls, and adds them up into the same
:class:`~spri_graph.engine.steps.StageUsage` record.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import Any

from langchain_core.prompts import ChatPromptTemplate
from langgraph.cache.base import BaseCache
from langgraph.cache.memory import InMemoryCache
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.types import CachePolicy

from spri_graph.readers.criteria import Checklist, Criterion
from spri_graph.readers.rubric import Rubric
from spri_graph.readers.scores import Judgment

__all__ = [
    "JUDGE_STATE_TYPES",
    "check_cache_policy",
    "judge_cache",
    "model_identity",
    "prompt_cache_policy",
]

JUDGE_STATE_TYPES: tuple[type, ...] = (Rubric, Checklist, Criterion, Judgment)
"""The spri-graph classes judge states hold (critiques are plain data), which
:func:`judge_cache`'s serializer allows."""


def judge_cache(path: str | os.PathLike[str] | None = None) -> BaseCache[Any]:
    """A node cache for judge graphs: in memory, or in a SQLite file that outlives the run.

    Its serializer allows the judge states' own types (:data:`JUDGE_STATE_TYPES`), so
    reading entries back logs no warning and works with ``LANGGRAPH_STRICT_MSGPACK=true``.

    Args:
        path: A SQLite file (created if missing); ``None`` for an in-memory cache.

    Example:
        >>> type(judge_cache()).__name__
        'InMemoryCache'
    """
    serde = JsonPlusSerializer(allowed_msgpack_modules=list(JUDGE_STATE_TYPES))
    if path is None:
        return InMemoryCache(serde=serde)
    from langgraph.cache.sqlite import SqliteCache

    return SqliteCache(path=os.fspath(path), serde=serde)


def check_cache_policy(cache_policy: Any) -> None:
    """Raise a ``ValueError`` unless ``cache_policy`` is a ``CachePolicy`` or ``None``."""
    if cache_policy is not None and not isinstance(cache_policy, CachePolicy):
        raise ValueError(
            f"cache_policy must be a langgraph.types.CachePolicy, got {cache_policy!r}"
        )


def model_identity(model: Any) -> str:
    """A model's identity for cache keys: its class and identifying parameters.

    Example:
        >>> from langchain_core.language_models import FakeListChatModel
        >>> model_identity(FakeListChatModel(responses=["a"]))
        "langchain_core.language_models.fake_chat_models.FakeListChatModel:[('responses', ['a'])]"
    """
    if model is None:
        return ""
    params = getattr(model, "_identifying_params", None) or {}
    kind = type(model)
    return f"{kind.__module__}.{kind.__qualname__}:{sorted(params.items())!r}"


def prompt_cache_policy(
    cache_policy: CachePolicy[Any] | None,
    *,
    node: str,
    model: Any,
    prompt: ChatPromptTemplate,
    prompt_inputs: Callable[[Mapping[str, Any]], dict[str, Any]],
    extra: Any = None,
) -> CachePolicy[Any] | None:
    """A node's cache policy keyed on its model and the prompt it would send.

    Args:
        cache_policy: The factory's policy (its ``ttl`` is kept); ``None`` caches nothing.
        node: The node's name.
        model: The node's model (its :func:`model_identity` goes into the key).
        prompt: The node's prompt.
        prompt_inputs: Builds the prompt's variables from the state; every variable goes
            into the key, used by the prompt or not (e.g. the context's per-run models).
        extra: Anything else the node's output depends on (JSON-able), e.g. the output mode.

    Returns:
        The policy, or ``None`` when ``cache_policy`` is ``None``.
    """
    if cache_policy is None:
        return None
    identity = model_identity(model)

    def key(state: Mapping[str, Any]) -> str:
        try:
            inputs = prompt_inputs(state)
            messages = [m.model_dump_json() for m in prompt.format_messages(**inputs)]
        except KeyError:
            # A state without the prompt's inputs, e.g. while ``get_graph()`` steps through
            # the graph from an empty state to draw it; the node itself fails on such a
            # state, so nothing is ever cached under this key.
            return json.dumps([node, identity, extra, dict(state)], default=str, sort_keys=True)
        return json.dumps([node, identity, extra, messages, inputs], default=str, sort_keys=True)

    return CachePolicy(key_func=key, ttl=cache_policy.ttl)
