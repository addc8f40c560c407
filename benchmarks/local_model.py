"""Benchmark `spri align` on the embedded local model (SmolLM2-135M-Instruct, llama.cpp).

For each question of a fixed set, runs the SPRI graph exactly as `spri align` does and
prints: wall time, model calls (drafts/refines + critiques), tokens, output tokens per
second, the time spent inside llama.cpp (timed around each llama call by the chat model,
reported as ``response_metadata["llama_seconds"]``) and the ratio of end-to-end time to
that time, i.e. what the framework (LangGraph, LangChain, prompt building, parsing) adds.

    python benchmarks/local_model.py                # 5 questions, max 4 critiques a stage
    python benchmarks/local_model.py --questions 2 --max-iterations 2 --json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from importlib.metadata import version
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler

from spri_graph import create_spri_graph
from spri_graph.models import LocalChatModel, load_local_model

QUESTIONS = [
    "How do I tell my team I am burning out?",
    "What should I pack for a three-day hike?",
    "How can I save money on groceries?",
    "Explain to a ten-year-old why the sky is blue.",
    "How do I prepare for my first job interview?",
]


class LlamaTime(BaseCallbackHandler):
    """Adds up the time each model call spent inside llama.cpp."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0

    def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        for generations in response.generations:
            for generation in generations:
                meta = getattr(getattr(generation, "message", None), "response_metadata", {})
                self.seconds += float(meta.get("llama_seconds", 0.0))
                self.calls += 1


def run_one(graph: Any, question: str) -> dict[str, Any]:
    timer = LlamaTime()
    state: dict[str, Any] = {}
    started = time.perf_counter()
    for mode, chunk in graph.stream(
        {"query": question}, {"callbacks": [timer]}, stream_mode=["updates", "values"]
    ):
        if mode == "values":
            state = chunk
    wall = time.perf_counter() - started
    usage = state["usage"].values()
    calls = sum(u["model_calls"] + u["critic_calls"] for u in usage)
    assert calls == timer.calls, (calls, timer.calls)
    output_tokens = sum(u["output_tokens"] for u in usage)
    return {
        "question": question,
        "wall_s": wall,
        "model_calls": calls,
        "input_tokens": sum(u["input_tokens"] for u in usage),
        "output_tokens": output_tokens,
        "output_tokens_per_s": output_tokens / wall,
        "llama_s": timer.seconds,
        "wall_over_llama": wall / timer.seconds,
        "scores": [c.score for c in state["principle_critiques"] + state["response_critiques"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=len(QUESTIONS), metavar="N")
    parser.add_argument("--max-iterations", type=int, default=4, metavar="N")
    parser.add_argument("--threshold", type=int, default=4, metavar="N")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    model = load_local_model()
    assert isinstance(model, LocalChatModel)
    started = time.perf_counter()
    model._client()  # load the weights once, outside the timed runs
    load_s = time.perf_counter() - started
    graph = create_spri_graph(
        model, threshold=args.threshold, max_iterations=args.max_iterations
    ).compile()
    rows = [run_one(graph, question) for question in QUESTIONS[: args.questions]]
    total = {
        "wall_s": sum(r["wall_s"] for r in rows),
        "model_calls": sum(r["model_calls"] for r in rows),
        "output_tokens": sum(r["output_tokens"] for r in rows),
        "llama_s": sum(r["llama_s"] for r in rows),
    }
    total["output_tokens_per_s"] = total["output_tokens"] / total["wall_s"]
    total["wall_over_llama"] = total["wall_s"] / total["llama_s"]
    setup = {
        "model": model.model_name,
        "cpus": os.cpu_count(),
        "threads": model.n_threads or max(1, (os.cpu_count() or 2) // 2),
        "llama_cpp_python": version("llama_cpp_python"),
        "python": platform.python_version(),
        "load_s": load_s,
        "max_iterations": args.max_iterations,
        "threshold": args.threshold,
    }
    if args.json:
        print(json.dumps({"setup": setup, "questions": rows, "total": total}, indent=2))
        return
    print(
        f"{setup['model']} on {setup['cpus']} CPUs ({setup['threads']} llama.cpp threads), "
        f"llama-cpp-python {setup['llama_cpp_python']}, Python {setup['python']}; "
        f"weights loaded in {load_s:.2f} s; max {args.max_iterations} critiques a stage"
    )
    header = (
        f"{'question':<46} {'wall s':>7} {'calls':>5} {'out tok':>7} {'tok/s':>6} "
        f"{'llama s':>7} {'wall/llama':>10}  scores"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['question'][:46]:<46} {r['wall_s']:7.1f} {r['model_calls']:5d} "
            f"{r['output_tokens']:7d} {r['output_tokens_per_s']:6.1f} {r['llama_s']:7.1f} "
            f"{r['wall_over_llama']:10.3f}  {r['scores']}"
        )
    print("-" * len(header))
    print(
        f"{'total':<46} {total['wall_s']:7.1f} {total['model_calls']:5d} "
        f"{total['output_tokens']:7d} {total['output_tokens_per_s']:6.1f} "
        f"{total['llama_s']:7.1f} {total['wall_over_llama']:10.3f}"
    )


if __name__ == "__main__":
    main()
