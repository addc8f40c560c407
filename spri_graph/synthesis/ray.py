"""Scale SFT data synthesis out on Ray Data (``pip install 'spri-graph[ray]'``).

:func:`synthesize_dataset` maps the SPRI graph over a :class:`ray.data.Dataset` of
instructions. Each worker (a Ray actor) builds and compiles the graph once, then runs every
batch it gets with bounded asyncio concurrency, so a cluster of ``workers`` actors keeps
``workers x concurrency_per_worker`` records in flight. Every input row comes back exactly
once: a row whose model calls still fail after the graph's retries comes back with its
``error`` set and the other fields empty.

Models reach the workers in one of three forms:

* a model string (``"openai:gpt-4o-mini"``, ``"gguf:/path.gguf"``...) - resolved on each worker;
* a chat model object - pickled to each worker, so it must be picklable (API clients
  usually are; objects holding locks, open files or loaded weights are not);
* a zero-argument factory returning a chat model - called once on each worker; use it for
  anything that is not picklable or is expensive to copy, such as a local model.

Ray is imported when :func:`synthesize_dataset` is called, never when this module is imported.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from langchain_core.runnables import Runnable
from typing_extensions import Unpack

from spri_graph.alignment.spri import SPRIOptions, SPRISettings, create_spri_graph
from spri_graph.synthesis import Record, output_record, spri_runner

if TYPE_CHECKING:
    import pyarrow
    import ray.data
    from ray.data import Dataset

__all__ = ["SPRIBatchRunner", "output_schema", "synthesize_dataset"]

ModelSource = str | Runnable[Any, Any] | Callable[[], Any] | None
"""A model for the workers: a string, a picklable chat model, or a zero-argument factory."""


def _require_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401 - Ray Data is its own extra of ray
    except ImportError as exc:
        raise ImportError(
            "spri_graph.synthesis.ray needs Ray Data; install it with pip install 'spri-graph[ray]'"
        ) from exc
    return ray


def _materialize(source: ModelSource) -> Any:
    """The model a worker uses: factories are called, strings and objects pass through."""
    if source is None or isinstance(source, (str, Runnable)):
        return source
    return source()


def output_schema(id_type: pyarrow.DataType) -> pyarrow.Schema:
    """The Arrow schema of :func:`synthesize_dataset`'s output, for ids of ``id_type``."""
    import pyarrow as pa

    critique = pa.struct([("feedback", pa.string()), ("score", pa.int64()), ("raw", pa.string())])
    stage = pa.struct(
        [
            (name, pa.int64())
            for name in (
                "model_calls",
                "critic_calls",
                "input_tokens",
                "output_tokens",
                "total_tokens",
            )
        ]
    )
    return pa.schema(
        [
            ("id", id_type),
            ("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
            ("principles", pa.string()),
            ("principle_critiques", pa.list_(critique)),
            ("response_critiques", pa.list_(critique)),
            ("usage", pa.struct([("principles", stage), ("response", stage)])),
            ("error", pa.string()),
        ]
    )


class SPRIBatchRunner:
    """Runs batches of records through one compiled SPRI graph (one per Ray actor).

    The records run on a :class:`~spri_graph.synthesis.RecordRunner`, as in
    :func:`~spri_graph.synthesize`; a row that fails comes back with ``error`` set.

    Args:
        model: Base model: a string, a picklable chat model or a zero-argument factory.
        query_field: Column holding the instruction.
        id_field: Column holding each record's id.
        concurrency: Most records of a batch in flight at once.
        **options: The shared options (:class:`~spri_graph.engine.options.LoopOptions`) and
            :class:`~spri_graph.alignment.spri.SPRIOptions`; ``critic_model`` may also be a
            zero-argument factory, called here.
    """

    def __init__(
        self,
        model: ModelSource,
        *,
        query_field: str,
        id_field: str,
        concurrency: int,
        **options: Unpack[SPRIOptions],
    ) -> None:
        settings = SPRISettings.from_options(options, caller="SPRIBatchRunner")
        critic = _materialize(settings.loop.critic_model)
        graph = create_spri_graph(
            _materialize(model), **{**settings.options(), "critic_model": critic}
        ).compile()
        self.query_field = query_field
        self.id_field = id_field
        self.runner = spri_runner(
            graph,
            concurrency=concurrency,
            max_iterations=settings.loop.max_iterations,
            to_line=_row,
            to_error=_error_row,
        )
        self.loop = asyncio.new_event_loop()

    def __call__(self, batch: pyarrow.Table) -> pyarrow.Table:
        """Run every row of ``batch``; return one output row per input row, in order."""
        import pyarrow as pa

        for name, column in (("id_field", self.id_field), ("query_field", self.query_field)):
            if column not in batch.column_names:
                raise ValueError(
                    f"{name}: column {column!r} is not in the dataset "
                    f"(columns: {', '.join(batch.column_names)})"
                )
        rows = batch.select([self.id_field, self.query_field]).to_pylist()
        results = self.loop.run_until_complete(self.run(rows))
        schema = output_schema(batch.schema.field(self.id_field).type)
        return pa.Table.from_pylist(results, schema=schema)

    async def run(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Run rows concurrently (at most ``concurrency`` at once); results in row order."""
        records = [
            Record(number, row[self.id_field], row[self.query_field])
            for number, row in enumerate(rows, 1)
        ]
        return await self.runner.collect(records)


def _row(record: Record, output: Mapping[str, Any]) -> dict[str, Any]:
    return {**output_record(record.id, record.value, output), "error": None}


def _error_row(record: Record, exc: Exception, attempts: int) -> dict[str, Any]:
    return {"id": record.id, "error": f"{type(exc).__name__}: {exc}"}


def _check_model(name: str, source: Any) -> None:
    if source is None or isinstance(source, str):
        return
    if isinstance(source, Runnable):
        from ray import cloudpickle

        try:
            cloudpickle.dumps(source)  # type: ignore[no-untyped-call]
        except Exception as exc:  # noqa: BLE001 - any pickling failure means the same
            raise ValueError(
                f"{name}: {type(source).__name__} cannot be pickled to the Ray workers "
                f"({exc}); pass a zero-argument function that builds it on each worker"
            ) from None
        return
    if callable(source):
        try:
            inspect.signature(source).bind()
        except (TypeError, ValueError):
            raise ValueError(f"{name}: a factory must take no arguments, got {source!r}") from None
        return
    raise ValueError(
        f"{name} must be a model string, a chat model or a zero-argument factory, "
        f"got {type(source).__name__}"
    )


def synthesize_dataset(
    ds: ray.data.Dataset,
    *,
    model: ModelSource,
    query_field: str = "instruction",
    id_field: str = "id",
    concurrency_per_worker: int = 16,
    workers: int = 1,
    batch_size: int | None = None,
    num_cpus: float = 0.5,
    **options: Unpack[SPRIOptions],
) -> ray.data.Dataset:
    """Map the SPRI graph over a Ray Dataset of instructions (lazily, like any Ray transform).

    Args:
        ds: Rows with ``query_field`` and ``id_field`` columns.
        model: Base model: a model string, a picklable chat model, or a zero-argument
            factory called once on each worker (see the module docs).
        query_field: Column holding the instruction.
        id_field: Column holding each row's id (copied to the output's ``id``).
        concurrency_per_worker: Records in flight at once on each worker.
        workers: Ray actors, each with its own compiled graph.
        batch_size: Rows per batch; defaults to ``4 x concurrency_per_worker`` so each
            batch keeps the worker's concurrency busy.
        num_cpus: CPUs reserved per actor; SPRI waits on model endpoints, so a fraction.
        **options: The shared options (:class:`~spri_graph.engine.options.LoopOptions`)
            and :class:`~spri_graph.alignment.spri.SPRIOptions`, as for
            :func:`~spri_graph.create_spri_graph`; ``critic_model`` may also be a
            zero-argument factory, like ``model``.

    Returns:
        A dataset with one row per input row: ``id``, ``messages`` (user and assistant
        turns), ``principles``, ``principle_critiques``, ``response_critiques``,
        ``usage`` and ``error`` (``None`` unless the row failed). Write it with, e.g.,
        ``.write_json(path)``; filter failures with ``.filter(expr="error is None")``.

    Raises:
        ImportError: If Ray Data is not installed (the ``ray`` extra).
        TypeError: If an option is unknown.
        ValueError: If an argument is invalid or a model cannot be sent to the workers.

    Example:
        >>> from spri_graph.synthesis.ray import synthesize_dataset
        >>> import ray  # doctest: +SKIP
        >>> ds = ray.data.read_json("instructions.jsonl")  # doctest: +SKIP
        >>> out = synthesize_dataset(ds, model="openai:gpt-4o-mini", workers=4)  # doctest: +SKIP
        >>> out.write_json("sft/")  # doctest: +SKIP
    """
    ray = _require_ray()
    if not isinstance(ds, ray.data.Dataset):
        raise ValueError(f"ds must be a ray.data.Dataset, got {type(ds).__name__}")
    for name, value in (
        ("concurrency_per_worker", concurrency_per_worker),
        ("workers", workers),
        ("batch_size", 1 if batch_size is None else batch_size),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if not isinstance(num_cpus, (int, float)) or num_cpus <= 0:
        raise ValueError(f"num_cpus must be a number > 0, got {num_cpus!r}")
    for name, field in (("query_field", query_field), ("id_field", id_field)):
        if not isinstance(field, str) or not field:
            raise ValueError(f"{name} must be a non-empty string, got {field!r}")
    settings = SPRISettings.from_options(options, caller="synthesize_dataset")
    _check_model("model", model)
    _check_model("critic_model", settings.loop.critic_model)
    mapped: Dataset = ds.map_batches(
        SPRIBatchRunner,
        fn_constructor_kwargs={
            "model": model,
            "query_field": query_field,
            "id_field": id_field,
            "concurrency": concurrency_per_worker,
            **options,
        },
        batch_format="pyarrow",
        batch_size=batch_size or 4 * concurrency_per_worker,
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=num_cpus,
    )
    return mapped
