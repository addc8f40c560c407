r"""A panel of judges grading with one instance-specific rubric.

:func:`create_judge_panel` writes one rubric per instance with the SPRI rubric stage
(:func:`spri_graph.judges.rubric.add_rubric_stage`), then every judge of the panel grades the
response with it, concurrently (one LangGraph ``Send`` per judge), as
:func:`~spri_graph.create_fixed_rubric_judge` does. The panel's score aggregates the
readable scores (mean, median or majority); a judge whose grading has no readable score on
the scale *abstains* and is counted, and a panel left with fewer readable judges than
``min_judges`` reports no score rather than a misleading one. A judge whose call fails after
its retries fails the run, as in every judge graph (a failure is not a grading, and a node
cache must not remember it as one).

``prepare -> rubric_draft -> rubric_critique -(refine)-> ... -(done)-> convene``
``-> judge (x N, concurrently) -> aggregate``

Agreement with human scores, for the panel and for each judge, comes from the ``score`` and
``scores`` outputs (or :func:`~spri_graph.evaluation.metrics.panel_agreement`)::

    outs = [panel.invoke(record) for record in records]
    agreement(human, [out["score"] for out in outs])       # the panel
    agreement(human, [out["scores"][0] for out in outs])   # its first judge
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Annotated, Any, Literal

from langchain_core.runnables import Runnable
from langgraph.graph import END, StateGraph
from langgraph.types import CachePolicy, Send
from typing_extensions import NotRequired, TypedDict, Unpack

from spri_graph.engine.options import SPRIContext, spri_state_graph
from spri_graph.engine.prompts import JUDGE_PROMPTS
from spri_graph.engine.steps import StageUsage, Step, context_value, step_node, sum_usage
from spri_graph.judges.base import JudgeInput, JudgeOptions, JudgeSettings, RubricOutput
from spri_graph.judges.criteria import grader_for
from spri_graph.judges.rubric import RUBRIC_PROMPTS, start_with_rubric
from spri_graph.models import ModelSpec, resolve_model
from spri_graph.readers.criteria import CriterionResult
from spri_graph.readers.scores import Judgment

__all__ = [
    "Aggregate",
    "PanelJudgment",
    "PanelOutput",
    "PanelState",
    "aggregate_scores",
    "create_judge_panel",
]

Aggregate = Literal["mean", "median", "majority"]
"""How a panel combines its judges' readable scores."""

_AGGREGATES = ("mean", "median", "majority")
_PROMPTS = MappingProxyType({**RUBRIC_PROMPTS, "judgment_draft": JUDGE_PROMPTS["judgment_draft"]})
_GRADED_KEYS = ("instruction", "response", "reference_answer", "rubric")


class PanelJudgment(TypedDict):
    """One judge's grading.

    Attributes:
        judge: The judge's name (its model string, or the model's name).
        index: The judge's position in ``judges``.
        score: Its score, or ``None`` when it abstained.
        feedback: Its feedback.
        usage: Its model calls and tokens.
        criteria_results: With ``rubric_style="criteria"`` only: its verdict and reason
            per criterion.
    """

    judge: str
    index: int
    score: float | None
    feedback: str
    usage: StageUsage
    criteria_results: NotRequired[list[CriterionResult]]


def _add_judgments(
    left: list[PanelJudgment] | None, right: list[PanelJudgment] | None
) -> list[PanelJudgment]:
    return sorted([*(left or []), *(right or [])], key=lambda judgment: judgment["index"])


class PanelOutput(RubricOutput, total=False):
    """Output of :func:`create_judge_panel`.

    Attributes:
        score: The aggregate of the readable scores, or ``None`` when fewer than
            ``min_judges`` judges gave one (or, with ``"majority"``, no score has a
            majority).
        scores: Each judge's score in ``judges`` order, ``None`` where it abstained.
        abstained: How many judges gave no readable score.
        feedback: Each readable judge's feedback, one ``[judge] feedback`` line each.
        judgments: Each judge's grading (:class:`PanelJudgment`), in ``judges`` order.
        rubric: The rubric every judge graded with.
        rubric_critiques: The rubric critic's critiques.
        usage: Model calls and tokens per stage (``"rubric"``; ``"judgment"``, all judges).
    """

    score: float | None
    scores: list[float | None]
    abstained: int
    feedback: str
    judgments: Annotated[list[PanelJudgment], _add_judgments]


class PanelState(JudgeInput, PanelOutput, total=False):
    """Full state of the panel; ``context_models`` are the context's per-run models."""

    context_models: dict[str, str | None]


