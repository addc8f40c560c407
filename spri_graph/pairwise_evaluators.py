r"""The pairwise judge as a comparative evaluator for LangSmith and openevals-style code.

A comparative evaluator is called as ``evaluator(inputs=..., outputs=[a, b],
reference_outputs=..., runs=...)``, the shape :func:`langsmith.evaluate_comparative` uses:
``inputs`` is the example's input, ``outputs`` the two runs' outputs, ``runs`` the two runs
(their ids key the scores). It returns ``{"key", "scores", "comment"}``: the preferred run
scores 1 and the other 0, a tie 0.5 each, and no readable verdict ``None`` each::

    from langsmith import evaluate_comparative
    evaluate_comparative(("experiment-a", "experiment-b"),
                         evaluators=[create_pairwise_evaluator("openai:gpt-4o-mini")])

:func:`create_async_pairwise_evaluator` is the ``async`` twin; both share one code path and
differ only in ``invoke`` / ``ainvoke``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from langgraph.cache.base import BaseCache
from langgraph.graph import StateGraph
from langgraph.types import CachePolicy

from spri_graph.evaluators import INSTRUCTION_KEYS, REFERENCE_KEYS, RESPONSE_KEYS, find_text
from spri_graph.grading import JudgeOutputMode
from spri_graph.models import ModelSpec
from spri_graph.pairwise import OnDisagreement, create_pairwise_judge_graph

__all__ = ["create_async_pairwise_evaluator", "create_pairwise_evaluator"]

ComparativeResult = dict[str, Any]
_POINTS = {"A": (1.0, 0.0), "B": (0.0, 1.0), "tie": (0.5, 0.5), None: (None, None)}


class _Evaluator:
    """What the sync and async evaluators share: the graph, the request and the result."""

    def __init__(
        self,
        model: ModelSpec,
        *,
        judge: Any,
        feedback_key: str,
        keys: tuple[str | None, str | None, str | None],
        options: dict[str, Any],
        cache: BaseCache[Any] | None,
    ) -> None:
        if not isinstance(feedback_key, str) or not feedback_key.strip():
            raise ValueError(f"feedback_key must be a non-empty string, got {feedback_key!r}")
        if cache is not None and not isinstance(cache, BaseCache):
            raise ValueError(
                f"cache must be a langgraph BaseCache (see judge_cache), got {cache!r}"
            )
        self.graph: Any  # a compiled pairwise judge graph
        if judge is None:
            policy: CachePolicy[Any] | None = None if cache is None else CachePolicy()
            judge_graph = create_pairwise_judge_graph(model, **options, cache_policy=policy)
            self.graph = judge_graph.compile(cache=cache)
        elif model is not None:
            raise ValueError("model: pass either model or judge=, not both")
        elif changed := [name for name, value in options.items() if value != _DEFAULTS[name]]:
            raise ValueError(
                f"{', '.join(changed)}: these configure the built-in judge; with judge= set "
                "them on the judge graph you pass"
            )
        elif cache is not None and not isinstance(judge, StateGraph):
            raise ValueError("cache: pass judge= as an uncompiled StateGraph to use a cache")
        else:
            self.graph = judge.compile(cache=cache) if isinstance(judge, StateGraph) else judge
            if not hasattr(self.graph, "invoke") or not hasattr(self.graph, "ainvoke"):
                raise ValueError(
                    f"judge must be a pairwise judge graph, got {type(judge).__name__}"
                )
        self.feedback_key = feedback_key
        self.keys = keys
        self.uses_reference = judge is not None or options.get("reference_free") is False

    def request(self, inputs: Any, outputs: Any, reference_outputs: Any) -> dict[str, Any]:
        """The pairwise judge's input from the evaluator's arguments."""
        instruction_key, response_key, reference_key = self.keys
        if isinstance(outputs, str | Mapping) or not isinstance(outputs, Sequence):
            raise ValueError(
                f"outputs must be a list of the two runs' outputs, got {type(outputs).__name__}"
            )
        if len(outputs) != 2:
            raise ValueError(f"outputs must hold two runs' outputs, got {len(outputs)}")
        state = {
            "instruction": find_text(
                inputs, field="inputs", key=instruction_key, keys=INSTRUCTION_KEYS, role="user"
            )
        }
        for name, output in zip(("response_a", "response_b"), outputs, strict=True):
            state[name] = find_text(
                output, field="outputs", key=response_key, keys=RESPONSE_KEYS, role="assistant"
            )
        if self.uses_reference and reference_outputs not in (None, {}, ""):
            state["reference_answer"] = find_text(
                reference_outputs,
                field="reference_outputs",
                key=reference_key,
                keys=REFERENCE_KEYS,
                role="assistant",
            )
        return state

    def result(self, out: Mapping[str, Any], runs: Any) -> ComparativeResult:
        """The comparative result from the pairwise judge's output."""
        ids = [run.id for run in runs] if runs and len(runs) == 2 else ["A", "B"]
        winner = out.get("winner")
        verdicts = list(out.get("verdicts") or [])
        comment = "; ".join(
            f"{'A' if v['order'] == 'AB' else 'B'} shown first: {v['winner'] or 'no verdict'}, "
            f"{v['feedback']}"
            for v in verdicts
        )
        rubric = out.get("rubric")
        return {
            "key": self.feedback_key,
            "scores": dict(zip(ids, _POINTS[winner], strict=True)),
            "comment": f"winner: {winner or 'none'}" + (f"; {comment}" if comment else ""),
            "winner": winner,
            "metadata": {
                "consistent": out.get("consistent"),
                "verdicts": verdicts,
                "rubric": rubric.model_dump() if rubric is not None else None,
            },
        }


