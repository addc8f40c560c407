"""Judges: LLM-as-a-judge with instance-specific rubrics.

* :mod:`~spri_graph.judges.base` - what every judge shares: options, states, settings,
  output modes, the grading step, ``prepare`` and ``finalize``.
* :mod:`~spri_graph.judges.rubric` - the rubric stage, which every refining judge starts with.
* :mod:`~spri_graph.judges.absolute` - the SPRI judge (one response).
* :mod:`~spri_graph.judges.baselines` - one-call judges with a generic or a given rubric.
* :mod:`~spri_graph.judges.pairwise` - which of two responses is better.
* :mod:`~spri_graph.judges.panel` - several judges grading with one rubric.
"""

__all__: list[str] = []