def aggregate_scores(
    scores: Iterable[float | None], how: Aggregate = "mean", *, min_judges: int = 1
) -> float | None:
    """Combine a panel's scores; ``None`` scores are abstentions and are left out.

    Args:
        scores: One score per judge, ``None`` for a judge that abstained.
        how: ``"mean"``, ``"median"``, or ``"majority"`` (the score more than half of the
            readable judges gave, else ``None``).
        min_judges: Fewest readable scores that make a panel score.

    Returns:
        The panel's score, or ``None``.

    Example:
        >>> aggregate_scores([4, 5, None]), aggregate_scores([4, 4, 5], "majority")
        (4.5, 4.0)
        >>> aggregate_scores([4, None, None], min_judges=2) is None
        True
    """
    readable = [float(score) for score in scores if score is not None]
    if not readable or len(readable) < min_judges:
        return None
    if how == "mean":
        return statistics.fmean(readable)
    if how == "median":
        return float(statistics.median(readable))
    value, count = Counter(readable).most_common(1)[0]
    return value if count * 2 > len(readable) else None


# --------------------------------------------------------------------------- nodes


def _judge_name(spec: ModelSpec, model: Runnable[Any, Any]) -> str:
    if isinstance(spec, str):
        return spec
    for attribute in ("model_name", "model", "model_id", "name_"):
        value = getattr(model, attribute, None)
        if isinstance(value, str) and value:
            return value
    return type(model).__name__


@dataclass(frozen=True)
class _Member:
    """One judge of the panel: its name, its grading step and its node cache key."""

    name: str
    step: Callable[[Mapping[str, Any]], Step]
    cache_key: Callable[[Mapping[str, Any]], str] | None


def _member(index: int, spec: ModelSpec, settings: JudgeSettings) -> _Member:
    model = resolve_model(spec, field=f"judges[{index}]")
    grader = grader_for(settings, model, node=f"judge_{index}", step=f"grade_{index}")
    policy = grader.cache_policy
    return _Member(
        _judge_name(spec, model), grader.step, None if policy is None else policy.key_func
    )


def _member_step(members: Sequence[_Member]) -> Callable[[Mapping[str, Any]], Step]:
    """The step one ``Send`` per judge runs: that judge grades the response once."""

    def judge(state: Mapping[str, Any]) -> Step:
        index = state["judge"]
        update = yield from members[index].step(state)
        judgment: Judgment = update["judgment"]
        graded = PanelJudgment(
            judge=members[index].name,
            index=index,
            score=judgment.score,
            feedback=judgment.feedback,
            usage=update["usage"]["judgment"],
        )
        if "criteria_results" in update:
            graded["criteria_results"] = update["criteria_results"]
        return {"judgments": [graded]}

    return judge


def _cache_policy(
    cache_policy: CachePolicy[Any] | None, members: Sequence[_Member]
) -> CachePolicy[Any] | None:
    """The ``judge`` node's cache policy: each judge's key (its model, its prompt)."""
    if cache_policy is None:
        return None

    def key(state: Mapping[str, Any]) -> str:
        # No "judge" index while get_graph() steps through the graph to draw it.
        index = state.get("judge")
        member_key = None if index is None else members[index].cache_key
        return "" if member_key is None else member_key(state)

    return CachePolicy(key_func=key, ttl=cache_policy.ttl)


def _aggregator(how: Aggregate, min_judges: int) -> Any:
    def aggregate(state: Mapping[str, Any]) -> dict[str, Any]:
        judgments: list[PanelJudgment] = list(state.get("judgments") or [])
        scores = [judgment["score"] for judgment in judgments]
        feedback = [f"[{j['judge']}] {j['feedback']}" for j in judgments if j["score"] is not None]
        return {
            "score": aggregate_scores(scores, how, min_judges=min_judges),
            "scores": scores,
            "abstained": sum(score is None for score in scores),
            "feedback": "\n".join(feedback),
            "usage": {"judgment": sum_usage(judgment["usage"] for judgment in judgments)},
        }

    return aggregate


def _no_model(state: Mapping[str, Any]) -> dict[str, Any]:
    if context_value("model") is not None:
        raise ValueError(
            "context model: a panel grades with its own judges; set judges= and rubric_model= "
            "on create_judge_panel instead"
        )
    return {}


def _fan_out(size: int) -> Any:
    def fan_out(state: Mapping[str, Any]) -> list[Send]:
        payload = {key: state[key] for key in _GRADED_KEYS if key in state}
        return [Send("judge", {**payload, "judge": index}) for index in range(size)]

    return fan_out


# --------------------------------------------------------------------------- factory


