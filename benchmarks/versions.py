"""The local-model benchmark of two versions of the code, run in alternating rounds.

Checks out ``--base`` (a git revision) in a temporary worktree and runs
``benchmarks/local_model.py --json`` from it and from this checkout in turn (each with
``PYTHONPATH`` at its own checkout, so each runs its own package), ``--rounds`` times,
swapping which goes first every round, so both see the same load on a shared machine.
Prints, per round and in all: end-to-end output tokens per second, raw llama.cpp tokens per
second (the same completions replayed on a plain ``llama_cpp.Llama``), output tokens per
CPU second and the load average the round started at; then the ratio of this checkout to
the base.

The two versions may sample different replies, so compare rates, not times.

Example:
    python benchmarks/versions.py --base 3cca989 --rounds 3 --questions 2 --max-iterations 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def run(checkout: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One run of ``local_model.py --json`` from ``checkout``: its totals and the load."""
    command = [
        sys.executable,
        str(checkout / "benchmarks" / "local_model.py"),
        "--questions",
        str(args.questions),
        "--max-iterations",
        str(args.max_iterations),
        "--json",
    ]
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    load = os.getloadavg()[0]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{checkout}: benchmark failed:\n{done.stderr[-2000:]}")
    figures = json.loads(done.stdout)
    return {"load": load, **figures["now"]["total"]}


def line(label: str, runs: list[dict[str, Any]]) -> str:
    tokens = sum(r["output_tokens"] for r in runs)
    wall = sum(r["wall_s"] for r in runs)
    cpu = sum(r["cpu_s"] for r in runs)
    raw = [f"{r['raw_tokens_per_s']:.1f}" for r in runs if "raw_tokens_per_s" in r]
    by_round = ", ".join(f"{r['output_tokens_per_s']:.1f}" for r in runs)
    return (
        f"{label:<6} tokens/s by round: {by_round:<24} all: {tokens / wall:5.1f} tokens/s, "
        f"{tokens / cpu:5.1f} per CPU s; raw llama.cpp by round: {', '.join(raw)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="3cca989", help="the git revision to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--questions", type=int, default=2)
    parser.add_argument("--max-iterations", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="spri-base-") as tmp:
        base = Path(tmp) / "checkout"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(base), args.base],
            check=True,
        )
        try:
            runs: dict[str, list[dict[str, Any]]] = {"base": [], "now": []}
            for number in range(args.rounds):
                order = [("base", base), ("now", ROOT)]
                for label, checkout in order if number % 2 == 0 else order[::-1]:
                    result = run(checkout, args)
                    runs[label].append(result)
                    print(
                        f"round {number + 1} {label}: {result['output_tokens_per_s']:.1f} "
                        f"tokens/s, load average {result['load']:.1f} at the start",
                        file=sys.stderr,
                        flush=True,
                    )
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False
            )
    print(
        f"{args.questions} questions, max {args.max_iterations} critiques a stage, "
        f"{args.rounds} alternating rounds; base = {args.base}, now = this checkout"
    )
    print(
        "loads at the start of each run: "
        + ", ".join(
            f"{r['load']:.1f}" for pair in zip(runs["base"], runs["now"], strict=True) for r in pair
        )
    )
    print(line("base", runs["base"]))
    print(line("now", runs["now"]))
    ratios = [
        now["output_tokens_per_s"] / base_run["output_tokens_per_s"]
        for base_run, now in zip(runs["base"], runs["now"], strict=True)
    ]
    overall = (
        sum(r["output_tokens"] for r in runs["now"]) / sum(r["wall_s"] for r in runs["now"])
    ) / (sum(r["output_tokens"] for r in runs["base"]) / sum(r["wall_s"] for r in runs["base"]))
    print(
        f"now / base, end-to-end output tokens per second: {overall:.2f}x in all, by round "
        f"{', '.join(f'{r:.2f}' for r in ratios)} (median {statistics.median(ratios):.2f}x)"
    )


if __name__ == "__main__":
    main()
