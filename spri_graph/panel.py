r"""A panel of judges grading with one instance-specific rubric.

:func:`create_judge_panel` writes one rubric per instance with the SPRI rubric stage
(:func:`~spri_graph.create_rubric_graph`), then every judge of the panel grades the response
with it, concurrently (one LangGraph ``Send`` per judge), as
:func:`~spri_graph.create_fixed_rubric_judge` does. The panel's score aggregates the
readable scores (mean, median or majority); a judge whose grading has no readable score, or
that fails, *abstains* and is counted, and a panel left with fewer readable judges than
``min_judges`` reports no score rather than a misleading one.

``prepare -> rubric -> judge (x N, concurrently) -> aggregate``

Agreement with human scores, for the panel and for each judge, comes from the ``score`` and
``scores`` outputs (or :func:`panel_agreement`)::

    outs = [panel.invoke(record) for record in records]
    agreement(human, [out["score"] for out in outs])       # the panel
    agreement(human, [out["scores"][0] for out in outs])   # its first judge
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, Literal

from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.errors import GraphBubbleUp
from langgraph.graph import END, START, StateGraph
from langgraph.types import RetryPolicy, Send
from typing_extensions import TypedDict

from spri_graph.baselines import create_fixed_rubric_judge
from spri_graph.judge import JudgeInput, RubricOutput, create_rubric_graph, judge_prepare
from spri_graph.metrics import Agreement, agreement
from spri_graph.models import ModelSpec, resolve_model
from spri_graph.nodes import StageUsage, StepNode, empty_usage
from spri_graph.pairwise import sum_usage
from spri_graph.settings import CriticOutput, LoopSettings
from spri_graph.spri import SPRIContext

__all__ = [
    "Aggregate",
    "PanelJudgment",
    "PanelOutput",
    "PanelState",
    "aggregate_scores",
    "create_judge_panel",
    "panel_agreement",
]

Aggregate = Literal["mean", "median", "majority"]
"""How a panel combines its judges' readable scores."""

_AGGREGATES = ("mean", "median", "majority")
_RUBRIC_PROMPTS = ("rubric_draft", "rubric_critique", "rubric_refine")
_GRADE_PROMPTS = ("judgment_draft",)
_GRADED_KEYS = ("instruction", "response", "reference_answer", "rubric")


class PanelJudgment(TypedDict):
    """One judge's grading.

    Attributes:
        judge: The judge's name (its model string, or the model's name).
        index: The judge's position in ``judges``.
        score: Its score, or ``None`` when it abstained.
        feedback: Its feedback (``""`` when it failed).
        error: Why it failed (``"TypeName: message"``), or ``None``.
        usage: Its model calls and tokens.
    """

    judge: str
    index: int
    score: float | None
    feedback: str
    error: str | None
    usage: StageUsage


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
        abstained: How many judges gave no readable score (or failed).
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
    """Full state of the panel."""


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


def panel_agreement(
    human: Sequence[Any], outputs: Sequence[Mapping[str, Any]]
) -> dict[str, Agreement]:
    """Agreement with human scores of a panel and of each of its judges.

    Args:
        human: Human scores, one per panel output.
        outputs: The panel's outputs (:class:`PanelOutput`), in the same order.

    Returns:
        ``{"panel": Agreement, "<judge>": Agreement, ...}``; a judge's name that occurs
        twice in the panel gets its position: ``"<judge> #2"``. Abstentions are dropped
        and counted, as :func:`~spri_graph.agreement` does.

    Raises:
        ValueError: If ``human`` and ``outputs`` differ in length.
        ImportError: If the ``metrics`` extra is not installed.
    """
    if len(human) != len(outputs):
        raise ValueError(
            f"human and outputs must pair up: got {len(human)} human scores and "
            f"{len(outputs)} panel outputs"
        )
    result: dict[str, Agreement] = {
        "panel": agreement(human, [out.get("score") for out in outputs])
    }
    judgments: list[Mapping[str, Any]] = next(
        (out["judgments"] for out in outputs if out.get("judgments")), []
    )
    names = Counter(judgment["judge"] for judgment in judgments)
    for i, judgment in enumerate(judgments):
        name = (
            judgment["judge"] if names[judgment["judge"]] == 1 else f"{judgment['judge']} #{i + 1}"
        )
        scores = [(out.get("scores") or [None] * len(judgments))[i] for out in outputs]
        result[name] = agreement(human, scores)
    return result


# --------------------------------------------------------------------------- nodes


def _judge_name(spec: ModelSpec, model: Runnable[Any, Any]) -> str:
    if isinstance(spec, str):
        return spec
    for attribute in ("model_name", "model", "model_id", "name_"):
        value = getattr(model, attribute, None)
        if isinstance(value, str) and value:
            return value
    return type(model).__name__


