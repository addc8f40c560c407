r"""SPRI judges as openevals/LangSmith-style evaluators, single and pairwise.

An evaluator is called as ``evaluator(inputs=..., outputs=..., reference_outputs=...)`` and
returns ``{"key", "score", "comment", "metadata"}``, so it plugs into
``langsmith.evaluate(..., evaluators=[evaluator])``, into tests run with the LangSmith pytest
integration (log the result with ``langsmith.testing.log_feedback``), and anywhere openevals
evaluators are used.

A comparative evaluator (:func:`create_pairwise_evaluator`) is called as
``evaluator(inputs=..., outputs=[a, b], reference_outputs=..., runs=...)``, the shape
:func:`langsmith.evaluate_comparative` uses: ``inputs`` is the example's input, ``outputs``
the two runs' outputs, ``runs`` the two runs (their ids key the scores). It returns
``{"key", "scores", "comment"}``: the preferred run scores 1 and the other 0, a tie 0.5
each, and no readable verdict ``None`` each::

    from langsmith import evaluate_comparative
    evaluate_comparative(("experiment-a", "experiment-b"),
                         evaluators=[create_pairwise_evaluator("openai:gpt-4o-mini")])

Each kind has an ``async`` form for ``langsmith.aevaluate``, named ``create_async_*`` as
openevals names the factories of async evaluators; the two forms share one builder and
differ only in ``invoke`` / ``ainvoke``. Every factory takes the shared judge options
(:class:`~spri_graph.judges.base.JudgeOptions`) and passes them to the judge it builds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langgraph.cache.base import BaseCache
from langgraph.graph import StateGraph
from langgraph.types import CachePolicy
from typing_extensions import Unpack

from spri_graph.engine.options import take_options
from spri_graph.engine.steps import message_text
from spri_graph.judges.absolute import create_judge
from spri_graph.judges.base import JUDGE_OPTION_NAMES, GradingSettings, JudgeOptions
from spri_graph.judges.pairwise import OnDisagreement, create_pairwise_judge
from spri_graph.models import ModelSpec

__all__ = [
    "create_async_pairwise_evaluator",
    "create_async_spri_evaluator",
    "create_pairwise_evaluator",
    "create_spri_evaluator",
]

EvaluatorResult = dict[str, Any]

# Where evaluator arguments usually hold the instruction, the response, the reference.
INSTRUCTION_KEYS = ("instruction", "question", "query", "input", "prompt")
RESPONSE_KEYS = ("response", "output", "answer", "outputs", "content")
REFERENCE_KEYS = ("reference_answer", "reference", "answer", "expected", "output", "response")


def _last_message(messages: Any, kind: type[BaseMessage], role: str) -> str | None:
    if not isinstance(messages, list):
        return None
    for message in reversed(messages):
        if isinstance(message, kind):
            return message_text(message)
        if isinstance(message, Mapping) and message.get("role") == role:
            content = message.get("content")
            return content if isinstance(content, str) else None
    return None


def find_text(value: Any, *, field: str, key: str | None, keys: tuple[str, ...], role: str) -> Any:
    """Find the text for ``field`` in an evaluator argument (a string, a message or a dict).

    In a dict: under ``key`` when given, else under the first of ``keys`` present, else in
    the last message of ``role`` in ``messages``, else as the only value.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, BaseMessage):
        return message_text(value)
    if not isinstance(value, Mapping):
        raise ValueError(f"{field} must be a string or a dict, got {type(value).__name__}")
    if key is not None:
        if key not in value:
            raise ValueError(
                f"{field}: no key {key!r}; keys: {', '.join(map(str, value)) or '(none)'}"
            )
        return value[key]
    for name in keys:
        if name in value:
            return value[name]
    kind = HumanMessage if role == "user" else AIMessage
    found = _last_message(value.get("messages"), kind, role)
    if found is not None:
        return found
    if len(value) == 1:
        return next(iter(value.values()))
    raise ValueError(
        f"{field}: cannot tell which key holds the text; keys: "
        f"{', '.join(map(str, value)) or '(none)'}; pass {field.removesuffix('s')}_key="
    )


