"""What a synthesis run reports: :class:`SynthesisReport` and :class:`SynthesisInterrupted`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["BatchReport", "SynthesisInterrupted", "SynthesisReport"]


@dataclass
class BatchReport:
    """What the batches of a batch run did and cost (:mod:`spri_graph.synthesis.batch`).

    It covers every batch of the output's state file, those of earlier runs that were
    stopped and resumed included.

    Attributes:
        rounds: Rounds of model calls sent (one call per record in flight each).
        batch_ids: The provider's ids of the batches, in order.
        requests: Requests sent in the batches (a failed or expired one counts again when
            it is sent again).
        answered: Requests the batches answered.
        input_tokens: Prompt tokens of the answered requests, as the provider reported them.
        output_tokens: Completion tokens of the answered requests.
        price_in: Interactive price per million input tokens.
        price_out: Interactive price per million output tokens.
        discount: Batch price as a fraction of the interactive one.
    """

    rounds: int = 0
    batch_ids: list[str] = field(default_factory=list)
    requests: int = 0
    answered: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    price_in: float = 0.0
    price_out: float = 0.0
    discount: float = 0.5

    @property
    def interactive_cost(self) -> float:
        """What the answered requests would cost sent interactively.

        Example:
            >>> BatchReport(input_tokens=2_000_000, output_tokens=1_000_000,
            ...             price_in=0.15, price_out=0.6).interactive_cost
            0.9
        """
        return (self.input_tokens * self.price_in + self.output_tokens * self.price_out) / 1e6

    @property
    def cost(self) -> float:
        """What they cost at batch prices: the interactive cost times ``discount``."""
        return self.interactive_cost * self.discount

    def summary(self) -> str:
        """Two lines: rounds, batches and requests; tokens and the cost both ways."""
        return (
            f"batch: {self.rounds} rounds, {len(self.batch_ids)} batches, {self.requests} "
            f"requests ({self.answered} answered)\n"
            f"batch tokens: {self.input_tokens} in, {self.output_tokens} out; cost "
            f"{self.cost:.4f} at batch prices, {self.interactive_cost:.4f} interactive"
        )


@dataclass
class SynthesisReport:
    """What a synthesis run did; updated live while it runs.

    Attributes:
        output: The output JSONL file.
        errors_path: The errors JSONL file (written only when a record fails).
        records: Records in the input.
        skipped: Records already in the output when the run started (resume).
        completed: Records written to the output by this run.
        failed: Records written to the errors file by this run.
        repaired: Torn lines cut off the end of the output before resuming (0 or 1).
        model_calls: Base-model calls (drafts and refinements) of completed records.
        critic_calls: Critic calls of completed records.
        input_tokens: Prompt tokens of completed records, as the models reported them.
        output_tokens: Completion tokens of completed records.
        total_tokens: All tokens of completed records.
        wall_time: Seconds from the first record started to the last finished.
        interrupted: Whether the run was stopped (Ctrl-C) before it finished.
        batch: What the batches cost, for a run with ``batch=True``; ``None`` otherwise.
        method: How the responses were made (``"spri"`` or a comparison set).
        pairs_path: The preference-pairs file, with the ``"dpo"`` format; else ``None``.
        pairs: Preference pairs written by this run.
        first_passed: Records written whose first draft was not refined (it passed, or its
            score was unreadable): no pair.
        not_improved: Records written whose refinements scored no higher: no pair.
        passed: Records written whose final response critique reached the threshold.
        target: The run's target (records the output should hold), or ``None``.
        target_reached: Whether the run stopped because the target was reached.
    """

    output: Path
    errors_path: Path
    records: int = 0
    skipped: int = 0
    completed: int = 0
    failed: int = 0
    repaired: int = 0
    model_calls: int = 0
    critic_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    wall_time: float = 0.0
    interrupted: bool = False
    batch: BatchReport | None = None
    method: str = "spri"
    pairs_path: Path | None = None
    pairs: int = 0
    first_passed: int = 0
    not_improved: int = 0
    passed: int = 0
    target: int | None = None
    target_reached: bool = False
    _started: float | None = field(default=None, repr=False, compare=False)

    @property
    def todo(self) -> int:
        """Records this run set out to process (not already in the output)."""
        return self.records - self.skipped

    @property
    def remaining(self) -> int:
        """Records neither written nor failed yet (re-run them with ``resume=True``)."""
        return self.todo - self.completed - self.failed

    @property
    def calls(self) -> int:
        """All model calls of completed records (base and critic)."""
        return self.model_calls + self.critic_calls

    @property
    def rate(self) -> float:
        """Records finished (written or failed) per second."""
        elapsed = self.elapsed
        return (self.completed + self.failed) / elapsed if elapsed > 0 else 0.0

    @property
    def elapsed(self) -> float:
        """Seconds since the run started (the final wall time once it ended)."""
        if self._started is None:
            return self.wall_time
        return time.perf_counter() - self._started

    def start_clock(self) -> None:
        """Mark the start of the run: :attr:`elapsed` and :attr:`rate` count from now."""
        self._started = time.perf_counter()

    def stop_clock(self) -> None:
        """Mark the end of the run: set :attr:`wall_time` (a no-op if it never started)."""
        if self._started is not None:
            self.wall_time = time.perf_counter() - self._started
            self._started = None

    def _pace(self) -> str:
        # A slow run (a local model) reads better as seconds per record than as 0.0/s.
        if 0 < self.rate < 1:
            return f"{1 / self.rate:.1f} s/record"
        return f"{self.rate:.1f} records/s"

    def summary(self) -> str:
        """A few lines for people: records, failures, model calls, tokens, wall time."""
        status = "interrupted" if self.interrupted else "done"
        lines = [
            f"synthesis {status}: {self.completed} written, {self.failed} failed, "
            f"{self.skipped} already done, {self.remaining} not run "
            f"({self.records} records in the input)",
            f"model calls: {self.calls} ({self.model_calls} base, {self.critic_calls} critic); "
            f"tokens: {self.total_tokens} ({self.input_tokens} in, {self.output_tokens} out)",
            f"wall time: {self.wall_time:.1f}s ({self._pace()})",
            f"output: {self.output}",
        ]
        if self.method != "spri":
            lines.append(f"method: {self.method}")
        if self.pairs_path is not None:
            lines.append(
                f"preference pairs: {self.pairs} ({self.first_passed} records passed at the "
                f"first draft, {self.not_improved} not improved by refining: no pair); "
                f"{self.pairs_path}"
            )
        if self.target is not None:
            reached = "reached" if self.target_reached else "not reached"
            lines.append(f"target: {self.target} records ({reached})")
        if self.batch is not None:
            lines.append(self.batch.summary())
        if self.repaired:
            lines.append("a torn last line of the output was cut off; its record ran again")
        if self.failed:
            lines.append(f"errors: {self.errors_path}")
        return "\n".join(lines)


class SynthesisInterrupted(KeyboardInterrupt):
    """Raised by :func:`~spri_graph.synthesize` on Ctrl-C, after every finished line was kept.

    Attributes:
        report: The report of the interrupted run.
    """

    def __init__(self, report: SynthesisReport) -> None:
        super().__init__("synthesis interrupted")
        self.report = report
