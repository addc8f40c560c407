r"""Pairwise grading with an instance-specific rubric: which of two responses is better.

:func:`create_pairwise_judge` writes one rubric for the instruction with the rubric
stage of the SPRI judge (:func:`spri_graph.judges.rubric.add_rubric_stage`, the same
draft -> critique -> refine loop), then asks the judge which response the rubric prefers,
once with A shown first and once with B shown first, concurrently. Judges favour a
position; asking in both orders cancels that bias: when the two orders name the same
response it wins, and when they disagree the verdict is a tie (or, with
``on_disagreement="reask"``, both orders are asked once more and that round decides).

``prepare -> rubric_draft -> rubric_critique -(refine)-> ... -(done)-> compare``
``-> grade (A first | B first) -> decide -(reask)-> grade -> decide``

The responses are shown to the judge fenced as data, and verdict markers the judge copies
out of a response are not read as its verdict (:func:`parse_verdict`), so a response cannot
vote for itself.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Annotated, Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.prompts import ChatPromptTemplate
from langgraph.graph import END, StateGraph
from langgraph.types import Send
from typing_extensions import TypedDict, Unpack

from spri_graph.engine.caching import prompt_cache_policy
from spri_graph.engine.options import SPRIContext, spri_state_graph
from spri_graph.engine.prompts import (
    PAIRWISE_PROMPTS,
    VERDICT_REMINDER,
    fence,
    verdict_format,
)
from spri_graph.engine.steps import (
    ModelCall,
    StageUsage,
    Step,
    add_usage,
    context_value,
    empty_usage,
    merge_usage,
    message_text,
    step_node,
    structured_output,
    sum_usage,
)
from spri_graph.judges.base import (
    JudgeOptions,
    JudgeSettings,
    answer_with_schema,
    text_field,
)
from spri_graph.judges.criteria import checklist_of, own_fields
from spri_graph.judges.rubric import RUBRIC_PROMPTS, start_with_rubric
from spri_graph.models import ModelSpec, resolve_model_cached
from spri_graph.readers.criteria import (
    Checklist,
    PairwiseChoice,
    pairwise_criteria_schema,
    read_pairwise_criteria,
)
from spri_graph.readers.rubric import Rubric
from spri_graph.readers.scores import Critique
from spri_graph.readers.verdicts import Better, PairwiseVerdict, Verdict, parse_verdict

__all__ = [
    "OnDisagreement",
    "OrderVerdict",
    "PairwiseCriterionResult",
    "PairwiseInput",
    "PairwiseOutput",
    "PairwiseState",
    "create_pairwise_judge",
]

Winner = Literal["A", "B", "tie"]
OnDisagreement = Literal["tie", "reask"]
"""What a pairwise judge does when the two orders disagree: a tie, or ask both once more."""

ORDERS = ("AB", "BA")
"""The two orders the responses are shown in: ``"AB"`` shows A first, ``"BA"`` B first."""

_PROMPTS = MappingProxyType({**RUBRIC_PROMPTS, **PAIRWISE_PROMPTS})


# --------------------------------------------------------------------------- state


class OrderVerdict(TypedDict):
    """The grading of one order.

    Attributes:
        round: 1, or 2 for the re-asked round.
        order: ``"AB"`` (A shown first) or ``"BA"`` (B shown first).
        winner: The preferred response in the input's terms (``"A"`` is ``response_a``
            whatever the order), or ``None`` when the grading had no readable verdict.
        feedback: The judge's feedback.
    """

    round: int
    order: str
    winner: Better | None
    feedback: str


class PairwiseCriterionResult(TypedDict):
    """One criterion of a comparison by checklist (``rubric_style="criteria"``).

    Attributes:
        round: 1, or 2 for the re-asked round.
        criterion: Its number, from 1.
        text: Its text.
        weight: Its weight.
        pitfall: Whether it is a pitfall (the better response avoids it).
        AB: The better response with A shown first, in the input's terms, or ``None``
            when unread.
        BA: The same with B shown first.
        winner: ``AB`` when both orders agree, else ``"tie"`` (``None`` when unread).
    """

    round: int
    criterion: int
    text: str
    weight: float
    pitfall: bool
    AB: PairwiseChoice | None
    BA: PairwiseChoice | None
    winner: PairwiseChoice | None


def _add_verdicts(
    left: list[OrderVerdict] | None, right: list[OrderVerdict] | None
) -> list[OrderVerdict]:
    merged = [*(left or []), *(right or [])]
    return sorted(merged, key=lambda v: (v["round"], ORDERS.index(v["order"])))


class PairwiseInput(TypedDict, total=False):
    """Input of :func:`create_pairwise_judge`.

    ``reference_answer`` is used only by graphs built with ``reference_free=False``.
    """

    instruction: str
    response_a: str
    response_b: str
    reference_answer: str | None


class PairwiseOutput(TypedDict, total=False):
    """Output of :func:`create_pairwise_judge`.

    Attributes:
        winner: ``"A"``, ``"B"``, ``"tie"`` (the orders disagreed, or the responses are
            identical), or ``None`` when a grading of the deciding round had no readable
            verdict.
        consistent: Whether both orders of the deciding round named the same response.
        verdicts: Every order's grading, round by round, A-first before B-first.
        rubric: The rubric the responses were graded by.
        rubric_critiques: The rubric critic's critiques.
        usage: Model calls and tokens per stage (``"rubric"``, ``"pairwise"``).
        criteria_results: With ``rubric_style="criteria"`` only: each criterion's better
            response in both orders of the deciding round.
    """

    winner: Winner | None
    consistent: bool
    verdicts: Annotated[list[OrderVerdict], _add_verdicts]
    criteria_results: list[PairwiseCriterionResult]
    rubric: Rubric | Checklist
    rubric_critiques: list[Critique]
    usage: Annotated[dict[str, StageUsage], merge_usage]


class PairwiseState(PairwiseInput, PairwiseOutput, total=False):
    """Full state of the pairwise judge.

    ``pairwise_usage`` collects each grading's usage; ``context_models`` holds the per-run
    models of the graph's context (part of every node's cache key).
    """

    pairwise_usage: Annotated[list[StageUsage], operator.add]
    context_models: dict[str, str | None]
    order_choices: Annotated[list[dict[str, Any]], operator.add]


# --------------------------------------------------------------------------- nodes


def _shown(state: Mapping[str, Any], order: str) -> tuple[str, str]:
    a, b = state["response_a"], state["response_b"]
    return (a, b) if order == "AB" else (b, a)


def _prompt_inputs(settings: JudgeSettings) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """The grading prompt's variables for the order (and round) a ``Send`` carries."""
    inputs = settings.prompt_inputs()
    answer = verdict_format(structured=settings.structured)

    def pair_inputs(state: Mapping[str, Any]) -> dict[str, Any]:
        first, second = _shown(state, state["order"])
        return {
            **inputs(state),
            "response_a": first,
            "response_b": second,
            "response_a_block": fence(first, "RESPONSE A"),
            "response_b_block": fence(second, "RESPONSE B"),
            "verdict_format": answer,
            "order": state["order"],
            "round": state["round"],  # a re-asked round is a new call, also when cached
        }

    return pair_inputs


