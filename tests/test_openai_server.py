"""The OpenAI-compatible path, for real: llama-cpp-python's own server on 127.0.0.1.

``python -m llama_cpp.server`` serves the embedded GGUF on a free port; ``langchain-openai``
talks to it as it would to vLLM, Ollama or a hosted endpoint. The SPRI graph runs end to
end through it, with the critic's structured output by function calling, and so does
``spri align --base-url``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_openai import ChatOpenAI

from spri_graph import resolve_model
from spri_graph.engine.prompts import SPRI_PROMPTS
from spri_graph.models import default_gguf_path
from spri_graph.models.llama import weights_file
from spri_graph.readers.scores import ScoredCritique

pytestmark = pytest.mark.integration

QUERY = "How do I tell my team I am burning out?"
ALIAS = "smollm2"
SPRI = str(Path(sys.executable).parent / "spri")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def env() -> dict[str, str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SPRI_MODEL", "OPENAI_API_KEY", "OPENAI_BASE_URL")
    }
    return {**clean, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    shipped = default_gguf_path()
    assert shipped is not None, "the 'local' extra is part of the test environment"
    # The file the embedded model runs in-process.
    gguf = weights_file(str(shipped), q8_0_weights=True)
    port = free_port()
    threads = str(max(1, (os.cpu_count() or 2) // 2))
    log = (tmp_path_factory.mktemp("server") / "server.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(gguf),
            "--model_alias",
            ALIAS,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "4096",
            "--n_threads",
            threads,
            "--n_threads_batch",
            threads,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env(),
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, f"server exited: {Path(log.name).read_text()[-2000:]}"
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=2) as reply:
                    models = json.load(reply)
                break
            except OSError:
                assert time.monotonic() < deadline, "server did not start within 120 s"
                time.sleep(0.5)
        assert [m["id"] for m in models["data"]] == [ALIAS]
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="module")
def served(server_url: str) -> ChatOpenAI:
    # Replies of 128 tokens at most: the 135M model writes up to any cap, and the tests check
    # the wiring (function calling, usage, the loop), not the length.
    model = resolve_model(
        ALIAS, base_url=server_url, temperature=0.2, max_tokens=128, seed=0, timeout=300
    )
    assert isinstance(model, ChatOpenAI)
    return model


def test_structured_output_goes_through_function_calling(served: ChatOpenAI) -> None:
    prompt = SPRI_PROMPTS["principles_critique"].format_messages(
        query=QUERY,
        goal_section="",
        history_section="",
        candidate="1. Be honest about how you feel.\n2. Suggest concrete changes.",
    )
    out = served.with_structured_output(ScoredCritique, include_raw=True).invoke(prompt)
    raw = out["raw"]
    # The server answered with a tool call, constrained by the tool's JSON schema.
    assert [call["name"] for call in raw.tool_calls] == ["ScoredCritique"]
    assert raw.response_metadata["finish_reason"] == "tool_calls"
    assert out["parsing_error"] is None
    assert out["parsed"].score in (1, 2, 3, 4, 5)
    assert raw.usage_metadata["input_tokens"] > 0 and raw.usage_metadata["output_tokens"] > 0


def test_max_tokens_reaches_the_server(served: ChatOpenAI) -> None:
    reply = served.invoke("Write a long story about a dragon.", max_tokens=8)
    assert 0 < reply.usage_metadata["output_tokens"] <= 8
    assert reply.response_metadata["finish_reason"] == "length"


def test_spri_align_through_the_server(server_url: str) -> None:
    started = time.perf_counter()
    done = subprocess.run(
        [
            SPRI,
            "align",
            QUERY,
            "--model",
            ALIAS,
            "--base-url",
            server_url,
            "--critic-output",
            "structured",
            "--max-iterations",
            "1",
            "--max-tokens",
            "128",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env(),
    )
    print(f"spri align through the server: {time.perf_counter() - started:.1f} s")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["model"] == ALIAS
    assert doc["principles"].strip() and doc["response"].strip()
    for stage, key in (("principles", "principle_critiques"), ("response", "response_critiques")):
        assert len(doc[key]) == 1
        # The server samples at its own temperature here; a critique cut off by
        # --max-tokens has no score, anything else is an integer 1-5.
        assert doc[key][0]["score"] in (None, 1, 2, 3, 4, 5)
        assert doc["usage"][stage]["critic_calls"] == 1
        assert doc["usage"][stage]["output_tokens"] > 0


def test_openai_compatible_example_runs_against_the_server(server_url: str) -> None:
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "examples" / "openai_compatible.py"
    spec = importlib.util.spec_from_file_location("example_openai_compatible", path)
    assert spec and spec.loader
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    # The example as users run it, with replies of 128 tokens at most (see ``served``).
    out = example.align(server_url, ALIAS, QUERY, max_tokens=128)
    assert out["principles"].strip() and out["response"].strip()
    for stage, key in (("principles", "principle_critiques"), ("response", "response_critiques")):
        [critique] = out[key]  # structured critiques, one a stage (max_iterations=1)
        assert critique.score in (1, 2, 3, 4, 5)
        usage = out["usage"][stage]
        assert (usage["model_calls"], usage["critic_calls"]) == (1, 1)
        assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
