"""Throughput of spri_graph.synthesize against a model with a fixed latency per call.

The chat model sleeps ``--latency`` seconds per call (no network) and is scripted so each
record takes a known number of calls: records whose number is a multiple of 3 get their
first principles rejected (score 3) and refined once, so they take 6 calls; the others take 4.

Figures printed:

* records/s and total model calls of ``synthesize`` at ``--concurrency``;
* efficiency = ideal time / measured time, where the ideal is the sum over records of
  (model calls x latency) divided by the concurrency: 1.0 means the model endpoint was kept
  busy with ``concurrency`` calls at every moment;
* peak memory: the RSS high-water mark of this process, its growth over the RSS before the
  run, and (with ``--workers`` > 1) the largest high-water mark of a worker process;
* the same records run one call at a time, as the paper's scripts did (the first
  ``--baseline-records`` of them, 0 to skip), and the speedup of ``synthesize`` over that.

Example:
    python benchmarks/synthesis_throughput.py --records 2000 --latency 0.05 --concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import re
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from spri_graph import create_spri_graph
from spri_graph.synthesis import synthesize

_RECORD = re.compile(r"record (\d+)\b")


def calls_for(number: int) -> int:
    """Model calls the scripted model makes for record ``number``."""
    return 6 if number % 3 == 0 else 4


class LatencyChatModel(BaseChatModel):
    """Answers after sleeping ``latency`` seconds; replies depend only on the prompt."""

    latency: float = 0.05

    @property
    def _llm_type(self) -> str:
        return "latency"

    def _reply(self, messages: list[BaseMessage]) -> ChatResult:
        prompt = str(messages[-1].content)
        number = int(_RECORD.search(" ".join(str(m.content) for m in messages)).group(1))  # type: ignore[union-attr]
        # The response prompts carry the principles in the system message, a refinement
        # the earlier text and its feedback.
        system = str(messages[0].content)
        responding = "Principles for the answer:" in system
        refining = "Feedback on th" in system
        if "[RESULT]" in prompt:  # a critique: reject the first principles of every 3rd record
            first_draft = f"Principles v1 for record {number}." in prompt
            score = 3 if first_draft and number % 3 == 0 else 5
            text = f"Feedback: checked record {number}. [RESULT] {score}"
        elif not responding and refining:
            text = f"Principles v2 for record {number}."
        elif not responding:
            text = f"Principles v1 for record {number}."
        else:
            text = f"Answer to record {number}."
        # An endpoint reports token counts; estimating them (4 characters a token) keeps
        # the stand-in for it from spending the client's CPU on counting.
        tokens_in = sum(len(str(m.content)) for m in messages) // 4
        tokens_out = len(text) // 4
        message = AIMessage(
            content=text,
            usage_metadata={
                "input_tokens": tokens_in,
                "output_tokens": tokens_out,
                "total_tokens": tokens_in + tokens_out,
            },
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _generate(self, messages: list[BaseMessage], stop: Any = None, **kwargs: Any) -> ChatResult:
        time.sleep(self.latency)
        return self._reply(messages)

    async def _agenerate(
        self, messages: list[BaseMessage], stop: Any = None, **kwargs: Any
    ) -> ChatResult:
        await asyncio.sleep(self.latency)
        return self._reply(messages)


def write_input(path: Path, records: int) -> int:
    """Write ``records`` instructions to ``path``; return the model calls they will take."""
    calls = 0
    with path.open("w") as fh:
        for number in range(1, records + 1):
            text = f"How do I handle situation {number}? (record {number})"
            fh.write(json.dumps({"id": f"r{number}", "instruction": text}) + "\n")
            calls += calls_for(number)
    return calls


def rss_mib(who: int = resource.RUSAGE_SELF) -> float:
    """RSS high-water mark in MiB of this process, or of its largest finished child."""
    peak = resource.getrusage(who).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def sequential(model: LatencyChatModel, folder: Path, records: int) -> dict[str, float]:
    """Run the first ``records`` records one model call at a time, as the paper's scripts did."""
    graph = create_spri_graph(model).compile()
    started = time.perf_counter()
    with (folder / "input.jsonl").open() as fh:
        for line in itertools.islice(fh, records):
            graph.invoke({"query": json.loads(line)["instruction"]})
    seconds = time.perf_counter() - started
    return {"records": records, "seconds": seconds, "records_per_s": records / seconds}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=2000, help="records to synthesize")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per model call")
    parser.add_argument("--concurrency", type=int, default=64, help="records in flight")
    parser.add_argument(
        "--workers",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="worker processes (default: the CPU count, at most 4)",
    )
    parser.add_argument(
        "--baseline-records",
        type=int,
        default=50,
        help="records to time one call at a time (default 50; 0 skips the baseline)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    model = LatencyChatModel(latency=args.latency)

    with tempfile.TemporaryDirectory(prefix="spri-bench-") as tmp:
        folder = Path(tmp)
        expected_calls = write_input(folder / "input.jsonl", args.records)
        rss_before = rss_mib()
        report = synthesize(
            folder / "input.jsonl",
            model=model,
            output=folder / "output.jsonl",
            concurrency=args.concurrency,
            workers=args.workers,
        )
        rss_peak = rss_mib()
        worker_rss_peak = rss_mib(resource.RUSAGE_CHILDREN) if args.workers > 1 else None
        with (folder / "output.jsonl").open() as fh:
            lines = sum(1 for _ in fh)
        baseline = (
            sequential(model, folder, min(args.baseline_records, args.records))
            if args.baseline_records > 0
            else None
        )

    if report.calls != expected_calls or lines != args.records or report.failed:
        raise SystemExit(
            f"benchmark run is wrong: {report.calls} calls (expected {expected_calls}), "
            f"{lines} output lines (expected {args.records}), {report.failed} failed"
        )
    ideal = expected_calls * args.latency / args.concurrency
    rate = args.records / report.wall_time
    figures: dict[str, Any] = {
        "python": platform.python_version(),
        "records": args.records,
        "latency_s": args.latency,
        "concurrency": args.concurrency,
        "workers": args.workers,
        "model_calls": report.calls,
        "wall_time_s": round(report.wall_time, 3),
        "ideal_time_s": round(ideal, 3),
        "efficiency": round(ideal / report.wall_time, 4),
        "records_per_s": round(rate, 1),
        "peak_rss_mib": round(rss_peak, 1),
        "rss_growth_mib": round(rss_peak - rss_before, 1),
    }
    if worker_rss_peak is not None:
        figures["worker_peak_rss_mib"] = round(worker_rss_peak, 1)
    if baseline is not None:
        figures["sequential_records"] = baseline["records"]
        figures["sequential_records_per_s"] = round(baseline["records_per_s"], 2)
        figures["speedup"] = round(rate / baseline["records_per_s"], 1)

    if args.json:
        print(json.dumps(figures))
    else:
        width = max(map(len, figures))
        for key, value in figures.items():
            print(f"{key:<{width}}  {value}")
    return figures


if __name__ == "__main__":
    main()
