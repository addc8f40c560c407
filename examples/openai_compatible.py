"""SPRI against any OpenAI-compatible server: vLLM, Ollama, llama.cpp's server, a hosted endpoint.

``resolve_model(name, base_url=...)`` gives a ``langchain-openai`` ``ChatOpenAI`` set up for such
servers: structured output goes through function calling, which they all share (so a small
critic still returns an integer score), and ``max_tokens`` is sent in the form they honour. A
``ChatOpenAI(base_url=...)`` you build yourself works too; the critic then also uses function
calling.

Run a server first, for example llama.cpp's own (``pip install 'spri-graph[server]'``)::

    python -m llama_cpp.server --model path/to/model.gguf --model_alias my-model --port 8000

then: ``python examples/openai_compatible.py http://127.0.0.1:8000/v1 my-model``.
The same from the command line: ``spri align "..." --model my-model --base-url URL``.
"""

from __future__ import annotations

import sys

from spri_graph import create_spri_graph, resolve_model


def align(
    base_url: str,
    model_name: str,
    question: str,
    *,
    max_iterations: int = 1,
    max_tokens: int = 256,
) -> dict:
    """Run SPRI through the server at ``base_url`` and return the graph's output."""
    # $OPENAI_API_KEY is sent when set; local servers need none.
    model = resolve_model(model_name, base_url=base_url, temperature=0.2, max_tokens=max_tokens)
    graph = create_spri_graph(
        model, critic_output="structured", max_iterations=max_iterations
    ).compile()
    return graph.invoke({"query": question})


if __name__ == "__main__":
    url, name = sys.argv[1], sys.argv[2]
    out = align(url, name, " ".join(sys.argv[3:]) or "How do I tell my team I am burning out?")
    print("PRINCIPLES:\n" + out["principles"] + "\n\nRESPONSE:\n" + out["response"])
    print(
        "\ncritic scores:",
        [c.score for c in out["principle_critiques"] + out["response_critiques"]],
    )