@dataclass(frozen=True)
class _Evaluator:
    """What the sync and async forms of an evaluator share: the judge, request, result."""

    graph: Any
    request: Callable[[Any, Any, Any], dict[str, Any]]
    result: Callable[[Mapping[str, Any], Any], dict[str, Any]]

    def run(self, inputs: Any, outputs: Any, reference_outputs: Any, runs: Any) -> dict[str, Any]:
        """The evaluator's result from the judge's output (sync)."""
        out = self.graph.invoke(self.request(inputs, outputs, reference_outputs))
        return self.result(out, runs)

    async def arun(
        self, inputs: Any, outputs: Any, reference_outputs: Any, runs: Any
    ) -> dict[str, Any]:
        """The evaluator's result from the judge's output (async)."""
        out = await self.graph.ainvoke(self.request(inputs, outputs, reference_outputs))
        return self.result(out, runs)


@dataclass(frozen=True)
class _Texts:
    """Where an evaluator finds the instruction, the responses and the reference answer."""

    instruction_key: str | None
    response_key: str | None
    reference_key: str | None
    uses_reference: bool

    def instruction(self, inputs: Any) -> Any:
        """The instruction in ``inputs``."""
        key = self.instruction_key
        return find_text(inputs, field="inputs", key=key, keys=INSTRUCTION_KEYS, role="user")

    def response(self, outputs: Any) -> Any:
        """The response in one run's ``outputs``."""
        key = self.response_key
        return find_text(outputs, field="outputs", key=key, keys=RESPONSE_KEYS, role="assistant")

    def with_reference(self, state: dict[str, Any], reference_outputs: Any) -> dict[str, Any]:
        """``state`` with the reference answer, when the judge uses one and it is given."""
        if self.uses_reference and reference_outputs not in (None, {}, ""):
            state["reference_answer"] = find_text(
                reference_outputs,
                field="reference_outputs",
                key=self.reference_key,
                keys=REFERENCE_KEYS,
                role="assistant",
            )
        return state


def _judge(
    model: ModelSpec,
    *,
    judge: Any,
    feedback_key: str,
    keys: tuple[str | None, str | None, str | None],
    cache: BaseCache[Any] | None,
    options: Mapping[str, Any],
    caller: str,
    create: Callable[..., StateGraph[Any, Any, Any, Any]],
    kind: str,
    own: Mapping[str, Any],
    for_judge: Sequence[str] = (),
) -> tuple[Any, _Texts, dict[str, Any]]:
    """What every evaluator builds first: the compiled judge and where its texts are.

    The judge is ``judge`` as given, or ``create(model, **options, **own)``: ``own`` are
    the judge's options that are the evaluator's own arguments. With ``judge=``, only the
    options named in ``for_judge`` (they describe that judge) and no ``own`` may be given.
    ``kind`` names the judge in errors.

    Returns:
        The compiled judge, the texts' finder and the shared options under their names.
    """
    options = take_options(options, JUDGE_OPTION_NAMES, caller=caller)
    if not isinstance(feedback_key, str) or not feedback_key.strip():
        raise ValueError(f"feedback_key must be a non-empty string, got {feedback_key!r}")
    if cache is not None and not isinstance(cache, BaseCache):
        raise ValueError(f"cache must be a langgraph BaseCache (see judge_cache), got {cache!r}")
    texts = _Texts(
        *keys, uses_reference=judge is not None or options.get("reference_free") is False
    )
    if judge is None:
        built = dict(options)
        if cache is not None and built.get("cache_policy") is None:
            built["cache_policy"] = CachePolicy()
        return create(model, **built, **own).compile(cache=cache), texts, options
    if model is not None:
        raise ValueError("model: pass either model or judge=, not both")
    if changed := [*own, *(name for name in options if name not in for_judge)]:
        raise ValueError(
            f"{', '.join(changed)}: these configure the built-in judge; with judge= set "
            "them on the judge graph you pass"
        )
    if cache is not None and not isinstance(judge, StateGraph):
        raise ValueError("cache: pass judge= as an uncompiled StateGraph to use a cache")
    graph = judge.compile(cache=cache) if isinstance(judge, StateGraph) else judge
    if not hasattr(graph, "invoke") or not hasattr(graph, "ainvoke"):
        raise ValueError(
            f"judge must be a {kind} graph (StateGraph or compiled), got {type(judge).__name__}"
        )
    return graph, texts, options


def _criteria_metadata(out: Mapping[str, Any]) -> dict[str, Any]:
    """``{"criteria_results": [...]}`` for a judge grading by checklist, else ``{}``."""
    results = out.get("criteria_results")
    return {} if results is None else {"criteria_results": [dict(r) for r in results]}