def _grade_step(
    settings: JudgeSettings,
    prompt: ChatPromptTemplate,
    inputs: Callable[[Mapping[str, Any]], dict[str, Any]],
) -> Callable[[Mapping[str, Any]], Step]:
    structured, parse_retries = settings.structured, settings.loop.parse_retries

    def read(result: Any, quotes: Sequence[str]) -> tuple[Verdict, BaseMessage]:
        if not structured:
            return parse_verdict(message_text(result), quoted=quotes), result
        parsed: PairwiseVerdict | None = result["parsed"]
        if parsed is None:
            return parse_verdict(message_text(result["raw"]), quoted=quotes), result["raw"]
        return Verdict(feedback=parsed.feedback, better=parsed.better), result["raw"]

    def grade(state: Mapping[str, Any]) -> Step:
        order, round_ = state["order"], state["round"]
        name = context_value("model")
        runnable = resolve_model_cached(name, field="model") if name else settings.models.base
        if structured:
            runnable = structured_output(runnable, PairwiseVerdict)
        values = inputs(state)
        quotes = (values["response_a"], values["response_b"])
        messages = list(prompt.format_messages(**values))
        usage = empty_usage()
        for _attempt in range(parse_retries + 1):
            result = yield ModelCall.for_stage(
                runnable, messages, stage="pairwise", step=f"grade_{order}", iteration=round_
            )
            verdict, message = read(result, quotes)
            usage = add_usage(usage, message, critic=False)
            if verdict.better is not None:
                break
            messages += [AIMessage(content=message_text(message)), HumanMessage(VERDICT_REMINDER)]
        better = verdict.better
        if order == "BA" and better is not None:
            better = "B" if better == "A" else "A"
        graded = OrderVerdict(round=round_, order=order, winner=better, feedback=verdict.feedback)
        return {"verdicts": [graded], "pairwise_usage": [usage]}

    return grade


