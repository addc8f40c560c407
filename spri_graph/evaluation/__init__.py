"""Evaluation: judges as evaluators, and agreement with human scores.

* :mod:`~spri_graph.evaluation.evaluators` - LangSmith / openevals-style evaluators, single
  and pairwise.
* :mod:`~spri_graph.evaluation.metrics` - agreement between judge and human scores.
* :mod:`~spri_graph.evaluation.plots` - judge scores against human scores.
"""

__all__: list[str] = []