def create_pairwise_evaluator(
    model: ModelSpec = None,
    *,
    judge: Any = None,
    feedback_key: str = "spri_pairwise_preference",
    instruction_key: str | None = None,
    response_key: str | None = None,
    reference_key: str | None = None,
    critic_model: ModelSpec = None,
    on_disagreement: OnDisagreement = "tie",
    judge_output: JudgeOutputMode | None = None,
    max_iterations: int = 4,
    reference_free: bool = True,
    cache: BaseCache[Any] | None = None,
) -> Callable[..., ComparativeResult]:
    r"""Create a comparative evaluator that prefers one of two runs by an SPRI rubric.

    Texts are found in ``inputs``, in each of the two ``outputs`` and in
    ``reference_outputs`` as :func:`~spri_graph.create_spri_evaluator` finds them (strings,
    usual keys, the last message, or ``*_key``).

    Args:
        model: Judge model (see :func:`~spri_graph.create_pairwise_judge_graph`).
        judge: A pairwise judge graph to use instead of building one from ``model`` (for
            settings not listed here). With it, a non-empty ``reference_outputs`` is
            passed on as ``reference_answer``.
        feedback_key: The result's ``key`` (the LangSmith feedback name).
        instruction_key: Key of ``inputs`` holding the instruction.
        response_key: Key of each output holding the response.
        reference_key: Key of ``reference_outputs`` holding the reference answer.
        critic_model: As in :func:`~spri_graph.create_pairwise_judge_graph`.
        on_disagreement: As in :func:`~spri_graph.create_pairwise_judge_graph`.
        judge_output: As in :func:`~spri_graph.create_pairwise_judge_graph`.
        max_iterations: As in :func:`~spri_graph.create_pairwise_judge_graph`.
        reference_free: As in :func:`~spri_graph.create_pairwise_judge_graph`.
        cache: A node cache to compile the judge with
            (:func:`spri_graph.caching.judge_cache`); the judge then caches its model
            nodes, and comparing the same pair again makes no model calls.

    Returns:
        ``evaluator(*, inputs, outputs, reference_outputs=None, runs=None, **kwargs)``
        returning ``{"key", "scores", "comment", "winner", "metadata"}``. ``scores`` maps
        each run's id (``"A"`` and ``"B"`` without ``runs``) to 1, 0, 0.5 (tie) or
        ``None`` (no readable verdict); ``metadata`` holds the per-order verdicts and
        the rubric.

    Raises:
        ValueError: At creation, for bad settings; when called, if ``outputs`` is not two
            outputs or a text cannot be found (before any model call).

    Example:
        >>> from langchain_core.language_models import GenericFakeChatModel
        >>> model = GenericFakeChatModel(messages=iter([
        ...     "Criteria: Is 2+2 right?\nScore 1: Wrong.\nScore 5: Right.", "[RESULT] 5",
        ...     "<feedback>The first is right.</feedback><verdict>A</verdict>",
        ...     "<feedback>The first is right.</feedback><verdict>A</verdict>",
        ... ]))
        >>> evaluator = create_pairwise_evaluator(model)
        >>> result = evaluator(inputs={"question": "2+2?"},
        ...                    outputs=[{"answer": "4"}, {"answer": "5"}])
        >>> result["scores"], result["winner"]
        ({'A': 0.5, 'B': 0.5}, 'tie')
    """
    shared = _Evaluator(
        model,
        judge=judge,
        feedback_key=feedback_key,
        keys=(instruction_key, response_key, reference_key),
        options=_options(
            critic_model, on_disagreement, judge_output, max_iterations, reference_free
        ),
        cache=cache,
    )

    def spri_pairwise_evaluator(
        *,
        inputs: Any = None,
        outputs: Any = None,
        reference_outputs: Any = None,
        runs: Any = None,
        **kwargs: Any,
    ) -> ComparativeResult:
        out = shared.graph.invoke(shared.request(inputs, outputs, reference_outputs))
        return shared.result(out, runs)

    return spri_pairwise_evaluator


