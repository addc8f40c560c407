r"""SPRI as a reward: instance-specific rubrics grading a policy's completions (TRL, verl).

:func:`create_spri_reward` returns a reward function in TRL's form
``(prompts, completions, **kwargs) -> list[float | None]``, for ``GRPOTrainer(reward_funcs=...)``.
For each distinct prompt the SPRI rubric stage (:func:`~spri_graph.create_rubric_graph`'s graph)
writes, critiques and refines one rubric; every completion of the prompt is then graded
with it by the SPRI judgment stage (draft -> critique -> refine, as in
:func:`~spri_graph.create_judge`). Rubrics live in LangGraph's node cache
(:func:`spri_graph.engine.caching.judge_cache`): a prompt seen before, in this batch, a later
epoch or, with ``cache="rubrics.sqlite"``, an earlier process, costs no rubric call.

:func:`create_async_spri_reward` is the same reward as a coroutine function; TRL runs async
reward functions concurrently with the others. ``group=True`` grades a prompt's completions
against each other in one call with the prompt's rubric, for GRPO's group-relative
advantages. :meth:`SPRIReward.compute_score` is the same reward in verl's form.

With ``rubric_style="criteria"`` the rubric is a weighted checklist and each completion
gets a verdict per criterion, as the judges grade (:mod:`spri_graph.judges.criteria`);
``last_details`` then holds each completion's ``criteria_results``.

Example:
    >>> from langchain_core.language_models import FakeListChatModel
    >>> model = FakeListChatModel(responses=[
    ...     "Criteria: Is 2+2 answered?\nScore 1: No.\nScore 5: Yes.",
    ...     "Feedback: Clear. [RESULT] 5",
    ...     "<feedback>Right.</feedback><score>5</score>",
    ...     "Feedback: Follows the rubric. [RESULT] 5",
    ... ])
    >>> reward = create_spri_reward(model, max_concurrency=1)
    >>> reward(prompts=["What is 2+2?"], completions=["4"])
    [1.0]
    >>> reward.last_details[0]["score"], reward.last_details[0]["criteria"]
    (5.0, 'Is 2+2 answered?')
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable, Generator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.cache.base import BaseCache
from langgraph.graph import END, START, StateGraph
from langgraph.types import CachePolicy
from typing_extensions import Unpack

from spri_graph.engine.caching import judge_cache
from spri_graph.engine.options import option_names, spri_state_graph, take_options
from spri_graph.engine.prompts import GROUP_GRADING_PROMPT, fence
from spri_graph.judges.absolute import add_judgment_stage
from spri_graph.judges.base import (
    JUDGE_OPTION_NAMES,
    FixedRubricInput,
    JudgeOptions,
    JudgeOutput,
    JudgeSettings,
    JudgeState,
    as_rubric,
    judge_prepare,
    judgment_finalizer,
)
from spri_graph.judges.criteria import add_grading
from spri_graph.judges.rubric import rubric_stage_graph
from spri_graph.models import ModelSpec
from spri_graph.readers.criteria import Checklist, CriterionResult
from spri_graph.readers.rubric import Rubric

__all__ = [
    "GROUP_GRADING_PROMPT",
    "REWARD_OPTION_NAMES",
    "AsyncSPRIReward",
    "RewardDetail",
    "RewardOptions",
    "RewardSettings",
    "SPRIReward",
    "create_async_spri_reward",
    "create_spri_reward",
]

_GROUP_SCORE = re.compile(
    r"Response\s*#?\s*(\d+)\b[^\n]*?<score>\s*([-+]?\d+(?:\.\d+)?)\s*</score>"
)

Prompt = str | Sequence[Mapping[str, Any]]
"""A TRL prompt or completion: text (standard) or ``{"role", "content"}`` messages."""


class RewardOptions(JudgeOptions, total=False):
    """The options of :func:`create_spri_reward` and :func:`create_async_spri_reward`.

    The judge options (:class:`~spri_graph.judges.base.JudgeOptions`) but
    ``reference_free``, which follows ``reference_key``, and these. Their defaults and
    checks are the fields of :class:`RewardSettings`.

    Attributes:
        reference_key: A dataset column holding a reference answer per completion (TRL
            passes columns as keyword arguments); it is shown to the rubric writer and the
            grader. ``None`` (the default) grades reference-free.
        cache: Where rubrics (and gradings) are kept: a SQLite file path that outlives the
            process (needs ``langgraph-checkpoint-sqlite``, in the ``train`` extra), a
            LangGraph cache, or ``None`` (the default) for one in memory.
        group: Grade a prompt's completions against each other in one call with the
            prompt's rubric (:data:`GROUP_GRADING_PROMPT`), for group-relative advantages:
            a better completion gets a higher score. No critique of the group grading.
        normalize: Map scores onto [0, 1] (the default); ``False``: the raw scale.
        max_concurrency: Most graph calls at once (8).
        verl_prompt_key: The ``extra_info`` key holding the prompt in
            :meth:`SPRIReward.compute_score` (``"question"``).
        config: A ``RunnableConfig`` (callbacks, tags...) for every call.
        name: The reward's ``__name__``, which TRL logs rewards under (``"spri_reward"``).
    """

    reference_key: str | None
    cache: str | os.PathLike[str] | BaseCache[Any] | None
    group: bool
    normalize: bool
    max_concurrency: int
    verl_prompt_key: str
    config: RunnableConfig | None
    name: str


@dataclass(frozen=True)
class RewardSettings:
    """The checked reward options of :class:`RewardOptions`: their one set of defaults.

    Example:
        >>> RewardSettings(max_concurrency=0)
        Traceback (most recent call last):
        ...
        ValueError: max_concurrency must be an integer >= 1, got 0
    """

    reference_key: str | None = None
    cache: str | os.PathLike[str] | BaseCache[Any] | None = None
    group: bool = False
    normalize: bool = True
    max_concurrency: int = 8
    verl_prompt_key: str = "question"
    config: RunnableConfig | None = None
    name: str = "spri_reward"

    def __post_init__(self) -> None:
        for argument in ("group", "normalize"):
            if not isinstance(flag := getattr(self, argument), bool):
                raise ValueError(f"{argument} must be True or False, got {flag!r}")
        key = self.reference_key
        if key is not None and (not isinstance(key, str) or not key):
            raise ValueError(f"reference_key must be a column name or None, got {key!r}")
        if not isinstance(self.verl_prompt_key, str) or not self.verl_prompt_key:
            raise ValueError(f"verl_prompt_key must be a key name, got {self.verl_prompt_key!r}")
        concurrency = self.max_concurrency
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"max_concurrency must be an integer >= 1, got {concurrency!r}")
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"name must be an identifier, got {self.name!r}")
        if self.cache is not None and not isinstance(self.cache, BaseCache | str | os.PathLike):
            raise ValueError(f"cache must be a path, a LangGraph cache or None, got {self.cache!r}")

    def node_cache(self) -> BaseCache[Any]:
        """The cache the reward's graphs compile with."""
        return self.cache if isinstance(self.cache, BaseCache) else judge_cache(self.cache)