def _single(*, feedback_key: str, normalize: bool, **common: Any) -> _Evaluator:
    """The shared half of :func:`create_spri_evaluator` and its async form.

    ``common`` are :func:`_judge`'s arguments that every evaluator passes the same way.
    """
    if not isinstance(normalize, bool):
        raise ValueError(f"normalize must be True or False, got {normalize!r}")
    graph, texts, options = _judge(
        **common,
        feedback_key=feedback_key,
        create=create_judge,
        kind="judge",
        own={},
        for_judge=("scale",),
    )
    low, high = GradingSettings(**{k: v for k, v in options.items() if k == "scale"}).scale

    def request(inputs: Any, outputs: Any, reference_outputs: Any) -> dict[str, Any]:
        state = {"instruction": texts.instruction(inputs), "response": texts.response(outputs)}
        return texts.with_reference(state, reference_outputs)

    def result(out: Mapping[str, Any], runs: Any) -> EvaluatorResult:
        raw_score = score = out.get("score")
        if normalize and score is not None:
            score = (score - low) / (high - low)
        rubric = out.get("rubric")
        return {
            "key": feedback_key,
            "score": score,
            "comment": out.get("feedback"),
            "metadata": {
                "rubric": rubric.model_dump() if rubric is not None else None,
                "raw_score": raw_score,
                "scale": [low, high],
                **({"score_1_to_5": raw_score} if (low, high) == (1, 5) else {}),
                "rubric_critic_scores": [c.score for c in out.get("rubric_critiques") or []],
                "judgment_critic_scores": [c.score for c in out.get("judgment_critiques") or []],
                **_criteria_metadata(out),
            },
        }

    return _Evaluator(graph, request, result)


def create_spri_evaluator(
    model: ModelSpec = None,
    *,
    judge: Any = None,
    feedback_key: str = "spri_rubric_score",
    normalize: bool = False,
    instruction_key: str | None = None,
    response_key: str | None = None,
    reference_key: str | None = None,
    cache: BaseCache[Any] | None = None,
    **options: Unpack[JudgeOptions],
) -> Callable[..., EvaluatorResult]:
    r"""Create an evaluator that grades with an instance-specific SPRI rubric.

    The returned function takes ``inputs`` (the instruction), ``outputs`` (the response)
    and ``reference_outputs`` (used only with ``reference_free=False``), each a string or a
    dict. In a dict the text is found under ``instruction_key`` / ``response_key`` /
    ``reference_key`` when given, else under a usual key (``instruction``, ``question``,
    ``input``...; ``response``, ``output``, ``answer``...), else in the last human / AI
    message of ``messages``, else as the only value.

    Args:
        model: Judge model (see :func:`spri_graph.create_judge`).
        judge: A judge graph to use instead of building one from ``model``, e.g.
            :func:`spri_graph.create_vanilla_judge` to compare against a baseline. With it,
            a non-empty ``reference_outputs`` is passed on as ``reference_answer``.
        feedback_key: The result's ``key`` (the LangSmith feedback name).
        normalize: Report the score mapped to 0-1, ``(score - low) / (high - low)`` on the
            judge's ``scale``, instead of on the scale itself.
        instruction_key: Key of ``inputs`` holding the instruction.
        response_key: Key of ``outputs`` holding the response.
        reference_key: Key of ``reference_outputs`` holding the reference answer.
        cache: A node cache to compile the judge with
            (:func:`spri_graph.engine.caching.judge_cache`); with no ``cache_policy``, the judge
            then caches with ``CachePolicy()``. A repeated grading makes no model calls.
        **options: The shared options (:class:`~spri_graph.judges.base.JudgeOptions`),
            passed to :func:`~spri_graph.create_judge`. With ``judge=``, only ``scale`` (the
            scale of that judge, for ``normalize``).

    Returns:
        ``evaluator(*, inputs, outputs, reference_outputs=None, **kwargs)`` returning
        ``{"key", "score", "comment", "metadata"}``; ``score`` is ``None`` when the judge
        gave no readable score, ``comment`` is the grading's feedback and ``metadata``
        holds the rubric, ``raw_score`` and ``scale`` (the score on the judge's scale,
        also as ``score_1_to_5`` on the default scale) and the critics' scores; with
        ``rubric_style="criteria"`` the comment has one line per criterion and
        ``metadata["criteria_results"]`` each criterion's verdict, value and reason.

    Raises:
        TypeError: If an option is unknown.
        ValueError: At creation, for bad settings; when called, if the instruction or the
            response cannot be found or is empty (before any model call).

    Example:
        >>> from langchain_core.language_models import GenericFakeChatModel
        >>> model = GenericFakeChatModel(messages=iter([
        ...     "Criteria: Is 2+2 right?\nScore 1: Wrong.\nScore 5: Right.", "[RESULT] 5",
        ...     "<feedback>Right.</feedback><score>5</score>", "[RESULT] 5",
        ... ]))
        >>> evaluator = create_spri_evaluator(model)
        >>> result = evaluator(inputs={"question": "2+2?"}, outputs={"answer": "4"})
        >>> result["key"], result["score"], result["comment"]
        ('spri_rubric_score', 5.0, 'Right.')
    """
    shared = _single(
        model=model,
        judge=judge,
        feedback_key=feedback_key,
        normalize=normalize,
        keys=(instruction_key, response_key, reference_key),
        cache=cache,
        options=options,
        caller="create_spri_evaluator",
    )

    def spri_rubric_evaluator(
        *,
        inputs: Any = None,
        outputs: Any = None,
        reference_outputs: Any = None,
        **kwargs: Any,
    ) -> EvaluatorResult:
        return shared.run(inputs, outputs, reference_outputs, None)

    return spri_rubric_evaluator


