"""The embedded local model: SmolLM2-135M-Instruct run in-process by llama.cpp.

The model is tiny, so these tests check what must hold whatever it writes: non-empty text,
usage metadata, streaming, grammar-constrained structured output with integer scores, one
load per process, and clear errors for bad GGUF paths and settings.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any, Literal

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.graph import END, START, MessagesState, StateGraph
from pydantic import BaseModel, Field

from spri_graph import resolve_model
from spri_graph.engine.prompts import SPRI_PROMPTS
from spri_graph.models import (
    LocalChatModel,
    default_gguf_path,
    is_local_model,
    load_local_model,
    loaded_llama_count,
    local_model_available,
    set_default_threads,
)
from spri_graph.readers.scores import ScoredCritique

pytestmark = pytest.mark.integration

QUERY = "How do I tell my team I am burning out?"
PRINCIPLES = "1. Be honest about how you feel.\n2. Suggest concrete changes.\n3. Stay calm."


@pytest.fixture(scope="module")
def local() -> LocalChatModel:
    assert local_model_available(), "the 'local' extra is part of the test environment"
    model = resolve_model("local")
    assert isinstance(model, LocalChatModel)
    return model


def critique_prompt(candidate: str = PRINCIPLES) -> list:
    return SPRI_PROMPTS["principles_critique"].format_messages(
        query=QUERY, goal_section="", history_section="", candidate=candidate
    )


# --------------------------------------------------------------------------- resolution


def test_default_model_is_the_embedded_gguf_without_loading_it() -> None:
    path = default_gguf_path()
    assert path is not None and path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.read_bytes()[:4] == b"GGUF"
    model = resolve_model(None)  # SPRI_MODEL is unset by conftest
    assert isinstance(model, LocalChatModel) and is_local_model(model)
    assert model.model_path == str(path.resolve())
    assert is_local_model(model.bind(stop=["x"]))
    assert not is_local_model(object())


def test_building_graphs_does_not_load_the_model() -> None:
    code = (
        "import sys, spri_graph.studio\n"
        "from spri_graph import create_spri_graph\n"
        "from spri_graph.models import loaded_llama_count\n"
        "create_spri_graph().compile()\n"
        "print(loaded_llama_count(), 'llm' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.split() == ["0", "False"]


def test_gguf_paths_resolve_and_share_one_loaded_model(local: LocalChatModel) -> None:
    path = str(default_gguf_path())
    other = resolve_model(f"gguf:{path}")
    assert isinstance(other, LocalChatModel) and other is not local
    assert other.client()[0] is local.client()[0]
    assert loaded_llama_count(str(default_gguf_path().resolve())) == 1


def _loads_then_reply(model: LocalChatModel) -> tuple[int, str, int]:
    before = loaded_llama_count()
    text = model.invoke("Say hello.", max_tokens=8).text
    return before, text, loaded_llama_count()


def test_a_forked_process_loads_its_own_copy(local: LocalChatModel) -> None:
    assert local.invoke("Say hi.", max_tokens=4).text  # loaded in this process
    with multiprocessing.get_context("fork").Pool(1) as pool:
        before, text, after = pool.apply_async(_loads_then_reply, (local,)).get(timeout=300)
    assert (before, after) == (0, 1) and text.strip()


def _one_thread_reply(model: LocalChatModel) -> tuple[int, str]:
    set_default_threads(1)  # what a synthesis worker does after the fork
    text = model.invoke("Say hello.", max_tokens=4).text
    return model.client()[0].n_threads, text


def test_a_forked_worker_can_run_its_copy_on_one_thread(local: LocalChatModel) -> None:
    assert local.invoke("Say hi.", max_tokens=4).text
    with multiprocessing.get_context("fork").Pool(1) as pool:
        threads, text = pool.apply_async(_one_thread_reply, (local,)).get(timeout=300)
    assert threads == 1 and text.strip()


def test_a_chat_format_can_be_chosen_and_the_embedded_template_gives_no_warning() -> None:
    path = str(default_gguf_path())
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the embedded GGUF has a chat template
        plain = resolve_model(f"gguf:{path}", n_ctx=512)
        assert plain.invoke("Say hi.", max_tokens=4).text.strip()
    chatml = resolve_model(f"gguf:{path}", chat_format="chatml", n_ctx=512)
    assert isinstance(chatml, LocalChatModel) and chatml.chat_format == "chatml"
    llama = chatml.client()[0]
    assert llama.chat_format == "chatml" and llama is not plain.client()[0]
    assert chatml.invoke("Say hi.", max_tokens=4).text.strip()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("gguf:/no/such/model.gguf", "critic_model: GGUF file not found: '/no/such/model.gguf'"),
        ("gguf:", "critic_model: expected 'gguf:/path/to/model.gguf', got an empty path"),
    ],
)
def test_bad_gguf_paths_name_the_field(spec: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        resolve_model(spec, field="critic_model")
    assert str(info.value) == message


def test_a_file_that_is_not_gguf_is_refused(tmp_path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_text("not a model")
    with pytest.raises(ValueError, match=r"^--model: '.*model\.gguf' is not a GGUF file$"):
        resolve_model(f"gguf:{fake}", field="--model")


def test_bad_settings_name_the_field_and_setting() -> None:
    with pytest.raises(ValueError, match=r"^model: invalid local model setting \(temperature"):
        load_local_model(temperature=-1)
    with pytest.raises(ValueError, match=r"^model: invalid local model setting \(bogus"):
        load_local_model(bogus=1)


# --------------------------------------------------------------------------- chat model


def test_invoke_returns_text_with_usage(local: LocalChatModel) -> None:
    message = local.invoke([HumanMessage("Give one tip for sleeping well.")])
    assert isinstance(message, AIMessage)
    assert message.text.strip()
    usage = message.usage_metadata
    assert usage["input_tokens"] > 0 and 0 < usage["output_tokens"] <= local.max_tokens
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    meta = message.response_metadata
    assert meta["model_name"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert meta["finish_reason"] in ("stop", "length")
    assert meta["llama_seconds"] > 0


def test_stream_yields_tokens_and_usage(local: LocalChatModel) -> None:
    prompt = [HumanMessage("Name three colors.")]
    chunks = list(local.stream(prompt, max_tokens=24))
    texts = [chunk.text for chunk in chunks if chunk.text]
    assert len(texts) > 1  # token by token, not one block
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    assert total.text.strip() == "".join(texts).strip()
    assert total.usage_metadata["output_tokens"] <= 24
    assert total.usage_metadata["output_tokens"] >= len(texts) - 1
    # The prompt is counted exactly: the same prompt through invoke reports the same size.
    invoked = local.invoke(prompt, max_tokens=1)
    assert total.usage_metadata["input_tokens"] == invoked.usage_metadata["input_tokens"]


def test_async_invoke(local: LocalChatModel) -> None:
    message = asyncio.run(local.ainvoke("Say hello."))
    assert message.text.strip() and message.usage_metadata["output_tokens"] > 0


def test_structured_critique_always_has_an_integer_score(local: LocalChatModel) -> None:
    structured = local.with_structured_output(ScoredCritique, include_raw=True)
    out = structured.invoke(critique_prompt())
    assert out["parsing_error"] is None
    critique = out["parsed"]
    assert isinstance(critique, ScoredCritique)
    assert critique.score in (1, 2, 3, 4, 5)
    assert critique.feedback.strip()
    assert len(critique.feedback) <= local.max_string_chars
    raw = out["raw"]
    assert [call["name"] for call in raw.tool_calls] == ["ScoredCritique"]
    assert raw.usage_metadata["output_tokens"] > 0


def test_string_length_bound_holds(local: LocalChatModel) -> None:
    short = local.model_copy(update={"max_string_chars": 30})
    critique = short.with_structured_output(ScoredCritique).invoke(critique_prompt())
    assert 1 <= len(critique.feedback) <= 30
    assert critique.score in (1, 2, 3, 4, 5)


class Verdict(BaseModel):
    """Whether the statement is true."""

    reason: str = Field(description="One sentence of reasoning.")
    answer: Literal["yes", "no"]
    confidence: int = Field(ge=0, le=100)


def test_any_schema_gets_valid_structured_output(local: LocalChatModel) -> None:
    verdict = local.with_structured_output(Verdict).invoke("Is the sky green?")
    assert isinstance(verdict, Verdict) and verdict.answer in ("yes", "no")
    chunks = list(local.bind_tools([Verdict], tool_choice="Verdict").stream("Is water wet?"))
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    assert [call["name"] for call in total.tool_calls] == ["Verdict"]
    assert Verdict.model_validate(total.tool_calls[0]["args"])


def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression such as '12 * 7'."""
    try:
        return str(eval(expression, {"__builtins__": {}}))  # noqa: S307 - a test's tool
    except Exception as exc:  # noqa: BLE001 - the model reads the error
        return f"error: {exc}"


