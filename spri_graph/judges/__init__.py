"""Judges: LLM-as-a-judge with instance-specific rubrics.

* :mod:`~spri_graph.judges.base` - what every judge shares: states, settings, output modes,
  the grading step, ``prepare`` and ``finalize``.
* :mod:`~spri_graph.judges.absolute` - the rubric stage and the SPRI judge (one response).
* :mod:`~spri_graph.judges.baselines` - one-call judges with a generic or a given rubric.
* :mod:`~spri_graph.judges.pairwise` - which of two responses is better.
* :mod:`~spri_graph.judges.panel` - several judges grading with one rubric.
"""

__all__: list[str] = []
