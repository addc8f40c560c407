from __future__ import annotations

import asyncio
import errno
import json
import os
import random
import re
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langgraph.types import RetryPolicy

from spri_graph.alignment.spri import create_batch_graph, create_spri_graph
from spri_graph.engine.options import is_transient_error
from spri_graph.engine.steps import empty_usage
from spri_graph.models import LocalChatModel
from spri_graph.models.llama import LlamaCounts
from spri_graph.synthesis import (
    InputError,
    Record,
    RecordRunner,
    SynthesisReport,
    asynthesize,
    check_writable,
    errors_path_for,
    synthesize,
)
from spri_graph.synthesis import read_jsonl as read_jsonl_lines
from spri_graph.synthesis import workers as worker_pool
from spri_graph.synthesis.output import EncodedRecord, LineWriter
from tests.fakes import ScriptedChatModel, all_text, spri_step, transient_error

QUESTION = re.compile(r"question (?:\d+|[a-z])\b")


def fast_retry(max_attempts: int) -> RetryPolicy:
    # LangGraph's jitter adds up to a second per retry; tests retry at once.
    return RetryPolicy(
        initial_interval=0.001,
        max_interval=0.005,
        max_attempts=max_attempts,
        jitter=False,
        retry_on=is_transient_error,
    )


FAST_RETRY = fast_retry(3)


def query_of(messages: Sequence[BaseMessage]) -> str:
    return QUESTION.search(all_text(messages)).group(0)  # type: ignore[union-attr]


def reply(messages: Sequence[BaseMessage]) -> str:
    """Answers by prompt content, so the order of concurrent calls does not matter."""
    query = query_of(messages)
    step = spri_step(messages)
    if step == "critique":
        return f"Feedback: fine for {query}. [RESULT] 5"
    if step == "principles_draft":
        return f"Principles for {query}."
    return f"Answer to {query}."


def content_model(reply_fn: Any = reply) -> ScriptedChatModel:
    return ScriptedChatModel([reply_fn], cycle=True)


def records(n: int, start: int = 1) -> list[dict[str, Any]]:
    return [{"id": f"r{i}", "instruction": f"question {i}"} for i in range(start, start + n)]


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def ids_in(path: Path) -> list[Any]:
    return [row["id"] for row in read_jsonl(path)]


# --------------------------------------------------------------------------- output


def test_writes_one_chat_record_per_input(tmp_path: Path) -> None:
    out = tmp_path / "sft.jsonl"
    model = content_model()
    report = synthesize(records(12), model=model, output=out, concurrency=4)
    rows = read_jsonl(out)
    assert sorted(r["id"] for r in rows) == sorted(f"r{i}" for i in range(1, 13))
    row = next(r for r in rows if r["id"] == "r7")
    assert row["messages"] == [
        {"role": "user", "content": "question 7"},
        {"role": "assistant", "content": "Answer to question 7."},
    ]
    assert row["principles"] == "Principles for question 7."
    assert row["principle_critiques"] == [
        {
            "feedback": "fine for question 7.",
            "score": 5,
            "raw": "Feedback: fine for question 7. [RESULT] 5",
        }
    ]
    assert row["response_critiques"][0]["score"] == 5
    assert row["usage"]["principles"]["critic_calls"] == 1
    assert row["usage"]["response"]["model_calls"] == 1
    assert isinstance(report, SynthesisReport)
    assert (report.records, report.completed, report.failed, report.skipped) == (12, 12, 0, 0)
    assert report.calls == 48 == len(model.calls)
    assert report.total_tokens == report.input_tokens + report.output_tokens > 0
    assert report.wall_time > 0 and not report.interrupted
    assert not errors_path_for(out).exists()
    assert "12 written, 0 failed" in report.summary()