def create_async_spri_evaluator(
    model: ModelSpec = None,
    *,
    judge: Any = None,
    feedback_key: str = "spri_rubric_score",
    normalize: bool = False,
    instruction_key: str | None = None,
    response_key: str | None = None,
    reference_key: str | None = None,
    cache: BaseCache[Any] | None = None,
    **options: Unpack[JudgeOptions],
) -> Callable[..., Awaitable[EvaluatorResult]]:
    r"""The ``async`` twin of :func:`create_spri_evaluator` (same arguments and result).

    Example:
        >>> import asyncio
        >>> from langchain_core.language_models import GenericFakeChatModel
        >>> model = GenericFakeChatModel(messages=iter([
        ...     "Criteria: Polite?\nScore 1: Rude.\nScore 5: Warm.", "[RESULT] 5",
        ...     "<feedback>Warm.</feedback><score>5</score>", "[RESULT] 5",
        ... ]))
        >>> evaluator = create_async_spri_evaluator(model, normalize=True)
        >>> asyncio.run(evaluator(inputs="Say hi.", outputs="Hello!"))["score"]
        1.0
    """
    shared = _single(
        model=model,
        judge=judge,
        feedback_key=feedback_key,
        normalize=normalize,
        keys=(instruction_key, response_key, reference_key),
        cache=cache,
        options=options,
        caller="create_async_spri_evaluator",
    )

    async def spri_rubric_evaluator(
        *,
        inputs: Any = None,
        outputs: Any = None,
        reference_outputs: Any = None,
        **kwargs: Any,
    ) -> EvaluatorResult:
        return await shared.arun(inputs, outputs, reference_outputs, None)

    return spri_rubric_evaluator


# ---------------------------------------------------------------------------

ComparativeResult = dict[str, Any]
_POINTS = {"A": (1.0, 0.0), "B": (0.0, 1.0), "tie": (0.5, 0.5), None: (None, None)}


def _pairwise(*, feedback_key: str, on_disagreement: OnDisagreement, **common: Any) -> _Evaluator:
    """The shared half of :func:`create_pairwise_evaluator` and its async form.

    ``common`` are :func:`_judge`'s arguments that every evaluator passes the same way.
    """
    given = common["judge"] is None or on_disagreement != "tie"
    own = {"on_disagreement": on_disagreement} if given else {}
    graph, texts, _ = _judge(
        **common,
        feedback_key=feedback_key,
        create=create_pairwise_judge,
        kind="pairwise judge",
        own=own,
    )

    def request(inputs: Any, outputs: Any, reference_outputs: Any) -> dict[str, Any]:
        if isinstance(outputs, str | Mapping) or not isinstance(outputs, Sequence):
            raise ValueError(
                f"outputs must be a list of the two runs' outputs, got {type(outputs).__name__}"
            )
        if len(outputs) != 2:
            raise ValueError(f"outputs must hold two runs' outputs, got {len(outputs)}")
        state = {"instruction": texts.instruction(inputs)}
        state["response_a"], state["response_b"] = (texts.response(out) for out in outputs)
        return texts.with_reference(state, reference_outputs)

    def result(out: Mapping[str, Any], runs: Any) -> ComparativeResult:
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
            "key": feedback_key,
            "scores": dict(zip(ids, _POINTS[winner], strict=True)),
            "comment": f"winner: {winner or 'none'}" + (f"; {comment}" if comment else ""),
            "winner": winner,
            "metadata": {
                "consistent": out.get("consistent"),
                "verdicts": verdicts,
                "rubric": rubric.model_dump() if rubric is not None else None,
                **_criteria_metadata(out),
            },
        }

    return _Evaluator(graph, request, result)


