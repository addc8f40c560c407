"""The comparison sets: what :func:`~spri_graph.synthesize` runs instead of SPRI (``method=``).

Each writes the same output format as SPRI, so the sets can be trained on and compared
side by side:

* ``"spri"``: situated principles, then a response aligned to them (the SPRI graph);
* ``"direct"``: one response call, no principles; a critic grades it once, by a generic
  standard, so its line has the same critiques as the others;
* ``"self-refine"``: the response loop without principles, the critic grading by a generic
  standard (:data:`~spri_graph.engine.prompts.COMPARISON_PROMPTS`);
* ``"seed-principles"``: the response loop guided by the seed examples' principles, given
  as fixed principles (no principle stage).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Annotated, Any, Literal, get_args

from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from spri_graph.alignment.spri import SPRISettings, create_batch_graph
from spri_graph.engine.loop import RefineLoop, add_refine_loop
from spri_graph.engine.prompts import COMPARISON_PROMPTS, SPRI_PROMPTS, resolve_prompts
from spri_graph.engine.steps import StageUsage, merge_usage, message_text
from spri_graph.models import ModelSpec, resolve_model_cached
from spri_graph.readers.scores import Critique, clean_text

__all__ = ["METHODS", "Method", "MethodState", "check_method", "create_method_graph"]

Method = Literal["spri", "direct", "self-refine", "seed-principles"]
"""How the responses of a synthesis run are made."""

METHODS: tuple[str, ...] = get_args(Method)
"""Every :data:`Method`, SPRI first."""


class MethodState(TypedDict, total=False):
    """State of a comparison graph: the query in, the response and its loop out."""

    query: str
    principles: str
    response: str
    response_critiques: list[Critique]
    response_drafts: list[str]
    usage: Annotated[dict[str, StageUsage], merge_usage]


def check_method(method: Any, settings: SPRISettings) -> Method:
    """``method`` checked against the settings, before any model call.

    Raises:
        ValueError: Naming ``method`` if it is unknown, or ``seed_examples`` if
            ``"seed-principles"`` has none with principles.

    Example:
        >>> check_method("self-refine", SPRISettings())
        'self-refine'
    """
    if method not in METHODS:
        expected = ", ".join(repr(m) for m in METHODS)
        raise ValueError(f"method must be one of {expected}; got {method!r}")
    if method == "seed-principles" and not seed_principles(settings):
        raise ValueError(
            "seed_examples: method 'seed-principles' needs seed examples with non-empty "
            "'principles'"
        )
    return method  # type: ignore[no-any-return]


def seed_principles(settings: SPRISettings) -> str:
    """The seed examples' principles, one block each, as the fixed principles ("" if none)."""
    blocks = [
        str(example.get("principles", "")).strip()
        for example in settings.seed_examples or ()
        if isinstance(example, Mapping)
    ]
    return "\n\n".join(block for block in blocks if block)


def create_method_graph(
    model: ModelSpec, method: Method, settings: SPRISettings
) -> StateGraph[Any, Any, Any, Any]:
    """The graph that makes one record's response by ``method``; input ``{"query": str}``.

    ``"spri"`` is :func:`~spri_graph.alignment.spri.create_batch_graph`; the others are one
    response loop named ``response`` (its usage is ``usage["response"]``), whose output has
    ``principles`` (the fixed ones, or ``""``), ``response``, ``response_critiques`` and
    ``response_drafts``, as SPRI's does. The ``prompts`` option overrides the prompts of
    the method: SPRI's response prompts for ``"seed-principles"``,
    :data:`~spri_graph.engine.prompts.COMPARISON_PROMPTS` for ``"direct"`` and
    ``"self-refine"`` (an unknown key is a ``ValueError``).
    """
    if method == "spri":
        return create_batch_graph(model, **settings.options())
    loop_settings = settings.loop
    models = loop_settings.resolve(model)
    fixed = seed_principles(settings) if method == "seed-principles" else ""
    if method == "seed-principles":
        prompts, prefix = resolve_prompts(SPRI_PROMPTS, loop_settings.prompts), "response"
    else:
        prompts, prefix = resolve_prompts(COMPARISON_PROMPTS, loop_settings.prompts), "plain"
    if method == "direct":
        loop_settings = replace(loop_settings, max_iterations=1)

    def inputs(state: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "history_section": "",
            "goal_section": "",
            "query": state["query"],
            "principles": fixed,
        }

    def principles(state: MethodState) -> dict[str, Any]:
        return {"principles": fixed}

    loop = RefineLoop.for_stage(
        "response",
        models,
        prompts,
        loop_settings,
        prefix=prefix,
        candidate_key="response",
        critiques_key="response_critiques",
        prompt_inputs=inputs,
        parse_candidate=lambda message: clean_text(message_text(message)),
        resolve_model=resolve_model_cached,
        drafts_key="response_drafts",
    )
    builder = StateGraph(MethodState)
    builder.add_node("principles", principles)
    builder.add_edge(START, "principles")
    first = add_refine_loop(builder, loop, then=END, retry_policy=loop_settings.policy)
    builder.add_edge("principles", first)
    return builder