def test_batch_graph_is_the_two_loops_with_the_same_results() -> None:
    # synthesize checks every query up front, so its graph drops `prepare` and `finalize`
    # (two graph steps per record) and must otherwise behave as create_spri_graph does.
    refine_once = [
        "Principles v1.",
        "Feedback: too vague. [RESULT] 2",
        "Principles v2.",
        "Feedback: good. [RESULT] 5",
        "The answer.",
        "Feedback: follows them. [RESULT] 4",
    ]
    options = {"threshold": 4, "max_iterations": 3, "retry_policy": FAST_RETRY}
    batch = create_batch_graph(ScriptedChatModel(refine_once), **options).compile()
    full = create_spri_graph(ScriptedChatModel(refine_once), **options).compile()
    assert set(full.get_graph().nodes) - set(batch.get_graph().nodes) == {"prepare", "finalize"}
    query = {"query": "How do I apologise to a friend?"}
    assert batch.invoke(query) == full.invoke(query)
    with pytest.raises(TypeError, match="unexpected keyword argument 'review_principles'"):
        create_batch_graph(ScriptedChatModel([]), review_principles=True)  # type: ignore[call-arg]


def test_output_loads_with_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    out = tmp_path / "sft.jsonl"
    synthesize(records(5), model=content_model(), output=out)
    ds = datasets.load_dataset(
        "json", data_files=str(out), split="train", cache_dir=str(tmp_path / "cache")
    )
    assert ds.num_rows == 5
    assert set(ds.column_names) >= {"id", "messages", "principles", "usage"}
    first = ds[0]
    assert [m["role"] for m in first["messages"]] == ["user", "assistant"]
    assert first["messages"][1]["content"].startswith("Answer to question")
    assert first["principle_critiques"][0]["score"] == 5


def test_jsonl_path_with_line_numbers_as_ids(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"prompt": "question a"}\n\n{"prompt": "question b"}\n')
    out = tmp_path / "out.jsonl"
    report = synthesize(src, model=content_model(), output=out, query_field="prompt", id_field=None)
    assert sorted(ids_in(out)) == [1, 3]  # blank line 2 is skipped, numbering keeps it
    assert report.completed == 2


def test_one_shot_iterator_is_spooled_and_cleaned_up(tmp_path: Path) -> None:
    before = set(Path(__import__("tempfile").gettempdir()).glob("spri-input-*"))
    out = tmp_path / "out.jsonl"
    report = synthesize(iter(records(6)), model=content_model(), output=out, concurrency=2)
    assert sorted(ids_in(out)) == sorted(f"r{i}" for i in range(1, 7))
    assert report.completed == 6
    after = set(Path(__import__("tempfile").gettempdir()).glob("spri-input-*"))
    assert after == before


