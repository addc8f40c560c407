"""Benchmark `spri align` on the embedded local model (SmolLM2-135M-Instruct, llama.cpp).

For each question of a fixed set, runs the SPRI graph exactly as `spri align` does and
prints: wall time, model calls (drafts/refines + critiques), output tokens, end-to-end
output tokens per second, the time spent inside llama.cpp (timed by the chat model,
``response_metadata["llama_seconds"]``), the CPU time of the process, and prompt tokens
restored from earlier prompts instead of evaluated again.

Beside it, **raw llama.cpp**: every llama.cpp completion of the run (the same prompts,
after the chat model added its instructions) is replayed on a plain ``llama_cpp.Llama``
with the same file and settings (threads, context, batch, sampling), generating exactly
as many tokens (the end-of-generation token is masked), with no grammar and only
llama.cpp's own reuse of the prompt it evaluated last.

``--critic`` instead measures what one structured critique costs, written as JSON under a
grammar or as text and then a one-token score.

``--before`` also runs each question with the settings of spri-graph 0.1 (one thread, no
cache of earlier prompts, critiques written as grammar-constrained JSON, the shipped Q4_1
weights) right after, so both see the same load on a shared machine. To compare two versions
of the code, run this script from each checkout in turn (``PYTHONPATH`` pointing at it) with
the same arguments, alternating, and compare the totals' tokens per second.

The model runs on ``n_threads`` / ``$SPRI_LLAMA_THREADS`` threads, else on every physical
core.

    python benchmarks/local_model.py                # 5 questions, max 4 critiques a stage
    python benchmarks/local_model.py --questions 2 --max-iterations 2 --before --json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from collections import deque
from importlib.metadata import version
from itertools import islice
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler

from spri_graph import create_spri_graph
from spri_graph.models import LocalChatModel, default_threads, load_local_model
from spri_graph.models.llama import weights_file

QUESTIONS = [
    "How do I tell my team I am burning out?",
    "What should I pack for a three-day hike?",
    "How can I save money on groceries?",
    "Explain to a ten-year-old why the sky is blue.",
    "How do I prepare for my first job interview?",
]

BEFORE = {
    "n_threads": 1,
    "prompt_cache_mb": 0,
    "two_step_structured": False,
    "q8_0_weights": False,
}
"""spri-graph 0.1's local model: half the cores (one here), no prompt cache, JSON grammar, the
shipped Q4_1 weights."""


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class LlamaTime(BaseCallbackHandler):
    """Adds up the time each model call spent inside llama.cpp, and its prompt tokens."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0
        self.input_tokens = 0
        self.cached_tokens = 0

    def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        for generations in response.generations:
            for generation in generations:
                message = getattr(generation, "message", None)
                meta = getattr(message, "response_metadata", {})
                self.seconds += float(meta.get("llama_seconds", 0.0))
                self.calls += 1
                usage = getattr(message, "usage_metadata", None) or {}
                self.input_tokens += usage.get("input_tokens", 0)
                details = usage.get("input_token_details") or {}
                self.cached_tokens += details.get("cache_read", 0)


class Recorder:
    """Records each llama.cpp completion of a loaded model: prompt tokens, tokens sampled.

    Every completion goes through ``create_completion``: plain ones (a critique's score goes
    on from its feedback) and those of ``create_chat_completion``, after the chat template.
    """

    SAMPLING = ("temperature", "top_p", "top_k", "repeat_penalty", "seed")

    def __init__(self, llama: Any) -> None:
        self.llama = llama
        self.real = llama.create_completion
        self.completions: list[dict[str, Any]] = []
        llama.create_completion = self

    def __call__(self, **request: Any) -> Any:
        stream = self.real(**request)

        def recorded() -> Any:
            try:
                yield from stream
            finally:
                counts = self.llama.counts
                self.completions.append(
                    {
                        "prompt": self.llama.input_ids[: counts.prompt_tokens].tolist(),
                        "tokens": counts.samples - (1 if counts.ended else 0),
                        "threads": counts.threads,
                        **{key: request[key] for key in self.SAMPLING if key in request},
                    }
                )

        return recorded()


