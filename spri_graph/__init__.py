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
"""

import warnings

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
from spri_graph.engine.caching import UsageCounter, judge_cache
from spri_graph.engine.loop import RefineLoop, RefineLoopState, add_refine_loop, create_refine_loop
from spri_graph.engine.options import SPRIContext, default_retry_policy, is_transient_error
from spri_graph.engine.prompts import JUDGE_PROMPTS, SPRI_PROMPTS
from spri_graph.engine.steps import StageUsage
from spri_graph.evaluation.evaluators import (
    create_async_pairwise_evaluator,
    create_async_spri_evaluator,
    create_pairwise_evaluator,
    create_spri_evaluator,
)
from spri_graph.evaluation.metrics import Agreement, AgreementTable, agreement, agreement_by
from spri_graph.evaluation.plots import plot_agreement
from spri_graph.judges.absolute import create_judge
from spri_graph.judges.base import JudgeInput, JudgeOutput
from spri_graph.judges.baselines import create_fixed_rubric_judge, create_vanilla_judge
from spri_graph.judges.pairwise import PairwiseInput, PairwiseOutput, create_pairwise_judge
from spri_graph.judges.panel import PanelOutput, create_judge_panel, panel_agreement
from spri_graph.judges.rubric import create_rubric_graph
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
    "JudgeInput",
    "JudgeOutput",
    "Judgment",
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
    "StageUsage",
    "SynthesisInterrupted",
    "SynthesisReport",
    "UsageCounter",
    "Verdict",
    "add_refine_loop",
    "agreement",
    "agreement_by",
    "aspri_events",
    "asynthesize",
    "create_async_pairwise_evaluator",
    "create_async_spri_evaluator",
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
    "create_vanilla_judge",
    "default_retry_policy",
    "is_transient_error",
    "judge_cache",
    "panel_agreement",
    "parse_critique",
    "parse_judgment",
    "parse_rubric",
    "parse_verdict",
    "plot_agreement",
    "resolve_model",
    "spri_events",
    "synthesize",
]

__version__ = "0.1.0"

_RENAMED = {
    "create_judge_graph": "create_judge",
    "create_pairwise_judge_graph": "create_pairwise_judge",
}
"""Old public names still importable for one release (with a ``DeprecationWarning``)."""


def __getattr__(name: str) -> object:
    """An old public name: the object under its new name, with a ``DeprecationWarning``."""
    new = _RENAMED.get(name)
    if new is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"spri_graph.{name} is deprecated, use spri_graph.{new}", DeprecationWarning, stacklevel=2
    )
    return globals()[new]