def test_an_agent_tool_call_on_the_embedded_model(local: LocalChatModel) -> None:
    from langchain.agents import create_agent

    llama, _ = local.client()
    brace = llama.tokenize(b"{", add_bos=False)
    assert len(brace) == 1
    question = "What is 12 times 7? Use the calculator tool."
    # Left to choose, SmolLM2-135M answers arithmetic in text; the reply is then text.
    offered = local.bind_tools([calculator])
    reply = offered.invoke(question, max_tokens=16)
    assert reply.text.strip() or reply.tool_calls
    # When its reply opens a JSON object (here made likeliest with a logit bias on "{"),
    # the call is written under the grammar of the bound tools: a valid tool call.
    call = offered.invoke(question, logit_bias={brace[0]: 100.0}).tool_calls
    assert [c["name"] for c in call] == ["calculator"]
    assert isinstance(call[0]["args"]["expression"], str) and call[0]["args"]["expression"]
    # In an agent: the first model call chooses the tool, the agent runs it, and the
    # model answers from its result (offered no tool then: a tiny model shown a tool call
    # tends to write another, and the loop would only end at the context window).
    first = [True]

    def choose_the_tool_first(request: Any, handler: Any) -> Any:
        if first.pop() if first else False:
            bias = {"logit_bias": {brace[0]: 100.0}}
            request = request.override(model_settings={**request.model_settings, **bias})
        else:
            request = request.override(tools=[])
        return handler(request)

    from langchain.agents.middleware import wrap_model_call

    agent = create_agent(local, [calculator], middleware=[wrap_model_call(choose_the_tool_first)])
    out = agent.invoke({"messages": [("user", question)]})
    kinds = [type(message).__name__ for message in out["messages"]]
    assert kinds[:3] == ["HumanMessage", "AIMessage", "ToolMessage"]
    assert out["messages"][1].tool_calls[0]["name"] == "calculator"
    assert out["messages"][2].tool_call_id == out["messages"][1].tool_calls[0]["id"]
    assert len(out["messages"]) == 4 and isinstance(out["messages"][3], AIMessage)
    assert out["messages"][3].text.strip() and not out["messages"][3].tool_calls


