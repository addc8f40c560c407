"""`spri synthesize` end to end against an OpenAI-compatible server on 127.0.0.1: real subprocesses
for signals and resumes, the command's `main` in this process for summaries and flags."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from spri_graph.cli.progress import Progress
from tests.cli import Ran, spri
from tests.fakes import all_text, spri_step
from tests.stub_http import chat_completion, send_json, serving

QUESTION = re.compile(r"question (?:\d+|[a-z])\b")


class ChatServer(ThreadingHTTPServer):
    """A minimal OpenAI-compatible chat completions endpoint with scripted answers."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.delay = 0.0
        self.reject: set[str] = set()
        self.refine_even = False  # even records' first response scores 2, refined ones 5
        self.requests = 0
        self.token_caps: set[Any] = set()
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    server: ChatServer

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.requests += 1
            self.server.token_caps.add(body.get("max_completion_tokens", body.get("max_tokens")))
        query = QUESTION.search(all_text(body["messages"])).group(0)  # type: ignore[union-attr]
        time.sleep(self.server.delay)
        if query in self.server.reject:
            error = {"error": {"message": "prompt rejected", "type": "invalid_request"}}
            send_json(self, error, 400)
            return
        refined = self.server.refine_even and int(query.split()[-1]) % 2 == 0
        prompt = str(body["messages"][-1]["content"])
        step = spri_step(body["messages"])
        if step == "critique":
            first = "Response to Evaluate:\nAnswer to" in prompt
            score = 2 if refined and first else 5
            text = f"Feedback: fine for {query}. [RESULT] {score}"
        elif step == "response_refine":
            text = f"Better answer to {query}."
        elif step == "principles_draft":
            text = f"Principles for {query}."
        else:
            text = f"Answer to {query}."
        words_in = sum(len(str(m["content"]).split()) for m in body["messages"])
        reply = chat_completion(
            body["model"], text, prompt_tokens=words_in, completion_tokens=len(text.split())
        )
        send_json(self, reply)


@pytest.fixture
def server() -> Iterator[ChatServer]:
    with serving(ChatServer()) as srv:
        yield srv


def spri_command() -> list[str]:
    exe = Path(sys.executable).parent / "spri"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "spri_graph.cli"]


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def synthesize_args(server: ChatServer, src: Path, out: Path, *extra: str) -> list[str]:
    return [
        *spri_command(),
        "synthesize",
        str(src),
        "-o",
        str(out),
        "--model",
        "scripted",
        "--base-url",
        server.url,
        *extra,
    ]


def run_cli(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, env=cli_env(), timeout=300)


def main_in_process(args: list[str], capsys: pytest.CaptureFixture[str]) -> Ran:
    """``run_cli`` in this process (see tests/cli.py), for runs whose process is not what the
    test is about (error paths, summaries, flags)."""
    return spri(capsys, *args[len(spri_command()) :])


def write_input(path: Path, n: int) -> Path:
    path.write_text(
        "".join(
            json.dumps({"id": f"r{i}", "instruction": f"question {i}"}) + "\n" for i in range(n)
        )
    )
    return path


def output_ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