def _swap(choice: PairwiseChoice) -> PairwiseChoice:
    return "B" if choice == "A" else "A" if choice == "B" else "tie"


def _criteria_grade_step(
    settings: JudgeSettings,
    prompt: ChatPromptTemplate,
    inputs: Callable[[Mapping[str, Any]], dict[str, Any]],
) -> Callable[[Mapping[str, Any]], Step]:
    """One order's comparison by checklist: the better response per criterion, one call.

    The order's ``winner`` is the response with the larger weight of criteria won (``None``
    on equal weight or no readable choice); choices are kept in the input's terms.
    """
    structured = settings.structured

    def grade(state: Mapping[str, Any]) -> Step:
        order, round_ = state["order"], state["round"]
        checklist = checklist_of(state)
        name = context_value("model")
        runnable = resolve_model_cached(name, field="model") if name else settings.models.base
        if structured:
            runnable = answer_with_schema(runnable, pairwise_criteria_schema())
        values = inputs(state)
        quotes = (values["response_a"], values["response_b"])
        message = yield ModelCall.for_stage(
            runnable,
            prompt.format_messages(**values),
            stage="pairwise",
            step=f"grade_{order}",
            iteration=round_,
        )
        fields = own_fields(message, quotes) if structured else None
        found = read_pairwise_criteria(
            checklist, text=message_text(message), fields=fields, quoted=quotes
        )
        choices = {n: (c if order == "AB" else _swap(c)) for n, (c, _) in found.items()}
        weight = {"A": 0.0, "B": 0.0, "tie": 0.0}
        for number, choice in choices.items():
            weight[choice] += checklist.items[number - 1].weight_value
        winner: Better | None = None
        if weight["A"] != weight["B"]:
            winner = "A" if weight["A"] > weight["B"] else "B"
        feedback = "\n".join(
            f"Criterion {n}: {choices[n]} - {reason}" for n, (_, reason) in found.items()
        )
        graded = OrderVerdict(round=round_, order=order, winner=winner, feedback=feedback)
        usage = add_usage(empty_usage(), message, critic=False)
        return {
            "verdicts": [graded],
            "pairwise_usage": [usage],
            "order_choices": [{"round": round_, "order": order, "choices": choices}],
        }

    return grade


