"""LangGraph Studio: ``langgraph dev`` serves the project's graphs on the local model.

The integration tests start the real server from the project root on a free 127.0.0.1 port
and talk to it with the official ``langgraph-sdk`` client, as Studio does.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from spri_graph import GENERIC_RUBRIC, create_principles_graph, create_spri_graph
from spri_graph.judges.absolute import create_judge
from tests.conftest import ROOT
from tests.fakes import ScriptedChatModel

CONFIG = ROOT / "langgraph.json"
LANGGRAPH = Path(sys.executable).with_name("langgraph")
SETTINGS = {"model", "critic_model", "threshold", "max_iterations"}
QUERY = "How can I get better at remembering people's names?"


# --------------------------------------------------------------------------- offline checks


def test_langgraph_json_names_one_factory_per_graph() -> None:
    import inspect

    from spri_graph import studio

    config = json.loads(CONFIG.read_text())
    assert config["dependencies"] == ["."]
    graphs = config["graphs"]
    assert set(graphs) == {"spri", "spri_review", "principles", "judge", "agent"}
    for graph_id, spec in graphs.items():
        path, variable = spec.rsplit(":", 1)
        assert (ROOT / path).resolve() == ROOT / "spri_graph" / "studio.py", graph_id
        assert variable == f"make_{graph_id}"
        factory = getattr(studio, variable)
        # The server calls a factory with no argument, a config or a ServerRuntime.
        assert inspect.signature(factory).parameters == {}, graph_id


def test_factories_build_the_named_graphs() -> None:
    from spri_graph import studio

    for graph_id in ("spri", "spri_review", "principles", "judge"):
        graph = getattr(studio, f"make_{graph_id}")()
        assert graph.name == graph_id
        assert set(graph.get_context_jsonschema()["properties"]) == SETTINGS
    # A factory builds a new graph on each call (the server calls it per request).
    assert studio.make_spri() is not studio.make_spri()


@pytest.mark.parametrize("factory", [create_spri_graph, create_principles_graph])
def test_graph_schemas_render_for_studio(factory: Any) -> None:
    """Studio draws its input form and assistant settings from these JSON schemas."""
    graph = factory(ScriptedChatModel([])).compile()
    assert {"query", "goal", "messages"} <= set(graph.get_input_jsonschema()["properties"])
    assert {"principles", "principle_critiques", "usage"} <= set(
        graph.get_output_jsonschema()["properties"]
    )
    context = graph.get_context_jsonschema()["properties"]
    assert set(context) == SETTINGS
    assert context["max_iterations"]["anyOf"][0]["type"] == "integer"


def test_agent_graph_schemas_render_for_studio() -> None:
    from spri_graph.studio import make_agent

    agent = make_agent()
    assert set(agent.get_input_jsonschema()["properties"]) == {"messages"}
    output = set(agent.get_output_jsonschema()["properties"])
    assert {"messages", "spri_principles", "spri_response_critiques", "spri_usage"} <= output
    assert set(agent.get_context_jsonschema()["properties"]) == {"goal"}


class ToolChoiceRecorder(ScriptedChatModel):
    """A scripted model that records the ``tool_choice`` of each call's tool binding."""

    choices: list[Any] = []

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:  # noqa: D102
        self.choices.append(kwargs.get("tool_choice"))
        return super().bind_tools(tools, **kwargs)