def test_tool_choice_must_name_a_bound_tool(local: LocalChatModel) -> None:
    with pytest.raises(ValueError, match="'Nope' is not among the bound tools"):
        local.bind_tools([Verdict], tool_choice="Nope")
    with pytest.raises(ValueError, match="forces one tool"):
        local.bind_tools([Verdict, ScoredCritique], tool_choice="any")


def test_empty_replies_are_asked_again_under_stream_mode_messages(
    local: LocalChatModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Under a streaming callback langchain-core calls _stream from invoke; retries must hold.
    llama, _ = local.client()
    real = llama.create_chat_completion
    requests: list[dict[str, Any]] = []

    def first_reply_empty(**request: Any) -> Any:
        requests.append(request)
        if len(requests) == 1:  # force the end-of-generation token first
            request = {**request, "logit_bias": {llama.token_eos(): 100.0}}
        return real(**request)

    monkeypatch.setattr(llama, "create_chat_completion", first_reply_empty)

    def chat(state: MessagesState) -> dict:
        return {"messages": [local.invoke(state["messages"], max_tokens=16)]}

    builder = StateGraph(MessagesState)
    builder.add_node("chat", chat)
    builder.add_edge(START, "chat")
    builder.add_edge("chat", END)
    streamed, final = [], {}
    for mode, data in builder.compile().stream(
        {"messages": [("user", "Say hello.")]}, stream_mode=["messages", "values"]
    ):
        if mode == "messages":
            streamed.append(data[0].text)
        else:
            final = data
    reply = final["messages"][-1]
    assert len(requests) == 2 and reply.response_metadata["attempts"] == 2
    assert reply.text.strip() and "".join(streamed) == reply.text
    assert reply.usage_metadata["output_tokens"] > 0


def test_prompts_start_from_the_state_of_an_earlier_similar_prompt(
    local: LocalChatModel,
) -> None:
    first = critique_prompt()
    local.invoke(first, max_tokens=4)
    local.invoke("Something else entirely.", max_tokens=4)
    again = SPRI_PROMPTS["principles_critique"].format_messages(
        query=QUERY, goal_section="", history_section="", candidate="1. Be brief."
    )
    usage = local.invoke(again, max_tokens=4).usage_metadata
    # Everything up to the candidate comes from the first prompt's state.
    assert usage["input_token_details"]["cache_read"] > usage["input_tokens"] // 2
    cold = local.model_copy(update={"prompt_cache_mb": 0})
    cold.invoke(first, max_tokens=4)
    cold.invoke("Something else entirely.", max_tokens=4)
    cold_usage = cold.invoke(again, max_tokens=4).usage_metadata
    assert cold_usage["input_tokens"] == usage["input_tokens"]
    cold_read = cold_usage.get("input_token_details", {}).get("cache_read", 0)
    assert cold_read < usage["input_token_details"]["cache_read"] // 4


def test_empty_replies_are_asked_again(local: LocalChatModel) -> None:
    # Force the end-of-generation token first, so every attempt comes back empty.
    llama, _ = local.client()
    message = local.invoke("Say hello.", logit_bias={llama.token_eos(): 100.0})
    assert message.text == ""
    assert message.response_metadata["attempts"] == 1 + local.empty_retries
    assert message.usage_metadata["input_tokens"] > 0


# --------------------------------------------------------------------------- grammar, seed, weights


def test_json_grammar_strings_hold_at_most_max_string_chars(local: LocalChatModel) -> None:
    # The whole JSON under the grammar: the bound comes from the schema's maxLength.
    tight = local.model_copy(update={"max_string_chars": 12, "two_step_structured": False})
    out = tight.with_structured_output(Verdict, include_raw=True).invoke("Is the sky green?")
    args = out["raw"].tool_calls[0]["args"]
    assert 1 <= len(args["reason"]) <= 12
    assert args["answer"] in ("yes", "no") and 0 <= args["confidence"] <= 100


_SAME_SEED_REPLIES = """
import json, sys
from spri_graph.engine.prompts import SPRI_PROMPTS
from spri_graph.models import load_local_model

model = load_local_model(max_tokens=48)
prompts = [
    SPRI_PROMPTS["principles_critique"].format_messages(
        query=sys.argv[1], goal_section="", history_section="", candidate=candidate
    )
    for candidate in json.loads(sys.argv[2])
]
print(json.dumps([model.invoke(prompt).text for prompt in prompts]))
"""


def test_the_default_seed_gives_the_same_reply_call_after_call_and_across_processes() -> None:
    other = "1. Be brief."
    # In this process: the same messages twice in a row, then again after a prompt that
    # shares most of their tokens (its state is restored, then the rest evaluated).
    model = load_local_model(max_tokens=48)
    candidates = (PRINCIPLES, PRINCIPLES, other, PRINCIPLES)
    first, again, _, after_other = [model.invoke(critique_prompt(c)).text for c in candidates]
    assert first.strip() and first == again == after_other
    # In a fresh process, after another prompt.
    out = subprocess.run(
        [sys.executable, "-c", _SAME_SEED_REPLIES, QUERY, json.dumps([other, PRINCIPLES])],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    assert json.loads(out.stdout)[1] == first


def test_the_embedded_model_runs_from_a_q8_0_copy_made_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import llama_cpp

    from spri_graph.models.weights import q8_0_copy

    shipped = str(default_gguf_path())
    monkeypatch.setenv("SPRI_CACHE_DIR", str(tmp_path / "cache"))
    copy = q8_0_copy.__wrapped__(shipped)
    assert Path(copy).parent == tmp_path / "cache" and copy.endswith(".Q8_0.gguf")
    assert list((tmp_path / "cache").iterdir()) == [Path(copy)]  # no temporary file left
    meta = llama_cpp.Llama(copy, vocab_only=True, verbose=False).metadata
    assert meta["general.file_type"] == str(llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0)
    written = Path(copy).stat().st_mtime_ns
    assert q8_0_copy.__wrapped__(shipped) == copy and Path(copy).stat().st_mtime_ns == written
    # The same file installed elsewhere (another virtualenv) shares the copy.
    (tmp_path / "venv").mkdir()
    elsewhere = shutil.copy(shipped, tmp_path / "venv")
    assert q8_0_copy.__wrapped__(str(elsewhere)) == copy
    assert Path(copy).stat().st_mtime_ns == written
    # A cache folder that cannot be made: the shipped file loads as it is.
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("SPRI_CACHE_DIR", str(tmp_path / "file" / "cache"))
    assert q8_0_copy.__wrapped__(shipped) == shipped


def test_only_the_embedded_model_is_swapped_for_its_copy(
    local: LocalChatModel, tmp_path: Path
) -> None:
    from spri_graph.models.llama import weights_file

    llama, _ = local.client()
    assert llama.model_path.endswith(".Q8_0.gguf")
    assert weights_file(local.model_path, q8_0_weights=True) == llama.model_path
    assert weights_file(local.model_path, q8_0_weights=False) == local.model_path
    other = tmp_path / "other.gguf"
    other.write_bytes(b"GGUF")
    assert weights_file(str(other), q8_0_weights=True) == str(other)