def _criteria_decide(state: PairwiseState) -> dict[str, Any]:
    """The winner by checklist: per criterion, both orders must agree, else a tie.

    The response with the larger weight of agreed criteria wins; equal weight is a tie.
    """
    update: dict[str, Any] = {"usage": {"pairwise": sum_usage(state.get("pairwise_usage") or [])}}
    taken = state.get("order_choices") or []
    if not taken:  # identical responses: nothing to grade
        return {**update, "winner": "tie", "consistent": True, "verdicts": []}
    checklist = checklist_of(state)
    round_ = max(entry["round"] for entry in taken)
    last = {e["order"]: e["choices"] for e in taken if e["round"] == round_}
    results: list[PairwiseCriterionResult] = []
    weight = {"A": 0.0, "B": 0.0, "tie": 0.0}
    for number, criterion in enumerate(checklist.items, 1):
        ab, ba = last["AB"].get(number), last["BA"].get(number)
        winner: PairwiseChoice | None = None
        if ab is not None and ba is not None:
            winner = ab if ab == ba else "tie"
            weight[winner] += criterion.weight_value
        results.append(
            PairwiseCriterionResult(
                round=round_,
                criterion=number,
                text=criterion.text,
                weight=criterion.weight_value,
                pitfall=criterion.pitfall,
                AB=ab,
                BA=ba,
                winner=winner,
            )
        )
    read = any(r["winner"] is not None for r in results)
    overall: Winner | None = None
    if read:
        overall = "tie" if weight["A"] == weight["B"] else "A" if weight["A"] > weight["B"] else "B"
    consistent = all(r["AB"] == r["BA"] and r["AB"] is not None for r in results)
    return {**update, "winner": overall, "consistent": consistent, "criteria_results": results}


def _responses(state: Mapping[str, Any]) -> dict[str, str]:
    return {key: text_field(state, key) for key in ("response_a", "response_b")}


def _identical(state: PairwiseState) -> bool:
    return state["response_a"].strip() == state["response_b"].strip()


def _decide(state: PairwiseState) -> dict[str, Any]:
    verdicts: list[OrderVerdict] = list(state.get("verdicts") or [])
    update: dict[str, Any] = {"usage": {"pairwise": sum_usage(state.get("pairwise_usage") or [])}}
    if not verdicts:  # identical responses: nothing to grade
        return {**update, "winner": "tie", "consistent": True, "verdicts": []}
    last = [v["winner"] for v in verdicts if v["round"] == verdicts[-1]["round"]]
    winner: Winner | None
    if None in last:
        winner, consistent = None, False
    elif last[0] == last[1]:
        winner, consistent = last[0], True
    else:
        winner, consistent = "tie", False
    return {**update, "winner": winner, "consistent": consistent}


def _sends(state: PairwiseState, round_: int) -> list[Send]:
    keys = (
        "instruction",
        "response_a",
        "response_b",
        "reference_answer",
        "rubric",
        "context_models",
    )
    payload = {key: value for key, value in state.items() if key in keys}
    return [Send("grade", {**payload, "order": order, "round": round_}) for order in ORDERS]


def _after_rubric(state: PairwiseState) -> list[Send] | str:
    return "decide" if _identical(state) else _sends(state, 1)


def _reasker(on_disagreement: OnDisagreement) -> Callable[[PairwiseState], list[Send] | str]:
    def after_decide(state: PairwiseState) -> list[Send] | str:
        verdicts = state.get("verdicts") or []
        first_round = bool(verdicts) and verdicts[-1]["round"] == 1
        if on_disagreement == "reask" and first_round and not state.get("consistent"):
            return _sends(state, 2)
        return END

    return after_decide


# --------------------------------------------------------------------------- factory


