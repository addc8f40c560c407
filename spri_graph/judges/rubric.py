r"""The rubric stage: an instance-specific rubric, drafted, critiqued and refined.

Instead of one generic rubric for every instruction, a judge writes a rubric for *this*
instruction, on the judge's scale (1-5 by default), has a critic check its usefulness and
refines it, with the same draft -> critique -> refine loop as the SPRI graph
(:mod:`spri_graph.engine.loop`):

``prepare -> rubric_draft -> rubric_critique -(refine)-> rubric_refine -> ... -(done)->``

Every refining judge starts this way (:func:`start_with_rubric`): the SPRI judge
(:mod:`spri_graph.judges.absolute`), the pairwise judge and the panel.
:func:`create_rubric_graph` is the stage alone, to write rubrics once and grade many
responses with :func:`~spri_graph.create_fixed_rubric_judge`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from langchain_core.prompts import ChatPromptTemplate
from langgraph.graph import END, START, StateGraph
from typing_extensions import Unpack

from spri_graph.engine.options import SPRIContext, spri_state_graph
from spri_graph.engine.prompts import JUDGE_PROMPTS
from spri_graph.judges.base import (
    JudgeOptions,
    JudgeSettings,
    JudgeState,
    RubricInput,
    RubricOutput,
    add_judge_loop,
    judge_prepare,
    read_checklist,
    read_rubric,
    render_checklist,
    render_rubric,
)
from spri_graph.models import ModelSpec
from spri_graph.readers.criteria import checklist_schema
from spri_graph.readers.rubric import rubric_schema

__all__ = [
    "RUBRIC_PROMPTS",
    "add_rubric_stage",
    "create_rubric_graph",
    "rubric_stage_graph",
    "start_with_rubric",
]

RUBRIC_PROMPTS: Mapping[str, ChatPromptTemplate] = MappingProxyType(
    {key: JUDGE_PROMPTS[key] for key in ("rubric_draft", "rubric_critique", "rubric_refine")}
)
"""The rubric stage's prompts: a judge starting with it takes overrides of these keys."""


def add_rubric_stage(
    builder: StateGraph[Any, Any, Any, Any], settings: JudgeSettings, *, then: str
) -> str:
    """Add the rubric loop (``rubric_draft``, ``rubric_critique``, ``rubric_refine``).

    The state must hold the :class:`~spri_graph.judges.base.JudgeState` keys
    ``instruction``, ``reference_answer``, ``rubric``, ``rubric_critiques``,
    ``context_models`` and ``usage``. The caller adds the edge into the returned node; the
    loop ends with an edge to ``then``. With ``settings.cache_policy`` set, its nodes are
    cached. With ``rubric_style="criteria"`` the rubric is a weighted checklist, written,
    critiqued and refined with the ``criteria_draft``, ``criteria_critique`` and
    ``criteria_refine`` prompts (the nodes keep their names).

    Returns:
        The name of the stage's first node (``rubric_draft``).
    """
    if settings.criteria:
        return add_judge_loop(
            builder,
            settings,
            "rubric",
            schema=checklist_schema,
            read=read_checklist,
            render=render_checklist,
            then=then,
            prompt_prefix="criteria",
        )
    return add_judge_loop(
        builder,
        settings,
        "rubric",
        schema=rubric_schema,
        read=read_rubric,
        render=render_rubric,
        then=then,
    )


def _nothing(state: Any) -> dict[str, Any]:
    return {}


def start_with_rubric(
    builder: StateGraph[Any, Any, Any, Any],
    settings: JudgeSettings,
    *,
    with_response: bool,
    then: str,
    join: bool = False,
    check: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None,
) -> None:
    """Begin a judge graph with ``prepare``, then the rubric stage, ending at ``then``.

    ``prepare`` validates the input before any model call, after ``check`` (more checks of
    the caller's, returning more validated keys).

    Args:
        builder: The judge graph.
        settings: The judge's settings.
        with_response: Require a ``response`` in the input.
        then: The node (or ``END``) the rubric stage goes to.
        join: Add ``then`` as a node that does nothing, to add the edges out of it (e.g. a
            ``Send`` per grading).
        check: More input checks, run first.
    """
    validate = judge_prepare(settings, with_response=with_response)

    def prepare(state: Any) -> dict[str, Any]:
        extra = check(state) if check is not None else {}
        return {**validate(state), **extra}

    builder.add_node("prepare", prepare)
    builder.add_edge(START, "prepare")
    builder.add_edge("prepare", add_rubric_stage(builder, settings, then=then))
    if join:
        builder.add_node(then, _nothing)


def create_rubric_graph(
    model: ModelSpec = None, **options: Unpack[JudgeOptions]
) -> StateGraph[JudgeState, SPRIContext, RubricInput, RubricOutput]:
    r"""Create the rubric stage alone: a refined rubric for an instruction, on ``scale``.

    Use it to write rubrics once and grade many responses with
    :func:`~spri_graph.create_fixed_rubric_judge`. ``judge_output`` applies to the rubric:
    structured fields or ``Score N:`` lines.

    Args:
        model: Model that writes rubrics (same forms as :func:`~spri_graph.create_judge`).
        **options: The shared options (:class:`~spri_graph.judges.base.JudgeOptions`:
            :class:`~spri_graph.engine.options.LoopOptions` and the grading options);
            ``prompts`` keys: ``rubric_draft``, ``rubric_critique``, ``rubric_refine``.

    Returns:
        An uncompiled :class:`~langgraph.graph.StateGraph` with input ``instruction`` (and
        ``reference_answer``) whose output holds ``rubric``, ``rubric_critiques``, ``usage``.

    Raises:
        TypeError: If an option is unknown.
        ValueError: If an option's value is bad or a model string cannot be resolved.

    Example:
        >>> from langchain_core.language_models import GenericFakeChatModel
        >>> model = GenericFakeChatModel(messages=iter([
        ...     "Criteria: Is it polite?\nScore 1: Rude.\nScore 5: Warm.", "Fine. [RESULT] 4"
        ... ]))
        >>> out = create_rubric_graph(model).compile().invoke({"instruction": "Say hi."})
        >>> out["rubric"].criteria, out["rubric"].score5_description
        ('Is it polite?', 'Warm.')
    """
    settings = JudgeSettings.from_options(model, options, caller="create_rubric_graph")
    return rubric_stage_graph(settings)


def rubric_stage_graph(
    settings: JudgeSettings,
) -> StateGraph[JudgeState, SPRIContext, RubricInput, RubricOutput]:
    """:func:`create_rubric_graph`'s graph from a judge's settings (models resolved once).

    A judge of your own that writes rubrics ahead of grading (as the rewards do) builds it
    from the settings it already holds.
    """
    builder = spri_state_graph(JudgeState, RubricInput, RubricOutput)
    start_with_rubric(builder, settings, with_response=False, then=END)
    return builder