@pytest.mark.parametrize("use_async", [False, True])
def test_first_tool_call_forces_only_the_turns_first_call(use_async: bool) -> None:
    from langchain.agents import create_agent
    from langchain_core.messages import AIMessage

    from spri_graph.studio import FirstToolCall, calculator, convert_units

    call = AIMessage(
        "", tool_calls=[{"name": "calculator", "args": {"expression": "17 x 24"}, "id": "c1"}]
    )
    model = ToolChoiceRecorder(
        [
            call,
            "408 eggs.",
            AIMessage("", tool_calls=[{**call.tool_calls[0], "id": "c2"}]),
            "Still 408.",
        ]
    )
    model.choices = []
    agent = create_agent(
        model, [calculator, convert_units], middleware=[FirstToolCall(calculator.name)]
    )
    for turn in ("How many eggs in 17 boxes of 24?", "And again?"):
        inputs = {"messages": [{"role": "user", "content": turn}]}
        out = asyncio.run(agent.ainvoke(inputs)) if use_async else agent.invoke(inputs)
        assert [m.type for m in out["messages"]] == ["human", "ai", "tool", "ai"]
        assert out["messages"][2].content == "408"
    # Each turn: the first call must call the calculator, the answer after it is free.
    assert model.choices == ["calculator", None, "calculator", None]
    with pytest.raises(ValueError, match="tool must be a tool's name"):
        FirstToolCall(" ")


def test_judge_graph_schemas_render_for_studio() -> None:
    graph = create_judge(ScriptedChatModel([])).compile()
    assert {"instruction", "response"} <= set(graph.get_input_jsonschema()["properties"])
    assert {"score", "feedback", "rubric"} <= set(graph.get_output_jsonschema()["properties"])
    assert set(graph.get_context_jsonschema()["properties"]) == SETTINGS


IMPORT_CHECK = textwrap.dedent(
    """
    import json
    import llama_cpp

    loads = []

    def refuse(self, *args, **kwargs):
        loads.append(kwargs.get("model_path") or (args[0] if args else None))
        raise RuntimeError("model load refused by the test")

    llama_cpp.Llama.__init__ = refuse

    from spri_graph import studio

    after_import = len(loads)
    spri, principles, judge, agent = (
        studio.make_spri(),
        studio.make_principles(),
        studio.make_judge(),
        studio.make_agent(),
    )
    report = {
        "after_import": after_import,
        "after_build": len(loads),
        "nodes": sorted(spri.get_graph().nodes),
        "context": sorted(spri.get_context_jsonschema()["properties"]),
        "principles_nodes": sorted(principles.get_graph().nodes),
        "names": [spri.name, principles.name, judge.name],
        "judge_context": sorted(judge.get_context_jsonschema()["properties"]),
        "agent_nodes": sorted(agent.get_graph().nodes),
        "agent_name": agent.name,
    }
    try:
        spri.invoke({"query": "Q?"}, context={"max_iterations": 1})
    except Exception as exc:
        report["run_error"] = type(exc).__name__
    report["after_run"] = len(loads)
    print(json.dumps(report))
    """
)


