"""Compiled SPRI graphs for LangGraph Studio and ``langgraph dev``.

``langgraph.json`` at the project root serves them::

    pip install -e '.[local,dev]'
    langgraph dev

* ``spri`` - situated principles, then a response aligned to them;
* ``principles`` - the principles stage alone;
* ``judge`` - an instance-specific rubric, then a refined grading of a response.

The model is ``$SPRI_MODEL`` when set, else the embedded local model, which loads on the
first model call, not at import. Per-run settings come from the graphs' context
(:class:`~spri_graph.SPRIContext`: ``model``, ``critic_model``, ``threshold``,
``max_iterations``): Studio shows them as assistant settings, and a run can change them
with ``context={...}``. To keep the dev server fully offline, also set
``LANGGRAPH_CLI_NO_ANALYTICS=1`` and ``LANGGRAPH_NO_VERSION_CHECK=true``.

Example:
    >>> from spri_graph.graphs import spri
    >>> sorted(spri.get_context_jsonschema()["properties"])
    ['critic_model', 'max_iterations', 'model', 'threshold']
    >>> spri.invoke(  # doctest: +SKIP
    ...     {"query": "Tips for a first marathon?"}, context={"max_iterations": 2}
    ... )
"""

from __future__ import annotations

from spri_graph.judge import create_judge_graph
from spri_graph.spri import create_principles_graph, create_spri_graph

__all__ = ["judge", "principles", "spri"]

spri = create_spri_graph().compile(name="spri")
"""The SPRI graph: principles, then a response guided by them."""

principles = create_principles_graph().compile(name="principles")
"""The principles stage alone."""

judge = create_judge_graph().compile(name="judge")
"""The SPRI judge: a rubric for the instruction, then a grading of the response with it."""