def _member_node(members: Sequence[Runnable[Any, Any]], names: Sequence[str]) -> StepNode:
    """The node one ``Send`` per judge runs: that judge grades, or abstains if it fails."""

    def request(state: Mapping[str, Any]) -> dict[str, Any]:
        return {key: state[key] for key in _GRADED_KEYS if key in state}

    def record(index: int, out: Mapping[str, Any], error: BaseException | None) -> dict[str, Any]:
        judgment = PanelJudgment(
            judge=names[index],
            index=index,
            score=out.get("score"),
            feedback=out.get("feedback") or "",
            error=None if error is None else f"{type(error).__name__}: {error}",
            usage=(out.get("usage") or {}).get("judgment") or empty_usage(),
        )
        return {"judgments": [judgment]}

    # The panel's per-run settings (e.g. a context model) are not the judges': each grades
    # with its own model.
    def run(state: Mapping[str, Any], config: RunnableConfig) -> dict[str, Any]:
        index = state["judge"]
        try:
            out = members[index].invoke(request(state), config, context=SPRIContext())
        except GraphBubbleUp:
            raise
        except Exception as exc:  # a failing judge abstains
            return record(index, {}, exc)
        return record(index, out, None)

    async def arun(state: Mapping[str, Any], config: RunnableConfig) -> dict[str, Any]:
        index = state["judge"]
        try:
            out = await members[index].ainvoke(request(state), config, context=SPRIContext())
        except GraphBubbleUp:
            raise
        except Exception as exc:  # a failing judge abstains
            return record(index, {}, exc)
        return record(index, out, None)

    return StepNode("judge", run, arun)


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
            "for one judge use create_judge_graph"
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
    critic_model: ModelSpec = None,
    threshold: int = 4,
    max_iterations: int = 4,
    reference_free: bool = True,
    critic_output: CriticOutput | None = None,
    critic_parse_retries: int = 1,
    prompts: Mapping[str, ChatPromptTemplate | str] | None = None,
    retry_policy: RetryPolicy | None = None,
) -> StateGraph[PanelState, SPRIContext, JudgeInput, PanelOutput]:
    r"""Create a panel of judges that grade with one instance-specific SPRI rubric.

    The rubric is written, critiqued and refined once per instance by ``rubric_model``
    (:func:`~spri_graph.create_rubric_graph`); then every judge grades the response with
    it in one call, all judges concurrently. Each judge's score and feedback is kept. A
    judge whose grading has no readable score, or whose call fails after its retries,
    abstains: it is counted in ``abstained`` and left out of the aggregate.

    Args:
        judges: The judges' models (chat models or model strings), at least one.
        aggregate: ``"mean"``, ``"median"`` or ``"majority"`` of the readable scores
            (majority: the score more than half of them gave, else no score).
        min_judges: Fewest readable judges for a panel score; default: a majority of the
            panel (``len(judges) // 2 + 1``).
        rubric_model: The model that writes the rubric; defaults to the first judge.
        critic_model: The rubric critic; defaults to ``rubric_model``.
        threshold: Rubric critique score (1-5) that accepts the rubric.
        max_iterations: Most rubric critiques (at least 1).
        reference_free: Grade without a reference answer (the default). With ``False``,
            every input needs a ``reference_answer``, shown to the rubric writer and the
            judges.
        critic_output: The rubric critic's output, as in
            :func:`~spri_graph.create_judge_graph`.
        critic_parse_retries: Re-asks when a rubric critique has no readable score.
        prompts: Overrides keyed ``rubric_draft``, ``rubric_critique``, ``rubric_refine``
            and ``judgment_draft`` (see :data:`spri_graph.JUDGE_PROMPTS`).
        retry_policy: Retry policy for transient model errors; defaults to
            :func:`spri_graph.default_retry_policy`.

    Returns:
        An uncompiled :class:`~langgraph.graph.StateGraph` with the input of
        :func:`~spri_graph.create_judge_graph` and output :class:`PanelOutput`. It also
        works as ``judge=`` of :func:`~spri_graph.create_spri_evaluator`.

    Raises:
        ValueError: Before any model call, if ``judges`` is empty, ``min_judges`` is out
            of range, a setting is bad or a model string cannot be resolved; at run time,
            if ``instruction`` or ``response`` is missing or empty.

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
    given = dict(prompts or {})
    allowed = (*_RUBRIC_PROMPTS, *_GRADE_PROMPTS)
    if unknown := sorted(set(given) - set(allowed)):
        raise ValueError(
            f"prompts: unknown prompt {unknown[0]!r}; expected one of {', '.join(sorted(allowed))}"
        )
    settings = LoopSettings(
        threshold=threshold,
        max_iterations=max_iterations,
        critic_output=critic_output,
        critic_parse_retries=critic_parse_retries,
        retry_policy=retry_policy,
    )
    models = [resolve_model(spec, field=f"judges[{i}]") for i, spec in enumerate(judges)]
    names = [_judge_name(spec, model) for spec, model in zip(judges, models, strict=True)]
    writer = settings.resolve(models[0] if rubric_model is None else rubric_model, critic_model)
    rubric = create_rubric_graph(
        writer.base,
        critic_model=writer.critic,
        **{**settings.as_kwargs(), "critic_output": writer.critic_output},
        reference_free=reference_free,
        prompts={key: value for key, value in given.items() if key in _RUBRIC_PROMPTS},
    ).compile(name="rubric")
    members = [
        create_fixed_rubric_judge(
            model,
            reference_free=reference_free,
            prompts={key: value for key, value in given.items() if key in _GRADE_PROMPTS},
            retry_policy=settings.policy,
        ).compile(name=f"judge_{i}")
        for i, model in enumerate(models)
    ]
    builder = StateGraph(
        PanelState,
        context_schema=SPRIContext,
        input_schema=JudgeInput,
        output_schema=PanelOutput,
    )
    check_input = judge_prepare(
        with_response=True, reference_free=reference_free, rubric=None, rubric_from_input=False
    )

    def prepare(state: PanelState) -> dict[str, Any]:
        return check_input(state)

    builder.add_node("prepare", prepare)
    builder.add_node("rubric", rubric)
    builder.add_node("judge", _member_node(members, names))
    builder.add_node("aggregate", _aggregator(aggregate, needed))
    builder.add_edge(START, "prepare")
    builder.add_edge("prepare", "rubric")
    builder.add_conditional_edges("rubric", _fan_out(len(members)), ["judge"])
    builder.add_edge("judge", "aggregate")
    builder.add_edge("aggregate", END)
    return builder