def whole_lines(path: Path) -> int:
    # The run's writability check creates and removes the file before its first record.
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def children_of(pid: int) -> set[int]:
    """Live child processes of ``pid`` (Linux /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def start_and_stop_partway(
    args: list[str], out: Path, sig: int, after: int, workers: set[int] | None = None
) -> tuple[subprocess.Popen[str], str, str]:
    """Start the command, send ``sig`` once ``out`` has ``after`` lines, wait for it to end."""
    logs = out.parent / f"{out.stem}.{sig}.log"
    with open(f"{logs}.out", "w") as stdout, open(f"{logs}.err", "w") as stderr:
        # Files, not pipes: waiting on pipes would also wait for any process left behind.
        proc = subprocess.Popen(args, stdout=stdout, stderr=stderr, text=True, env=cli_env())
        deadline = time.monotonic() + 120
        while whole_lines(out) < after:
            assert proc.poll() is None, Path(f"{logs}.err").read_text()
            assert time.monotonic() < deadline, "the run never got going"
            time.sleep(0.01)
        if workers is not None:
            workers.update(children_of(proc.pid))
        proc.send_signal(sig)
        proc.wait(timeout=60)
    return proc, Path(f"{logs}.out").read_text(), Path(f"{logs}.err").read_text()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigkill_partway_then_resume_writes_every_id_exactly_once(
    server: ChatServer, tmp_path: Path, workers: str
) -> None:
    server.delay = 0.02
    src, out = write_input(tmp_path / "in.jsonl", 40), tmp_path / "out.jsonl"
    args = synthesize_args(server, src, out, "--concurrency", "4", "--workers", workers)
    forked: set[int] = set()
    proc, _, _ = start_and_stop_partway(args, out, signal.SIGKILL, after=12, workers=forked)
    assert proc.returncode == -signal.SIGKILL
    if workers == "2":  # the worker processes die with their parent
        assert len(forked) == 2
        deadline = time.monotonic() + 1  # well before they could finish their records
        while any(alive(pid) for pid in forked) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(pid) for pid in forked)
    killed_at = output_ids(out) if out.read_bytes().endswith(b"\n") else None
    assert killed_at is None or 12 <= len(killed_at) < 40  # stopped partway

    again = run_cli(args)
    assert again.returncode == 0, again.stderr
    lines = out.read_text().splitlines()
    ids = [json.loads(line)["id"] for line in lines]  # every line is valid JSON
    assert sorted(ids) == sorted(f"r{i}" for i in range(40))
    assert len(ids) == len(set(ids)) == 40
    assert re.search(r"(\d+) already done", again.stdout)
    assert int(re.search(r"(\d+) already done", again.stdout).group(1)) >= 12  # type: ignore[union-attr]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigkill_with_both_formats_then_resume_keeps_each_file_exactly_once(
    server: ChatServer, tmp_path: Path, workers: str
) -> None:
    server.delay, server.refine_even = 0.02, True
    src, out = write_input(tmp_path / "in.jsonl", 30), tmp_path / "out.jsonl"
    dpo = tmp_path / "out.dpo.jsonl"
    args = synthesize_args(
        server, src, out, "--format", "sft,dpo", "--concurrency", "4", "--workers", workers
    )
    proc, _, _ = start_and_stop_partway(args, out, signal.SIGKILL, after=10)
    assert proc.returncode == -signal.SIGKILL
    assert 10 <= whole_lines(out) < 30 and whole_lines(dpo) > 0  # stopped partway

    again = run_cli(args)
    assert again.returncode == 0, again.stderr
    assert out.read_bytes().endswith(b"\n") and dpo.read_bytes().endswith(b"\n")
    ids = output_ids(out)  # every line whole, valid JSON
    assert sorted(ids) == sorted(f"r{i}" for i in range(30)) and len(set(ids)) == 30
    pairs = [json.loads(line) for line in dpo.read_text().splitlines()]
    assert sorted(p["id"] for p in pairs) == sorted(f"r{i}" for i in range(0, 30, 2))
    assert all(p["chosen"][0]["content"].startswith("Better answer") for p in pairs)
    assert "preference pairs:" in again.stdout


def test_method_and_target_on_the_cli(
    server: ChatServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, out = write_input(tmp_path / "in.jsonl", 6), tmp_path / "out.jsonl"
    done = main_in_process(
        synthesize_args(server, src, out, "--method", "direct", "--target", "4"), capsys
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 4 and all(line["principles"] == "" for line in lines)
    assert "method: direct" in done.stdout and "target: 4 records (reached)" in done.stdout


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--format", "sft,kto"], "unknown format 'kto'"),
        (["--format", "dpo"], "'sft' is always written"),
        (["--method", "greedy"], "invalid choice: 'greedy'"),
        (["--method", "seed-principles"], "seed_examples: method 'seed-principles' needs"),
        (["--target-passed"], "--target-passed: needs --target N"),
    ],
)
def test_bad_format_or_method_is_one_line_and_exit_2(
    server: ChatServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    src, out = write_input(tmp_path / "in.jsonl", 2), tmp_path / "out.jsonl"
    result = main_in_process(synthesize_args(server, src, out, *extra), capsys)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert server.requests == 0 and not out.exists()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_ctrl_c_stops_cleanly_keeping_finished_lines(
    server: ChatServer, tmp_path: Path, workers: str
) -> None:
    server.delay = 0.02
    src, out = write_input(tmp_path / "in.jsonl", 40), tmp_path / "out.jsonl"
    args = synthesize_args(server, src, out, "--concurrency", "4", "--workers", workers)
    proc, stdout, stderr = start_and_stop_partway(args, out, signal.SIGINT, after=8)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "interrupted; run the same command again to resume" in stderr
    written = int(re.search(r"synthesis interrupted: (\d+) written", stdout).group(1))  # type: ignore[union-attr]
    ids = output_ids(out)
    assert len(ids) == written and 8 <= written < 40
    assert len(set(ids)) == len(ids)

    again = run_cli(args)
    assert again.returncode == 0, again.stderr
    assert sorted(output_ids(out)) == sorted(f"r{i}" for i in range(40))


def test_full_run_prints_a_summary(
    server: ChatServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, out = write_input(tmp_path / "in.jsonl", 10), tmp_path / "out.jsonl"
    done = main_in_process(synthesize_args(server, src, out, "--concurrency", "3"), capsys)
    assert done.returncode == 0, done.stderr
    assert "synthesis done: 10 written, 0 failed, 0 already done" in done.stdout
    assert "model calls: 40 (20 base, 20 critic)" in done.stdout
    assert re.search(r"tokens: \d+ \(\d+ in, \d+ out\)", done.stdout)
    assert "wall time:" in done.stdout
    assert server.requests == 40
    row = json.loads(out.read_text().splitlines()[0])
    assert row["messages"][0]["role"] == "user" and row["messages"][1]["role"] == "assistant"
    assert row["usage"]["principles"]["input_tokens"] > 0

    rerun = main_in_process(synthesize_args(server, src, out), capsys)
    assert rerun.returncode == 0 and "0 written, 0 failed, 10 already done" in rerun.stdout
    assert server.requests == 40


def test_max_tokens_caps_every_request(
    server: ChatServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, out = write_input(tmp_path / "in.jsonl", 3), tmp_path / "out.jsonl"
    done = main_in_process(synthesize_args(server, src, out, "--max-tokens", "48"), capsys)
    assert done.returncode == 0, done.stderr
    assert server.requests == 12 and server.token_caps == {48}


def test_failing_records_go_to_the_errors_file_and_exit_1(
    server: ChatServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.reject = {"question 3"}
    src, out = write_input(tmp_path / "in.jsonl", 6), tmp_path / "out.jsonl"
    done = main_in_process(synthesize_args(server, src, out, "--id-field", "id"), capsys)
    assert done.returncode == 1
    assert "5 written, 1 failed" in done.stdout
    errors = [json.loads(line) for line in (tmp_path / "out.errors.jsonl").read_text().splitlines()]
    assert [(e["id"], e["line"], e["attempts"]) for e in errors] == [("r3", 4, 1)]
    assert "prompt rejected" in errors[0]["message"] and errors[0]["error_type"].endswith("Error")
    assert "r3" not in output_ids(out)


@pytest.mark.parametrize(
    ("content", "first", "details"),
    [
        (
            '{"id": 1, "instruction": "a"}\nnot json\n{"id": 1, "instruction": "b"}\n'
            '{"id": 2, "question": "c"}\n',
            "3 problems in the input; nothing was run:",
            [
                "line 2: not valid JSON",
                "line 3: duplicate id 1 (first at line 1)",
                "line 4: missing query field 'instruction'",
            ],
        ),
        (
            "",
            "no records: the input is empty (expected JSON objects with the query field "
            "'instruction'); nothing was run",
            [],
        ),
    ],
    ids=["bad-lines", "empty"],
)
def test_bad_input_exits_2_with_every_problem(
    server: ChatServer,
    tmp_path: Path,
    content: str,
    first: str,
    details: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text(content)
    done = main_in_process(synthesize_args(server, src, out), capsys)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert lines[0] == f"spri: error: {src}: {first}"
    for detail in details:
        assert any(line.strip().startswith(detail) for line in lines[1:]), done.stderr
    assert "Traceback" not in done.stderr
    assert server.requests == 0 and not out.exists()


def test_bad_arguments_are_one_line(
    server: ChatServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = write_input(tmp_path / "in.jsonl", 1)
    missing = main_in_process(
        synthesize_args(server, tmp_path / "nope.jsonl", tmp_path / "o.jsonl"), capsys
    )
    assert missing.returncode == 2
    assert missing.stderr.strip().count("\n") == 0 and "does not exist" in missing.stderr
    zero = main_in_process(
        synthesize_args(server, src, tmp_path / "o.jsonl", "--concurrency", "0"), capsys
    )
    assert zero.returncode == 2 and "--concurrency" in zero.stderr
    assert server.requests == 0


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """A clock for the progress bar that moves only when the test moves it."""
    now = [1000.0]
    monkeypatch.setattr("tqdm.std.time", lambda: now[0])
    return now


def test_progress_bar_shows_done_failed_rate_and_eta(clock: list[float]) -> None:
    stream = _Terminal()
    with Progress(desc="synthesize", stream=stream) as progress:
        clock[0] += 2.0
        progress.update(32, failed=2, total=64)
    text = stream.getvalue()
    assert text.startswith("\rsynthesize:")
    assert re.search(r"32/64 \[00:02<00:02, 16\.00record/s, 2 failed\]", text), text
    assert text.endswith("\n")


def test_progress_of_a_slow_run_shows_seconds_per_record(clock: list[float]) -> None:
    stream = _Terminal()
    with Progress(desc="synthesize", stream=stream) as progress:
        for done in (1, 2, 3):
            clock[0] += 40.0
            progress.update(done, total=5)
    last = stream.getvalue().rsplit("\r", 1)[-1]
    assert "3/5 [02:00<01:20, 40.00s/record]" in last, last
    assert "record/s" not in last


def test_progress_in_a_log_is_a_line_every_interval(clock: list[float]) -> None:
    stream = io.StringIO()
    with Progress(desc="judge", total=100, stream=stream, log_interval=30) as progress:
        for done in range(1, 101):
            clock[0] += 1.0
            progress.update(done, failed=done // 50)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3 and "\r" not in stream.getvalue()
    assert "30/100" in lines[0] and "60/100" in lines[1] and lines[1].endswith("1 failed]")


def test_unwritable_outputs_exit_2_before_any_model_call(
    server: ChatServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = write_input(tmp_path / "in.jsonl", 3)
    for out, extra, where in [
        (tmp_path / "missing" / "out.jsonl", [], "-o"),
        (Path("/sys/spri-sft.jsonl"), [], "-o"),
        (tmp_path / "out.jsonl", ["--errors", "/proc/spri-errors.jsonl"], "--errors"),
    ]:
        started = time.monotonic()
        done = main_in_process(synthesize_args(server, src, out, *extra), capsys)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(f"spri: error: {where}: "), done.stderr
        assert done.stderr.count("\n") == 1
        assert time.monotonic() - started < 60  # no model call, no retries
        assert not out.exists()
    assert server.requests == 0


def local_args(src: Path, out: Path, *extra: str) -> list[str]:
    """``spri synthesize`` on the embedded model, one critique per stage."""
    command = [*spri_command(), "synthesize", str(src), "-o", str(out), "--model", "local"]
    return [*command, "--max-iterations", "1", *extra]


@pytest.mark.integration
def test_ctrl_c_on_the_local_model_keeps_every_finished_record(tmp_path: Path) -> None:
    """The embedded model serves one call at a time, so records run one at a time: Ctrl-C
    after the first line loses at most the record in flight, and a rerun does the rest."""
    src, out = write_input(tmp_path / "in.jsonl", 3), tmp_path / "out.jsonl"
    # Text critiques too, which --max-tokens caps; the default --concurrency of 16.
    args = local_args(src, out, "--max-tokens", "24", "--critic-output", "text")
    proc, stdout, stderr = start_and_stop_partway(args, out, signal.SIGINT, after=1)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    summary = re.search(r"interrupted: (\d+) written, 0 failed, 0 already done, (\d+)", stdout)
    assert summary, stdout
    written, not_run = int(summary.group(1)), int(summary.group(2))
    ids = output_ids(out)
    assert len(ids) == written >= 1 and written + not_run == 3
    assert ids == [f"r{i}" for i in range(written)]  # one at a time, in input order
    # Every request was answered with at most --max-tokens tokens.
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    for row in rows:
        stage = row["usage"]["response"]
        assert 0 < stage["output_tokens"] <= 24 * (stage["model_calls"] + stage["critic_calls"])

    again = run_cli(args)
    assert again.returncode == 0, again.stderr
    assert f"{3 - written} written, 0 failed, {written} already done" in again.stdout
    assert sorted(output_ids(out)) == ["r0", "r1", "r2"]


@pytest.mark.integration
def test_synthesize_on_the_local_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The embedded model (llama.cpp, SmolLM2-135M) with its structured critiques: one record,
    one critique per stage (the installed command's own run is the Ctrl-C test above)."""
    src, out = write_input(tmp_path / "in.jsonl", 1), tmp_path / "out.jsonl"
    done = main_in_process(local_args(src, out, "--max-tokens", "48"), capsys)
    assert done.returncode == 0, done.stderr
    assert "synthesis done: 1 written, 0 failed" in done.stdout
    assert "model calls: 4 (2 base, 2 critic)" in done.stdout
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["id"] == "r0"
    assert row["messages"][0]["content"] == "question 0"
    assert row["messages"][1]["role"] == "assistant" and row["messages"][1]["content"]
    assert row["principles"]
    for stage in ("principle_critiques", "response_critiques"):
        assert [c["score"] in (1, 2, 3, 4, 5) for c in row[stage]] == [True]
    assert row["usage"]["response"]["output_tokens"] > 0