def _check_panel(judges: Any, aggregate: Any, min_judges: Any) -> int:
    if isinstance(judges, str) or not isinstance(judges, Sequence):
        raise ValueError(
            f"judges must be a list of models, got {type(judges).__name__}; "
            "for one judge use create_judge"
        )
    if not judges:
        raise ValueError("judges must list at least one judge model, got an empty list")
    if aggregate not in _AGGREGATES:
        raise ValueError(f"aggregate must be one of {', '.join(_AGGREGATES)}, got {aggregate!r}")
    if min_judges is None:
        return len(judges) // 2 + 1
    if isinstance(min_judges, bool) or not isinstance(min_judges, int) or min_judges < 1:
        raise ValueError(f"min_judges must be an integer >= 1, got {min_judges!r}")
    if min_judges > len(judges):
        raise ValueError(
            f"min_judges must be at most the number of judges ({len(judges)}), got {min_judges}"
        )
    return min_judges


def create_judge_panel(
    judges: Sequence[ModelSpec],
    *,
    aggregate: Aggregate = "mean",
    min_judges: int | None = None,
    rubric_model: ModelSpec = None,
    **options: Unpack[JudgeOptions],
) -> StateGraph[PanelState, SPRIContext, JudgeInput, PanelOutput]:
    r"""Create a panel of judges that grade with one instance-specific SPRI rubric.

    The rubric is written, critiqued and refined once per instance by ``rubric_model``
    (the rubric stage of :func:`~spri_graph.create_judge`); then every judge grades
    the response with it in one call, all judges concurrently. Each judge's score and
    feedback is kept. A judge whose grading has no readable score on the scale abstains: it
    is counted in ``abstained`` and left out of the aggregate.

    Args:
        judges: The judges' models (chat models or model strings), at least one.
        aggregate: ``"mean"``, ``"median"`` or ``"majority"`` of the readable scores
            (majority: the score more than half of them gave, else no score).
        min_judges: Fewest readable judges for a panel score; default: a majority of the
            panel (``len(judges) // 2 + 1``).
        rubric_model: The model that writes the rubric; defaults to the first judge.
        **options: The shared options (:class:`~spri_graph.judges.base.JudgeOptions`).
            The loop options apply to the rubric stage (``critic_model`` defaults to
            ``rubric_model``); ``judge_output`` applies to the rubric writer and every
            judge, and ``None`` gives each model its default (structured for the embedded
            local model), so a panel may mix both. ``prompts`` keys: ``rubric_draft``,
            ``rubric_critique``, ``rubric_refine`` and ``judgment_draft`` (see
            :data:`spri_graph.JUDGE_PROMPTS`).

    Returns:
        An uncompiled :class:`~langgraph.graph.StateGraph` with the input of
        :func:`~spri_graph.create_judge` and output :class:`PanelOutput`. It also
        works as ``judge=`` of :func:`~spri_graph.create_spri_evaluator`.

    Raises:
        TypeError: If an option is unknown.
        ValueError: Before any model call, if ``judges`` is empty, ``min_judges`` is out
            of range, a setting is bad or a model string cannot be resolved; at run time,
            if ``instruction`` or ``response`` is missing or empty, or the context sets a
            ``model`` (a panel's judges are its own).

    Example:
        >>> from langchain_core.language_models import GenericFakeChatModel
        >>> writer = GenericFakeChatModel(messages=iter([
        ...     "Criteria: Is the capital right?\nScore 1: Wrong.\nScore 5: Paris.",
        ...     "Feedback: Checkable. [RESULT] 5",
        ... ]))
        >>> judges = [GenericFakeChatModel(messages=iter([reply])) for reply in (
        ...     "<feedback>Right.</feedback><score>5</score>",
        ...     "<feedback>Right, terse.</feedback><score>4</score>",
        ...     "I cannot grade this.",
        ... )]
        >>> panel = create_judge_panel(judges, rubric_model=writer).compile()
        >>> out = panel.invoke({"instruction": "Capital of France?", "response": "Paris."})
        >>> out["score"], out["scores"], out["abstained"]
        (4.5, [5.0, 4.0, None], 1)
    """
    needed = _check_panel(judges, aggregate, min_judges)
    first = resolve_model(judges[0], field="judges[0]")
    settings = JudgeSettings.from_options(
        first if rubric_model is None else rubric_model,
        options,
        caller="create_judge_panel",
        default_prompts=_PROMPTS,
    )
    members = [_member(i, first if i == 0 else spec, settings) for i, spec in enumerate(judges)]
    builder = spri_state_graph(PanelState, JudgeInput, PanelOutput)
    start_with_rubric(
        builder, settings, with_response=True, then="convene", join=True, check=_no_model
    )
    builder.add_conditional_edges("convene", _fan_out(len(members)), ["judge"])
    builder.add_node(
        "judge",
        step_node("judge", _member_step(members)),
        retry_policy=settings.loop.policy,
        cache_policy=_cache_policy(settings.cache_policy, members),
    )
    builder.add_node("aggregate", _aggregator(aggregate, needed))
    builder.add_edge("judge", "aggregate")
    builder.add_edge("aggregate", END)
    return builder
