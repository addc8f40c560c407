from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage

import spri_graph.models
from spri_graph.cli import main
from tests.cli import spri
from tests.conftest import ROOT, reference_dir
from tests.fakes import ScriptedChatModel
from tests.stub_http import chat_completion, send_json, serving

RUBRIC = "Criteria: Is the sum right?\nScore 1: Wrong sum.\nScore 5: Right sum, shown."


class Judge:
    """A scripted model answering judge prompts by content, safe under concurrency.

    The grading score is the digit after ``answer=`` in the response; a response containing
    ``FAIL`` raises; each call sleeps a little so concurrent calls overlap.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.model = ScriptedChatModel([self.reply], cycle=True)

    def reply(self, messages: Sequence[BaseMessage]) -> str:
        text = "\n".join(str(m.content) for m in messages)
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            time.sleep(0.02)
            if text.rstrip().endswith("### Rubric:"):
                return RUBRIC
            if text.rstrip().endswith("### Feedback:"):
                return "Feedback: Applies the rubric. [RESULT] 5"
            if "FAIL" in text:
                raise ValueError("the provider rejected the request")
            score = text.split("answer=", 1)[1][0] if "answer=" in text else "x"
            return f"<feedback>Checked the sum.</feedback><score>{score}</score>"
        finally:
            with self.lock:
                self.in_flight -= 1


@pytest.fixture
def judge(monkeypatch: pytest.MonkeyPatch) -> Judge:
    fake = Judge()
    monkeypatch.setattr(spri_graph.models, "resolve_model", lambda *a, **k: fake.model)
    return fake


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text(
        "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows)
    )
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("spri: error: ")
    return lines[0]


# --------------------------------------------------------------------------- spri agreement

VANILLA = "gpt-4o-mini__vanilla.jsonl"


def test_agreement_json_reproduces_the_papers_pearson(capsys: pytest.CaptureFixture[str]) -> None:
    path = reference_dir("biggenbench_judgments") / VANILLA
    code = main(
        [
            "agreement",
            str(path),
            "--human",
            "human_score",
            "--pred",
            "evaluator_LM-score",
            "--by",
            "capability",
            "--json",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    pearson = {name: group["pearson"] for name, group in report["groups"].items()}
    assert round(pearson["planning"], 3) == 0.620
    assert round(pearson["safety"], 3) == 0.112
    assert len(pearson) == 8
    assert (report["records"], report["overall"]["n"], report["overall"]["dropped"]) == (
        2780,
        2780,
        0,
    )
    assert report["by"] == "capability" and report["pred"] == "evaluator_LM-score"


def test_agreement_table_through_the_installed_command() -> None:
    path = reference_dir("biggenbench_judgments") / VANILLA
    done = subprocess.run(
        [sys.executable, "-m", "spri_graph.cli", "agreement", str(path)]
        + ["--pred", "evaluator_LM-score", "--by", "capability"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    rows = {line.split()[0]: line.split() for line in lines[2:-3]}
    assert rows["planning"][1:4] == ["280", "0", "0.620"]
    assert rows["safety"][1:4] == ["316", "0", "0.112"]
    assert lines[-3].startswith("dropped 0 of 2780 pairs")
    assert lines[-2].startswith("resolution of evaluator_LM-score: ")
    assert lines[-1].startswith("resolution of human_score: ")


def test_agreement_parse_reads_raw_judge_output(capsys: pytest.CaptureFixture[str]) -> None:
    path = reference_dir("biggenbench_judgments") / "prometheus-8x7b-v2__vanilla.jsonl"
    assert main(["agreement", str(path), "--pred", "evaluator_LM-response", "--parse"]) == 0
    out = capsys.readouterr().out
    assert (
        "dropped 6 of 2778 pairs without a readable score (human: 0, evaluator_LM-response: 6)"
        in (out)
    )


def test_agreement_counts_unreadable_scores(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_jsonl(
        tmp_path / "s.jsonl",
        [
            {"human_score": 1, "judge_score": 1},
            {"human_score": 3, "judge_score": None},
            {"human_score": 4, "judge_score": 5},
            "",
            {"human_score": 5, "judge_score": 4},
        ],
    )
    assert main(["agreement", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["records"] == 4
    assert (report["overall"]["n"], report["overall"]["dropped"]) == (3, 1)
    assert report["overall"]["unreadable_pred"] == 1


@pytest.mark.parametrize(
    ("rows", "args", "message"),
    [
        ([{"h": 1}], ["--human", "x", "--pred", "h"], "human: column 'x' not found"),
        (['{"h": 1}', "{oops", "[1]"], ["--human", "h", "--pred", "h"], "2 bad lines: line 2: not"),
    ],
)
def test_agreement_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], rows: list, args: list, message: str
) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    assert main(["agreement", str(path), *args]) == 2
    assert message in one_line_error(capsys)


def test_agreement_missing_file_and_missing_extra(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["agreement", str(tmp_path / "none.jsonl")]) == 2
    assert "cannot read" in one_line_error(capsys)
    path = write_jsonl(tmp_path / "s.jsonl", [{"human_score": 1, "judge_score": 2}])
    monkeypatch.setitem(sys.modules, "scipy.stats", None)
    assert main(["agreement", str(path)]) == 1
    assert "pip install 'spri-graph[metrics]'" in one_line_error(capsys)


# --------------------------------------------------------------------------- spri judge (one)


def test_judge_prints_rubric_grading_and_score(
    judge: Judge, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["judge", "--instruction", "What is 2+3?", "--response", "answer=4 (5)"])
    assert code == 0
    out = capsys.readouterr().out
    assert "Rubric (critic scores: [5])\n  Criteria: Is the sum right?" in out
    assert "  Score 5: Right sum, shown." in out
    assert "Grading (critic scores: [5])\n  Checked the sum." in out
    assert out.rstrip().endswith("Score: 4")


def test_judge_shows_each_stage_as_it_happens(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    model = ScriptedChatModel(
        [
            RUBRIC,
            "Feedback: Vague levels. [RESULT] 2",
            RUBRIC.replace("Right sum, shown.", "5, with the working."),
            "Feedback: Checkable. [RESULT] 5",
            "<feedback>Adds up.</feedback><score>4</score>",
            "Feedback: Too lenient. [RESULT] 3",
            "<feedback>Adds up, working shown.</feedback><score>5</score>",
            "Feedback: Applies it. [RESULT] 5",
        ]
    )
    monkeypatch.setattr(spri_graph.models, "resolve_model", lambda *a, **k: model)
    assert main(["judge", "--instruction", "What is 2+3?", "--response", "5, as 2+3=5"]) == 0
    out = capsys.readouterr().out
    live, result = out.split("\n== Result ==\n")
    sections = [block.splitlines() for block in live.split("\n\n")]
    assert sections[0] == ["Model: ScriptedChatModel"]
    assert [lines[0] for lines in sections[1:-1]] == [
        "== Rubric: draft ==",
        "== Rubric: refinement ==",
        "== Grading: draft ==",
        "== Grading: refinement ==",
    ]
    rubric_draft, rubric_refined, grading_draft, grading_refined = sections[1:-1]
    assert rubric_draft[1] == "  Criteria: Is the sum right?"
    assert rubric_draft[-2:] == ["-- critique 1: score 2/5, below 4; refining", "   Vague levels."]
    assert "  Score 5: 5, with the working." in rubric_refined
    assert rubric_refined[-2:] == ["-- critique 2: score 5/5, accepted", "   Checkable."]
    assert grading_draft[1:] == [
        "  Adds up.",
        "  Score: 4",
        "-- critique 1: score 3/5, below 4; refining",
        "   Too lenient.",
    ]
    assert grading_refined[1:3] == ["  Adds up, working shown.", "  Score: 5"]
    assert grading_refined[-2:] == ["-- critique 2: score 5/5, accepted", "   Applies it."]
    # The calls and the time, then the result, with the score last.
    assert re.fullmatch(
        r"rubric: 2 model \+ 2 critic calls, \d+ tokens; "
        r"judgment: 2 model \+ 2 critic calls, \d+ tokens; \d+\.\d s\n",
        sections[-1][0] + "\n",
    )
    assert result.startswith("Rubric (critic scores: [2, 5])\n  Criteria: Is the sum right?\n")
    assert "Grading (critic scores: [3, 5])\n  Adds up, working shown.\n" in result
    assert result.rstrip().endswith("Score: 5")


def test_judge_max_tokens_caps_every_model(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake, settings = Judge(), []

    def resolve(name: object, **kwargs: object) -> ScriptedChatModel:
        settings.append((kwargs["field"], kwargs.get("max_tokens")))
        return fake.model

    monkeypatch.setattr(spri_graph.models, "resolve_model", resolve)
    argv = ["judge", "--instruction", "2+3?", "--response", "answer=5", "--json"]
    assert main([*argv, "--critic-model", "critic", "--max-tokens", "64"]) == 0
    assert settings == [("--model", 64), ("--critic-model", 64)]
    settings.clear()
    assert main(argv) == 0
    assert settings == [("--model", None)]  # the model's own default
    capsys.readouterr()
    assert main([*argv, "--max-tokens", "0"]) == 2
    assert "argument --max-tokens: expected a whole number >= 1, got 0" in one_line_error(capsys)


def test_judge_json(judge: Judge, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["judge", "--instruction", "2+3?", "--response", "answer=5", "--reference", "5", "--json"]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["score"] == 5.0 and result["feedback"] == "Checked the sum."
    assert result["rubric"]["criteria"] == "Is the sum right?"
    assert [c["score"] for c in result["judgment_critiques"]] == [5]
    assert result["usage"]["rubric"]["model_calls"] == 1
    # --reference grades against the reference answer.
    prompts = ["\n".join(str(m.content) for m in c["messages"]) for c in judge.model.calls]
    assert all("### Reference Answer (Score 5):\n5" in p for p in prompts)


def test_judge_baselines(judge: Judge, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["judge", "--instruction", "2+3?", "--response", "answer=3", "--judge", "vanilla"])
        == 0
    )
    assert capsys.readouterr().out.rstrip().endswith("Score: 3")
    assert len(judge.model.calls) == 1
    code = main(
        ["judge", "--instruction", "2+3?", "--response", "answer=2", "--judge", "fixed"]
        + ["--rubric", "Criteria: Exact?\nScore 2: Off by one.", "--json"]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["rubric"]["score2_description"] == "Off by one." and result["score"] == 2.0


def test_judge_without_a_score_says_so(judge: Judge, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["judge", "--instruction", "2+3?", "--response", "five", "--max-iterations", "1"]) == 0
    )
    assert capsys.readouterr().out.rstrip().endswith("Score: none (no readable 1-5 score)")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--instruction", "Q"], "--response is required"),
        (["--response", "A"], "--instruction is required"),
        (["--instruction", " ", "--response", "A"], "--instruction must not be empty"),
        (["f.jsonl", "--instruction", "Q"], "give FILE or --instruction, not both"),
        (["f.jsonl"], "FILE needs -o OUT.jsonl"),
        (["--instruction", "Q", "--response", "A", "-o", "x"], "--output needs FILE.jsonl"),
        (
            ["--instruction", "Q", "--response", "A", "--rubric", "R"],
            "--rubric needs --judge fixed",
        ),
        (
            ["--instruction", "Q", "--response", "A", "--judge", "fixed"],
            "--judge fixed needs --rubric",
        ),
        (
            ["--instruction", "Q", "--response", "A", "--threshold", "9"],
            "expected a whole number from 1",
        ),
    ],
)
def test_judge_argument_errors_are_one_line(
    judge: Judge, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["judge", *args]) == 2
    assert message in one_line_error(capsys)
    assert judge.model.calls == []


# --------------------------------------------------------------------------- spri judge FILE


def test_judge_file_keeps_every_record_in_order_with_concurrency(
    judge: Judge, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        {"id": i, "instruction": f"What is {i}+1?", "response": f"answer={1 + i % 5}"}
        for i in range(8)
    ]
    source = write_jsonl(tmp_path / "in.jsonl", [*rows[:4], "", *rows[4:]])
    out = tmp_path / "out.jsonl"
    code = main(["judge", str(source), "-o", str(out), "--concurrency", "3", "--no-progress"])
    assert code == 0
    graded = read_jsonl(out)
    assert [g["id"] for g in graded] == list(range(8))
    assert [g["judge_score"] for g in graded] == [float(1 + i % 5) for i in range(8)]
    assert all(g["judge_error"] is None for g in graded)
    assert all(g["instruction"] == r["instruction"] for g, r in zip(graded, rows, strict=True))
    assert graded[0]["judge_rubric"]["criteria"] == "Is the sum right?"
    assert graded[0]["judge_judgment_critiques"] == [
        {"feedback": "Applies the rubric.", "score": 5}
    ]
    assert 1 < judge.max_in_flight <= 3
    spent, graded_line = capsys.readouterr().err.strip().splitlines()
    assert spent.startswith("model calls: 32; tokens: ")
    assert graded_line == f"graded 8 records into {out}; 8 with a readable score"


def test_judge_file_records_failures_on_their_own_line(
    judge: Judge, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        {"instruction": "1+1?", "response": "answer=2"},
        {"instruction": "2+2?", "response": "FAIL"},
        {"instruction": "3+3?", "response": "answer=5"},
    ]
    out = tmp_path / "out.jsonl"
    code = main(["judge", str(write_jsonl(tmp_path / "in.jsonl", rows)), "-o", str(out)])
    assert code == 1
    error = one_line_error(capsys)
    assert "1 of 3 records failed (lines 2)" in error and str(out) in error
    graded = read_jsonl(out)
    assert [g["judge_score"] for g in graded] == [2.0, None, 5.0]
    assert graded[1]["judge_error"] == "ValueError: the provider rejected the request"
    assert graded[1]["response"] == "FAIL"


def test_judge_file_bad_lines_are_reported_before_any_model_call(
    judge: Judge, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_jsonl(
        tmp_path / "in.jsonl",
        [
            {"instruction": "1+1?", "response": "answer=2"},
            "{not json",
            {"instruction": "2+2?"},
            {"instruction": "", "response": "x"},
            [1, 2],
            {"instruction": "Q", "response": "A", "rubric": {"criteria": "x"}},
        ],
    )
    out = tmp_path / "out.jsonl"
    assert main(["judge", str(source), "-o", str(out)]) == 2
    error = one_line_error(capsys)
    assert "5 bad lines: line 2: not valid JSON" in error
    assert "line 3: missing 'response'" in error
    assert "line 4: 'instruction' must be a non-empty string" in error
    assert "line 5: expected a JSON object, got list" in error
    assert "line 6: 'rubric' must have non-empty string fields" in error
    assert judge.model.calls == [] and not out.exists()


@pytest.mark.parametrize("option", ["-o", "--cache"])
def test_judge_output_under_a_file_names_the_file(
    judge: Judge,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    option: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "in.jsonl", [{"instruction": "1+1?", "response": "2"}])
    (tmp_path / "one.jsonl").write_text("already a file\n")
    paths = {"-o": "out.jsonl", "--cache": "cache.sqlite", option: "one.jsonl/sub/x.jsonl"}
    args = ["judge", "in.jsonl", "-o", paths["-o"], "--cache", paths["--cache"]]
    assert main([*args, "--no-progress"]) == 2
    error = one_line_error(capsys)
    assert error == f"spri: error: {option}: 'one.jsonl' is a file, not a directory"
    assert judge.model.calls == []
    assert (tmp_path / "one.jsonl").read_text() == "already a file\n"


def test_judge_file_with_references_and_fixed_rubrics(
    judge: Judge, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        {"instruction": "1+1?", "response": "answer=2", "reference_answer": "2", "rubric": RUBRIC},
        {"instruction": "2+2?", "response": "answer=3", "reference_answer": "4"},
    ]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    args = ["judge", str(source), "-o", str(out), "--judge", "fixed", "--use-reference"]
    assert main(args) == 2
    assert "line 2: missing 'rubric' (or pass --rubric)" in one_line_error(capsys)
    assert main([*args, "--rubric", "Criteria: Default?\nScore 3: Close."]) == 0
    graded = read_jsonl(out)
    assert graded[0]["judge_rubric"]["criteria"] == "Is the sum right?"
    assert graded[1]["judge_rubric"]["criteria"] == "Default?"
    assert [g["judge_score"] for g in graded] == [2.0, 3.0]
    prompts = ["\n".join(str(m.content) for m in c["messages"]) for c in judge.model.calls]
    assert any("### Reference Answer (Score 5):\n4" in p for p in prompts)


def test_judge_output_feeds_agreement(
    judge: Judge, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        {"instruction": f"{i}?", "response": f"answer={s}", "human_score": h}
        for i, (s, h) in enumerate([(1, 1), (3, 2), (4, 4), (5, 5), (2, 3)])
    ]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    assert main(["judge", str(source), "-o", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["agreement", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["pred"] == "judge_score" and report["overall"]["n"] == 5
    assert report["overall"]["pearson"] == pytest.approx(0.9, abs=1e-9)


def test_judge_file_without_any_score_exits_1_saying_why(
    judge: Judge, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [{"instruction": f"{i}?", "response": "no digits"} for i in range(3)]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    assert main(["judge", str(source), "-o", str(out), "--judge", "vanilla"]) == 1
    assert one_line_error(capsys) == (
        "spri: error: 0 of 3 graded records have a readable score: the model did not follow "
        "the grading format; try --judge-output structured"
    )
    assert [g["judge_score"] for g in read_jsonl(out)] == [None, None, None]  # grades kept


def test_judge_file_min_scored_sets_the_share_that_must_be_scored(
    judge: Judge, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        {"instruction": "1?", "response": "answer=4"},
        {"instruction": "2?", "response": "no digits"},
        {"instruction": "3?", "response": "answer=2"},
    ]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    args = ["judge", str(source), "-o", str(out), "--judge", "vanilla"]
    assert main([*args, "--min-scored", "0.9"]) == 1
    assert "2 of 3 graded records have a readable score (--min-scored 0.9)" in one_line_error(
        capsys
    )
    assert main([*args, "--min-scored", "0.6"]) == 0
    assert capsys.readouterr().err.strip().endswith("; 2 with a readable score")
    assert main([*args, "--min-scored", "1.5"]) == 2
    assert "--min-scored: expected a fraction from 0 to 1, got 1.5" in one_line_error(capsys)
    assert main(["judge", "--instruction", "Q", "--response", "A", "--min-scored", "0"]) == 2
    assert "--min-scored needs FILE.jsonl" in one_line_error(capsys)


@pytest.mark.parametrize("where", ["missing-folder", "proc", "folder"])
def test_judge_file_unwritable_output_exits_2_before_any_model_call(
    judge: Judge, tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [{"instruction": "1?", "response": "answer=2"}])
    out = {
        "missing-folder": tmp_path / "no" / "such" / "out.jsonl",
        "proc": Path("/proc/spri-out.jsonl"),
        "folder": tmp_path,
    }[where]
    assert main(["judge", str(source), "-o", str(out)]) == 2
    assert one_line_error(capsys).startswith("spri: error: -o: ")
    assert judge.model.calls == [] and not (out.exists() and out.is_file())


# --------------------------------------------------------------------------- scale, output, cost


def test_judge_on_a_ten_point_scale(judge: Judge, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["judge", "--instruction", "2+3?", "--response", "answer=8", "--scale", "1-10"]
    assert main([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["score"] == 8.0
    assert len(result["rubric"]) == 11 and "score10_description" in result["rubric"]
    grading = "\n".join(str(m.content) for m in judge.model.calls[2]["messages"])
    assert "an integer from 1 to 10" in grading
    assert main(["judge", "--instruction", "2+3?", "--response", "no", "--scale", "1-10"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("Score: none (no readable 1-10 score)")


def test_judge_pass_fail_reads_zero(judge: Judge, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["judge", "--instruction", "2+3?", "--response", "answer=0", "--scale", "0-1"]
    assert main([*args, "--judge", "vanilla"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("Score: 0")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scale", "5"], "argument --scale: expected LOW-HIGH integers such as 1-10, got '5'"),
        (["--scale", "3-3"], "argument --scale: expected LOW-HIGH with LOW < HIGH"),
        (["--scale", "5-1"], "argument --scale: expected LOW-HIGH with LOW < HIGH"),
        (["--scale", "1.5-5"], "argument --scale: expected LOW-HIGH integers"),
        (["--judge-output", "json"], "argument --judge-output: invalid choice: 'json'"),
        (["--price-in", "0.15"], "--price-in needs FILE.jsonl"),
        (["--price-out", "-1"], "argument --price-out: expected a price >= 0"),
    ],
)
def test_judge_scale_and_cost_errors_are_one_line(
    judge: Judge, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["judge", "--instruction", "Q", "--response", "A", *args]) == 2
    assert message in one_line_error(capsys)
    assert judge.model.calls == []


def test_judge_output_structured_binds_the_grading_schema(
    judge: Judge, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["judge", "--instruction", "2+3?", "--response", "answer=4", "--json"]
    assert main([*args, "--judge-output", "structured"]) == 0
    # The scripted model answers in text: the grading is read from it all the same.
    assert json.loads(capsys.readouterr().out)["score"] == 4.0
    tools = [call["tools"][0]["function"]["name"] for call in judge.model.calls if call["tools"]]
    assert tools == ["ScoringRubric", "Grading"]


def three_sums(tmp_path: Path) -> Path:
    rows = [{"instruction": f"{i}+1?", "response": f"answer={i}"} for i in (1, 2, 3)]
    return write_jsonl(tmp_path / "in.jsonl", rows)


def test_judge_file_prints_calls_tokens_and_cost(
    judge: Judge, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, out = three_sums(tmp_path), tmp_path / "out.jsonl"
    args = ["judge", str(source), "-o", str(out), "--no-progress"]
    assert main([*args, "--price-in", "0.15", "--price-out", "0.6"]) == 0
    spent, graded = capsys.readouterr().err.strip().splitlines()[-2:]
    assert graded.endswith("; 3 with a readable score")
    calls, tokens, cost = spent.split("; ")
    assert calls == "model calls: 12"  # 3 records x (rubric, critique, grading, critique)
    # The scripted model reports one token per word.
    words_in = sum(
        len(str(m.content).split()) for call in judge.model.calls for m in call["messages"]
    )
    tokens_in, tokens_out = (
        int(part.split()[0].replace(",", "")) for part in tokens[8:].split(", ")
    )
    assert tokens_in == words_in and tokens_out >= 12
    price = (tokens_in * 0.15 + tokens_out * 0.6) / 1e6
    assert cost == f"cost: ${price:.4f} (at $0.15 in / $0.6 out per million tokens)"


def test_judge_file_cache_makes_a_rerun_free(
    judge: Judge, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, cache = three_sums(tmp_path), tmp_path / "judge-cache.sqlite"
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    args = ["judge", str(source), "--no-progress", "--cache", str(cache)]
    assert main([*args, "-o", str(first)]) == 0
    calls = len(judge.model.calls)
    assert calls == 12 and cache.exists()
    capsys.readouterr()
    assert main([*args, "-o", str(second), "--price-in", "1", "--price-out", "1"]) == 0
    assert len(judge.model.calls) == calls
    err = capsys.readouterr().err
    assert "model calls: 0; tokens: 0 in, 0 out (calls served from --cache are not counted)" in err
    assert "cost: $0.0000" in err
    assert read_jsonl(second) == read_jsonl(first)
    # A changed setting misses the cache.
    assert main([*args, "-o", str(second), "--scale", "1-10"]) == 0
    assert len(judge.model.calls) == 2 * calls


def test_judge_cache_that_cannot_be_written_exits_2_before_any_call(
    judge: Judge, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["judge", "--instruction", "Q", "--response", "A", "--cache"]
    assert main([*args, str(tmp_path / "no" / "cache.sqlite")]) == 2
    assert one_line_error(capsys).startswith("spri: error: --cache: ")
    assert judge.model.calls == []


def test_judge_help_lists_scale_output_cache_and_prices(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = spri(capsys, "judge", "--help")
    assert code == 0
    text = " ".join(out.split())
    for flag in ("--scale LOW-HIGH", "--judge-output", "--cache PATH", "--price-in USD"):
        assert flag in text
    for flag in ("--panel M,M,...", "--aggregate {mean,median,majority}", "--min-judges N"):
        assert flag in text
    assert "--max-tokens N" in text
    assert "--price-out USD" in text


# --------------------------------------------------------------------------- spri judge --panel


class PanelServer(ThreadingHTTPServer):
    """An OpenAI-compatible endpoint serving one judge per model name.

    Every model writes and critiques rubrics alike; when grading, ``judge-a`` gives 4,
    ``judge-b`` 5, and ``judge-c`` no readable score (any other model gives 3).
    """

    daemon_threads = True
    grades = {"judge-a": "4", "judge-b": "5", "judge-c": None}

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _PanelHandler)
        self.calls: list[tuple[str, str]] = []  # (model, "rubric" | "critique" | "grading")
        self.token_caps: set[Any] = set()
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def reply(self, model: str, text: str) -> tuple[str, str]:
        if text.rstrip().endswith("### Rubric:"):
            return "rubric", RUBRIC
        if text.rstrip().endswith("### Feedback:"):
            return "critique", "Feedback: Checkable. [RESULT] 5"
        score = self.grades.get(model, "3")
        if score is None:
            return "grading", "I cannot grade this."
        return "grading", f"<feedback>{model} checked the sum.</feedback><score>{score}</score>"


class _PanelHandler(BaseHTTPRequestHandler):
    server: PanelServer

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = "\n".join(str(m["content"]) for m in body["messages"])
        kind, reply = self.server.reply(body["model"], text)
        with self.server.lock:
            self.server.calls.append((body["model"], kind))
            self.server.token_caps.add(body.get("max_tokens", body.get("max_completion_tokens")))
        words = len(text.split())
        send_json(
            self,
            chat_completion(body["model"], reply, prompt_tokens=words, completion_tokens=5),
        )


@pytest.fixture
def panel_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[PanelServer]:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with serving(PanelServer()) as srv:
        yield srv


def panel_args(server: PanelServer, *extra: str) -> list[str]:
    return ["judge", "--panel", "judge-a,judge-b,judge-c", "--base-url", server.url, *extra]


def test_panel_shows_each_judge_and_the_aggregate(
    panel_server: PanelServer, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = panel_args(panel_server, "--instruction", "What is 2+3?", "--response", "5")
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("Judges: judge-a, judge-b, judge-c\nRubric: judge-a\n")
    live, result = out.split("\n== Result ==\n")
    assert "== Rubric: draft ==\n  Criteria: Is the sum right?" in live
    assert "-- critique 1: score 5/5, accepted" in live
    assert "-- judge 1 (judge-a): 4\n   judge-a checked the sum." in live
    assert "-- judge 2 (judge-b): 5\n" in live
    assert "-- judge 3 (judge-c): none (abstained)\n   I cannot grade this." in live
    assert result.startswith("Rubric (critic scores: [5])\n  Criteria: Is the sum right?")
    assert result.endswith(
        "Judges (2 of 3 with a readable 1-5 score)\n"
        "  judge-a: 4\n  judge-b: 5\n  judge-c: none (abstained)\n\n"
        "Score: 4.5 (mean of 2)\n"
    )
    # One rubric, written and critiqued by the first judge; then one grading per judge.
    assert sorted(panel_server.calls) == [
        ("judge-a", "critique"),
        ("judge-a", "grading"),
        ("judge-a", "rubric"),
        ("judge-b", "grading"),
        ("judge-c", "grading"),
    ]


def test_panel_json_with_its_own_rubric_writer_and_token_cap(
    panel_server: PanelServer, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = panel_args(
        panel_server,
        *("--instruction", "What is 2+3?", "--response", "5", "--json"),
        *("--model", "writer", "--aggregate", "median", "--max-tokens", "40"),
    )
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["score"], result["scores"], result["abstained"]) == (4.5, [4.0, 5.0, None], 1)
    assert [(j["judge"], j["score"]) for j in result["judgments"]] == [
        ("judge-a", 4.0),
        ("judge-b", 5.0),
        ("judge-c", None),
    ]
    assert result["judgments"][1]["feedback"] == "judge-b checked the sum."
    assert result["judgments"][0]["usage"]["model_calls"] == 1
    assert result["rubric"]["criteria"] == "Is the sum right?"
    assert result["usage"]["judgment"]["model_calls"] == 3
    assert ("writer", "rubric") in panel_server.calls
    assert not any(kind == "rubric" for model, kind in panel_server.calls if model != "writer")
    assert panel_server.token_caps == {40}


def test_panel_without_enough_readable_scores_says_so(
    panel_server: PanelServer, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["judge", "--panel", "judge-a,judge-c", "--base-url", panel_server.url]
    assert main([*argv, "--instruction", "2+3?", "--response", "5"]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("Score: none (the panel needs 2 readable scores, got 1)")
    assert main([*argv, "--instruction", "2+3?", "--response", "5", "--min-judges", "1"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("Score: 4 (mean of 1)")


def test_panel_file_mode_writes_each_judges_score(
    panel_server: PanelServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = write_jsonl(
        tmp_path / "in.jsonl",
        [{"instruction": f"What is {i}+1?", "response": str(i + 1)} for i in range(3)],
    )
    out = tmp_path / "out.jsonl"
    assert main(panel_args(panel_server, str(src), "-o", str(out), "--no-progress")) == 0
    rows = read_jsonl(out)
    assert [row["instruction"] for row in rows] == [f"What is {i}+1?" for i in range(3)]
    for row in rows:
        assert row["judge_score"] == 4.5 and row["judge_scores"] == [4.0, 5.0, None]
        assert row["judge_abstained"] == 1 and row["judge_error"] is None
        assert [j["judge"] for j in row["judge_judgments"]] == ["judge-a", "judge-b", "judge-c"]
        assert row["judge_rubric"]["criteria"] == "Is the sum right?"
    assert "graded 3 records" in capsys.readouterr().err
    assert len(panel_server.calls) == 3 * 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--panel", "a,,b"], "argument --panel: expected model strings separated by commas"),
        (["--panel", "a,b", "--pairwise"], "--panel grades one response; drop --pairwise"),
        (["--panel", "a,b", "--judge", "vanilla"], "--panel writes its own rubric"),
        (["--panel", "a,b", "--min-judges", "3"], "--min-judges: at most the number of judges"),
        (["--aggregate", "median"], "--aggregate needs --panel"),
        (["--min-judges", "2"], "--min-judges needs --panel"),
        (["--panel", "a,b", "--instruction", "Q"], "--response is required"),
    ],
)
def test_panel_argument_errors_are_one_line(
    judge: Judge, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    full = ["--instruction", "Q", "--response", "A"] if "--instruction" not in args else []
    assert main(["judge", *args, *full]) == 2
    assert message in one_line_error(capsys)
    assert judge.model.calls == []


# --------------------------------------------------------------------------- local model


@pytest.mark.integration
def test_judge_max_tokens_caps_every_reply_of_the_local_model(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Text critiques and grading, so every call is a text reply that --max-tokens caps.
    done = spri(
        capsys,
        "judge",
        *("--instruction", "Give one tip for sleeping better.", "--response", "Go to bed early."),
        *("--max-iterations", "1", "--max-tokens", "24", "--json"),
        *("--critic-output", "text", "--judge-output", "text"),
    )
    assert done.returncode == 0, done.stderr
    usage = json.loads(done.stdout)["usage"]
    assert set(usage) == {"rubric", "judgment"}
    for stage in usage.values():
        calls = stage["model_calls"] + stage["critic_calls"]
        assert calls >= 2 and 0 < stage["output_tokens"] <= 24 * calls


@pytest.mark.integration
def test_judge_shows_each_stage_on_the_local_model(capsys: pytest.CaptureFixture[str]) -> None:
    done = spri(
        capsys,
        "judge",
        *("--instruction", "What is the capital of France?", "--response", "Paris."),
        *("--max-iterations", "1", "--max-tokens", "96"),
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith(
        "Model: SmolLM2-135M-Instruct.Q4_1.gguf, run from its Q8_0 copy\n\n== Rubric: draft ==\n"
    )
    assert out.index("== Rubric: draft ==") < out.index("== Grading: draft ==")
    assert len(re.findall(r"^-- critique 1: score [1-5]/5, ", out, re.MULTILINE)) == 2
    assert re.search(r"^rubric: 1 model \+ 1 critic calls, \d+ tokens; judgment: ", out, re.M)
    assert re.search(r"\nScore: [1-5]\n$", out), out
