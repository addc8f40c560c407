"""SPRI as a drop-in node inside a parent agent graph built on ``MessagesState``.

The parent graph routes every user turn through SPRI: principles are written for the
question, the answer is aligned to them, and the aligned answer is appended to the
conversation as an AI message.

Run: ``python examples/agent_node.py "How do I tell my team I am burning out?"``
(uses ``$SPRI_MODEL`` or the embedded local model).
"""

from __future__ import annotations

import sys

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph

from spri_graph import create_spri_graph


def build_agent(model: BaseChatModel | str | None = None, *, max_iterations: int = 2):
    """A two-node agent: a greeter that tidies the turn, then SPRI as the answering node."""
    spri = create_spri_graph(model, max_iterations=max_iterations).compile()

    def intake(state: MessagesState) -> dict:
        # A real agent would classify, call tools or fetch context here.
        return {}

    builder = StateGraph(MessagesState)
    builder.add_node("intake", intake)
    builder.add_node("spri", spri)
    builder.add_edge(START, "intake")
    builder.add_edge("intake", "spri")
    builder.add_edge("spri", END)
    return builder.compile(checkpointer=InMemorySaver())


def main(question: str) -> str:
    agent = build_agent()
    config = {"configurable": {"thread_id": "example"}}
    out = agent.invoke({"messages": [HumanMessage(question)]}, config)
    answer = out["messages"][-1].content
    print(answer)
    return answer


if __name__ == "__main__":
    main(" ".join(sys.argv[1:]) or "How do I tell my team I am burning out?")
