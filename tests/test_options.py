"""The shared options reach every alignment entry point the same way, so they cannot drift.

The shared options are :class:`~spri_graph.engine.options.LoopSettings`' fields. Every entry
point here takes each of them (a non-default value reaches the settings it builds), refuses
an unknown option with ``TypeError``, names a bad value in a ``ValueError`` and declares no
shared option in its own signature.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes import ScriptedChatModel
from langchain_core.prompts import ChatPromptTemplate
from langgraph.types import CachePolicy, RetryPolicy

from spri_graph import (
    SPRIMiddleware,
    asynthesize,
    create_principles_graph,
    create_refine_loop,
    create_spri_graph,
    synthesize,
)
from spri_graph.cli import build_parser
from spri_graph.cli.common import LOOP_FLAGS, loop_options
from spri_graph.engine.options import LoopSettings, option_names

SHARED = option_names(LoopSettings)

CRITIC = ScriptedChatModel(["Feedback: fine. [RESULT] 5"], cycle=True)
NON_DEFAULT: dict[str, Any] = {
    "critic_model": CRITIC,
    "threshold": 5,
    "max_iterations": 2,
    "critic_output": "structured",
    "parse_retries": 0,
    "prompts": {"critique": "Grade it: {candidate}"},
    "retry_policy": RetryPolicy(max_attempts=2),
    "cache_policy": CachePolicy(ttl=60),
}
"""A valid value other than the default for every shared option."""

BAD: dict[str, Any] = {
    "threshold": 6,
    "max_iterations": 0,
    "critic_output": "json",
    "parse_retries": -1,
    "cache_policy": "forever",
}
"""Out-of-range values, each refused with a ValueError naming the option."""


def test_every_shared_option_has_a_test_value() -> None:
    assert set(NON_DEFAULT) == set(SHARED)
    defaults = LoopSettings()
    for name, value in NON_DEFAULT.items():
        assert value != getattr(defaults, name), name


def _model() -> ScriptedChatModel:
    return ScriptedChatModel(["Feedback: text. [RESULT] 5"], cycle=True)


def _prompts_for(entry: str) -> dict[str, str]:
    if entry == "create_refine_loop":
        return {"critique": "Grade it: {candidate}"}
    return {"principles_critique": "Grade {principles} for {query}"}


def _refine_loop(**options: Any) -> Any:
    return create_refine_loop(
        _model(),
        draft_prompt=ChatPromptTemplate.from_template("Write about {topic}"),
        critique_prompt=ChatPromptTemplate.from_template("Grade: {candidate}"),
        refine_prompt=ChatPromptTemplate.from_template("{candidate} {feedback}"),
        **options,
    )


def _synthesize(tmp_path: Path) -> Callable[..., Any]:
    def run(**options: Any) -> Any:
        records = [{"id": "a", "instruction": "Say hi."}]
        return synthesize(records, model=_model(), output=tmp_path / "o.jsonl", **options)

    return run


def _asynthesize(tmp_path: Path) -> Callable[..., Any]:
    def run(**options: Any) -> Any:
        records = [{"id": "a", "instruction": "Say hi."}]
        output = tmp_path / "o.jsonl"
        return asyncio.run(asynthesize(records, model=_model(), output=output, **options))

    return run


ENTRY_POINTS: dict[str, Callable[[Path], Callable[..., Any]]] = {
    "create_refine_loop": lambda _: _refine_loop,
    "create_spri_graph": lambda _: lambda **o: create_spri_graph(_model(), **o),
    "create_principles_graph": lambda _: lambda **o: create_principles_graph(_model(), **o),
    "SPRIMiddleware": lambda _: lambda **o: SPRIMiddleware(_model(), **o),
    "synthesize": _synthesize,
    "asynthesize": _asynthesize,
}
SIGNATURES: dict[str, Callable[..., Any]] = {
    "create_refine_loop": create_refine_loop,
    "create_spri_graph": create_spri_graph,
    "create_principles_graph": create_principles_graph,
    "SPRIMiddleware": SPRIMiddleware,
    "synthesize": synthesize,
    "asynthesize": asynthesize,
}


@pytest.fixture
def built_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[LoopSettings]]:
    """Every LoopSettings built while the test runs."""
    built: list[LoopSettings] = []
    check = LoopSettings.__post_init__

    def record(self: LoopSettings) -> None:
        check(self)
        built.append(self)

    monkeypatch.setattr(LoopSettings, "__post_init__", record)
    yield built


def option_value(entry: str, name: str) -> Any:
    return _prompts_for(entry) if name == "prompts" else NON_DEFAULT[name]


@pytest.mark.parametrize("name", SHARED)
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_each_entry_point_takes_each_shared_option(
    entry: str, name: str, tmp_path: Path, built_settings: list[LoopSettings]
) -> None:
    value = option_value(entry, name)
    ENTRY_POINTS[entry](tmp_path)(**{name: value})
    assert any(getattr(settings, name) == value for settings in built_settings), name


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_each_entry_point_refuses_an_unknown_option(entry: str, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'treshold'"):
        ENTRY_POINTS[entry](tmp_path)(treshold=4)


@pytest.mark.parametrize("name", BAD)
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_each_entry_point_names_a_bad_value(entry: str, name: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=f"^{name} must be"):
        ENTRY_POINTS[entry](tmp_path)(**{name: BAD[name]})


@pytest.mark.parametrize("entry", [*SIGNATURES, "synthesize_dataset"])
def test_no_entry_point_redeclares_a_shared_option(entry: str) -> None:
    if entry == "synthesize_dataset":
        from spri_graph.synthesis.ray import synthesize_dataset as function
    else:
        function = SIGNATURES[entry]
    parameters = inspect.signature(function).parameters
    assert not set(SHARED) & set(parameters)
    assert parameters["options"].kind is inspect.Parameter.VAR_KEYWORD


def test_the_old_retries_name_still_works_with_a_warning(
    built_settings: list[LoopSettings],
) -> None:
    with pytest.warns(DeprecationWarning, match="critic_parse_retries= is deprecated"):
        create_spri_graph(_model(), critic_parse_retries=0)  # type: ignore[call-arg]
    assert built_settings[-1].parse_retries == 0


# --------------------------------------------------------------------------- the CLI

FLAG_VALUES = {"threshold": "5", "max_iterations": "2", "critic_output": "structured"}
FLAG_VALUES["parse_retries"] = "0"
COMMAND_LINES = {
    "align": ["align", "Why?"],
    "judge": ["judge", "--instruction", "Say hi.", "--response", "Hi."],
    "judge --pairwise": ["judge", "--pairwise", "--instruction", "I", "--response-a", "A"],
    "synthesize": ["synthesize", "in.jsonl", "-o", "out.jsonl"],
}


def test_every_shared_option_is_a_flag_or_has_a_reason_not_to_be() -> None:
    no_flag = {"critic_model", "prompts", "retry_policy", "cache_policy"}  # see LOOP_FLAGS
    assert set(LOOP_FLAGS) | no_flag == set(SHARED)
    assert set(LOOP_FLAGS) == set(FLAG_VALUES)


@pytest.mark.parametrize("command", COMMAND_LINES)
def test_each_subcommand_takes_the_shared_flags(command: str) -> None:
    parser = build_parser()
    flags = [arg for name, value in FLAG_VALUES.items() for arg in (_flag(name), value)]
    args = parser.parse_args([*COMMAND_LINES[command], *flags, "--critic-model", "local"])
    assert args.critic_model == "local"
    options = loop_options(args)
    assert set(options) == set(FLAG_VALUES)
    settings = LoopSettings(**options)
    assert (settings.threshold, settings.max_iterations) == (5, 2)
    assert (settings.critic_output, settings.parse_retries) == ("structured", 0)


@pytest.mark.parametrize("command", COMMAND_LINES)
def test_flags_not_given_keep_the_library_defaults(command: str) -> None:
    args = build_parser().parse_args(COMMAND_LINES[command])
    assert loop_options(args) == {}
    assert loop_options(args, CRITIC) == {"critic_model": CRITIC}


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("threshold", "6", "expected a whole number from 1 to 5"),
        ("max_iterations", "0", "expected a whole number >= 1"),
        ("critic_output", "json", "invalid choice"),
        ("parse_retries", "-1", "expected a whole number >= 0"),
    ],
)
@pytest.mark.parametrize("command", COMMAND_LINES)
def test_a_bad_flag_is_one_line_exit_2(
    command: str, flag: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from spri_graph.cli import main

    assert main([*COMMAND_LINES[command], _flag(flag), value]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and _flag(flag) in err


def test_the_help_shows_the_library_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["align", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    defaults = LoopSettings()
    for name in ("threshold", "max_iterations", "parse_retries"):
        assert f"{_flag(name)} N" in shown
        assert f"(default: {getattr(defaults, name)})" in shown


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")
