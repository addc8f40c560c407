"""spri-graph: SPRI (Situated-PRInciples) for LangGraph.

SPRI writes principles for each query, critiques and refines them, then aligns the answer to
them with the same draft -> critique -> refine loop. The loop also builds instance-specific
rubrics for LLM-as-a-judge and synthesizes SFT data.

Example:
    >>> from langchain_core.language_models import GenericFakeChatModel
    >>> from spri_graph import create_spri_graph
    >>> model = GenericFakeChatModel(messages=iter([
    ...     "1. Name the feeling plainly.", "Feedback: Useful. [RESULT] 4",
    ...     "Tell them you are burning out.", "Feedback: Follows them. [RESULT] 5",
    ... ]))  # or "openai:gpt-4o-mini", "local", or None for the default model
    >>> graph = create_spri_graph(model).compile()
    >>> graph.invoke({"query": "How do I tell my team I am burning out?"})["response"]
    'Tell them you are burning out.'

Extension points (new stages, judges and loops) are public here too: the step machinery
(:class:`ModelCall`, :class:`Spawn`, :class:`Join`, :func:`step_node`, :func:`route_node`),
the refine loop (:class:`RefineLoop`, :func:`add_refine_loop`, :class:`LoopSettings`) and
what judges share (:class:`JudgeSettings`, :func:`add_rubric_stage`,
:func:`add_judgment_stage`, :func:`grading_step`). Each subpackage module keeps an explicit
``__all__`` of its own public names.

Renamed names keep working for a while: :data:`DEPRECATED_NAMES` maps each old name to the
module and name that replace it, and reading the old name warns with a
:class:`DeprecationWarning`.
"""

import importlib
import warnings
from typing import TYPE_CHECKING, Any

from spri_graph.agents.middleware import SPRIMiddleware
from spri_graph.alignment.spri import (
    PrinciplesOutput,
    SPRIInput,
    SPRIOutput,
    SPRIState,
    create_principles_graph,
    create_spri_graph,
)
from spri_graph.alignment.streaming import SPRIEvent, aspri_events, spri_events
from spri_graph.engine.caching import judge_cache
from spri_graph.engine.loop import RefineLoop, RefineLoopState, add_refine_loop, create_refine_loop
from spri_graph.engine.options import (
    LoopOptions,
    LoopSettings,
    OutputMode,
    SPRIContext,
    default_retry_policy,
    is_transient_error,
)
from spri_graph.engine.prompts import JUDGE_PROMPTS, SPRI_PROMPTS
from spri_graph.engine.steps import (
    Join,
    ModelCall,
    Spawn,
    StageUsage,
    Step,
    StepNode,
    UsageCallback,
    message_text,
    route_node,
    step_node,
    structured_output,
)
from spri_graph.evaluation.evaluators import (
    create_async_pairwise_evaluator,
    create_async_spri_evaluator,
    create_pairwise_evaluator,
    create_spri_evaluator,
)
from spri_graph.evaluation.metrics import (
    Agreement,
    AgreementTable,
    agreement,
    agreement_by,
    panel_agreement,
)
from spri_graph.evaluation.plots import plot_agreement
from spri_graph.judges.absolute import add_judgment_stage, create_judge
from spri_graph.judges.base import (
    JudgeInput,
    JudgeOutput,
    JudgeSettings,
    JudgeState,
    grading_step,
)
from spri_graph.judges.baselines import create_fixed_rubric_judge, create_vanilla_judge
from spri_graph.judges.pairwise import PairwiseInput, PairwiseOutput, create_pairwise_judge
from spri_graph.judges.panel import PanelOutput, create_judge_panel
from spri_graph.judges.rubric import add_rubric_stage, create_rubric_graph
from spri_graph.models import resolve_model
from spri_graph.readers.rubric import GENERIC_RUBRIC, Rubric, parse_rubric
from spri_graph.readers.scores import (
    Critique,
    Judgment,
    ScoredCritique,
    parse_critique,
    parse_judgment,
)
from spri_graph.readers.verdicts import Verdict, parse_verdict
from spri_graph.rewards import create_async_spri_reward, create_spri_reward
from spri_graph.synthesis import (
    InputError,
    SynthesisInterrupted,
    SynthesisReport,
    asynthesize,
    synthesize,
)

__all__ = [
    "GENERIC_RUBRIC",
    "JUDGE_PROMPTS",
    "SPRI_PROMPTS",
    "Agreement",
    "AgreementTable",
    "Critique",
    "InputError",
    "Join",
    "JudgeInput",
    "JudgeOutput",
    "JudgeSettings",
    "JudgeState",
    "Judgment",
    "LoopOptions",
    "LoopSettings",
    "ModelCall",
    "OutputMode",
    "PairwiseInput",
    "PairwiseOutput",
    "PanelOutput",
    "PrinciplesOutput",
    "RefineLoop",
    "RefineLoopState",
    "Rubric",
    "SPRIContext",
    "SPRIEvent",
    "SPRIInput",
    "SPRIMiddleware",
    "SPRIOutput",
    "SPRIState",
    "ScoredCritique",
    "Spawn",
    "StageUsage",
    "Step",
    "StepNode",
    "SynthesisInterrupted",
    "SynthesisReport",
    "UsageCallback",
    "Verdict",
    "add_judgment_stage",
    "add_refine_loop",
    "add_rubric_stage",
    "agreement",
    "agreement_by",
    "aspri_events",
    "asynthesize",
    "create_async_pairwise_evaluator",
    "create_async_spri_evaluator",
    "create_async_spri_reward",
    "create_fixed_rubric_judge",
    "create_judge",
    "create_judge_panel",
    "create_pairwise_evaluator",
    "create_pairwise_judge",
    "create_principles_graph",
    "create_refine_loop",
    "create_rubric_graph",
    "create_spri_evaluator",
    "create_spri_graph",
    "create_spri_reward",
    "create_vanilla_judge",
    "default_retry_policy",
    "grading_step",
    "is_transient_error",
    "judge_cache",
    "message_text",
    "panel_agreement",
    "parse_critique",
    "parse_judgment",
    "parse_rubric",
    "parse_verdict",
    "plot_agreement",
    "resolve_model",
    "route_node",
    "spri_events",
    "step_node",
    "structured_output",
    "synthesize",
]

__version__ = "0.1.0"

DEPRECATED_NAMES: dict[str, tuple[str, str]] = {
    # "old_name": ("spri_graph.module", "new_name"),  -- one row per line
    "create_judge_graph": ("spri_graph.judges.absolute", "create_judge"),
    "create_pairwise_judge_graph": ("spri_graph.judges.pairwise", "create_pairwise_judge"),
    "UsageCounter": ("spri_graph.engine.steps", "UsageCallback"),
}
"""Renamed public names: old name -> (the module defining the new one, the new name)."""


if not TYPE_CHECKING:  # type checkers keep reporting unknown names of the package

    def __getattr__(name: str) -> Any:
        """Resolve a renamed name from :data:`DEPRECATED_NAMES`, warning it is deprecated."""
        if name not in DEPRECATED_NAMES:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        module, new_name = DEPRECATED_NAMES[name]
        home = "spri_graph" if new_name in __all__ else module
        warnings.warn(
            f"spri_graph.{name} is deprecated; use {home}.{new_name}",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(module), new_name)
