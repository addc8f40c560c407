"""The SPRI evaluator inside a LangSmith evaluation loop, compared with a vanilla judge.

``langsmith.evaluate`` runs your app over a dataset and scores every output with the
evaluators you give it. Here the SPRI evaluator (an instance-specific rubric per example) and
a vanilla judge (one generic rubric) grade the same outputs side by side.

The example keeps everything on this machine: results are not uploaded and the client never
contacts a server. Drop ``upload_results=False`` and the offline client, set
``LANGSMITH_API_KEY``, and pass a dataset name to see the experiment in LangSmith.

Run: ``python examples/evaluate_with_langsmith.py`` (uses ``$SPRI_MODEL`` or the local model).
"""

from __future__ import annotations

import uuid
from typing import Any

import langsmith
from langchain_core.language_models import BaseChatModel
from langsmith import Client
from langsmith.schemas import Example

from spri_graph import create_spri_evaluator, create_vanilla_judge
from spri_graph.models import resolve_model

QUESTIONS = [
    (
        "How do I politely decline a meeting?",
        "Thank them, say you can't attend, offer an alternative.",
    ),
    ("What is a good first step to learn budgeting?", "Track every expense for one month."),
]


def dataset() -> list[Example]:
    """A small in-memory dataset (LangSmith ``Example`` objects)."""
    dataset_id = uuid.uuid4()
    return [
        Example(
            id=uuid.uuid4(), dataset_id=dataset_id, inputs={"question": q}, outputs={"answer": a}
        )
        for q, a in QUESTIONS
    ]


def app(inputs: dict) -> dict:
    """The application under test; a real one would call a chain or an agent."""
    return {"answer": "Be clear and kind: " + inputs["question"].lower()}


def evaluate(model: BaseChatModel | str | None = None, *, max_iterations: int = 1) -> list[dict]:
    """Score ``app`` on the dataset with the SPRI evaluator and a vanilla judge."""
    judge_model = resolve_model(model)
    evaluators = [
        create_spri_evaluator(judge_model, max_iterations=max_iterations),
        create_spri_evaluator(
            judge=create_vanilla_judge(judge_model).compile(),
            feedback_key="vanilla_score",
        ),
    ]
    results = langsmith.evaluate(
        app,
        data=dataset(),
        evaluators=evaluators,
        upload_results=False,
        disable_evaluator_tracing=True,
        client=Client(api_key="offline", api_url="http://127.0.0.1:9", info={}),
    )
    rows: list[dict[str, Any]] = []
    for row in results:
        scores = {r.key: r.score for r in row["evaluation_results"]["results"]}
        rows.append({"question": row["example"].inputs["question"], **scores})
    return rows


if __name__ == "__main__":
    for row in evaluate():
        print(row)
