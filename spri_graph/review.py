"""Human review of the principles: the graph pauses, a person approves or edits them.

``create_spri_graph(review_principles=True)`` adds :func:`review_principles` as a node
after the principles stage; it needs a checkpointer so the run can be resumed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langgraph.types import interrupt

from spri_graph.critique import Critique

__all__ = ["review_principles"]

_REVIEW_HOW = "Resume with True to approve, or with edited principles (a string)."


def _review_edit(decision: Any) -> str | None:
    """The edited principles ("" to approve as they are), or ``None`` if unreadable."""
    if decision is True or decision is None or decision in ("approve", "approved", "ok"):
        return ""
    if isinstance(decision, Mapping):
        if decision.get("action") == "approve" and "principles" not in decision:
            return ""
        decision = decision.get("principles")
    if not isinstance(decision, str) or not decision.strip():
        return None
    return decision.strip()


def review_principles(state: Any) -> dict[str, Any]:
    """Pause for a person to approve or edit the principles.

    Resume with ``Command(resume=True)`` (or ``"approve"``) to keep them, or with the edited
    principles as a string (or ``{"principles": "..."}``) to replace them. An unreadable
    answer pauses again, with an ``error`` saying what was expected, so the thread can
    still be resumed.
    """
    request: dict[str, Any] = {
        "principles": state["principles"],
        "principle_critiques": [
            Critique.of(c).model_dump() for c in state.get("principle_critiques", [])
        ],
        "instructions": _REVIEW_HOW,
    }
    decision = interrupt(request)
    while (edited := _review_edit(decision)) is None:
        request = {
            **request,
            "error": f"review: cannot use {decision!r:.80}; expected True to approve or "
            "edited principles as a non-empty string",
        }
        decision = interrupt(request)
    return {"principles": edited} if edited else {}
