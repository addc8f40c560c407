"""The live layout of ``spri align`` and ``spri judge``: each refine-loop stage as it happens.

A graph's ``"updates"`` stream names the node that ran (``<stage>_draft``,
``<stage>_critique``, ``<stage>_refine``); :class:`StageView` writes a section per draft and
refinement, and a line per critique with its 1-5 score and what the loop does next.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

__all__ = ["Stage", "StageView", "model_label"]


@dataclass(frozen=True)
class Stage:
    """One refine-loop stage of a graph, as the view shows it.

    Attributes:
        title: The stage's heading (``"Principles"``).
        critiques: The state key of its critiques (``"principle_critiques"``).
        render: Its candidate (the update's value under the stage's name) as text.
    """

    title: str
    critiques: str
    render: Callable[[Any], str] = str


def model_label(model: Any, critic: Any = None) -> str:
    """A chat model's name for people (its model name, else its class name), and its critic's.

    Example:
        >>> from langchain_core.language_models import GenericFakeChatModel
        >>> model_label(GenericFakeChatModel(messages=iter([])))
        'GenericFakeChatModel'
    """
    name = (
        getattr(model, "weights_label", None)
        or getattr(model, "model_name", None)
        or getattr(model, "model", None)
    )
    label = str(name) if isinstance(name, str) and name else type(model).__name__
    return label if critic is None else f"{label} (critic: {model_label(critic)})"


class StageView:
    """Writes each stage of a run to ``stream`` as its nodes finish.

    Args:
        stream: Where the layout goes (flushed after every line).
        stages: The graph's stages by name, the prefix of their nodes' names.
        threshold: The score that accepts a candidate.
        max_iterations: Most critiques per stage.
    """

    def __init__(
        self,
        stream: TextIO,
        stages: Mapping[str, Stage],
        *,
        threshold: int,
        max_iterations: int,
    ) -> None:
        self.stream = stream
        self.stages = stages
        self.threshold = threshold
        self.max_iterations = max_iterations

    @classmethod
    def of(cls, args: Any, stages: Mapping[str, Stage], stream: TextIO) -> StageView:
        """A view of a run with the loop flags in ``args`` (those not given: the defaults)."""
        from spri_graph.engine.options import LoopSettings

        defaults = LoopSettings()
        threshold = getattr(args, "threshold", None)
        max_iterations = getattr(args, "max_iterations", None)
        return cls(
            stream,
            stages,
            threshold=defaults.threshold if threshold is None else threshold,
            max_iterations=defaults.max_iterations if max_iterations is None else max_iterations,
        )

    def write(self, text: str = "") -> None:
        """Write one line."""
        self.stream.write(text + "\n")
        self.stream.flush()

    def block(self, text: str | None, indent: str = "  ") -> None:
        """Write ``text`` indented (``(empty)`` when there is none)."""
        lines = (text or "").strip().splitlines() or ["(empty)"]
        self.write("\n".join(indent + line if line.strip() else "" for line in lines))

    def update(self, node: str, update: Mapping[str, Any]) -> None:
        """Show what ``node`` just wrote, if it is a draft, refinement or critique."""
        name, _, step = node.rpartition("_")
        stage = self.stages.get(name)
        if stage is None:
            return
        if step in ("draft", "refine") and name in update:
            self.write(f"\n== {stage.title}: {'draft' if step == 'draft' else 'refinement'} ==")
            self.block(stage.render(update[name]))
        elif step == "critique" and (critiques := update.get(stage.critiques)):
            critique = critiques[-1]
            self.write(f"-- critique {len(critiques)}: {self.verdict(critique, len(critiques))}")
            self.block(critique.feedback, indent="   ")

    def verdict(self, critique: Any, count: int) -> str:
        """What a critique's score means for the loop."""
        if critique.score is None:
            return "no readable score; keeping this version"
        score = f"score {critique.score}/5"
        if critique.score >= self.threshold:
            return f"{score}, accepted"
        if count >= self.max_iterations:
            return f"{score}, below {self.threshold}; no critiques left, keeping this version"
        return f"{score}, below {self.threshold}; refining"

    def usage(self, usage: Mapping[str, Any] | None, seconds: float) -> None:
        """Write one line: each stage's model and critic calls and tokens, and the time."""
        parts = [
            f"{stage}: {counts['model_calls']} model + {counts['critic_calls']} critic calls, "
            f"{counts['total_tokens']} tokens"
            for stage, counts in (usage or {}).items()
        ]
        self.write("; ".join([*parts, f"{seconds:.1f} s"]))
