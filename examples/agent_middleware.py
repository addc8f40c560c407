"""A tool-using ``create_agent`` agent steered by SPRI principles (``SPRIMiddleware``).

Each user turn, SPRI writes principles for the question (critiqued and refined) and puts
them in the agent's system message for every model call of the turn, tool calls included.
The agent runs twice: first with principles alone, then also with its final answer
critiqued and refined against them. Both print the tool calls and their results, the
answer, the ``spri_*`` state keys and the SPRI model calls and tokens by stage.

Run: ``python examples/agent_middleware.py "I cycle 12 km a day. How many miles a week?"``
(uses ``$SPRI_MODEL`` or the embedded local model, offline). The embedded SmolLM2-135M
never chooses a tool on its own: on it, the first model call of each turn is made to call
``km_to_miles`` (``FirstToolCall``, a ``tool_choice`` for that call alone); the agent runs
the tool and the model, free to choose again, answers from its result. Other models choose
their tools themselves.
"""

from __future__ import annotations

import sys
from typing import Any

from langchain.agents import create_agent
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver

from spri_graph import SPRIMiddleware
from spri_graph.models import LocalChatModel, resolve_model
from spri_graph.studio import FirstToolCall


@tool
def multiply(a: float, b: float) -> float:
    """Multiply two numbers."""
    return a * b


@tool
def km_to_miles(km: float) -> float:
    """Convert kilometres to miles."""
    return round(km / 1.609344, 3)


def build_agent(
    model: BaseChatModel | str | None = None,
    *,
    refine_answer: bool = False,
    max_iterations: int = 2,
) -> Any:
    """An agent with two tools; SPRI (on the same model) steers each of its turns."""
    chat = resolve_model(model)
    middleware: list[Any] = [
        SPRIMiddleware(chat, max_iterations=max_iterations, refine_answer=refine_answer)
    ]
    if isinstance(chat, LocalChatModel):  # it would answer in text without calling a tool
        middleware.append(FirstToolCall(km_to_miles.name))
    return create_agent(
        chat,
        tools=[multiply, km_to_miles],
        system_prompt="You are a helpful assistant. Use the tools for arithmetic.",
        middleware=middleware,
        checkpointer=InMemorySaver(),
    )


def ask(agent: Any, question: str, thread_id: str) -> dict[str, Any]:
    config = {"configurable": {"thread_id": thread_id}}
    return agent.invoke({"messages": [HumanMessage(question)]}, config)


def report(title: str, out: dict[str, Any]) -> None:
    print(f"== {title}")
    results = {m.tool_call_id: m.content for m in out["messages"] if m.type == "tool"}
    for message in out["messages"]:
        for call in getattr(message, "tool_calls", None) or []:
            print(f"tool call: {call['name']}({call['args']}) -> {results.get(call['id'])}")
    print("answer:", out["messages"][-1].content)
    print("principles:", out["spri_principles"])
    print("state keys:", ", ".join(sorted(key for key in out if key.startswith("spri_"))))
    for key in ("spri_principle_critiques", "spri_response_critiques"):
        if key in out:
            print(f"{key}: scores {[c['score'] for c in out[key]]}")
    for stage, usage in out["spri_usage"].items():
        print(
            f"usage[{stage}]: {usage['model_calls']} model calls, "
            f"{usage['critic_calls']} critic calls, {usage['total_tokens']} tokens"
        )


def main(question: str, model: BaseChatModel | str | None = None) -> list[dict[str, Any]]:
    chat = resolve_model(model)
    results = []
    for refine_answer in (False, True):
        out = ask(build_agent(chat, refine_answer=refine_answer), question, "example")
        title = "principles and refined answer" if refine_answer else "principles"
        report(title, out)
        results.append(out)
    return results


if __name__ == "__main__":
    main(" ".join(sys.argv[1:]) or "I cycle 12 km a day. How many miles is that in a week?")
