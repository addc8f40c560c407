"""Batch synthesis against a stub OpenAI server on 127.0.0.1 (``tests/batch_server.py``).

The real ``openai`` client talks to the stub through ``langchain_openai.ChatOpenAI``: files
uploaded, batches created and polled, outputs downloaded. The stub answers by request
content, so a batch run must write exactly the lines an interactive run writes.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_openai import ChatOpenAI

from spri_graph.synthesis import asynthesize, synthesize
from spri_graph.synthesis.batch import BatchSettings, batch_state_path
from tests.batch_server import BatchServer
from tests.cli import spri
from tests.fakes import ScriptedChatModel

ROOT = Path(__file__).resolve().parent.parent
RECORDS = [{"id": f"r{i}", "instruction": f"question {i}"} for i in range(1, 21)]
FAST = BatchSettings(poll_interval=0.02)


def chat_model(server: BatchServer) -> ChatOpenAI:
    return ChatOpenAI(model="stub-model", base_url=server.url, api_key="test-key")


def lines_by_id(path: Path) -> dict[str, dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    by_id = {row["id"]: row for row in rows}
    assert len(by_id) == len(rows), "a record was written twice"
    return by_id


@pytest.fixture(scope="module")
def interactive(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], int]:
    """The lines of an interactive run over the same stub, and its model requests."""
    out = tmp_path_factory.mktemp("interactive") / "sft.jsonl"
    with BatchServer() as server:
        report = synthesize(RECORDS, model=chat_model(server), output=out)
        assert report.completed == 20 and server.batches == 0
        return lines_by_id(out), server.chat_calls


@pytest.fixture
def server() -> Iterator[BatchServer]:
    with BatchServer() as stub:
        yield stub


# --------------------------------------------------------------------------- runs


def test_twenty_records_through_rounds_match_an_interactive_run(
    server: BatchServer, interactive: tuple[dict[str, Any], int], tmp_path: Path
) -> None:
    expected, calls = interactive
    out = tmp_path / "sft.jsonl"
    report = synthesize(RECORDS, model=chat_model(server), output=out, batch=FAST, concurrency=50)
    assert lines_by_id(out) == expected
    assert server.chat_calls == 0  # every call went through a batch
    assert report.completed == 20 and report.failed == 0
    assert report.calls == calls  # the same model requests as interactively
    batch = report.batch
    assert batch is not None
    assert batch.rounds >= 6 and batch.batch_ids == server.batch_ids
    assert batch.requests == batch.answered == sum(server.submitted.values()) == calls
    assert set(server.submitted.values()) == {1}  # no request sent twice
    assert not batch_state_path(out).exists()  # nothing left to resume


def test_records_join_batches_as_slots_free_up(
    server: BatchServer, interactive: tuple[dict[str, Any], int], tmp_path: Path
) -> None:
    out = tmp_path / "sft.jsonl"
    report = asyncio.run(
        asynthesize(RECORDS, model=chat_model(server), output=out, batch=FAST, concurrency=6)
    )
    assert lines_by_id(out) == interactive[0]
    assert report.batch is not None and report.batch.requests == interactive[1]
    assert set(server.submitted.values()) == {1}


def test_an_expired_batch_goes_into_the_next_round(
    interactive: tuple[dict[str, Any], int], tmp_path: Path
) -> None:
    out = tmp_path / "sft.jsonl"
    with BatchServer(expire=frozenset({2})) as server:
        report = synthesize(RECORDS, model=chat_model(server), output=out, batch=FAST)
        second = server.batch_ids[1]
        retried = {key for key, count in server.submitted.items() if count == 2}
    assert lines_by_id(out) == interactive[0]
    assert set(server.submitted.values()) == {1, 2}
    assert report.batch is not None
    assert second in report.batch.batch_ids
    assert report.batch.requests == interactive[1] + len(retried)
    assert report.batch.answered == interactive[1]
    assert len(retried) >= 5  # half of the second round's requests expired


def test_report_costs_at_batch_and_interactive_prices(server: BatchServer, tmp_path: Path) -> None:
    settings = BatchSettings(poll_interval=0.02, price_in=2.5, price_out=10.0, discount=0.5)
    report = synthesize(
        RECORDS[:8], model=chat_model(server), output=tmp_path / "out.jsonl", batch=settings
    )
    batch = report.batch
    assert batch is not None
    tokens_in, tokens_out = server.usage["prompt_tokens"], server.usage["completion_tokens"]
    assert (batch.input_tokens, batch.output_tokens) == (tokens_in, tokens_out)
    assert (batch.input_tokens, batch.output_tokens) == (report.input_tokens, report.output_tokens)
    interactive_cost = (tokens_in * 2.5 + tokens_out * 10.0) / 1_000_000
    assert batch.interactive_cost == pytest.approx(interactive_cost)
    assert batch.cost == pytest.approx(interactive_cost / 2)
    assert batch.cost > 0
    summary = report.summary()
    assert f"{len(batch.batch_ids)} batches" in summary
    assert f"cost {batch.cost:.4f} at batch prices, {interactive_cost:.4f} interactive" in summary


# --------------------------------------------------------------------------- kill -9


def _cli(inp: Path, out: Path, url: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "spri_graph.cli",
        "synthesize",
        str(inp),
        "-o",
        str(out),
        "--batch",
        "--batch-poll",
        "0.05",
        "--model",
        "stub-model",
        "--base-url",
        url,
    ]


def _env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("SPRI_MODEL", "OPENAI_BASE_URL")}
    return {
        **clean,
        "PYTHONPATH": str(ROOT),
        "OPENAI_API_KEY": "test-key",
        "NO_PROXY": "127.0.0.1",
        "no_proxy": "127.0.0.1",
    }


@pytest.mark.parametrize("moment", ["while creating", "while polling"])
def test_killed_after_the_second_batch_resumes_without_resubmitting(
    moment: str, interactive: tuple[dict[str, Any], int], tmp_path: Path
) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "sft.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    proc: list[subprocess.Popen[bytes]] = []
    killed = threading.Event()

    def kill(number: int) -> None:
        if number == 2 and moment == "while creating":  # before the client has the batch id
            proc[0].kill()
            proc[0].wait()
            killed.set()

    with BatchServer(turnaround=0.3, on_batch=kill) as server:
        proc.append(subprocess.Popen(_cli(inp, out, server.url), env=_env()))
        deadline = time.monotonic() + 120
        while server.batches < 2 and proc[0].poll() is None:
            assert time.monotonic() < deadline, "the second batch never came"
            time.sleep(0.01)
        if moment == "while polling":
            time.sleep(0.1)  # the id is written; the run is polling the second batch
            proc[0].kill()
            killed.set()
        assert killed.wait(30)
        assert proc[0].wait() == -9
        assert batch_state_path(out).exists()
        before = dict(server.submitted)

        rerun = subprocess.run(_cli(inp, out, server.url), env=_env(), capture_output=True)
        assert rerun.returncode == 0, rerun.stderr.decode()

    assert set(server.submitted.values()) == {1}, "a request was submitted twice"
    assert set(before) <= set(server.submitted)
    text = out.read_text()
    assert text.endswith("\n")
    assert lines_by_id(out) == interactive[0]  # every record once, no torn line
    assert sum(server.submitted.values()) == interactive[1]
    summary = rerun.stdout.decode()
    assert "20 written" in summary
    assert f"{server.batches} batches" in summary  # the killed run's batches were adopted
    assert not batch_state_path(out).exists()


# --------------------------------------------------------------------------- bad input


def test_a_model_without_a_batch_api_is_refused_before_any_record(tmp_path: Path) -> None:
    fake = ScriptedChatModel(["never"])
    out = tmp_path / "out.jsonl"
    with pytest.raises(ValueError, match=r"^model: ScriptedChatModel has no batch API"):
        synthesize(RECORDS, model=fake, output=out, batch=True)
    with BatchServer() as server:
        with pytest.raises(ValueError, match=r"^critic_model: ScriptedChatModel has no batch"):
            synthesize(RECORDS, model=chat_model(server), critic_model=fake, output=out, batch=True)
        other = ChatOpenAI(model="critic", base_url="http://127.0.0.1:9/v1", api_key="k")
        with pytest.raises(ValueError, match=r"^critic_model: batch mode sends every call"):
            synthesize(
                RECORDS, model=chat_model(server), critic_model=other, output=out, batch=True
            )
        for kwargs, message in [
            ({"workers": 2}, r"^workers: batch mode runs in one process"),
            ({"speculative": True}, r"^speculative: off in batch mode"),
            ({"batch": "yes"}, r"^batch must be True, False or a BatchSettings"),
        ]:
            options = {"batch": True, **kwargs}
            with pytest.raises(ValueError, match=message):
                synthesize(RECORDS, model=chat_model(server), output=out, **options)
        assert server.batches == 0 and server.chat_calls == 0
    assert fake.calls == [] and not out.exists()
    for name in ("price_in", "price_out", "poll_interval"):
        with pytest.raises(ValueError, match=rf"^{name} must be a number >= 0"):
            BatchSettings(**{name: -1.0})
    with pytest.raises(ValueError, match=r"^discount must be a number in \(0, 1\]"):
        BatchSettings(discount=1.5)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--price-in", "-1"], "argument --price-in: expected a price >= 0, got '-1'"),
        (["--price-out", "-0.5"], "argument --price-out: expected a price >= 0, got '-0.5'"),
        (["--batch-discount", "2"], "--batch-discount: discount must be a number in (0, 1]"),
        (["--batch-poll", "-1"], "--batch-poll: poll_interval must be a number >= 0"),
        (["--model", "local"], "model: LocalChatModel("),
    ],
)
def test_cli_bad_batch_input_is_one_line_and_exit_2(
    extra: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "sft.jsonl"
    inp.write_text(json.dumps(RECORDS[0]) + "\n")
    args = _cli(inp, out, "http://127.0.0.1:9/v1")[3:]  # after "python -m spri_graph.cli"
    if "--model" in extra:
        args = args[: args.index("--model")]
    # In this process: the command ends before any model call.
    code, _, err = spri(capsys, *args, *extra)
    assert code == 2
    assert err.count("\n") == 1 and message in err, err
    assert not out.exists() and not batch_state_path(out).exists()
