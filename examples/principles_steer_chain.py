"""Principles steering an existing chat chain.

Your app already has a prompt | model chain. Keep it, and let SPRI's principles stage write
situated principles for each question; they go into the chain's system prompt.

Run: ``python examples/principles_steer_chain.py "Should I quit my job to travel?"``
"""

from __future__ import annotations

import sys

from langchain_core.language_models import BaseChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnablePassthrough

from spri_graph import create_principles_graph
from spri_graph.models import resolve_model

PROMPT = ChatPromptTemplate.from_messages(
    [
        ("system", "You are a thoughtful assistant. Follow these principles:\n{principles}"),
        ("human", "{query}"),
    ]
)


def build_chain(
    model: BaseChatModel | str | None = None,
    critic_model: BaseChatModel | str | None = None,
    *,
    max_iterations: int = 2,
) -> Runnable:
    """``{"query": ...}`` -> principles (SPRI) -> your chain's answer (a string)."""
    chat = resolve_model(model)
    principles = create_principles_graph(
        chat, critic_model=critic_model, max_iterations=max_iterations
    ).compile()
    return (
        RunnablePassthrough.assign(principles=principles | (lambda out: out["principles"]))
        | PROMPT
        | chat
        | StrOutputParser()
    )


def main(question: str) -> str:
    answer = build_chain().invoke({"query": question})
    print(answer)
    return answer


if __name__ == "__main__":
    main(" ".join(sys.argv[1:]) or "Should I quit my job to travel?")