def create_pairwise_evaluator(
    model: ModelSpec = None,
    *,
    judge: Any = None,
    feedback_key: str = "spri_pairwise_preference",
    on_disagreement: OnDisagreement = "tie",
    instruction_key: str | None = None,
    response_key: str | None = None,
    reference_key: str | None = None,
    cache: BaseCache[Any] | None = None,
    **options: Unpack[JudgeOptions],
) -> Callable[..., ComparativeResult]:
    r"""Create a comparative evaluator that prefers one of two runs by an SPRI rubric.

    Texts are found in ``inputs``, in each of the two ``outputs`` and in
    ``reference_outputs`` as :func:`~spri_graph.create_spri_evaluator` finds them (strings,
    usual keys, the last message, or ``*_key``).

    Args:
        model: Judge model (see :func:`~spri_graph.create_pairwise_judge`).
        judge: A pairwise judge graph to use instead of building one from ``model``. With
            it, a non-empty ``reference_outputs`` is passed on as ``reference_answer``.
        feedback_key: The result's ``key`` (the LangSmith feedback name).
        instruction_key: Key of ``inputs`` holding the instruction.
        response_key: Key of each output holding the response.
        reference_key: Key of ``reference_outputs`` holding the reference answer.
        on_disagreement: As in :func:`~spri_graph.create_pairwise_judge`.
        cache: A node cache to compile the judge with
            (:func:`spri_graph.engine.caching.judge_cache`); the judge then caches its model
            nodes (with ``CachePolicy()`` unless ``cache_policy`` is given), and comparing
            the same pair again makes no model calls.
        **options: The shared options (:class:`~spri_graph.judges.base.JudgeOptions`),
            passed to :func:`~spri_graph.create_pairwise_judge`; none with ``judge=``.

    Returns:
        ``evaluator(*, inputs, outputs, reference_outputs=None, runs=None, **kwargs)``
        returning ``{"key", "scores", "comment", "winner", "metadata"}``. ``scores`` maps
        each run's id (``"A"`` and ``"B"`` without ``runs``) to 1, 0, 0.5 (tie) or
        ``None`` (no readable verdict); ``metadata`` holds the per-order verdicts and
        the rubric (and, with ``rubric_style="criteria"``, ``criteria_results``: each
        criterion's better response in both orders).

    Raises:
        TypeError: If an option is unknown.
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
    shared = _pairwise(
        model=model,
        judge=judge,
        feedback_key=feedback_key,
        on_disagreement=on_disagreement,
        keys=(instruction_key, response_key, reference_key),
        cache=cache,
        options=options,
        caller="create_pairwise_evaluator",
    )

    def spri_pairwise_evaluator(
        *,
        inputs: Any = None,
        outputs: Any = None,
        reference_outputs: Any = None,
        runs: Any = None,
        **kwargs: Any,
    ) -> ComparativeResult:
        return shared.run(inputs, outputs, reference_outputs, runs)

    return spri_pairwise_evaluator


def create_async_pairwise_evaluator(
    model: ModelSpec = None,
    *,
    judge: Any = None,
    feedback_key: str = "spri_pairwise_preference",
    on_disagreement: OnDisagreement = "tie",
    instruction_key: str | None = None,
    response_key: str | None = None,
    reference_key: str | None = None,
    cache: BaseCache[Any] | None = None,
    **options: Unpack[JudgeOptions],
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
    shared = _pairwise(
        model=model,
        judge=judge,
        feedback_key=feedback_key,
        on_disagreement=on_disagreement,
        keys=(instruction_key, response_key, reference_key),
        cache=cache,
        options=options,
        caller="create_async_pairwise_evaluator",
    )

    async def spri_pairwise_evaluator(
        *,
        inputs: Any = None,
        outputs: Any = None,
        reference_outputs: Any = None,
        runs: Any = None,
        **kwargs: Any,
    ) -> ComparativeResult:
        return await shared.arun(inputs, outputs, reference_outputs, runs)

    return spri_pairwise_evaluator
