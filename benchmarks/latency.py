"""End-to-end latency of the SPRI graph: sequential, speculative, and a cached second pass.

The models replay the shared SPRI traces (``../shared/reference/spri_traces``), so the mix
of refinements is the paper's. Each reply arrives after a latency proportional to its
length, like a hosted model's: ``BASE + tokens / TOKENS_PER_SECOND`` seconds (words stand
in for tokens), multiplied by ``--scale`` so the run is quick. Latencies are reported back
at full scale (divided by ``--scale``).

    python benchmarks/latency.py            # all 90 traces, scale 0.02, both mixes
    python benchmarks/latency.py --first-pass-rate 0.74 --json

The shared sample's first principles pass the critic in 55 of its 90 traces (61%); in the
paper's full set of 360 traces they pass in 267 (74%). By default both mixes are measured:
the sample as it is, then the sample's traces weighted to the paper's mix (accepted and
refined traces each keep their own figures; only their weights change).
``--first-pass-rate R`` measures one mix, weighted so that a share R passes. With latency
proportional to reply length, the most that overlapping the first principle critique with
the response draft can save is about 13% on the paper's mix and about 9% on the sample's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from langchain_core.messages import BaseMessage  # noqa: E402
from langgraph.cache.memory import InMemoryCache  # noqa: E402
from langgraph.types import CachePolicy  # noqa: E402

from spri_graph import create_spri_graph  # noqa: E402
from tests.fakes import ScriptedChatModel  # noqa: E402
from tests.test_traces import SEEDS  # noqa: E402
from tests.trace_models import prompt_keyed_models  # noqa: E402

BASE = 0.4
TOKENS_PER_SECOND = 60.0


def _slow(model: ScriptedChatModel, scale: float, calls: list[int]) -> ScriptedChatModel:
    reply: Callable[[Sequence[BaseMessage]], Any] = model.replies[0]

    def answer(messages: Sequence[BaseMessage]) -> Any:
        text = reply(messages)
        calls.append(1)
        time.sleep(scale * (BASE + len(str(text).split()) / TOKENS_PER_SECOND))
        return text

    return ScriptedChatModel([answer], cycle=True, name_=model.name_)


def _traces(folder: Path, limit: int | None) -> list[tuple[str, dict]]:
    traces = [
        (path.name, json.loads(line))
        for path in sorted(folder.glob("*.jsonl"))
        for line in path.open()
    ]
    return traces[:limit] if limit else traces


def _weighted(values: list[float], weights: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` weighted by ``weights``."""
    pairs = sorted(zip(values, weights, strict=True))
    total, running = sum(weights), 0.0
    for value, weight in pairs:
        running += weight
        if running >= q * total:
            return value
    return pairs[-1][0]


def _weights(traces: list[tuple[str, dict]], first_pass_rate: float | None) -> list[float]:
    accepted = [t["iteration_principle"] == 1 for _, t in traces]
    if first_pass_rate is None or all(accepted) or not any(accepted):
        return [1.0] * len(traces)
    n_ok = sum(accepted)
    n_refined = len(traces) - n_ok
    return [first_pass_rate / n_ok if ok else (1 - first_pass_rate) / n_refined for ok in accepted]


def _run(
    traces: list[tuple[str, dict]],
    scale: float,
    weights: list[float],
    *,
    speculative: bool,
    cached: bool,
) -> dict[str, float]:
    seconds: list[float] = []
    calls_per_query: list[float] = []
    for name, trace in traces:
        calls: list[int] = []
        base, critic = prompt_keyed_models(trace)
        graph = create_spri_graph(
            _slow(base, scale, calls),
            critic_model=_slow(critic, scale, calls),
            parse_retries=0,
            seed_examples=SEEDS if name.startswith("seed-default") else None,
            speculative=speculative,
            cache_policy=CachePolicy() if cached else None,
        ).compile(cache=InMemoryCache() if cached else None)
        query = {"query": trace["Reddit Post"], "goal": trace["appraisal_dimension_aim"]}
        if cached:  # the first pass fills the cache; only the second is measured
            graph.invoke(query)
            calls.clear()
        start = time.perf_counter()
        graph.invoke(query)
        seconds.append((time.perf_counter() - start) / scale)
        calls_per_query.append(len(calls))
    return {
        "mean_s": statistics.fmean(seconds, weights),
        "p50_s": _weighted(seconds, weights, 0.5),
        "p95_s": _weighted(seconds, weights, 0.95),
        "calls_per_query": statistics.fmean(calls_per_query, weights),
    }


PAPER_FIRST_PASS_RATE = 267 / 360
"""Share of the paper's 360 traces whose first principles pass the critic."""


def measure(
    traces: list[tuple[str, dict]], scale: float, first_pass_rate: float | None
) -> dict[str, Any]:
    """The three runs on one mix of the traces, and what speculation saves there."""
    weights = _weights(traces, first_pass_rate)
    results = {
        "sequential": _run(traces, scale, weights, speculative=False, cached=False),
        "speculative": _run(traces, scale, weights, speculative=True, cached=False),
        "cached_second_pass": _run(traces, scale, weights, speculative=False, cached=True),
    }
    passed = sum(
        w for w, (_, t) in zip(weights, traces, strict=True) if t["iteration_principle"] == 1
    )
    sequential, speculative = results["sequential"], results["speculative"]
    return {
        "queries": len(traces),
        "first_pass_rate": passed / sum(weights),
        **results,
        "speculative_saving": 1 - speculative["mean_s"] / sequential["mean_s"],
        "extra_calls": speculative["calls_per_query"] - sequential["calls_per_query"],
    }


def print_mix(mix: dict[str, Any]) -> None:
    print(
        f"{mix['queries']} queries, {mix['first_pass_rate']:.0%} passing the first principle "
        f"critique; latency = {BASE} s + words / {TOKENS_PER_SECOND:g} per s"
    )
    print(f"{'run':<20}{'mean s':>9}{'p50 s':>9}{'p95 s':>9}{'calls/query':>13}")
    for name in ("sequential", "speculative", "cached_second_pass"):
        row = mix[name]
        print(
            f"{name:<20}{row['mean_s']:>9.2f}{row['p50_s']:>9.2f}{row['p95_s']:>9.2f}"
            f"{row['calls_per_query']:>13.2f}"
        )
    print(
        f"speculative: mean latency {mix['speculative_saving']:.1%} lower, "
        f"{mix['extra_calls']:+.2f} model calls per query"
    )


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=0.02, help="latency multiplier")
    parser.add_argument("--limit", type=int, default=None, help="first N traces only")
    parser.add_argument(
        "--reference",
        type=Path,
        default=ROOT.parent / "shared" / "reference" / "spri_traces",
        help="folder of SPRI trace files",
    )
    parser.add_argument(
        "--first-pass-rate",
        type=float,
        default=None,
        help="measure one mix, weighted so this share passes the first principle critique "
        "(e.g. 0.74, the paper's full set); default: the sample as it is, then the paper's mix",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object per mix")
    args = parser.parse_args()
    traces = _traces(args.reference, args.limit)
    if not traces:
        raise SystemExit(f"no traces found in {args.reference}")
    rates = [args.first_pass_rate] if args.first_pass_rate else [None, PAPER_FIRST_PASS_RATE]
    for i, rate in enumerate(rates):
        mix = measure(traces, args.scale, rate)
        if args.json:
            print(json.dumps(mix))
            continue
        if i:
            print(f"\nweighted to the paper's mix ({rate:.0%} passing in its 360 traces):")
        print_mix(mix)


if __name__ == "__main__":
    main()