REWARD_OPTION_NAMES: tuple[str, ...] = (
    *(name for name in JUDGE_OPTION_NAMES if name != "reference_free"),
    *option_names(RewardSettings),
)
"""Every option name :func:`create_spri_reward` takes."""


class RewardDetail(TypedDict):
    """What the reward saw and decided for one completion (see ``last_details``).

    Attributes:
        prompt: The prompt as the judge read it (messages rendered as text).
        completion: The completion as the judge read it.
        score: The judge's score on its scale; ``None`` when the grading was unreadable.
        reward: The reward returned (``score`` normalised to [0, 1] unless ``normalize=False``).
        feedback: The judge's feedback.
        criteria: The rubric's criteria (with ``rubric_style="criteria"``, the checklist
            in its text layout).
        levels: The rubric's description of each score level, keyed by the level (empty
            for a checklist).
        criteria_results: With ``rubric_style="criteria"``, each criterion's verdict, value
            and reason (:class:`~spri_graph.readers.criteria.CriterionResult`), the
            per-criterion scores to log; ``None`` otherwise, and in group mode.
        mode: ``"single"`` (graded alone), ``"group"`` (against the prompt's other
            completions) or ``"empty"`` (an empty completion: the lowest score, no call).
    """

    prompt: str
    completion: str
    score: float | None
    reward: float | None
    feedback: str
    criteria: str
    levels: dict[str, str]
    criteria_results: list[CriterionResult] | None
    mode: Literal["single", "group", "empty"]


