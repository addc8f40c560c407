"""LocalChatModel's call paths on a scripted stand-in for llama.cpp (fast, no weights).

Every path (invoke, stream, invoke under a streaming callback such as LangGraph's
``stream_mode="messages"``) goes through the same stream, so retries, usage and metadata
agree. The real model is tested in ``test_local_model.py``.
"""

from __future__ import annotations

import json
import os
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk
from langgraph.graph import END, START, MessagesState, StateGraph

from spri_graph.models import (
    LocalChatModel,
    default_threads,
    resolve_model,
    set_default_threads,
)
from spri_graph.models.grammar import bounded_schema, text_then_choice, tool_gbnf
from spri_graph.models.llama import LlamaCounts, chat_template_warning
from spri_graph.models.threads import fixed_threads
from spri_graph.readers.rubric import rubric_schema
from spri_graph.readers.scores import ScoredCritique

PROMPT_TOKENS = 7


class FakeLlama:
    """Stands in for a loaded ``llama_cpp.Llama``: one scripted reply per completion.

    A reply is a list of text pieces, each counted as one sampled token; the completion
    ends with an end-of-generation token. A chat prompt counts ``PROMPT_TOKENS`` tokens, a
    text's character is one token. Requests are recorded.
    """

    def __init__(self, *replies: list[str]) -> None:
        self.replies = list(replies)
        self.requests: list[dict[str, Any]] = []
        self.counts = LlamaCounts()
        self.metadata = {"tokenizer.chat_template": "{{ messages }}"}

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        return list(text)

    def create_chat_completion(self, *, stream: bool, **request: Any) -> Iterator[dict]:
        return self._complete(list(range(PROMPT_TOKENS)), "delta", stream, request)

    def create_completion(self, *, stream: bool, **request: Any) -> Iterator[dict]:
        return self._complete(request["prompt"], "text", stream, request)

    def _complete(
        self, prompt: list[int], kind: str, stream: bool, request: dict[str, Any]
    ) -> Iterator[dict]:
        assert stream, "LocalChatModel always streams"
        self.requests.append(request)
        pieces = self.replies.pop(0)
        self.counts = counts = LlamaCounts()
        counts.prompt_ids, counts.prompt_tokens = prompt, len(prompt)

        def part(text: str, finish: str | None) -> dict:
            choice = {"text": text} if kind == "text" else {"delta": {"content": text}}
            return {"choices": [{**choice, "finish_reason": finish}]}

        def parts() -> Iterator[dict]:
            for piece in pieces:
                counts.samples += 1
                yield part(piece, None)
            counts.samples += 1
            counts.ended = True
            yield part("", "stop")

        return parts()


@pytest.fixture
def fake_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Any:
    """``make(*replies, **settings)``: a LocalChatModel answering from a FakeLlama."""
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF")

    def make(*replies: list[str], **settings: Any) -> tuple[LocalChatModel, FakeLlama]:
        fake, lock = FakeLlama(*replies), threading.Lock()
        monkeypatch.setattr(LocalChatModel, "client", lambda self: (fake, lock))
        return LocalChatModel(model_path=str(path), **settings), fake

    return make


def test_invoke_and_stream_give_the_same_reply(fake_model: Any) -> None:
    model, _ = fake_model(["Hello", " there", "."], ["Hello", " there", "."])
    invoked = model.invoke("Hi")
    chunks = list(model.stream("Hi"))
    streamed = chunks[0]
    for chunk in chunks[1:]:
        streamed += chunk
    assert [c.text for c in chunks] == ["Hello", " there", ".", ""]
    assert invoked.text == streamed.text == "Hello there."
    assert (
        invoked.usage_metadata
        == streamed.usage_metadata
        == {
            "input_tokens": PROMPT_TOKENS,
            "output_tokens": 3,
            "total_tokens": PROMPT_TOKENS + 3,
        }
    )
    for meta in (invoked.response_metadata, streamed.response_metadata):
        assert meta["attempts"] == 1 and meta["finish_reason"] == "stop"
        assert meta["model_provider"] == "llama-cpp" and meta["llama_seconds"] >= 0


