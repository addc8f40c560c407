r"""Grading by a criteria rubric: a verdict and a reason per criterion, then a weighted score.

With ``rubric_style="criteria"`` a judge's rubric is a weighted checklist
(:class:`~spri_graph.readers.criteria.Checklist`). :func:`criteria_grading_step` grades a
response by it, every criterion in one call (``criteria_grading="joint"``, prompt
``criteria_grade``) or one call per criterion (``"each"``, prompt ``criteria_grade_each``),
and maps the weighted result onto the judge's scale
(:func:`~spri_graph.readers.criteria.criteria_score`, whose docs give the formula).

The response is fenced as data, and a verdict line the grader copied out of the response
(``Criterion 1: met`` written into it) is not read, nor is a structured answer copied from
it, so a response cannot set its own verdicts.

:func:`grader_for` is the one-call grader of the judges and the panel, whichever the
rubric style.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable
from langgraph.graph import END, StateGraph

from spri_graph.engine.caching import prompt_cache_policy
from spri_graph.engine.options import OutputMode
from spri_graph.engine.prompts import criteria_grading_format
from spri_graph.engine.steps import (
    ModelCall,
    Step,
    add_usage,
    context_value,
    empty_usage,
    message_text,
    step_node,
)
from spri_graph.judges.base import (
    Grader,
    JudgeSettings,
    answer_with_schema,
    as_rubric,
    finalize_judgment,
    judge_prompt_inputs,
    resolve_judge_output,
    structured_fields,
)
from spri_graph.models import resolve_model_cached
from spri_graph.readers.criteria import (
    Checklist,
    CriterionResult,
    criteria_grading_schema,
    criteria_score,
    criterion_verdict_schema,
    read_criteria_grading,
)
from spri_graph.readers.scores import Judgment

__all__ = [
    "add_grading",
    "checklist_of",
    "criteria_feedback",
    "criteria_grading_step",
    "grader_for",
    "own_fields",
]


def _normal(text: str) -> str:
    return " ".join(text.lower().split())


def own_fields(message: BaseMessage, quoted: Sequence[str]) -> dict[str, Any] | None:
    """A structured answer's fields, unless they are JSON copied from a ``quoted`` text.

    A tool call is the model's own answer; a JSON object written in the reply's text is
    read only when none of the texts under judgment holds it.
    """
    fields = structured_fields(message)
    if fields is None or getattr(message, "tool_calls", None):
        return fields
    text = message_text(message)
    start, end = text.find("{"), text.rfind("}")
    snippet = _normal(text[start : end + 1] if end > start else text[start:])
    return None if any(snippet in _normal(quote) for quote in quoted) else fields


def checklist_of(state: Mapping[str, Any]) -> Checklist:
    """The state's ``rubric`` as a :class:`Checklist` (also read back as a dict).

    Raises:
        ValueError: If the rubric is not a checklist.
    """
    checklist = as_rubric(state.get("rubric"))
    if not isinstance(checklist, Checklist):
        raise ValueError(
            f"rubric: grading by criteria needs a Checklist, got {type(checklist).__name__}"
        )
    return checklist


def criteria_feedback(results: Sequence[Mapping[str, Any]]) -> str:
    """The per-criterion results as feedback, one line each.

    Example:
        >>> print(criteria_feedback([{"criterion": 1, "verdict": "met", "reason": "Paris."}]))
        Criterion 1: met - Paris.
    """
    lines = []
    for result in results:
        verdict = result["verdict"] or "no verdict"
        reason = f" - {result['reason']}" if result["reason"] else ""
        lines.append(f"Criterion {result['criterion']}: {verdict}{reason}")
    return "\n".join(lines)


def criteria_grading_step(
    settings: JudgeSettings,
    model: Runnable[Any, Any],
    *,
    judge_output: OutputMode = "text",
    stage: str = "judgment",
    step: str = "grade",
) -> Callable[[Mapping[str, Any]], Step]:
    """Grading by the state's checklist as a step: verdicts, then the weighted score.

    A per-run ``model`` from the graph's context replaces ``model``. Calls are tagged
    ``spri:<stage>:<step>`` (``<step>_<N>`` per criterion with ``criteria_grading="each"``).

    Args:
        settings: The judge's settings (scale, ``criteria_grading``, prompts).
        model: The grading model.
        judge_output: ``"text"`` or ``"structured"``.
        stage: Stage name, for tracing and ``usage``.
        step: Step name, for tracing.

    Returns:
        A step whose update is ``{"judgment": Judgment, "criteria_results": [...],
        "usage": {stage: StageUsage}}``.
    """
    scale, each = settings.scale, settings.grading.criteria_grading == "each"
    structured = judge_output == "structured"
    inputs = judge_prompt_inputs(settings.reference_free, scale=scale, judge_output=judge_output)
    joint_prompt = settings.prompts["criteria_grade"]
    each_prompt = settings.prompts["criteria_grade_each"]
    single_format = criteria_grading_format(structured=structured, single=True)

    def grade(state: Mapping[str, Any]) -> Step:
        checklist = checklist_of(state)
        name = context_value("model")
        runnable = resolve_model_cached(name, field="model") if name else model
        values = inputs(state)
        quoted = [state[k] for k in ("response",) if isinstance(state.get(k), str)]
        usage = empty_usage()
        results: list[CriterionResult] = []
        replies: list[str] = []
        if each:
            if structured:
                runnable = answer_with_schema(runnable, criterion_verdict_schema())
            for number, criterion in enumerate(checklist.items, 1):
                line = f"Criterion {number} [{criterion.label}, {criterion.kind}]: {criterion.text}"
                messages = each_prompt.format_messages(
                    **{**values, "criterion": line, "criteria_grading_format": single_format}
                )
                message = yield ModelCall.for_stage(
                    runnable, messages, stage=stage, step=f"{step}_{number}"
                )
                usage = add_usage(usage, message, critic=False)
                replies.append(message_text(message))
                results += read_criteria_grading(
                    checklist,
                    text=message_text(message),
                    fields=own_fields(message, quoted) if structured else None,
                    quoted=quoted,
                    only=number,
                )
        else:
            if structured:
                runnable = answer_with_schema(runnable, criteria_grading_schema())
            messages = joint_prompt.format_messages(**values)
            message = yield ModelCall.for_stage(runnable, messages, stage=stage, step=step)
            usage = add_usage(usage, message, critic=False)
            replies.append(message_text(message))
            results = read_criteria_grading(
                checklist,
                text=message_text(message),
                fields=own_fields(message, quoted) if structured else None,
                quoted=quoted,
            )
        judgment = Judgment(
            feedback=criteria_feedback(results),
            score=criteria_score(results, scale),
            raw="\n".join(replies),
            scale=scale,
        )
        return {"judgment": judgment, "criteria_results": results, "usage": {stage: usage}}

    return grade


def grader_for(
    settings: JudgeSettings,
    model: Runnable[Any, Any],
    *,
    node: str = "grade",
    step: str = "grade",
) -> Grader:
    """``model``'s one-call grader by the settings' rubric style.

    Levels: :meth:`Grader.of` (prompt ``judgment_draft``). Criteria:
    :func:`criteria_grading_step`, cached on the model and the prompt it would send (with
    ``criteria_grading="each"``, the joint prompt stands for its calls: it holds every
    criterion and the response).
    """
    if not settings.criteria:
        return Grader.of(settings, model, node=node, step=step)
    output = resolve_judge_output(settings.grading.judge_output, model)
    graded = criteria_grading_step(settings, model, judge_output=output, step=step)
    policy = prompt_cache_policy(
        settings.cache_policy,
        node=node,
        model=model,
        prompt=settings.prompts["criteria_grade"],
        prompt_inputs=judge_prompt_inputs(
            settings.reference_free, scale=settings.scale, judge_output=output
        ),
        extra=[
            output,
            list(settings.scale),
            settings.grading.criteria_grading,
            settings.prompts["criteria_grade_each"].pretty_repr(),
        ],
    )
    return Grader(graded, policy)


def add_grading(builder: StateGraph[Any, Any, Any, Any], settings: JudgeSettings) -> str:
    """Add the one-call ``grade`` node, then ``finalize``, ending at ``END``.

    The judge model grades by the state's rubric (:func:`grader_for`), with the settings'
    retry and cache policies; ``finalize`` writes the output keys. The caller adds the edge
    into the returned node.

    Returns:
        The node's name (``grade``).
    """
    grader = grader_for(settings, settings.models.base)
    builder.add_node(
        "grade",
        step_node("grade", grader.step),
        retry_policy=settings.loop.policy,
        cache_policy=grader.cache_policy,
    )
    builder.add_node("finalize", finalize_judgment)
    builder.add_edge("grade", "finalize")
    builder.add_edge("finalize", END)
    return "grade"