@dataclass(frozen=True)
class _Item:
    prompt: str
    completion: str
    reference: str | None

    @property
    def key(self) -> tuple[str, str | None]:
        return self.prompt, self.reference


@dataclass(frozen=True)
class _Call:
    """One model-graph call: ``runnable.invoke(input)``, read by ``read``."""

    runnable: Runnable[Any, Any]
    input: dict[str, Any]
    read: Callable[[Any], Any]


def _content_text(content: Any, argument: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, Mapping) and part.get("type") == "text":
                parts.append(str(part.get("text", "")))
            else:
                raise ValueError(f"{argument}: unknown message content part {part!r:.80}")
        return "".join(parts)
    raise ValueError(f"{argument}: message content must be text, got {type(content).__name__}")


def _as_text(value: Any, argument: str, *, completion: bool) -> str:
    """A TRL prompt or completion as text: standard (a string) or conversational."""
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence) and all(
        isinstance(m, Mapping) and "role" in m and "content" in m for m in value
    ):
        messages = [(str(m["role"]), _content_text(m["content"], argument)) for m in value]
        if completion:
            return "\n\n".join(text for role, text in messages if role == "assistant")
        if len(messages) == 1 and messages[0][0] == "user":
            return messages[0][1]
        return "\n\n".join(f"{role}: {text}" for role, text in messages)
    raise ValueError(
        f"{argument} must be strings (standard format) or lists of {{'role', 'content'}} "
        f"messages (conversational format), got {value!r:.80}"
    )


def _grading_graph(settings: JudgeSettings) -> StateGraph[Any, Any, Any, Any]:
    """SPRI's grading with a given rubric.

    ``prepare -> judgment stage -> finalize`` (refined grading), or with a checklist
    ``prepare -> grade -> finalize`` (a verdict per criterion, as the judges grade).
    """
    builder = spri_state_graph(JudgeState, FixedRubricInput, JudgeOutput)
    prepare = judge_prepare(settings, with_response=True, rubric=None, rubric_from_input=True)
    builder.add_node("prepare", prepare)
    builder.add_edge(START, "prepare")
    if settings.criteria:
        builder.add_edge("prepare", add_grading(builder, settings))
        return builder
    builder.add_edge("prepare", add_judgment_stage(builder, settings, then="finalize"))
    finalize = judgment_finalizer(scale=settings.scale, judge_output=settings.judge_output)
    builder.add_node("finalize", finalize)
    builder.add_edge("finalize", END)
    return builder


def _read_group(message: BaseMessage, count: int, scale: tuple[int, int]) -> list[float | None]:
    """Scores ``Response N: <score>S</score>`` for N = 1..count; unread or off-scale is None."""
    scores: list[float | None] = [None] * count
    for number, value in _GROUP_SCORE.findall(str(message.content)):
        index, score = int(number) - 1, float(value)
        if 0 <= index < count and scores[index] is None and scale[0] <= score <= scale[1]:
            scores[index] = score
    return scores


Grading = tuple[float | None, str, list[CriterionResult] | None]
"""One completion's grading: score, feedback and the per-criterion results (if any)."""


