"""Agents: SPRI inside ``create_agent`` agents.

* :mod:`~spri_graph.agents.middleware` - :class:`~spri_graph.SPRIMiddleware`.
* :mod:`~spri_graph.agents.speculation` - the model call started on the draft principles.
* :mod:`~spri_graph.agents.review` - reviewing an answer someone else drafted.
"""

__all__: list[str] = []
