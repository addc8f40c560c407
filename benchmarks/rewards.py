"""Reward time and model calls of one GRPO step scored by SPRI, with and without rubric reuse.

A step scores P prompts x G completions. The judge is scripted (no network): it writes a
rubric for each instruction, accepts every rubric and grading at the first critique, and
scores a completion by its length; each call sleeps ``--latency-per-call`` seconds (reading
its prompt) plus ``--latency-per-word`` seconds per word of its reply, so long rubrics cost
more than short critiques, and many small calls more than one that does their work.

Figures printed, for each way of scoring the step:

* ``per-completion judge``: :func:`spri_graph.create_judge` run on every completion,
  so each completion gets its own rubric (P x G rubrics);
* ``reward, cold cache``: :func:`spri_graph.rewards.create_spri_reward`, one rubric per
  distinct prompt (rubrics written = P; rubric calls = 2 x P: a draft and its critique);
* ``reward, warm cache``: the same reward on a later epoch (same prompts, new completions):
  no rubric call;
* ``criteria, one call`` / ``criteria, per criterion``: the reward with
  ``rubric_style="criteria"`` (a checklist of four criteria per prompt), grading every
  criterion in one call (``criteria_grading="joint"``) or one call per criterion
  (``"each"``), cold then warm cache;
* the same with the async form (``asyncio.gather``).

Example:
    python benchmarks/rewards.py --prompts 4 --generations 8 --latency-per-word 0.002 \
        --latency-per-call 0.01
"""

from __future__ import annotations

import argparse
import asyncio
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from spri_graph import create_judge
from spri_graph.rewards import create_async_spri_reward, create_spri_reward

_RESPONSE = re.compile(r"<<<BEGIN RESPONSE[^>]*>>>\n(.*?)\n<<<END", re.S)


CHECKLIST = "\n".join(
    f"Criterion {n} [{weight}, binary]: The answer has at least {2 * n - 1} words, each "
    "one on the topic of the question."
    for n, weight in enumerate(("essential", "important", "optional", "pitfall"), 1)
)


def kind_of(text: str) -> str:
    if "### Checklist to Evaluate:" in text:
        return "rubric_critique"
    if "### Criterion:\n" in text:
        return "criterion_verdict"
    if text.rstrip().endswith("### Verdicts:"):
        return "criteria_verdicts"
    if text.rstrip().endswith("### Checklist:"):
        return "checklist_draft"
    if "How useful is the rubric" in text:
        return "rubric_critique"
    if "How faithfully does the grading" in text:
        return "judgment_critique"
    if text.rstrip().endswith("### Grading:"):
        return "judgment_draft"
    return "rubric_draft"


def reply_to(text: str) -> str:
    kind = kind_of(text)
    if kind.endswith("critique"):
        return "Feedback: Specific and faithful. [RESULT] 5"
    if kind == "checklist_draft":
        return CHECKLIST
    if kind.startswith("criteri"):
        words = len(_RESPONSE.findall(text)[0].split())
        numbers = [int(n) for n in re.findall(r"Criterion (\d) \[", text)]
        return "\n".join(
            f"Criterion {n}: {'met' if words >= 2 * n - 1 else 'not met'} - {words} words."
            for n in numbers
        )
    if kind == "rubric_draft":
        levels = "\n".join(
            f"Score {n}: The answer meets {n} of the five points the instruction needs, "
            "each stated plainly and checked against the question."
            for n in range(1, 6)
        )
        return f"Criteria: Does the answer cover what the instruction asks?\n{levels}"
    words = len(_RESPONSE.findall(text)[0].split())
    return f"<feedback>{words} words.</feedback><score>{min(5, max(1, words))}</score>"