def _group_reader(count: int, scale: tuple[int, int]) -> Callable[[BaseMessage], list[Grading]]:
    def read(message: BaseMessage) -> list[Grading]:
        feedback = str(message.content)
        return [(score, feedback, None) for score in _read_group(message, count, scale)]

    return read


def _read_graded(out: Mapping[str, Any]) -> list[Grading]:
    return [(out.get("score"), out.get("feedback") or "", out.get("criteria_results"))]


Rewarding = Generator[list[_Call], list[Any], list[float | None]]
"""A reward computation: yields batches of calls, gets their results, returns the rewards."""


class _SPRIRewardBase:
    """What the sync and async rewards share: checks, rubric per prompt, grading, details."""

    def __init__(
        self,
        settings: JudgeSettings,
        reward: RewardSettings,
        *,
        rubric_graph: Runnable[Any, Any],
        grading_graph: Runnable[Any, Any],
    ) -> None:
        self._settings = settings
        self._reward = reward
        self._rubric_graph = rubric_graph
        self._grading_graph = grading_graph
        self._group_runnable = GROUP_GRADING_PROMPT | settings.models.base
        self.__name__ = reward.name
        self.last_details: list[RewardDetail] = []
        """Per-completion details of the last call, in the order of the completions."""

    # ------------------------------------------------------------------ input

    def _items(self, prompts: Any, completions: Any, columns: Mapping[str, Any]) -> list[_Item]:
        for argument, value in (("prompts", prompts), ("completions", completions)):
            if isinstance(value, str) or not isinstance(value, Sequence):
                raise ValueError(f"{argument} must be a list, got {type(value).__name__}")
        if len(prompts) != len(completions):
            raise ValueError(
                "prompts and completions must have the same length, got "
                f"{len(prompts)} and {len(completions)}"
            )
        references: Sequence[Any] = [None] * len(prompts)
        if self._reward.reference_key is not None:
            references = columns.get(self._reward.reference_key)  # type: ignore[assignment]
            if isinstance(references, str) or not isinstance(references, Sequence):
                raise ValueError(
                    f"reference_key: the reward needs a {self._reward.reference_key!r} column, one "
                    "reference answer per completion"
                )
            if len(references) != len(prompts) or not all(
                isinstance(r, str) and r.strip() for r in references
            ):
                raise ValueError(
                    f"{self._reward.reference_key}: one non-empty reference answer per completion, "
                    f"got {references!r:.80}"
                )
        return [
            _Item(
                _as_text(prompt, "prompts", completion=False),
                _as_text(completion, "completions", completion=True),
                reference,
            )
            for prompt, completion, reference in zip(prompts, completions, references, strict=True)
        ]

    def _verl_args(
        self, solution_str: str, ground_truth: Any, extra_info: Mapping[str, Any] | None
    ) -> tuple[list[str], list[str], dict[str, list[Any]]]:
        prompt = (extra_info or {}).get(self._reward.verl_prompt_key)
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(
                f"extra_info: verl's compute_score needs the prompt as extra_info"
                f"[{self._reward.verl_prompt_key!r}] (see verl_prompt_key)"
            )
        key = self._reward.reference_key
        columns = {} if key is None else {key: [ground_truth]}
        return [prompt], [solution_str], columns

    @staticmethod
    def _verl_result(rewards: list[float | None], details: list[RewardDetail]) -> dict[str, Any]:
        return {
            "score": 0.0 if rewards[0] is None else rewards[0],
            "judge_score": details[0]["score"],
            "graded": rewards[0] is not None,
        }

    # ------------------------------------------------------------------ calls

    def _rubric_calls(self, items: list[_Item]) -> list[_Call]:
        """One rubric call per distinct prompt (a cached prompt's makes no model call)."""
        return [
            _Call(
                self._rubric_graph,
                {"instruction": prompt, "reference_answer": reference},
                lambda out: as_rubric(out["rubric"]),
            )
            for prompt, reference in dict.fromkeys(item.key for item in items)
        ]

    def _grading_calls(
        self, items: list[_Item], rubrics: Mapping[tuple[str, str | None], Rubric | Checklist]
    ) -> tuple[list[_Call], list[list[int]]]:
        """The grading calls and, for each, the indices of the completions it grades."""
        graded = [i for i, item in enumerate(items) if item.completion.strip()]
        if not self._reward.group:
            calls = [
                _Call(
                    self._grading_graph,
                    {
                        "instruction": items[i].prompt,
                        "response": items[i].completion,
                        "reference_answer": items[i].reference,
                        "rubric": rubrics[items[i].key],
                    },
                    _read_graded,
                )
                for i in graded
            ]
            return calls, [[i] for i in graded]
        groups: dict[tuple[str, str | None], list[int]] = {}
        for i in graded:
            groups.setdefault(items[i].key, []).append(i)
        low, high = self._settings.scale
        calls = []
        for (prompt, reference), indices in groups.items():
            blocks = [fence(items[i].completion, f"RESPONSE {n}") for n, i in enumerate(indices, 1)]
            used = reference if not self._settings.reference_free else None
            calls.append(
                _Call(
                    self._group_runnable,
                    {
                        "instruction": prompt,
                        "responses": "\n\n".join(blocks),
                        "count": len(indices),
                        "rubric": rubrics[(prompt, reference)].render(),
                        "low": low,
                        "high": high,
                        "reference_note": f" and a reference answer that would score {high}"
                        if used
                        else "",
                        "reference_section": f"\n\n### Reference Answer (Score {high}):\n{used}"
                        if used
                        else "",
                    },
                    _group_reader(len(indices), (low, high)),
                )
            )
        return calls, list(groups.values())

    def _rewarding(self, prompts: Any, completions: Any, columns: Mapping[str, Any]) -> Rewarding:
        """The reward computation both forms drive: rubrics first, then the gradings."""
        items = self._items(prompts, completions, columns)
        rubric_calls = self._rubric_calls(items)
        keys = [
            (call.input["instruction"], call.input["reference_answer"]) for call in rubric_calls
        ]
        rubrics = dict(zip(keys, (yield rubric_calls), strict=True))
        calls, indices = self._grading_calls(items, rubrics)
        return self._finish(items, rubrics, indices, (yield calls), columns)

    def _finish(
        self,
        items: list[_Item],
        rubrics: Mapping[tuple[str, str | None], Rubric | Checklist],
        indices: list[list[int]],
        gradings: list[list[Grading]],
        columns: Mapping[str, Any],
    ) -> list[float | None]:
        low, high = self._settings.scale
        mode: Literal["single", "group"] = "group" if self._reward.group else "single"
        graded: dict[int, Grading] = {}
        for positions, results in zip(indices, gradings, strict=True):
            graded.update(zip(positions, results, strict=True))
        empty: Grading = (float(low), "Empty completion: the lowest score.", None)
        rewards: list[float | None] = []
        details: list[RewardDetail] = []
        for i, item in enumerate(items):
            score, feedback, criteria_results = graded.get(i, empty)
            reward = None if score is None else float(score)
            if reward is not None and self._reward.normalize:
                reward = (reward - low) / (high - low)
            rubric = rubrics[item.key]
            if isinstance(rubric, Checklist):
                criteria, levels = rubric.render(), {}
            else:
                criteria = rubric.criteria
                levels = {str(level): text for level, text in rubric.levels.items()}
            rewards.append(reward)
            details.append(
                RewardDetail(
                    prompt=item.prompt,
                    completion=item.completion,
                    score=score,
                    reward=reward,
                    feedback=feedback,
                    criteria=criteria,
                    levels=levels,
                    criteria_results=criteria_results,
                    mode=mode if i in graded else "empty",
                )
            )
        self.last_details = details
        if callable(log_extra := columns.get("log_extra")):
            log_extra(f"{self.__name__}_feedback", [d["feedback"] for d in details])
        if callable(log_metric := columns.get("log_metric")) and details:
            unread = sum(reward is None for reward in rewards) / len(rewards)
            log_metric(f"{self.__name__}/unreadable", unread)
            values = [
                r["value"]
                for d in details
                for r in d["criteria_results"] or []
                if r["value"] is not None and not r["pitfall"]
            ]
            if values:
                log_metric(f"{self.__name__}/criteria_met", sum(values) / len(values))
        return rewards