def test_building_the_graphs_loads_no_model() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPRI_", "OPENAI_"))}
    proc = subprocess.run(
        [sys.executable, "-c", IMPORT_CHECK],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["after_import"] == report["after_build"] == 0
    assert report["names"] == ["spri", "principles", "judge"]
    assert set(report["judge_context"]) == SETTINGS
    assert {"prepare", "principles_draft", "response_draft", "finalize"} <= set(report["nodes"])
    assert "response_draft" not in report["principles_nodes"]
    assert report["agent_name"] == "agent"
    assert {"model", "tools", "SPRIMiddleware.before_agent", "SPRIMiddleware.after_model"} <= set(
        report["agent_nodes"]
    )
    assert set(report["context"]) == SETTINGS
    # The first run is what loads the model (refused here, so the run fails).
    assert report["after_run"] >= 1
    assert "run_error" in report


# --------------------------------------------------------------------------- the real server


class ConnectionRecorder:
    """A proxy that answers nothing and records every connection made to it.

    The server runs with every proxy variable pointing here (and ``NO_PROXY`` for
    127.0.0.1), so any HTTP call it tried to make to the outside world would show up.
    """

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    self.connections.append(conn.recv(200))
                except OSError:
                    self.connections.append(b"")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(proxy: str) -> dict[str, str]:
    drop = ("SPRI_", "OPENAI_", "LANGSMITH_", "LANGCHAIN_", "LANGGRAPH_")
    # The llama.cpp thread count stays: the server shares the cores with the other test
    # workers, and two threads waiting for each other on a busy core run several times slower.
    keep = {"SPRI_LLAMA_THREADS"}
    env = {k: v for k, v in os.environ.items() if k in keep or not k.startswith(drop)}
    env = {k: v for k, v in env.items() if "proxy" not in k.lower()}
    proxies = {
        name: proxy
        for name in (
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "http_proxy",
            "https_proxy",
            "all_proxy",
        )
    }
    return {
        **env,
        **proxies,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        "LANGGRAPH_NO_VERSION_CHECK": "true",
        "LANGSMITH_TRACING": "false",
        "LANGCHAIN_TRACING_V2": "false",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(ROOT),
        # The file watcher names each changed path at debug level.
        "LOG_LEVEL": "DEBUG",
        # Byte code the server's imports would cache next to edited sources is no write of
        # the graphs.
        "PYTHONDONTWRITEBYTECODE": "1",
    }


class DevServer:
    def __init__(
        self, url: str, proc: subprocess.Popen, root: Path, log: Path, recorder: ConnectionRecorder
    ):
        self.url, self.proc, self.root, self.log, self.recorder = url, proc, root, log, recorder
        self.ready_at = 0.0

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    recorder = ConnectionRecorder()
    port = free_port()
    # The server runs as a developer runs it (reloading on code changes, so its file watcher
    # is on) in a view of the project root: links to langgraph.json and the package, so the
    # test neither reads nor adds to a developer's own Studio threads. Its log is written
    # outside that view, where the watcher would see it.
    root = tmp_path_factory.mktemp("langgraph-dev")
    for name in ("langgraph.json", "spri_graph", "pyproject.toml"):
        (root / name).symlink_to(ROOT / name)
    log = tmp_path_factory.mktemp("langgraph-dev-log") / "server.log"
    command = [
        str(LANGGRAPH),
        "dev",
        "--no-browser",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--config",
        "langgraph.json",
    ]
    with log.open("w") as out:
        proc = subprocess.Popen(
            command,
            cwd=root,
            env=server_env(recorder.url),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = DevServer(f"http://127.0.0.1:{port}", proc, root, log, recorder)
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"langgraph dev exited with {proc.returncode}:\n{server.output()}")
            try:
                if httpx.get(f"{server.url}/ok", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"langgraph dev did not become ready:\n{server.output()}")
            time.sleep(0.5)
        server.ready_at = time.monotonic()
        yield server
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        recorder.close()


async def stream_run(
    url: str, assistant: str, inputs: dict, context: dict | None = None
) -> dict[str, Any]:
    """Run ``assistant`` (a graph id or an assistant id) on a new thread, streaming updates."""
    from langgraph_sdk import get_client

    client = get_client(url=url)
    thread = await client.threads.create()
    events: list[tuple[str, Any]] = []
    async for part in client.runs.stream(
        thread["thread_id"],
        assistant,
        input=inputs,
        context=context,
        stream_mode="updates",
    ):
        events.append((part.event, part.data))
    state = await client.threads.get_state(thread["thread_id"])
    return {"events": events, "state": state}


def expected_critiques(critiques: list[dict], threshold: int, max_iterations: int) -> int:
    """How many critiques the loop makes for these scores under these settings."""
    for n, critique in enumerate(critiques, 1):
        if critique["score"] is None or critique["score"] >= threshold or n >= max_iterations:
            return n
    return len(critiques)


@pytest.mark.integration
def test_dev_server_exposes_graphs_and_settings(dev_server: DevServer) -> None:
    from langgraph_sdk import get_client

    async def main() -> dict[str, Any]:
        client = get_client(url=dev_server.url)
        found = {}
        for graph_id in ("spri", "principles", "judge"):
            (assistant,) = await client.assistants.search(
                graph_id=graph_id, metadata={"created_by": "system"}
            )
            found[graph_id] = await client.assistants.get_schemas(assistant["assistant_id"])
        return found

    schemas = asyncio.run(main())
    for graph_id, schema in schemas.items():
        assert set(schema["context_schema"]["properties"]) == SETTINGS, graph_id
    for graph_id in ("spri", "principles"):
        assert "query" in schemas[graph_id]["input_schema"]["properties"], graph_id
        assert "principles" in schemas[graph_id]["output_schema"]["properties"], graph_id
    assert {"instruction", "response"} <= set(schemas["judge"]["input_schema"]["properties"])
    assert {"score", "rubric"} <= set(schemas["judge"]["output_schema"]["properties"])
    assert "response" in schemas["spri"]["output_schema"]["properties"]
    assert "response" not in schemas["principles"]["output_schema"]["properties"]


@pytest.mark.integration
def test_dev_server_review_graph_pauses_and_resumes_with_edited_principles(
    dev_server: DevServer,
) -> None:
    from langgraph_sdk import get_client

    edited = "1. Name the feeling plainly.\n2. Suggest one small next step."

    async def main() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        client = get_client(url=dev_server.url)
        thread = await client.threads.create()
        context = {"threshold": 1, "max_iterations": 1}
        await client.runs.wait(
            thread["thread_id"], "spri_review", input={"query": QUERY}, context=context
        )
        paused = await client.threads.get_state(thread["thread_id"])
        resumed = await client.runs.wait(
            thread["thread_id"],
            "spri_review",
            command={"resume": edited},
            context=context,
        )
        final = await client.threads.get_state(thread["thread_id"])
        return paused, resumed, final

    paused, resumed, final = asyncio.run(main())
    assert paused["next"] == ["review_principles"]
    (request,) = [i["value"] for task in paused["tasks"] for i in task["interrupts"]]
    assert request["principles"] == paused["values"]["principles"]
    assert request["principle_critiques"] and "instructions" in request
    assert final["next"] == []
    assert final["values"]["principles"] == edited
    assert isinstance(final["values"]["response"], str) and final["values"]["response"].strip()
    assert resumed["principles"] == edited


@pytest.mark.integration
def test_dev_server_runs_spri_on_the_local_model(dev_server: DevServer) -> None:
    settings = {"threshold": 5, "max_iterations": 2}
    result = asyncio.run(stream_run(dev_server.url, "spri", {"query": QUERY}, settings))
    events, values = result["events"], result["state"]["values"]
    assert [kind for kind, _ in events if kind == "error"] == [], events
    updates = [data for kind, data in events if kind == "updates"]
    nodes = [next(iter(update)) for update in updates]

    # The final state: principles, then a response, each with scored critiques.
    assert values["query"] == QUERY
    assert isinstance(values["principles"], str) and values["principles"].strip()
    assert isinstance(values["response"], str) and values["response"].strip()
    assert result["state"]["next"] == []
    for stage, key in (("principles", "principle_critiques"), ("response", "response_critiques")):
        critiques = values[key]
        assert critiques and all(c["score"] in {1, 2, 3, 4, 5} for c in critiques), critiques
        # The run's context set the loop: stop at 5 or after 2 critiques.
        assert len(critiques) == expected_critiques(critiques, **settings), critiques
        usage = values["usage"][stage]
        assert usage["critic_calls"] == len(critiques)
        assert usage["model_calls"] == len(critiques)  # one draft + one refine per re-critique
        assert usage["total_tokens"] > 0
        # The streamed updates follow the loop, one node per model step.
        steps = [n for n in nodes if n.startswith(f"{stage}_")]
        assert steps == [f"{stage}_draft", f"{stage}_critique"] + [
            f"{stage}_refine",
            f"{stage}_critique",
        ] * (len(critiques) - 1)

    assert nodes[0] == "prepare" and nodes[-1] == "finalize"
    assert nodes.index("response_draft") > max(
        i for i, n in enumerate(nodes) if n.startswith("principles_")
    )
    # The last updates of each stage carry the final candidates.
    last = {}
    for update in updates:
        for change in update.values():
            for key in ("principles", "response"):
                if change and key in change:
                    last[key] = change[key]
    assert last == {"principles": values["principles"], "response": values["response"]}
    assert dev_server.recorder.connections == []


@pytest.mark.integration
def test_dev_server_principles_and_judge_graphs_and_bad_context(dev_server: DevServer) -> None:
    from langgraph_sdk import get_client

    one_pass = {"max_iterations": 1}

    async def with_assistant_settings(context: dict) -> dict[str, Any]:
        # As saved from Studio's assistant settings: the runs need no context of their own.
        assistant = await get_client(url=dev_server.url).assistants.create(
            graph_id="principles", context=context
        )
        return await stream_run(dev_server.url, assistant["assistant_id"], {"query": QUERY})

    refused = asyncio.run(with_assistant_settings({"max_iterations": 0}))
    errors = [data for kind, data in refused["events"] if kind == "error"]
    assert "max_iterations must be an integer >= 1, got 0" in json.dumps(errors)

    result = asyncio.run(with_assistant_settings({"threshold": 5, **one_pass}))
    values = result["state"]["values"]
    assert [kind for kind, _ in result["events"] if kind == "error"] == []
    assert values["principles"].strip() and len(values["principle_critiques"]) == 1
    assert "response" not in values

    graded = asyncio.run(
        stream_run(
            dev_server.url,
            "judge",
            {"instruction": QUERY, "response": "Repeat each name aloud when you hear it."},
            one_pass,
        )
    )
    assert [kind for kind, _ in graded["events"] if kind == "error"] == []
    values = graded["state"]["values"]
    # The local model grades through structured output: there is always a score, and the
    # rubric is written for this instruction, not the generic fallback.
    assert values["score"] in (1, 2, 3, 4, 5)
    assert isinstance(values["feedback"], str)
    assert values["rubric"]["criteria"].strip()
    levels = {values["rubric"][f"score{n}_description"] for n in range(1, 6)}
    assert not levels & set(GENERIC_RUBRIC.descriptions)
    assert len(values["rubric_critiques"]) == 1 and len(values["judgment_critiques"]) == 1

    bad = asyncio.run(stream_run(dev_server.url, "spri", {"query": QUERY}, {"threshold": 9}))
    errors = [data for kind, data in bad["events"] if kind == "error"]
    assert len(errors) == 1
    assert "threshold must be an integer from 1 to 5, got 9" in json.dumps(errors[0])
    # The bad setting stopped the run before any model call.
    assert not bad["state"]["values"].get("principles")
    assert dev_server.recorder.connections == []


AGENT_QUESTION = "A box holds 24 eggs. How many eggs are in 17 boxes?"


@pytest.mark.integration
def test_dev_server_runs_the_agent_on_the_local_model(dev_server: DevServer) -> None:
    """The agent's tool loop on the embedded model: a calculator call, then an answer.

    SmolLM2-135M never chooses a tool on its own; on it the ``agent`` graph makes the turn's
    first model call call the calculator, and the model answers from the tool's result.
    """
    from langgraph_sdk import get_client

    async def schemas() -> dict[str, Any]:
        client = get_client(url=dev_server.url)
        (assistant,) = await client.assistants.search(
            graph_id="agent", metadata={"created_by": "system"}
        )
        return await client.assistants.get_schemas(assistant["assistant_id"])

    schema = asyncio.run(schemas())
    assert set(schema["input_schema"]["properties"]) == {"messages"}
    assert "spri_principles" in schema["output_schema"]["properties"]
    assert set(schema["context_schema"]["properties"]) == {"goal"}

    inputs = {"messages": [{"role": "user", "content": AGENT_QUESTION}]}
    result = asyncio.run(stream_run(dev_server.url, "agent", inputs, {"goal": "Be brief."}))
    events, state = result["events"], result["state"]
    assert [kind for kind, _ in events if kind == "error"] == [], events
    assert state["next"] == []
    nodes = [next(iter(data)) for kind, data in events if kind == "updates"]
    assert nodes[0] == "SPRIMiddleware.before_agent"
    assert nodes.count("SPRIMiddleware.before_agent") == 1
    # model -> tools -> model: the loop went on after the tool ran.
    assert nodes.index("model") < nodes.index("tools") < len(nodes) - 1 - nodes[::-1].index("model")
    assert nodes[-1] == "SPRIMiddleware.after_model"

    values = state["values"]
    messages = values["messages"]
    assert messages[0]["type"] == "human" and messages[0]["content"] == AGENT_QUESTION
    (call,) = messages[1]["tool_calls"]
    assert messages[1]["type"] == "ai" and call["name"] == "calculator"
    assert isinstance(call["args"]["expression"], str)
    result_message = messages[2]
    assert result_message["type"] == "tool" and result_message["tool_call_id"] == call["id"]
    assert result_message["name"] == "calculator" and result_message["content"].strip()
    final = messages[-1]
    assert len(messages) >= 4 and final["type"] == "ai" and not final.get("tool_calls")
    assert isinstance(final["content"], str) and final["content"].strip()
    # Principles written once for the turn (stored, not in the conversation): the principle
    # stage made one draft and one refinement per re-critique, for the tool call and the
    # answer alike.
    assert values["spri_principles"].strip()
    assert not any(m["type"] == "system" for m in messages)
    for key in ("spri_principle_critiques", "spri_response_critiques"):
        critiques = values[key]
        assert 1 <= len(critiques) <= 2, critiques  # the agent's SPRI runs max_iterations=2
        assert all(c["score"] in {1, 2, 3, 4, 5} for c in critiques), critiques
    usage = values["spri_usage"]
    principle_critiques = values["spri_principle_critiques"]
    assert usage["principles"]["critic_calls"] == len(principle_critiques)
    assert usage["principles"]["model_calls"] == len(principle_critiques)
    assert usage["response"]["critic_calls"] == len(values["spri_response_critiques"])
    assert "spri_turn" not in values or values["spri_turn"]["query"] == AGENT_QUESTION
    assert dev_server.recorder.connections == []


def watched_changes(output: str, root: Path) -> list[str]:
    """The paths (relative to ``root``) of every change the dev server's watcher logged."""
    changed = []
    for line in output.splitlines():
        if "detected:" in line and "watchfiles" in line:
            changed += [str(Path(p).relative_to(root)) for p in re.findall(r"'(/[^']+)'", line)]
    return changed


@pytest.mark.integration
def test_dev_server_watcher_sees_only_the_servers_own_thread_files(dev_server: DevServer) -> None:
    """Nothing the graphs write lands in the tree the dev server watches.

    The watcher logs "N changes detected" for any file written under the folder the server
    runs in. The only writes it sees come from the server itself: its in-memory runtime
    flushes threads into ./.langgraph_api every 10 s. Two flush intervals after startup (the
    other tests of this module usually take longer) every logged change is there, while a
    file written next to the package is logged too, so the watcher is on.
    """
    time.sleep(max(0.0, dev_server.ready_at + 21 - time.monotonic()))
    changed = watched_changes(dev_server.output(), dev_server.root)
    assert changed
    assert [path for path in changed if not path.startswith(".langgraph_api")] == []
    (dev_server.root / "probe.txt").write_text("a change\n")
    deadline = time.monotonic() + 60
    while "probe.txt" not in watched_changes(dev_server.output(), dev_server.root):
        assert time.monotonic() < deadline, dev_server.output()[-2000:]
        time.sleep(0.5)
