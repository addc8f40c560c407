"""Every judge entry point takes the shared options the same way, so they cannot drift.

The shared options are the fields of ``LoopSettings`` and ``GradingSettings`` (their one set
of defaults). Each entry point must accept each option it declares (a non-default value
lands in the settings it builds), refuse an unknown one with ``TypeError``, name a bad
value in a ``ValueError``, and not re-declare any of them in its own signature.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest
from langchain_core.prompts import ChatPromptTemplate
from langgraph.types import CachePolicy, RetryPolicy
from typing_extensions import Unpack, get_type_hints

import spri_graph
from spri_graph import (
    create_async_pairwise_evaluator,
    create_async_spri_evaluator,
    create_fixed_rubric_judge,
    create_judge,
    create_judge_panel,
    create_pairwise_evaluator,
    create_pairwise_judge,
    create_rubric_graph,
    create_spri_evaluator,
    create_vanilla_judge,
)
from spri_graph.engine.options import CallOptions, LoopOptions, LoopSettings, option_names
from spri_graph.judges.base import (
    GRADING_OPTION_NAMES,
    JUDGE_OPTION_NAMES,
    GradingOptions,
    GradingSettings,
    JudgeOptions,
    JudgeSettings,
)
from spri_graph.rewards import (
    REWARD_OPTION_NAMES,
    RewardOptions,
    create_async_spri_reward,
    create_spri_reward,
)
from tests.fakes import ScriptedChatModel

SHARED = (*option_names(LoopSettings), *option_names(GradingSettings))
"""Every shared option: the loop settings' fields, then the grading settings' fields."""


def _model() -> ScriptedChatModel:
    return ScriptedChatModel([])


def _panel(**options: Any) -> Any:
    return create_judge_panel([_model(), _model()], **options)


# name -> (factory taking the model's place, the option names it takes, a prompt key it has)
ENTRY_POINTS: dict[str, tuple[Callable[..., Any], tuple[str, ...], str]] = {
    "create_judge": (lambda **o: create_judge(_model(), **o), JUDGE_OPTION_NAMES, "rubric_draft"),
    "create_rubric_graph": (
        lambda **o: create_rubric_graph(_model(), **o),
        JUDGE_OPTION_NAMES,
        "rubric_refine",
    ),
    "create_vanilla_judge": (
        lambda **o: create_vanilla_judge(_model(), **o),
        GRADING_OPTION_NAMES,
        "judgment_draft",
    ),
    "create_fixed_rubric_judge": (
        lambda **o: create_fixed_rubric_judge(_model(), **o),
        GRADING_OPTION_NAMES,
        "judgment_draft",
    ),
    "create_pairwise_judge": (
        lambda **o: create_pairwise_judge(_model(), **o),
        JUDGE_OPTION_NAMES,
        "pairwise_grade",
    ),
    "create_judge_panel": (_panel, JUDGE_OPTION_NAMES, "judgment_draft"),
    "create_spri_evaluator": (
        lambda **o: create_spri_evaluator(_model(), **o),
        JUDGE_OPTION_NAMES,
        "judgment_refine",
    ),
    "create_async_spri_evaluator": (
        lambda **o: create_async_spri_evaluator(_model(), **o),
        JUDGE_OPTION_NAMES,
        "judgment_critique",
    ),
    "create_pairwise_evaluator": (
        lambda **o: create_pairwise_evaluator(_model(), **o),
        JUDGE_OPTION_NAMES,
        "pairwise_grade",
    ),
    "create_async_pairwise_evaluator": (
        lambda **o: create_async_pairwise_evaluator(_model(), **o),
        JUDGE_OPTION_NAMES,
        "rubric_critique",
    ),
    # The rewards take every judge option but reference_free (reference_key= sets it).
    "create_spri_reward": (
        lambda **o: create_spri_reward(_model(), **o),
        tuple(name for name in JUDGE_OPTION_NAMES if name in REWARD_OPTION_NAMES),
        "rubric_draft",
    ),
    "create_async_spri_reward": (
        lambda **o: create_async_spri_reward(_model(), **o),
        tuple(name for name in JUDGE_OPTION_NAMES if name in REWARD_OPTION_NAMES),
        "judgment_refine",
    ),
}

FUNCTIONS: dict[str, Callable[..., Any]] = {
    name: getattr(spri_graph, name, None) or getattr(spri_graph.rewards, name)
    for name in ENTRY_POINTS
}

DECLARED: dict[str, type] = {
    "create_vanilla_judge": GradingOptions,
    "create_fixed_rubric_judge": GradingOptions,
    "create_spri_reward": RewardOptions,
    "create_async_spri_reward": RewardOptions,
}
"""The options TypedDict of the entry points that do not take :class:`JudgeOptions`."""

OWN_DEFAULTS: dict[str, dict[str, Any]] = {
    "create_spri_reward": {"cache_policy": CachePolicy()},
    "create_async_spri_reward": {"cache_policy": CachePolicy()},
}
"""Defaults an entry point sets on purpose: a reward always keeps its rubrics in a cache."""

PROMPT = ChatPromptTemplate.from_messages([("human", "Grade {instruction} anyway.")])
CRITIC = ScriptedChatModel([], name_="critic")
RETRY = RetryPolicy(max_attempts=2)
CACHE = CachePolicy(ttl=5)

VALUES: dict[str, Any] = {
    "critic_model": CRITIC,
    "threshold": 3,
    "max_iterations": 2,
    "critic_output": "structured",
    "parse_retries": 3,
    "prompts": None,  # per entry point: {its prompt key: PROMPT}
    "retry_policy": RETRY,
    "cache_policy": CACHE,
    "scale": (1, 10),
    "judge_output": "structured",
    "reference_free": False,
    "rubric_style": "criteria",
    "criteria_grading": "each",
}
"""A valid value for each shared option, none of them its default."""

BAD: dict[str, Any] = {
    "critic_model": "no-such-provider:model",
    "threshold": 9,
    "max_iterations": 0,
    "critic_output": "json",
    "parse_retries": -1,
    "prompts": {"no_such_prompt": "x"},
    "cache_policy": "forever",
    "scale": (5, 1),
    "judge_output": "json",
    "reference_free": "yes",
    "rubric_style": "checklist",
    "criteria_grading": "all",
}
"""A bad value for each shared option that has a check (a retry policy is taken as given)."""


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[JudgeSettings]:
    """The settings every judge built during the test, in order."""
    settings: list[JudgeSettings] = []
    original = JudgeSettings.from_options.__func__  # type: ignore[attr-defined]

    def spy(cls: type[JudgeSettings], *args: Any, **kwargs: Any) -> JudgeSettings:
        made = original(cls, *args, **kwargs)
        settings.append(made)
        return made

    monkeypatch.setattr(JudgeSettings, "from_options", classmethod(spy))
    return settings


def _value(name: str, prompt_key: str) -> Any:
    return {prompt_key: PROMPT} if name == "prompts" else VALUES[name]


def _cases() -> list[tuple[str, str]]:
    return [(entry, name) for entry, (_, names, _) in ENTRY_POINTS.items() for name in names]


def test_the_declarations_agree() -> None:
    assert set(VALUES) == set(SHARED) == set(JUDGE_OPTION_NAMES)
    assert set(LoopOptions.__annotations__) == set(option_names(LoopSettings))
    assert set(JudgeOptions.__annotations__) == set(JUDGE_OPTION_NAMES)
    assert set(GradingOptions.__annotations__) == set(GRADING_OPTION_NAMES)
    assert set(GRADING_OPTION_NAMES) == {
        *CallOptions.__annotations__,
        *option_names(GradingSettings),
    }


@pytest.mark.parametrize(("entry", "name"), _cases())
def test_each_option_lands_in_the_settings(
    entry: str, name: str, built: list[JudgeSettings]
) -> None:
    factory, _, prompt_key = ENTRY_POINTS[entry]
    value = _value(name, prompt_key)
    factory(**{name: value})
    settings = built[-1]
    if name in option_names(GradingSettings):
        assert getattr(settings.grading, name) == value
    else:
        assert getattr(settings.loop, name) == value
    if name == "prompts":
        assert settings.prompts[prompt_key] is PROMPT
    if name == "critic_model":
        assert settings.models.critic is CRITIC


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_defaults_come_from_the_settings(entry: str, built: list[JudgeSettings]) -> None:
    ENTRY_POINTS[entry][0]()
    assert built[-1].loop == LoopSettings(**OWN_DEFAULTS.get(entry, {}))
    assert built[-1].grading == GradingSettings()


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_an_unknown_option_is_a_type_error(entry: str) -> None:
    factory, names, _ = ENTRY_POINTS[entry]
    with pytest.raises(
        TypeError, match=rf"{entry}\(\) got an unexpected keyword argument 'treshold'"
    ):
        factory(treshold=3)
    for name in set(JUDGE_OPTION_NAMES) - set(names):  # the loop options, for one-call judges
        with pytest.raises(TypeError, match=f"unexpected keyword argument {name!r}"):
            factory(**{name: VALUES[name]})


@pytest.mark.parametrize(("entry", "name"), [c for c in _cases() if c[1] in BAD])
def test_a_bad_value_names_its_option(entry: str, name: str) -> None:
    factory = ENTRY_POINTS[entry][0]
    with pytest.raises(ValueError, match=name):
        factory(**{name: BAD[name]})


@pytest.mark.parametrize(
    "entry", [e for e, (_, names, _) in ENTRY_POINTS.items() if "parse_retries" in names]
)
def test_the_old_parse_retries_name_warns(entry: str, built: list[JudgeSettings]) -> None:
    with pytest.warns(
        DeprecationWarning, match="critic_parse_retries= is deprecated, use parse_retries="
    ) as warned:
        ENTRY_POINTS[entry][0](critic_parse_retries=0)
    assert built[-1].loop.parse_retries == 0
    assert [w.filename for w in warned] == [__file__]  # the user's line, shown by default
    both = pytest.raises(TypeError, match="got both critic_parse_retries= and parse_retries=")
    with both, pytest.warns(DeprecationWarning):
        ENTRY_POINTS[entry][0](critic_parse_retries=0, parse_retries=1)


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_no_entry_point_redeclares_a_shared_option(entry: str) -> None:
    function = FUNCTIONS[entry]
    parameters = inspect.signature(function).parameters
    assert not set(parameters) & set(SHARED), f"{entry} re-declares a shared option"
    options = [p for p in parameters.values() if p.kind is inspect.Parameter.VAR_KEYWORD]
    assert [p.name for p in options] == ["options"]
    declared = DECLARED.get(entry, JudgeOptions)
    assert get_type_hints(function)["options"] == Unpack[declared]  # type: ignore[valid-type]
    assert set(ENTRY_POINTS[entry][1]) <= set(declared.__annotations__)


@pytest.mark.parametrize(
    "create", [create_spri_evaluator, create_async_spri_evaluator, create_pairwise_evaluator]
)
def test_with_a_judge_given_the_judge_options_are_refused(create: Callable[..., Any]) -> None:
    judge = create_vanilla_judge(_model())
    with pytest.raises(ValueError, match="threshold: these configure the built-in judge"):
        create(judge=judge, threshold=3)
    with pytest.raises(TypeError, match="unexpected keyword argument 'treshold'"):
        create(judge=judge, treshold=3)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("create_judge_graph", "create_judge"),
        ("create_pairwise_judge_graph", "create_pairwise_judge"),
    ],
)
def test_renamed_factories_warn_and_return_the_new_ones(old: str, new: str) -> None:
    with pytest.warns(
        DeprecationWarning, match=f"spri_graph.{old} is deprecated; use spri_graph.{new}$"
    ):
        found = getattr(spri_graph, old)
    assert found is getattr(spri_graph, new)
    assert old not in spri_graph.__all__
    with pytest.raises(AttributeError):
        spri_graph.create_no_such_graph  # noqa: B018