class CountingRecords:
    """A re-iterable dataset that counts how many records each pass handed out."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.passes: list[int] = []

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self.passes.append(0)
        for row in self.rows:
            self.passes[-1] += 1
            yield row


def test_input_is_read_lazily_within_the_concurrency_window(tmp_path: Path) -> None:
    data = CountingRecords(records(40))
    seen: list[int] = []

    def watching(messages: Sequence[BaseMessage]) -> str:
        if len(data.passes) == 2:
            seen.append(data.passes[1])
        return reply(messages)

    synthesize(data, model=content_model(watching), output=tmp_path / "o.jsonl", concurrency=3)
    assert data.passes == [40, 40]  # a validation pass, then the run
    assert seen[0] <= 3  # when the first call was made, at most 3 records had been read


class InFlight(BaseChatModel):
    """Async model that records how many calls overlap."""

    delay: float = 0.01
    active: int = 0
    peak: int = 0

    @property
    def _llm_type(self) -> str:
        return "in-flight"

    def _generate(self, messages: Any, stop: Any = None, **kwargs: Any) -> ChatResult:
        raise NotImplementedError

    async def _agenerate(self, messages: Any, stop: Any = None, **kwargs: Any) -> ChatResult:
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.active -= 1
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=reply(messages)))])


def test_concurrency_bounds_records_in_flight(tmp_path: Path) -> None:
    model = InFlight()
    synthesize(records(30), model=model, output=tmp_path / "o.jsonl", concurrency=5)
    assert model.peak == 5


class OneAtATimeLlama:
    """Stands in for the embedded model's llama.cpp: answers SPRI's prompts by content and
    records the question of every call, in the order the model served them."""

    def __init__(self) -> None:
        self.counts = LlamaCounts()
        self.questions: list[str] = []

    def create_chat_completion(self, *, stream: bool, **request: Any) -> Iterator[dict]:
        messages = [HumanMessage(content=m["content"]) for m in request["messages"]]
        text = reply(messages)
        self.questions.append(query_of(messages))
        self.counts = LlamaCounts()
        self.counts.prompt_tokens, self.counts.samples, self.counts.ended = 5, 2, True
        yield {"choices": [{"delta": {"content": text}, "finish_reason": None}]}
        yield {"choices": [{"delta": {"content": ""}, "finish_reason": "stop"}]}


def test_an_in_process_model_runs_one_record_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    llama = OneAtATimeLlama()
    monkeypatch.setattr(LocalChatModel, "client", lambda self: (llama, threading.Lock()))
    model = LocalChatModel(model_path=str(gguf))
    out = tmp_path / "o.jsonl"
    report = synthesize(records(5), model=model, output=out, concurrency=16, critic_output="text")
    assert report.completed == 5
    # Each record's four calls come before the next record's first: a record started beside
    # the one the model serves would only wait, half done, and be lost on an interrupt.
    assert llama.questions == [f"question {i}" for i in range(1, 6) for _ in range(4)]
    assert ids_in(out) == [f"r{i}" for i in range(1, 6)]


def test_asynthesize(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    report = asyncio.run(asynthesize(records(8), model=InFlight(), output=out, concurrency=4))
    assert report.completed == 8
    assert sorted(ids_in(out)) == sorted(f"r{i}" for i in range(1, 9))


def test_synthesize_inside_a_running_loop_points_to_asynthesize(tmp_path: Path) -> None:
    async def call() -> None:
        synthesize(records(1), model=content_model(), output=tmp_path / "o.jsonl")

    with pytest.raises(RuntimeError, match="asynthesize"):
        asyncio.run(call())


# --------------------------------------------------------------------------- resume


def test_resume_skips_ids_already_written(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    synthesize(records(5), model=content_model(), output=out)
    model = content_model()
    report = synthesize(records(10), model=model, output=out)
    assert (report.skipped, report.completed) == (5, 5)
    assert len(model.calls) == 20  # only the 5 new records ran
    assert sorted(ids_in(out)) == sorted(f"r{i}" for i in range(1, 11))


def test_resume_cuts_a_torn_last_line_and_reruns_its_record(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    synthesize(records(3), model=content_model(), output=out)
    whole = out.read_text()
    torn = json.dumps({"id": "r4", "messages": []})[:17]
    out.write_text(whole + torn)
    report = synthesize(records(5), model=content_model(), output=out)
    assert report.repaired == 1 and report.completed == 2
    assert "torn" in report.summary()
    assert sorted(ids_in(out)) == ["r1", "r2", "r3", "r4", "r5"]  # every line parses


def test_resume_refuses_an_output_with_a_bad_line_inside(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    synthesize(records(2), model=content_model(), output=out)
    lines = out.read_text().splitlines(keepends=True)
    out.write_text(lines[0] + "not json\n" + lines[1])
    model = content_model()
    with pytest.raises(ValueError, match="line 2 .* not valid JSON"):
        synthesize(records(3), model=model, output=out)
    assert model.calls == []


def test_resume_refuses_a_file_that_is_not_an_output(tmp_path: Path) -> None:
    out = write_jsonl(tmp_path / "o.jsonl", [{"instruction": "question 1"}])
    with pytest.raises(ValueError, match="line 1 .* is not an output record"):
        synthesize(records(1), model=content_model(), output=out)
    assert read_jsonl(out) == [{"instruction": "question 1"}]  # left as it was


def test_no_resume_starts_over(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    synthesize(records(4), model=content_model(), output=out)
    report = synthesize(records(2), model=content_model(), output=out, resume=False)
    assert report.skipped == 0
    assert sorted(ids_in(out)) == ["r1", "r2"]


class OddRecordsHang(InFlight):
    """Answers even-numbered records at once; odd ones wait until cancelled."""

    async def _agenerate(self, messages: Any, stop: Any = None, **kwargs: Any) -> ChatResult:
        if int(query_of(messages).split()[-1]) % 2:
            await asyncio.sleep(3600)
        return await super()._agenerate(messages, stop, **kwargs)


def test_cancelled_run_keeps_finished_lines_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"

    async def run_and_cancel() -> None:
        task = asyncio.ensure_future(
            asynthesize(records(10), model=OddRecordsHang(), output=out, concurrency=10)
        )
        for _ in range(1000):
            await asyncio.sleep(0.01)
            if out.exists() and len(out.read_text().splitlines()) == 5:
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run_and_cancel())
    assert sorted(ids_in(out)) == ["r10", "r2", "r4", "r6", "r8"]
    report = synthesize(records(10), model=content_model(), output=out)
    assert (report.skipped, report.completed) == (5, 5)
    ids = ids_in(out)
    assert sorted(ids) == sorted(f"r{i}" for i in range(1, 11)) and len(ids) == len(set(ids))


# --------------------------------------------------------------------------- failures


def test_transient_failures_on_30_percent_of_calls_all_complete(tmp_path: Path) -> None:
    rng = random.Random(7)
    lock = threading.Lock()
    outcomes: list[bool] = []

    def flaky(messages: Sequence[BaseMessage]) -> Any:
        with lock:
            fail = rng.random() < 0.3
            outcomes.append(fail)
        if fail:
            raise transient_error(503)
        return reply(messages)

    out = tmp_path / "o.jsonl"
    report = synthesize(
        records(60),
        model=content_model(flaky),
        output=out,
        concurrency=8,
        retry_policy=fast_retry(12),
    )
    assert report.completed == 60 and report.failed == 0
    assert sorted(ids_in(out)) == sorted(f"r{i}" for i in range(1, 61))
    assert not errors_path_for(out).exists()
    failures = sum(outcomes)
    assert 0.2 < failures / len(outcomes) < 0.4  # the model really failed about 30% of calls
    assert len(outcomes) - failures == 240  # and every record still made its 4 calls


def test_records_that_keep_failing_go_to_the_errors_file(tmp_path: Path) -> None:
    def broken(messages: Sequence[BaseMessage]) -> Any:
        query = query_of(messages)
        if query == "question 3":
            raise ValueError("the endpoint rejects this prompt")
        if query == "question 6" and "[RESULT]" in str(messages[-1].content):
            raise transient_error(503)
        return reply(messages)

    out = tmp_path / "o.jsonl"
    report = synthesize(
        records(8), model=content_model(broken), output=out, concurrency=3, retry_policy=FAST_RETRY
    )
    assert (report.completed, report.failed) == (6, 2)
    assert sorted(ids_in(out)) == ["r1", "r2", "r4", "r5", "r7", "r8"]
    errors = {row["id"]: row for row in read_jsonl(errors_path_for(out))}
    assert set(errors) == {"r3", "r6"}
    assert errors["r3"] == {
        "id": "r3",
        "record": 3,
        "error_type": "ValueError",
        "message": "the endpoint rejects this prompt",
        "attempts": 1,
    }
    assert errors["r6"]["error_type"] == "ProviderError"
    assert errors["r6"]["attempts"] == 3
    assert "errors:" in report.summary()


def test_errors_of_an_earlier_run_are_retried(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"

    def fail_2(messages: Sequence[BaseMessage]) -> Any:
        if query_of(messages) == "question 2":
            raise ValueError("bad")
        return reply(messages)

    synthesize(records(3), model=content_model(fail_2), output=out)
    assert errors_path_for(out).exists()
    report = synthesize(records(3), model=content_model(), output=out)
    assert (report.skipped, report.completed, report.failed) == (2, 1, 0)
    assert not errors_path_for(out).exists()
    assert sorted(ids_in(out)) == ["r1", "r2", "r3"]


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            '{"id": 1, "instruction": "a"}\n{"id": 2, "instruction": "b"\n',
            ["1 problem in the input", "line 2: not valid JSON"],
        ),
        (
            '{"id": 1, "instruction": "a"}\n{"id": 2, "instruction": "b"}\n'
            '{"id": 1, "instruction": "c"}\n',
            ["line 3: duplicate id 1 (first at line 1)"],
        ),
        (
            '{"id": 1, "text": "a"}\n{"id": 2, "instruction": "  "}\n{"id": 3, "instruction": 4}\n',
            [
                "3 problems",
                "line 1: missing query field 'instruction'",
                "line 2: query field 'instruction' is empty",
                "line 3: query field 'instruction' must be a string, got int",
            ],
        ),
        (
            '{"instruction": "a"}\n{"id": 1.5, "instruction": "b"}\n["x"]\n',
            [
                "line 1: missing id field 'id'",
                "line 2: id field 'id' must be a string or an integer, got 1.5",
                "line 3: expected a JSON object, got list",
            ],
        ),
        ("", ["no records: the input is empty"]),
        ("\n  \n", ["no records: the input is empty"]),
    ],
    ids=["malformed", "duplicate", "query-field", "id-and-shape", "empty", "blank"],
)
def test_bad_input_is_reported_up_front(tmp_path: Path, content: str, expected: list[str]) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(content)
    out = tmp_path / "o.jsonl"
    model = content_model()
    with pytest.raises(InputError) as info:
        synthesize(src, model=model, output=out)
    message = str(info.value)
    assert message.startswith(f"{src}: ")
    assert "nothing was run" in message.splitlines()[0]
    assert len(message.splitlines()) == (
        1 if "no records" in message else 1 + len(info.value.problems)
    )
    for text in expected:
        assert text in message
    assert model.calls == [] and not out.exists()


def test_many_problems_are_listed_with_a_count(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": i} for i in range(30)])
    with pytest.raises(InputError) as info:
        synthesize(src, model=content_model(), output=tmp_path / "o.jsonl")
    assert len(info.value.problems) == 30
    assert str(info.value).splitlines()[-1] == "  ... and 10 more"


def test_iterable_problems_name_record_positions(tmp_path: Path) -> None:
    rows: list[Any] = [{"id": "a", "instruction": "x"}, {"id": "a", "instruction": "y"}, "z"]
    with pytest.raises(InputError, match="record 2: duplicate id 'a' \\(first at record 1\\)"):
        synthesize(rows, model=content_model(), output=tmp_path / "o.jsonl")
    with pytest.raises(InputError, match="record 3: expected a JSON object, got str"):
        synthesize(rows, model=content_model(), output=tmp_path / "o.jsonl")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"concurrency": 0}, "concurrency must be an integer >= 1"),
        ({"workers": 0}, "workers must be an integer >= 1"),
        ({"query_field": ""}, "query_field must be a non-empty string"),
        ({"id_field": ""}, "id_field must be a non-empty string or None"),
        ({"threshold": 9}, "threshold must be an integer from 1 to 5"),
        ({"output": "missing-dir/o.jsonl"}, "output: directory 'missing-dir' does not exist"),
    ],
)
def test_bad_arguments_fail_before_any_model_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kwargs: dict[str, Any], match: str
) -> None:
    monkeypatch.chdir(tmp_path)
    model = content_model()
    options: dict[str, Any] = {"model": model, "output": "o.jsonl", **kwargs}
    with pytest.raises(ValueError, match=match):
        synthesize(records(2), **options)
    assert model.calls == []


def test_an_output_under_a_file_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "one.jsonl").write_text("{}\n")
    model = content_model()
    for output, errors in (("one.jsonl/o.jsonl", None), ("o.jsonl", "one.jsonl/deeper/e.jsonl")):
        field = "output" if errors is None else "errors"
        with pytest.raises(ValueError, match=rf"^{field}: '.*one\.jsonl' is a file, not a dir"):
            synthesize(
                records(1),
                model=model,
                output=tmp_path / output,
                errors=errors and tmp_path / errors,
            )
    assert model.calls == [] and (tmp_path / "one.jsonl").read_text() == "{}\n"


@pytest.mark.parametrize("name", ["temperature", "review_principles"])
def test_unknown_options_fail_like_python_before_any_model_call(tmp_path: Path, name: str) -> None:
    model = content_model()
    with pytest.raises(
        TypeError, match=f"synthesize\\(\\) got an unexpected keyword argument '{name}'"
    ):
        synthesize(records(2), model=model, output=tmp_path / "o.jsonl", **{name: True})
    assert model.calls == []


def test_input_file_must_exist_and_differ_from_output(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="records: input file .* does not exist"):
        synthesize(tmp_path / "nope.jsonl", model=content_model(), output=tmp_path / "o.jsonl")
    src = write_jsonl(tmp_path / "in.jsonl", records(1))
    with pytest.raises(ValueError, match="must differ from the input file"):
        synthesize(src, model=content_model(), output=src)


# --------------------------------------------------------------------------- unwritable output


@pytest.fixture
def unwritable_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory where no file can be created, whoever runs the tests."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o500)
        yield folder
        folder.chmod(0o700)
        return
    # Root ignores permission bits; sysfs refuses new files even to root.
    folder = Path("/sys")
    probe = folder / "spri-probe.jsonl"
    try:
        probe.open("a").close()
    except OSError:
        yield folder
        return
    probe.unlink()
    pytest.skip("no directory here refuses new files")


@pytest.mark.parametrize("which", ["output", "errors"])
def test_an_unwritable_output_fails_before_any_model_call(
    tmp_path: Path, unwritable_dir: Path, which: str
) -> None:
    model = content_model()
    target = unwritable_dir / "spri-test.jsonl"
    options: dict[str, Any] = {"output": tmp_path / "o.jsonl", which: target}
    with pytest.raises(ValueError, match=f"^{which}: cannot write to '{target}' \\(") as info:
        synthesize(records(3), model=model, **options)
    assert len(str(info.value).splitlines()) == 1
    assert model.calls == []
    assert not target.exists() and not (tmp_path / "o.jsonl").exists()


def test_check_writable_leaves_files_as_they_were(tmp_path: Path) -> None:
    existing = tmp_path / "kept.jsonl"
    existing.write_text('{"id": 1}\n')
    assert check_writable(existing) == existing
    assert existing.read_text() == '{"id": 1}\n'
    new = tmp_path / "new.jsonl"
    check_writable(new, field="errors")
    assert not new.exists()  # created to try, then removed
    with pytest.raises(ValueError, match="^errors: .* is a directory"):
        check_writable(tmp_path, field="errors")


class FullDisk:
    """Makes writes to one file fail with ENOSPC after ``keep`` whole lines.

    The failing write puts half its line on disk first, as a disk that fills up mid-line
    does, so the run leaves a torn last line.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, path: Path, keep: int) -> None:
        self.path, self.keep, self.lines = path, keep, 0
        real = LineWriter.write

        def write(writer: LineWriter, data: bytes) -> None:
            if writer.path != self.path:
                return real(writer, data)
            if self.lines >= self.keep:
                real(writer, data[: len(data) // 2])
                raise OSError(errno.ENOSPC, "No space left on device")
            real(writer, data)
            self.lines += 1

        monkeypatch.setattr(LineWriter, "write", write)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_write_that_fails_mid_run_keeps_the_finished_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    out = tmp_path / "o.jsonl"
    with monkeypatch.context() as patch:
        FullDisk(patch, out, keep=5)
        with pytest.raises(OSError, match="No space left on device") as info:
            synthesize(records(12), model=content_model(), output=out, workers=workers)
    message = str(info.value)
    assert info.value.errno == errno.ENOSPC
    assert str(out) in message and "5 written" in message
    assert message.endswith("run the same command again to resume")
    kept = out.read_text().splitlines(keepends=True)
    assert len(kept) == 6 and not kept[-1].endswith("\n")  # 5 whole lines and a torn one
    finished = [json.loads(line)["id"] for line in kept[:5]]

    model = content_model()
    report = synthesize(records(12), model=model, output=out)
    assert (report.repaired, report.skipped, report.completed) == (1, 5, 7)
    assert len(model.calls) == 7 * 4  # the finished records did not run again
    ids = ids_in(out)
    assert ids[:5] == finished
    assert sorted(ids) == sorted(f"r{i}" for i in range(1, 13))


# --------------------------------------------------------------------------- workers


def test_workers_share_the_records_and_write_each_once(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    src = write_jsonl(tmp_path / "in.jsonl", records(40))
    seen: list[int] = []
    report = synthesize(
        src,
        model=content_model(),
        output=out,
        concurrency=6,
        workers=3,
        on_progress=lambda r: seen.append(r.completed),
    )
    ids = ids_in(out)
    assert sorted(ids) == sorted(f"r{i}" for i in range(1, 41)) and len(set(ids)) == 40
    assert (report.completed, report.failed, report.calls) == (40, 0, 160)
    assert seen == list(range(1, 41))  # progress is reported from this process


def test_workers_send_failures_to_the_errors_file(tmp_path: Path) -> None:
    def fail_5(messages: Sequence[BaseMessage]) -> Any:
        if query_of(messages) == "question 5":
            raise ValueError("nope")
        return reply(messages)

    out = tmp_path / "o.jsonl"
    report = synthesize(records(10), model=content_model(fail_5), output=out, workers=2)
    assert (report.completed, report.failed) == (9, 1)
    assert [row["id"] for row in read_jsonl(errors_path_for(out))] == ["r5"]
    assert "r5" not in ids_in(out)


def test_a_worker_that_dies_stops_the_run_keeping_finished_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Workers send each line at once here (the forked workers see the patched value); a
    # worker killed at once loses only lines it had not sent yet, which run on resume.
    monkeypatch.setattr(worker_pool, "SEND_INTERVAL", 0)

    def die_on_7(messages: Sequence[BaseMessage]) -> Any:
        if query_of(messages) == "question 7":
            os._exit(3)
        return reply(messages)

    out = tmp_path / "o.jsonl"
    with pytest.raises(RuntimeError, match="died \\(exit code 3\\).*run again to resume"):
        synthesize(records(12), model=content_model(die_on_7), output=out, concurrency=2, workers=2)
    rows = read_jsonl(out)  # every line that was written is whole
    ids = [r["id"] for r in rows]
    assert {"r1", "r3", "r5"} <= set(ids) and "r7" not in ids  # worker 1 ran 1, 3, 5, then 7
    report = synthesize(records(12), model=content_model(), output=out)
    assert report.skipped == len(rows)
    assert sorted(ids_in(out)) == sorted(f"r{i}" for i in range(1, 13))


def test_workers_send_lines_in_batches_and_flush_when_stopped() -> None:
    import multiprocessing

    receiver, sender = multiprocessing.Pipe(duplex=False)
    one, two, three = (Record(n, f"r{n}", f"question {n}") for n in (1, 2, 3))

    async def main() -> list[Any]:
        sink = worker_pool.PipeSink(sender)
        sink.ok(one, {"id": "r1"}, (1, 1, 1, 1, 2))
        sink.error(two, {"id": "r2"})
        assert not receiver.poll()  # held until the interval has passed
        await asyncio.sleep(worker_pool.SEND_INTERVAL * 2)
        first = receiver.recv()
        sink.ok(three, {"id": "r3"}, (1, 0, 1, 1, 2))
        sink.flush()  # what a stopping worker does
        return [first, receiver.recv(), receiver.poll(0.1)]

    first, second, more = asyncio.run(main())
    assert first == (
        "lines",
        [
            ("ok", EncodedRecord(b'{"id": "r1"}\n'), (1, 1, 1, 1, 2)),
            ("error", b'{"id": "r2"}\n'),
        ],
    )
    assert second == ("lines", [("ok", EncodedRecord(b'{"id": "r3"}\n'), (1, 0, 1, 1, 2))])
    assert more is False  # each line was sent once


# --------------------------------------------------------------------------- reader, runner


def test_read_jsonl_is_lazy_and_numbers_lines(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"a": 1}\n\n{"a": \n[2]\n{"a": 3}\n')
    problems: list[tuple[int, str]] = []
    rows = read_jsonl_lines(src, problems)
    assert next(rows) == (1, {"a": 1})
    assert problems == []  # nothing past line 1 was read yet
    assert list(rows) == [(5, {"a": 3})]
    assert [number for number, _ in problems] == [3, 4]
    assert problems[0][1].startswith("not valid JSON (")
    assert problems[1][1] == "expected a JSON object, got list"
    with pytest.raises(InputError, match="line 3: not valid JSON"):
        list(read_jsonl_lines(src))
    with pytest.raises(FileNotFoundError):
        next(read_jsonl_lines(tmp_path / "missing.jsonl"))


def test_record_runner_keeps_input_order_and_turns_failures_into_lines() -> None:
    from langchain_core.runnables import RunnableLambda

    async def grade(inputs: dict[str, Any]) -> dict[str, Any]:
        n = inputs["n"]
        await asyncio.sleep(0.001 * (7 - n))  # later records finish first
        if n == 4:
            raise ValueError("no grade for 4")
        if n == 6:
            return {}  # an output the line cannot be made from fails its record only
        return {"score": n, "usage": {"grade": {"model_calls": 1, "total_tokens": n}}}

    runner = RecordRunner(
        RunnableLambda(grade),
        to_input=lambda record: {"n": record.value["n"]},
        to_line=lambda record, out: {**record.value, "score": out["score"]},
        concurrency=3,
    )
    rows = [Record(number, f"r{number}", {"n": number}) for number in range(1, 7)]

    class Sink:
        def __init__(self) -> None:
            self.lines: list[dict[str, Any]] = []
            self.usage: list[Any] = []

        def ok(self, record: Record, line: dict[str, Any], usage: Any) -> None:
            self.lines.append(line)
            self.usage.append(usage)

        def error(self, record: Record, line: dict[str, Any]) -> None:
            self.lines.append(line)

    sink = Sink()
    asyncio.run(runner.run(rows, sink, ordered=True))
    outcomes = [line.get("error_type", line.get("score")) for line in sink.lines]
    assert outcomes == [1, 2, 3, "ValueError", 5, "KeyError"]
    assert sink.lines[3] == {
        "id": "r4",
        "record": 4,
        "error_type": "ValueError",
        "message": "no grade for 4",
        "attempts": 1,
    }
    assert sink.usage[0] == {**empty_usage(), "model_calls": 1, "total_tokens": 1}
    assert asyncio.run(runner.collect(rows)) == sink.lines


# --------------------------------------------------------------------------- benchmark


def test_throughput_benchmark_runs_and_counts_calls_exactly() -> None:
    """The benchmark's figures are consistent (timing targets are the benchmark's own job)."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    script = root / "benchmarks" / "synthesis_throughput.py"
    args = ["--records", "30", "--latency", "0.005", "--concurrency", "8", "--workers", "2"]
    done = subprocess.run(
        [sys.executable, str(script), *args, "--baseline-records", "3", "--json"],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
        timeout=300,
    )
    figures = json.loads(done.stdout)
    assert figures["model_calls"] == 10 * 6 + 20 * 4  # every third record refines once
    assert figures["ideal_time_s"] == round(140 * 0.005 / 8, 3)
    assert figures["efficiency"] == pytest.approx(
        figures["ideal_time_s"] / figures["wall_time_s"], rel=0.05
    )
    assert figures["records_per_s"] > 0 and figures["speedup"] > 0
    assert figures["sequential_records"] == 3
    assert figures["peak_rss_mib"] > 0 and figures["worker_peak_rss_mib"] > 0