def test_empty_replies_are_asked_again_on_every_path(fake_model: Any) -> None:
    model, fake = fake_model([], ["  ", "\n"], [" ", "Hi", "!"])
    chunks = list(model.stream("Say hi."))
    # Whitespace is held back until text arrives, so an empty attempt streams nothing.
    assert [c.text for c in chunks] == [" Hi", "!", ""]
    last = chunks[-1]
    assert last.response_metadata["attempts"] == 3
    assert last.usage_metadata["input_tokens"] == 3 * PROMPT_TOKENS
    assert last.usage_metadata["output_tokens"] == 0 + 2 + 3
    temperatures = [request["temperature"] for request in fake.requests]
    seeds = [request["seed"] for request in fake.requests]
    assert temperatures == pytest.approx([model.temperature, 1.0, 1.4]) and seeds == [0, 1, 2]


def test_empty_replies_are_asked_again_under_stream_mode_messages(fake_model: Any) -> None:
    # A streaming callback makes langchain-core call _stream from invoke: retries must hold.
    model, _ = fake_model([], ["Hello", " again"])

    def chat(state: MessagesState) -> dict:
        return {"messages": [model.invoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("chat", chat)
    builder.add_edge(START, "chat")
    builder.add_edge("chat", END)
    graph = builder.compile()
    streamed, final = [], None
    for mode, data in graph.stream(
        {"messages": [("user", "Hi")]}, stream_mode=["messages", "values"]
    ):
        if mode == "messages":
            streamed.append(data[0])
        else:
            final = data
    assert all(isinstance(chunk, AIMessageChunk) for chunk in streamed)
    assert "".join(chunk.text for chunk in streamed) == "Hello again"
    reply = final["messages"][-1]
    assert reply.text == "Hello again"
    assert reply.response_metadata["attempts"] == 2
    assert reply.usage_metadata["input_tokens"] == 2 * PROMPT_TOKENS


def test_all_attempts_empty_gives_an_empty_reply(fake_model: Any) -> None:
    model, fake = fake_model([], [], [], empty_retries=2)
    reply = model.invoke("Say hi.")
    assert reply.text == "" and reply.response_metadata["attempts"] == 3
    assert not fake.replies


def test_a_critique_is_written_as_text_then_a_constrained_score(fake_model: Any) -> None:
    model, fake = fake_model([" The", ' "principles"', " are vague.\n"], ["4"])
    chunks = list(model.bind_tools([ScoredCritique], tool_choice="ScoredCritique").stream("x"))
    args = "".join(c.tool_call_chunks[0]["args"] for c in chunks if c.tool_call_chunks)
    assert json.loads(args) == {"feedback": 'The "principles" are vague.', "score": 4}
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    assert total.tool_calls[0]["name"] == "ScoredCritique"
    text_request, score_request = fake.requests
    assert "grammar" not in text_request
    assert "Reply with only the feedback" in text_request["messages"][0]["content"]
    # The score goes on from the prompt and the feedback as sampled; one token, constrained.
    sampled = ' The "principles" are vague.\n'
    assert score_request["prompt"] == [
        *range(PROMPT_TOKENS),
        *(sampled + "\n\nScore: ").encode(),
    ]
    assert score_request["max_tokens"] == 1 and score_request["grammar"] is not None
    assert total.usage_metadata["input_tokens"] == PROMPT_TOKENS + len(score_request["prompt"])
    assert total.usage_metadata["output_tokens"] == 4


def test_a_json_grammar_reply_keeps_the_repeat_penalty(fake_model: Any) -> None:
    # Under a JSON grammar the keys and punctuation are forced; without a penalty on the
    # words it picks, a small model can loop ("1.1.1.1...") until the budget cuts the JSON.
    reply = '{"criteria": "Kind?", "score1_description": "Rude.", "score2_description": "Warm."}'
    model, fake = fake_model([reply], repeat_penalty=1.3, max_tool_tokens=300)
    rubric = model.with_structured_output(rubric_schema((1, 2))).invoke("x")
    assert rubric.criteria == "Kind?" and rubric.score2_description == "Warm."
    (request,) = fake.requests
    assert request["grammar"] is not None
    assert request["repeat_penalty"] == 1.3 and request["max_tokens"] == 300


def test_structured_output_parses_and_bounds_the_feedback(fake_model: Any) -> None:
    model, _ = fake_model(["a" * 50, " b" * 40], ["2"], max_string_chars=60)
    out = model.with_structured_output(ScoredCritique, include_raw=True).invoke("x")
    assert out["parsing_error"] is None
    assert out["parsed"].score == 2
    assert out["parsed"].feedback == "a" * 50 + " b b b b b"
    assert isinstance(out["raw"], AIMessage) and out["raw"].tool_calls


def test_an_empty_feedback_is_asked_again_then_scored(fake_model: Any) -> None:
    model, _ = fake_model([" "], ["Fine."], ["5"])
    critique = model.with_structured_output(ScoredCritique).invoke("x")
    assert critique == ScoredCritique(feedback="Fine.", score=5)


def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


def test_with_tools_offered_a_reply_opening_json_becomes_a_tool_call(fake_model: Any) -> None:
    call = '{"name": "multiply", "arguments": {"a": 12, "b": 7}}'
    model, fake = fake_model([" ", '{"', "name"], [call])
    reply = model.bind_tools([multiply]).invoke("What is 12 times 7? Use the tool.")
    assert reply.content == ""
    assert [(c["name"], c["args"]) for c in reply.tool_calls] == [("multiply", {"a": 12, "b": 7})]
    assert reply.tool_calls[0]["id"].startswith("call_")
    text_request, call_request = fake.requests
    assert "grammar" not in text_request
    instruction = text_request["messages"][0]["content"]
    assert "- multiply: Multiply two integers." in instruction and '"a": <integer>' in instruction
    # The call is written again from the same prompt, under the grammar of tool calls.
    assert call_request["prompt"] == list(range(PROMPT_TOKENS))
    assert call_request["grammar"] is not None
    assert call_request["max_tokens"] == model.max_tool_tokens
    assert reply.usage_metadata["output_tokens"] == 2 + 1  # text stopped at its "{", then the call


@pytest.mark.parametrize(
    ("settings", "bounds"),
    [
        ({}, (256, 512, 400)),
        ({"max_tokens": 48}, (48, 96, 75)),
        ({"max_tokens": 4}, (4, 16, 6)),
        ({"max_tokens": 48, "max_tool_tokens": 300, "max_string_chars": 20}, (48, 300, 20)),
    ],
)
def test_structured_replies_are_bounded_with_max_tokens(
    fake_model: Any, settings: dict[str, int], bounds: tuple[int, int, int]
) -> None:
    """Unless set, the JSON of a tool call gets twice ``max_tokens``, each string in it
    ``max_tokens`` x 25/16 characters, so one cap bounds every reply."""
    call = '{"name": "multiply", "arguments": {"a": 12, "b": 7}}'
    model, fake = fake_model([call], **settings)
    assert (model.max_tokens, model.max_tool_tokens, model.max_string_chars) == bounds
    model.bind_tools([multiply], tool_choice="multiply").invoke("What is 12 times 7?")
    (request,) = fake.requests
    assert request["max_tokens"] == bounds[1]


def test_with_tools_offered_the_model_may_answer_in_text(fake_model: Any) -> None:
    model, fake = fake_model(["12 x 7", " = 84."], ["Hi."])
    reply = model.bind_tools([multiply], tool_choice="auto").invoke("What is 12 times 7?")
    assert reply.text == "12 x 7 = 84." and not reply.tool_calls
    (request,) = fake.requests
    assert "grammar" not in request and "multiply" in request["messages"][0]["content"]
    # tool_choice="none": the tools are not offered at all.
    reply = model.bind_tools([multiply], tool_choice="none").invoke("Hello")
    assert reply.text == "Hi." and "multiply" not in json.dumps(fake.requests[-1]["messages"])


def test_a_tool_call_cut_off_by_the_budget_comes_back_as_text(fake_model: Any) -> None:
    model, _ = fake_model(["{"], ['{"name": "multiply", "argu'])
    reply = model.bind_tools([multiply]).invoke("12 times 7?")
    assert reply.text == '{"name": "multiply", "argu' and not reply.tool_calls


def test_tool_calls_in_the_history_reach_the_model_as_their_json(fake_model: Any) -> None:
    from langchain_core.messages import HumanMessage, ToolMessage

    model, fake = fake_model(["84."])
    call = {"name": "multiply", "args": {"a": 12, "b": 7}, "id": "call_1"}
    history = [
        HumanMessage("What is 12 times 7?"),
        AIMessage("", tool_calls=[call]),
        ToolMessage("84", tool_call_id="call_1"),
    ]
    assert model.bind_tools([multiply]).invoke(history).text == "84."
    messages = fake.requests[0]["messages"]
    assert messages[2]["role"] == "assistant"
    assert json.loads(messages[2]["content"]) == {"name": "multiply", "arguments": call["args"]}
    assert messages[3] == {**messages[3], "role": "tool", "content": "84"}


def test_which_schemas_are_written_in_two_steps() -> None:
    def shape(properties: dict, required: list[str] | None = None) -> Any:
        return text_then_choice(
            {
                "properties": properties,
                "required": list(properties) if required is None else required,
            }
        )

    letter = shape({"feedback": {"type": "string"}, "better": {"enum": ["A", "B"]}})
    assert letter is not None and letter.choices == ("A", "B")
    ranged = shape(
        {"why": {"type": "string"}, "score": {"type": "integer", "minimum": 1, "maximum": 10}}
    )
    assert ranged is not None and ranged.choices == tuple(range(1, 11))
    assert shape({"why": {"type": "string"}, "n": {"type": "integer"}}) is None
    assert shape({"a": {"type": "string"}, "b": {"type": "string"}}) is None
    assert shape({"s": {"enum": [1, 2]}, "t": {"type": "string"}}) is None
    assert shape({"t": {"type": "string"}, "s": {"enum": [1, 2]}}, ["t"]) is None
    assert shape({"t": {"type": "string", "maxLength": 9}, "s": {"enum": [1, 2]}}) is None


# --------------------------------------------------------------------------- settings


def test_no_chat_template_and_no_format_gives_a_warning() -> None:
    assert chat_template_warning({"tokenizer.chat_template": "{{ m }}"}, None, "/m.gguf") is None
    assert chat_template_warning({}, "gemma", "/m/gemma-3.gguf") is None
    message = chat_template_warning({"general.name": "Gemma 3"}, None, "/m/gemma-3.gguf")
    assert message is not None
    assert message.startswith("gemma-3.gguf has no chat template in its metadata")
    assert "'llama-2'" in message and "chat_format=" in message and "--chat-format" in message
    assert chat_template_warning(
        {"tokenizer.chat_template": ""}, None, "/m.gguf"
    ) == message.replace("gemma-3.gguf", "m.gguf")


def test_chat_format_reaches_the_local_model(tmp_path: Any) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF and some bytes")
    model = resolve_model(f"gguf:{path}", chat_format="chatml")
    assert isinstance(model, LocalChatModel) and model.chat_format == "chatml"
    assert model._identifying_params["chat_format"] == "chatml"
    with pytest.raises(ValueError, match=r"^model: invalid local model setting \(chat_format"):
        resolve_model(f"gguf:{path}", chat_format="no-such-format")
    with pytest.raises(ValueError, match=r"^--model: only GGUF models .* not 'openai:gpt-4o'"):
        resolve_model("openai:gpt-4o", field="--model", chat_format="chatml")


def test_default_threads_follow_the_process_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPRI_LLAMA_THREADS", raising=False)
    assert default_threads() >= 1 and fixed_threads() is None
    monkeypatch.setenv("SPRI_LLAMA_THREADS", "3")
    assert default_threads() == fixed_threads() == 3
    try:
        set_default_threads(1)
        assert default_threads() == fixed_threads() == 1
        with pytest.raises(ValueError, match="threads must be a positive integer"):
            set_default_threads(0)
    finally:
        set_default_threads(None)
    assert default_threads() == 3


def _in_a_forked_child(*settings: int | None) -> list[int | None]:
    """fixed_threads() in a forked child, first as inherited, then after each setting."""
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # other tests' threads
        pid = os.fork()
    if pid == 0:  # the child: report, then leave without running the parent's cleanup
        seen = [fixed_threads()]
        for threads in settings:
            set_default_threads(threads)
            seen.append(fixed_threads())
        os.write(write, json.dumps(seen).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        seen: list[int | None] = json.loads(pipe.read())
    assert os.waitpid(pid, 0)[1] == 0
    return seen


def test_a_forked_process_runs_on_one_thread_until_it_sets_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SPRI_LLAMA_THREADS", "3")
    try:
        set_default_threads(2)
        assert _in_a_forked_child(4, None) == [1, 4, 3]
        assert fixed_threads() == 2  # the parent keeps its own count
    finally:
        set_default_threads(None)
    monkeypatch.delenv("SPRI_LLAMA_THREADS")
    assert _in_a_forked_child() == [1] and fixed_threads() is None


def test_a_model_runs_on_the_threads_set_when_it_loads(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import spri_graph.models.llama as llama

    loads: list[int] = []

    def loader(**settings: Any) -> FakeLlama:
        assert settings["n_threads"] == settings["n_threads_batch"]
        loads.append(settings["n_threads"])
        return FakeLlama()

    monkeypatch.setattr(llama, "_LLAMAS", {})
    monkeypatch.setattr(llama, "_local_llama_class", lambda: loader)
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF")
    model = LocalChatModel(model_path=str(path))
    monkeypatch.setenv("SPRI_LLAMA_THREADS", "3")
    first = model.client()
    monkeypatch.setenv("SPRI_LLAMA_THREADS", "2")
    assert model.model_copy(update={"n_threads": 3}).client() is first  # same settings
    assert model.model_copy(update={"n_threads": 1}).client() is not first
    assert model.client() is not first  # the count of the time: a load on two threads
    assert loads == [3, 1, 2]


def test_tool_grammars_bound_strings_through_the_json_schema() -> None:
    schema = {
        "type": "object",
        "properties": {
            "why": {"type": "string"},
            "short": {"type": "string", "maxLength": 3},
            "kind": {"type": "string", "enum": ["a", "b"]},
            "n": {"type": "integer", "minimum": 0, "maximum": 100},
        },
        "required": ["why", "short", "kind", "n"],
    }
    bounded = bounded_schema(schema, 5)["properties"]
    assert bounded["why"] | bounded["short"] == {
        "type": "string",
        "minLength": 1,
        "maxLength": 3,
    }
    assert bounded["why"]["maxLength"] == 5 and "maxLength" not in bounded["kind"]
    assert bounded["n"]["enum"] == list(range(101))
    gbnf = tool_gbnf(json.dumps(schema, sort_keys=True), 5)
    # llama-cpp-python's converter writes the bound: one character, then at most four.
    assert 'why ::= "\\"" char (char (char (char (char)?)?)?)? "\\"" space' in gbnf
    assert "char*" not in gbnf and '"100"' in gbnf


def test_models_package_keeps_its_public_names() -> None:
    import spri_graph.models as models

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in models.__all__:
            assert getattr(models, name) is not None
    for name in (
        "ModelSpec",
        "is_local_model",
        "resolve_model",
        "resolve_model_cached",
        "LocalChatModel",
        "load_local_model",
        "local_model_available",
        "default_gguf_path",
    ):
        assert name in models.__all__