class LatencyJudge(BaseChatModel):
    """Replies as :func:`reply_to` says, after a fixed latency and one per reply word."""

    latency_per_word: float = 0.002
    latency_per_call: float = 0.01
    counts: Counter[str]
    lock: Any

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(counts=Counter(), lock=threading.Lock(), **kwargs)

    @property
    def _llm_type(self) -> str:
        return "latency-judge"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"latency_per_word": self.latency_per_word, "per_call": self.latency_per_call}

    def _reply(self, messages: list[BaseMessage]) -> tuple[str, float]:
        text = str(messages[-1].content)
        with self.lock:
            self.counts[kind_of(text)] += 1
        reply = reply_to(text)
        return reply, self.latency_per_call + self.latency_per_word * len(reply.split())

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        reply, delay = self._reply(messages)
        time.sleep(delay)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=reply))])

    async def _agenerate(
        self, messages: list[BaseMessage], *args: Any, **kwargs: Any
    ) -> ChatResult:
        reply, delay = self._reply(messages)
        await asyncio.sleep(delay)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=reply))])


def step(prompts: int, generations: int, epoch: int) -> tuple[list[str], list[str]]:
    """TRL's layout: each prompt G times; completions of 1..G words, new words each epoch."""
    repeated = [
        f"Question {p}: explain topic {p}." for p in range(prompts) for _ in range(generations)
    ]
    completions = [" ".join([f"w{epoch}"] * (n % generations + 1)) for n in range(len(repeated))]
    return repeated, completions


def per_completion_judge(judge: LatencyJudge, concurrency: int) -> Callable[..., Any]:
    graph = create_judge(judge, max_iterations=1).compile()

    def score(prompts: list[str], completions: list[str], asynchronous: bool) -> list[Any]:
        inputs = [
            {"instruction": p, "response": c} for p, c in zip(prompts, completions, strict=True)
        ]
        if asynchronous:

            async def run() -> list[Any]:
                return await graph.abatch(inputs, {"max_concurrency": concurrency})

            return asyncio.run(run())
        with ThreadPoolExecutor(concurrency) as pool:
            return list(pool.map(graph.invoke, inputs))

    return score


def report(label: str, judge: LatencyJudge, seconds: float) -> None:
    counts = dict(judge.counts)
    rubric = sum(counts.get(k, 0) for k in ("rubric_draft", "checklist_draft", "rubric_critique"))
    grading = sum(counts.values()) - rubric
    written = counts.get("rubric_draft", 0) + counts.get("checklist_draft", 0)
    print(
        f"  {label:<36} {seconds:7.3f} s   model calls {rubric + grading:4d}"
        f" (rubric {rubric:3d}, grading {grading:3d}); rubrics written {written:3d}"
    )
    judge.counts.clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=4, help="P, distinct prompts per step")
    parser.add_argument("--generations", type=int, default=8, help="G, completions per prompt")
    parser.add_argument("--latency-per-word", type=float, default=0.002)
    parser.add_argument("--latency-per-call", type=float, default=0.01)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    print(
        f"one GRPO step: {args.prompts} prompts x {args.generations} completions, "
        f"{args.latency_per_call * 1000:.0f} ms per call + {args.latency_per_word * 1000:.1f} ms "
        f"per reply word, concurrency {args.concurrency}"
    )
    for asynchronous in (False, True):
        print("async form (asyncio.gather):" if asynchronous else "sync form (threads):")
        judge = LatencyJudge(
            latency_per_word=args.latency_per_word, latency_per_call=args.latency_per_call
        )
        prompts, completions = step(args.prompts, args.generations, 0)
        baseline = per_completion_judge(judge, args.concurrency)
        start = time.perf_counter()
        baseline(prompts, completions, asynchronous)
        report("per-completion judge", judge, time.perf_counter() - start)

        make = create_async_spri_reward if asynchronous else create_spri_reward
        kinds: list[tuple[str, dict[str, Any]]] = [
            ("reward", {}),
            ("criteria, one call", {"rubric_style": "criteria", "criteria_grading": "joint"}),
            ("criteria, per criterion", {"rubric_style": "criteria", "criteria_grading": "each"}),
        ]
        for name, options in kinds:
            reward = make(judge, max_iterations=1, max_concurrency=args.concurrency, **options)
            for epoch, cache in ((1, "cold"), (2, "warm")):
                prompts, completions = step(args.prompts, args.generations, epoch)
                start = time.perf_counter()
                if asynchronous:
                    asyncio.run(reward(prompts=prompts, completions=completions))
                else:
                    reward(prompts=prompts, completions=completions)
                report(f"{name}, {cache} cache", judge, time.perf_counter() - start)


if __name__ == "__main__":
    main()