def run_one(graph: Any, question: str, recorder: Recorder) -> dict[str, Any]:
    timer = LlamaTime()
    state: dict[str, Any] = {}
    first = len(recorder.completions)
    started, cpu = time.perf_counter(), cpu_seconds()
    for mode, chunk in graph.stream(
        {"query": question}, {"callbacks": [timer]}, stream_mode=["updates", "values"]
    ):
        if mode == "values":
            state = chunk
    wall, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    usage = state["usage"].values()
    calls = sum(u["model_calls"] + u["critic_calls"] for u in usage)
    output_tokens = sum(u["output_tokens"] for u in usage)
    return {
        "question": question,
        "wall_s": wall,
        "cpu_s": cpu,
        "model_calls": calls,
        "llama_completions": len(recorder.completions) - first,
        "input_tokens": timer.input_tokens,
        "cached_tokens": timer.cached_tokens,
        "output_tokens": output_tokens,
        "output_tokens_per_s": output_tokens / wall,
        "llama_s": timer.seconds,
        "wall_over_llama": wall / timer.seconds,
        "scores": [c.score for c in state["principle_critiques"] + state["response_critiques"]],
        "completions": recorder.completions[first:],
        "threads": sorted({c["threads"] for c in recorder.completions[first:]}),
    }


def replay(raw: Any, completions: list[dict[str, Any]]) -> dict[str, float]:
    """Replay completions on a plain Llama: same prompt, sampling and threads, as many tokens.

    ``Llama.generate`` samples on past the end-of-generation token, so each replay
    generates exactly the recorded number of tokens; there is no grammar.
    """
    import llama_cpp

    tokens, started, cpu = 0, time.perf_counter(), cpu_seconds()
    for completion in completions:
        count = completion["tokens"]
        if count < 1:
            continue
        threads = completion["threads"]
        llama_cpp.llama_set_n_threads(raw.ctx, threads, threads)
        raw.set_seed(completion.get("seed", 0))
        sampled = raw.generate(
            completion["prompt"],
            temp=completion.get("temperature", 0.6),
            top_p=completion.get("top_p", 0.95),
            top_k=completion.get("top_k", 40),
            repeat_penalty=completion.get("repeat_penalty", 1.0),
        )
        deque(islice(sampled, count), maxlen=0)
        sampled.close()
        tokens += count
    wall = time.perf_counter() - started
    return {"raw_s": wall, "raw_cpu_s": cpu_seconds() - cpu, "raw_tokens": tokens}


def totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    total = {
        key: sum(r[key] for r in rows)
        for key in (
            "wall_s",
            "cpu_s",
            "model_calls",
            "input_tokens",
            "cached_tokens",
            "output_tokens",
            "llama_s",
        )
    }
    total["output_tokens_per_s"] = total["output_tokens"] / total["wall_s"]
    total["output_tokens_per_cpu_s"] = total["output_tokens"] / total["cpu_s"]
    total["wall_over_llama"] = total["wall_s"] / total["llama_s"]
    if all("raw_s" in r for r in rows):
        total["raw_s"] = sum(r["raw_s"] for r in rows)
        total["raw_cpu_s"] = sum(r["raw_cpu_s"] for r in rows)
        total["raw_tokens_per_s"] = sum(r["raw_tokens"] for r in rows) / total["raw_s"]
    return total