def create_async_pairwise_evaluator(
    model: ModelSpec = None,
    *,
    judge: Any = None,
    feedback_key: str = "spri_pairwise_preference",
    instruction_key: str | None = None,
    response_key: str | None = None,
    reference_key: str | None = None,
    critic_model: ModelSpec = None,
    on_disagreement: OnDisagreement = "tie",
    judge_output: JudgeOutputMode | None = None,
    max_iterations: int = 4,
    reference_free: bool = True,
    cache: BaseCache[Any] | None = None,
) -> Callable[..., Awaitable[ComparativeResult]]:
    r"""The ``async`` twin of :func:`create_pairwise_evaluator` (same arguments and result).

    Example:
        >>> import asyncio
        >>> from langchain_core.language_models import GenericFakeChatModel
        >>> model = GenericFakeChatModel(messages=iter([
        ...     "Criteria: Polite?\nScore 1: Rude.\nScore 5: Warm.", "[RESULT] 5",
        ... ]))
        >>> evaluator = create_async_pairwise_evaluator(model)
        >>> asyncio.run(evaluator(inputs="Say hi.", outputs=["Hello!", "Hello!"]))["scores"]
        {'A': 0.5, 'B': 0.5}
    """
    shared = _Evaluator(
        model,
        judge=judge,
        feedback_key=feedback_key,
        keys=(instruction_key, response_key, reference_key),
        options=_options(
            critic_model, on_disagreement, judge_output, max_iterations, reference_free
        ),
        cache=cache,
    )

    async def spri_pairwise_evaluator(
        *,
        inputs: Any = None,
        outputs: Any = None,
        reference_outputs: Any = None,
        runs: Any = None,
        **kwargs: Any,
    ) -> ComparativeResult:
        out = await shared.graph.ainvoke(shared.request(inputs, outputs, reference_outputs))
        return shared.result(out, runs)

    return spri_pairwise_evaluator


def _options(
    critic_model: ModelSpec,
    on_disagreement: OnDisagreement,
    judge_output: JudgeOutputMode | None,
    max_iterations: int,
    reference_free: bool,
) -> dict[str, Any]:
    return {
        "critic_model": critic_model,
        "on_disagreement": on_disagreement,
        "judge_output": judge_output,
        "max_iterations": max_iterations,
        "reference_free": reference_free,
    }


_DEFAULTS = _options(None, "tie", None, 4, True)
