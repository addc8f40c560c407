"""Readers: scores, critiques, rubrics and verdicts out of model text.

* :mod:`~spri_graph.readers.scores` - critiques and gradings (``[RESULT] N``,
  ``<score>N</score>`` and their variants), on any integer scale.
* :mod:`~spri_graph.readers.rubric` - the :class:`~spri_graph.Rubric` type and its readers.
* :mod:`~spri_graph.readers.verdicts` - pairwise verdicts (A or B).
"""

__all__: list[str] = []