def print_table(title: str, rows: list[dict[str, Any]], total: dict[str, Any]) -> None:
    raw = "raw_s" in total
    header = (
        f"{'question':<40} {'threads':>7} {'wall s':>6} {'cpu s':>6} {'calls':>5} {'in tok':>6} "
        f"{'cached':>6} {'out tok':>7} {'tok/s':>6} {'llama s':>7}"
        + (f" {'raw s':>6} {'raw cpu s':>9} {'raw tok/s':>9}" if raw else "")
        + "  scores"
    )
    print(f"\n{title}")
    print(header)
    print("-" * len(header))
    used = sorted({n for r in rows for n in r["threads"]})
    for r in [*rows, {"question": "total", **total, "scores": "", "threads": used}]:
        threads = "-".join(str(n) for n in sorted({min(r["threads"]), max(r["threads"])}))
        line = (
            f"{r['question'][:40]:<40} {threads:>7} {r['wall_s']:6.1f} {r['cpu_s']:6.1f} "
            f"{r['model_calls']:5d} {r['input_tokens']:6d} {r['cached_tokens']:6d} "
            f"{r['output_tokens']:7d} {r['output_tokens_per_s']:6.1f} {r['llama_s']:7.1f}"
        )
        if raw:
            per_s = r.get("raw_tokens_per_s") or r["raw_tokens"] / r["raw_s"]
            line += f" {r['raw_s']:6.1f} {r['raw_cpu_s']:9.1f} {per_s:9.1f}"
        if r["question"] == "total":
            print("-" * len(header))
        print(f"{line}  {r['scores']}")


CANDIDATES = [
    "1. Be honest about how you feel.\n2. Suggest concrete changes.\n3. Stay calm.",
    "Bananas are yellow.",
    "1. Be clear and specific.\n2. Give examples.\n3. Be kind and respectful.",
]


def critic_cost(model: LocalChatModel, questions: list[str]) -> dict[str, dict[str, float]]:
    """What a structured critique costs: all JSON under a grammar, or text then a score.

    Each principles critique of ``questions`` x ``CANDIDATES`` runs in both ways (and as a
    plain text reply, for reference) back to back, with no cache of earlier prompts, so
    every call evaluates its whole prompt.
    """
    from spri_graph.engine.prompts import SPRI_PROMPTS
    from spri_graph.readers.scores import ScoredCritique

    cold = {"prompt_cache_mb": 0}
    ways = {
        "JSON under a grammar": model.model_copy(update={**cold, "two_step_structured": False}),
        "text, then a 1-token score": model.model_copy(update=cold),
    }
    runnables: dict[str, Any] = {
        name: each.with_structured_output(ScoredCritique, include_raw=True)
        for name, each in ways.items()
    }
    runnables["plain text (no score)"] = ways["text, then a 1-token score"]
    figures = {
        name: {
            "calls": 0,
            "wall_s": 0.0,
            "cpu_s": 0.0,
            "llama_s": 0.0,
            "output_tokens": 0,
            "input_tokens": 0,
        }
        for name in runnables
    }
    for question in questions:
        for candidate in CANDIDATES:
            prompt = SPRI_PROMPTS["principles_critique"].format_messages(
                query=question, goal_section="", history_section="", candidate=candidate
            )
            for name, runnable in runnables.items():
                started, cpu = time.perf_counter(), cpu_seconds()
                out = runnable.invoke(prompt)
                raw = out["raw"] if isinstance(out, dict) else out
                f = figures[name]
                f["wall_s"] += time.perf_counter() - started
                f["cpu_s"] += cpu_seconds() - cpu
                f["llama_s"] += raw.response_metadata["llama_seconds"]
                f["output_tokens"] += raw.usage_metadata["output_tokens"]
                f["input_tokens"] += raw.usage_metadata["input_tokens"]
                f["calls"] += 1
    return figures


