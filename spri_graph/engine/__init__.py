"""The engine every SPRI graph runs on.

* :mod:`~spri_graph.engine.steps` - a step is a generator of model calls; one driver runs it
  sync or async.
* :mod:`~spri_graph.engine.loop` - the draft -> critique -> refine loop
  (:func:`~spri_graph.add_refine_loop`, :func:`~spri_graph.create_refine_loop`).
* :mod:`~spri_graph.engine.options` - the options every entry point shares, their checks,
  retries and the per-run context.
* :mod:`~spri_graph.engine.caching` - node-cache keys and the judge cache.
* :mod:`~spri_graph.engine.prompts` - every default prompt.
"""

__all__: list[str] = []