class SPRIReward(_SPRIRewardBase):
    """A TRL reward function grading completions with SPRI rubrics (threads for concurrency).

    Build it with :func:`create_spri_reward`. Call it as TRL does:
    ``reward(prompts=..., completions=..., **columns) -> list[float | None]``.
    """

    def _run(self, calls: list[_Call]) -> list[Any]:
        def one(call: _Call) -> Any:
            return call.read(call.runnable.invoke(call.input, self._reward.config))

        if len(calls) <= 1:
            return [one(call) for call in calls]
        with ThreadPoolExecutor(min(self._reward.max_concurrency, len(calls))) as pool:
            return list(pool.map(one, calls))

    def __call__(
        self, prompts: Sequence[Prompt], completions: Sequence[Prompt], **kwargs: Any
    ) -> list[float | None]:
        """Rewards for ``completions`` of ``prompts``, one per completion.

        Args:
            prompts: TRL prompts, strings or message lists (repeated once per completion).
            completions: TRL completions, in the prompts' format.
            **kwargs: Dataset columns (e.g. the ``reference_key`` one) and TRL's extras;
                ``log_extra`` gets the feedback; ``log_metric`` the unreadable share and, by
                criteria, the mean value of the criteria (pitfalls aside).

        Returns:
            A reward per completion, ``None`` where the grading had no readable score.

        Raises:
            ValueError: Before any model call, if the inputs are malformed.
        """
        steps = self._rewarding(prompts, completions, kwargs)
        try:
            calls = next(steps)
            while True:
                calls = steps.send(self._run(calls))
        except StopIteration as done:
            rewards: list[float | None] = done.value
            return rewards

    def compute_score(
        self,
        data_source: Any,
        solution_str: str,
        ground_truth: Any,
        extra_info: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The reward in verl's ``compute_score`` form, for ``custom_reward_function``.

        The prompt is ``extra_info[verl_prompt_key]``; ``ground_truth`` is the reference
        answer when the reward has a ``reference_key``.

        Returns:
            ``{"score": reward (0.0 when unreadable), "judge_score": ..., "graded": bool}``.
        """
        prompts, completions, columns = self._verl_args(solution_str, ground_truth, extra_info)
        rewards = self(prompts, completions, **columns)
        return self._verl_result(rewards, self.last_details)


class AsyncSPRIReward(_SPRIRewardBase):
    """The async form of :class:`SPRIReward` (``asyncio.gather`` for concurrency).

    Build it with :func:`create_async_spri_reward`; TRL awaits it alongside its other
    async reward functions.
    """

    async def _run(self, calls: list[_Call]) -> list[Any]:
        semaphore = asyncio.Semaphore(self._reward.max_concurrency)

        async def one(call: _Call) -> Any:
            async with semaphore:
                return call.read(await call.runnable.ainvoke(call.input, self._reward.config))

        return list(await asyncio.gather(*(one(call) for call in calls)))

    async def __call__(
        self, prompts: Sequence[Prompt], completions: Sequence[Prompt], **kwargs: Any
    ) -> list[float | None]:
        """Rewards for ``completions`` of ``prompts`` (see :meth:`SPRIReward.__call__`)."""
        steps = self._rewarding(prompts, completions, kwargs)
        try:
            calls = next(steps)
            while True:
                calls = steps.send(await self._run(calls))
        except StopIteration as done:
            rewards: list[float | None] = done.value
            return rewards

    async def compute_score(
        self,
        data_source: Any,
        solution_str: str,
        ground_truth: Any,
        extra_info: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The reward in verl's ``compute_score`` form, awaited (see ``SPRIReward``'s)."""
        prompts, completions, columns = self._verl_args(solution_str, ground_truth, extra_info)
        rewards = await self(prompts, completions, **columns)
        return self._verl_result(rewards, self.last_details)


def _build(model: ModelSpec, options: Mapping[str, Any], caller: str) -> dict[str, Any]:
    """Check the options, resolve the models once and build both graphs."""
    if "reference_free" in options:
        raise TypeError(
            f"{caller}() got an unexpected keyword argument 'reference_free' (a reward grades "
            "with a reference answer when reference_key= names its column)"
        )
    taken = take_options(options, REWARD_OPTION_NAMES, caller=caller)
    own = set(option_names(RewardSettings))
    reward = RewardSettings(**{k: v for k, v in taken.items() if k in own})
    judge = {k: v for k, v in taken.items() if k not in own}
    judge["reference_free"] = reward.reference_key is None
    judge["cache_policy"] = judge.get("cache_policy") or CachePolicy()
    settings = JudgeSettings.from_options(model, judge, caller=caller)
    cache = reward.node_cache()
    return {
        "settings": settings,
        "reward": reward,
        "rubric_graph": rubric_stage_graph(settings).compile(cache=cache),
        "grading_graph": _grading_graph(settings).compile(cache=cache),
    }


def create_spri_reward(model: ModelSpec = None, **options: Unpack[RewardOptions]) -> SPRIReward:
    r"""Create a TRL reward function that grades completions with SPRI rubrics.

    Each distinct prompt gets one rubric, written, critiqued and refined by the SPRI rubric
    stage and kept in a node cache; each non-empty completion is then graded with it by
    the SPRI judgment stage (grading, critique, refinement), concurrently on up to
    ``max_concurrency`` threads. An empty completion gets the lowest score without a call.

    With ``rubric_style="criteria"`` a checklist is written per prompt and each completion
    graded per criterion (in one call, or one per criterion with
    ``criteria_grading="each"``), with no critique of the verdicts; group mode shows the
    checklist as the rubric.

    Args:
        model: The judge: a chat model or a model string (``"openai:gpt-4o-mini"``,
            ``"local"``, ...); ``None`` means ``$SPRI_MODEL`` or the embedded local model.
        **options: The reward's options (:class:`RewardOptions`: ``reference_key``,
            ``cache``, ``group``, ``normalize``, ``max_concurrency``, ``verl_prompt_key``,
            ``config``, ``name``) and the judge options every judge takes
            (:class:`~spri_graph.judges.base.JudgeOptions`: ``critic_model``,
            ``threshold``, ``max_iterations``, ``scale``, ``judge_output``, ``prompts``,
            ``rubric_style``, ``criteria_grading``...), except ``reference_free``, which
            follows ``reference_key``.

    Returns:
        A :class:`SPRIReward`; ``reward.last_details`` holds the last call's
        :class:`RewardDetail` per completion.

    Raises:
        TypeError: If an option is unknown.
        ValueError: If an option is out of range or a model string cannot be resolved;
            when called, before any model call, if the inputs are malformed.
    """
    return SPRIReward(**_build(model, options, "create_spri_reward"))


def create_async_spri_reward(
    model: ModelSpec = None, **options: Unpack[RewardOptions]
) -> AsyncSPRIReward:
    """Create the async form of :func:`create_spri_reward` (same arguments).

    Its calls run concurrently with ``asyncio.gather``, at most ``max_concurrency`` at once;
    TRL runs async reward functions concurrently with each other.

    Returns:
        An :class:`AsyncSPRIReward`: ``await reward(prompts=..., completions=...)``.
    """
    return AsyncSPRIReward(**_build(model, options, "create_async_spri_reward"))