def print_critic_cost(figures: dict[str, dict[str, float]]) -> None:
    header = (
        f"{'critique written as':<28} {'calls':>5} {'wall s':>7} {'cpu s':>7} "
        f"{'cpu s/call':>10} {'in tok':>7} {'out tok':>7} {'cpu ms/out tok':>14}"
    )
    print(header)
    print("-" * len(header))
    for name, f in figures.items():
        print(
            f"{name:<28} {f['calls']:5d} {f['wall_s']:7.1f} {f['cpu_s']:7.1f} "
            f"{f['cpu_s'] / f['calls']:10.2f} {f['input_tokens']:7d} {f['output_tokens']:7d} "
            f"{1000 * f['cpu_s'] / max(1, f['output_tokens']):14.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=len(QUESTIONS), metavar="N")
    parser.add_argument("--max-iterations", type=int, default=4, metavar="N")
    parser.add_argument("--threshold", type=int, default=4, metavar="N")
    parser.add_argument("--before", action="store_true", help="also run 0.1's settings")
    parser.add_argument("--no-raw", action="store_true", help="skip the raw llama.cpp replay")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--critic", action="store_true", help="only measure what a structured critique costs"
    )
    args = parser.parse_args()

    model = load_local_model()
    assert isinstance(model, LocalChatModel)
    if args.critic:
        figures = critic_cost(model, QUESTIONS[: args.questions])
        if args.json:
            print(json.dumps(figures, indent=2))
        else:
            print_critic_cost(figures)
        return
    models = {"now": model}
    if args.before:
        models["before"] = model.model_copy(update=BEFORE)
    graphs, recorders, load_s = {}, {}, 0.0
    for name, each in models.items():
        started = time.perf_counter()
        llama, _ = each.client()  # load the weights once, outside the timed runs
        load_s += time.perf_counter() - started
        recorders[name] = Recorder(llama)
        graphs[name] = create_spri_graph(
            each, threshold=args.threshold, max_iterations=args.max_iterations
        ).compile()
    raw = None
    if not args.no_raw:
        from llama_cpp import Llama

        threads = model.n_threads or default_threads()
        raw = Llama(
            model_path=weights_file(model.model_path, q8_0_weights=model.q8_0_weights),
            n_ctx=model.n_ctx,
            n_threads=threads,
            n_threads_batch=threads,
            n_batch=model.n_batch,
            verbose=False,
        )
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in models}
    # Each question runs in every setting, and is replayed, back to back: on a shared
    # machine they then see about the same load.
    for question in QUESTIONS[: args.questions]:
        for name in models:
            row = run_one(graphs[name], question, recorders[name])
            completions = row.pop("completions")
            if raw is not None and name == "now":
                row.update(replay(raw, completions))
            rows[name].append(row)
            print(f"{name}: {question} {row['wall_s']:.1f} s", file=sys.stderr, flush=True)
    if raw is not None:
        raw.close()
    setup = {
        "model": model.model_name,
        "cpus": os.cpu_count(),
        "threads": model.n_threads or default_threads(),
        "load_average": os.getloadavg()[0],
        "llama_cpp_python": version("llama_cpp_python"),
        "python": platform.python_version(),
        "load_s": load_s,
        "max_iterations": args.max_iterations,
        "threshold": args.threshold,
    }
    results = {name: {"questions": r, "total": totals(r)} for name, r in rows.items()}
    if args.json:
        print(json.dumps({"setup": setup, **results}, indent=2))
        return
    print(
        f"{setup['model']} on {setup['cpus']} CPUs ({setup['threads']} llama.cpp threads; "
        f"load average {setup['load_average']:.1f} at the end), llama-cpp-python "
        f"{setup['llama_cpp_python']}, Python {setup['python']}; weights loaded in "
        f"{load_s:.2f} s; max {args.max_iterations} critiques a stage"
    )
    print_table(
        "spri-graph now (raw: the same completions on a plain llama.cpp)",
        results["now"]["questions"],
        results["now"]["total"],
    )
    if "before" in results:
        print_table(
            f"spri-graph 0.1 settings ({', '.join(f'{k}={v}' for k, v in BEFORE.items())})",
            results["before"]["questions"],
            results["before"]["total"],
        )
        now, before = results["now"]["total"], results["before"]["total"]
        print(
            "\nnow over 0.1 settings: end-to-end output tokens per second "
            f"{now['output_tokens_per_s'] / before['output_tokens_per_s']:.2f}x, per CPU "
            f"second {now['output_tokens_per_cpu_s'] / before['output_tokens_per_cpu_s']:.2f}x; "
            f"{now['model_calls']} calls in {now['wall_s']:.0f} s against "
            f"{before['model_calls']} in {before['wall_s']:.0f} s"
        )


if __name__ == "__main__":
    main()