def create_pairwise_judge(
    model: ModelSpec = None,
    *,
    on_disagreement: OnDisagreement = "tie",
    **options: Unpack[JudgeOptions],
) -> StateGraph[PairwiseState, SPRIContext, PairwiseInput, PairwiseOutput]:
    r"""Create a pairwise judge: one refined rubric, then A vs B graded in both orders.

    The rubric stage is :func:`~spri_graph.create_rubric_graph` (drafted for the
    instruction alone, critiqued and refined while its score is below ``threshold``). The
    judge then compares the responses by that rubric twice, concurrently: A shown first,
    then B shown first. When both orders name the same response it wins; when they
    disagree the verdict is ``"tie"``, or with ``on_disagreement="reask"`` both orders are
    asked once more and the second round decides (disagreeing again: ``"tie"``).
    Identical responses are a tie without any grading call.

    Args:
        model: Model that writes the rubric and grades (a chat model or a model string;
            ``None`` means ``$SPRI_MODEL`` or the embedded local model).
        on_disagreement: ``"tie"`` or ``"reask"`` (once), when the two orders disagree or a
            grading has no readable verdict.
        **options: The shared options (:class:`~spri_graph.judges.base.JudgeOptions`).
            The loop options apply to the rubric stage; ``parse_retries`` also counts the
            re-asks, with a format reminder, of a text grading with no readable verdict.
            ``judge_output="text"`` reads ``<verdict>A</verdict>`` (and the markers
            :func:`parse_verdict` knows), ``"structured"`` asks for a
            :class:`PairwiseVerdict` with ``with_structured_output`` (and has the rubric
            written as structured fields); ``scale`` is the rubric's. ``prompts`` keys:
            ``rubric_draft``, ``rubric_critique``, ``rubric_refine`` and
            ``pairwise_grade`` (see :data:`PAIRWISE_PROMPTS`). With
            ``rubric_style="criteria"`` the rubric is a weighted checklist and each order
            names the better response per criterion (prompt ``criteria_pairwise``, one call
            per order): a criterion goes to the response both orders name (else it is a
            tie), the response with the larger weight of criteria won wins, and
            ``criteria_results`` holds every criterion's choices.

    Returns:
        An uncompiled :class:`~langgraph.graph.StateGraph` with input
        :class:`PairwiseInput` and output :class:`PairwiseOutput`. Per-run settings go
        through ``context=SPRIContext(...)``.

    Raises:
        TypeError: If an option is unknown.
        ValueError: If a setting is out of range or a model string cannot be resolved; at
            run time, before any model call, if ``instruction``, ``response_a`` or
            ``response_b`` is missing or empty.

    Example:
        A judge that always prefers the response shown first gets a tie, not a win:

        >>> from langchain_core.language_models import GenericFakeChatModel
        >>> model = GenericFakeChatModel(messages=iter([
        ...     "Criteria: Is the capital right?\nScore 1: Wrong.\nScore 5: Paris.",
        ...     "Feedback: Checkable. [RESULT] 5",
        ...     "<feedback>The first one is better.</feedback><verdict>A</verdict>",
        ...     "<feedback>The first one is better.</feedback><verdict>A</verdict>",
        ... ]))
        >>> judge = create_pairwise_judge(model).compile()
        >>> out = judge.invoke({"instruction": "Capital of France?",
        ...                     "response_a": "Paris.", "response_b": "Lyon."})
        >>> out["winner"], out["consistent"], [v["winner"] for v in out["verdicts"]]
        ('tie', False, ['A', 'B'])
    """
    if on_disagreement not in ("tie", "reask"):
        raise ValueError(f"on_disagreement must be 'tie' or 'reask', got {on_disagreement!r}")
    settings = JudgeSettings.from_options(
        model, options, caller="create_pairwise_judge", default_prompts=_PROMPTS
    )
    inputs = _prompt_inputs(settings)
    if settings.criteria:
        grade_prompt = settings.prompts["criteria_pairwise"]
        grade = _criteria_grade_step(settings, grade_prompt, inputs)
    else:
        grade_prompt = settings.prompts["pairwise_grade"]
        grade = _grade_step(settings, grade_prompt, inputs)
    builder = spri_state_graph(PairwiseState, PairwiseInput, PairwiseOutput)
    start_with_rubric(
        builder, settings, with_response=False, then="compare", join=True, check=_responses
    )
    builder.add_conditional_edges("compare", _after_rubric, ["grade", "decide"])
    builder.add_node(
        "grade",
        step_node("grade", grade),
        retry_policy=settings.loop.policy,
        cache_policy=prompt_cache_policy(
            settings.cache_policy,
            node="grade",
            model=settings.models.base,
            prompt=grade_prompt,
            prompt_inputs=inputs,
            extra=[settings.judge_output, settings.loop.parse_retries],
        ),
    )
    builder.add_node("decide", _criteria_decide if settings.criteria else _decide)
    builder.add_edge("grade", "decide")
    builder.add_conditional_edges("decide", _reasker(on_disagreement), ["grade", END])
    return builder
