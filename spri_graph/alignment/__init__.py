"""Alignment: situated principles for a query, then a response guided by them.

* :mod:`~spri_graph.alignment.spri` - the principles and response graphs, and human review.
* :mod:`~spri_graph.alignment.streaming` - a SPRI graph's stream as events for chat UIs.
"""

__all__: list[str] = []
