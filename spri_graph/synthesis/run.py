"""The entry points: :func:`synthesize` and :func:`asynthesize`.

Everything up to the first model call happens in one place: the arguments and options,
the output and errors files (:func:`~spri_graph.synthesis.output.check_writable`), the
graph, the input check and the resume scan. Then the records run in this process, or in
forked workers (:mod:`spri_graph.synthesis.workers`) with ``workers`` > 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import multiprocessing
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from langchain_core.runnables import RunnableConfig
from langgraph.types import RetryPolicy
from typing_extensions import Unpack

from spri_graph.alignment.spri import SPRIOptions, SPRISettings, create_batch_graph
from spri_graph.engine.options import LoopSettings
from spri_graph.models import ModelSpec, resolve_model
from spri_graph.synthesis.batch import BatchRun, BatchSettings, prepare_batch
from spri_graph.synthesis.methods import Method, check_method, create_method_graph
from spri_graph.synthesis.output import (
    PAIRINGS,
    FileSink,
    Format,
    Pairing,
    RecordEncoder,
    Target,
    TargetReached,
    check_formats,
    check_writable,
    count_passed,
    errors_path_for,
    output_record,
    pairs_path_for,
    scan_output,
    scan_pairs,
)
from spri_graph.synthesis.records import (
    RecordFields,
    Records,
    RecordSource,
    open_source,
    pending_records,
    scan_input,
)
from spri_graph.synthesis.report import SynthesisInterrupted, SynthesisReport
from spri_graph.synthesis.runner import (
    Record,
    RecordRunner,
    RecordSink,
    error_record,
    serving_concurrency,
)
from spri_graph.synthesis.workers import batch_gc, preload, run_forked, run_loop

__all__ = ["asynthesize", "spri_runner", "synthesize"]


def _spri_input(record: Record) -> dict[str, Any]:
    return {"query": record.value}


def _spri_line(record: Record, output: Mapping[str, Any]) -> dict[str, Any]:
    return output_record(record.id, record.value, output)


def spri_runner(
    graph: Any,
    *,
    concurrency: int,
    max_iterations: int = LoopSettings.max_iterations,
    retry_policy: RetryPolicy | list[RetryPolicy] | None = None,
    config: RunnableConfig | None = None,
    to_line: Callable[[Record, Any], dict[str, Any]] = _spri_line,
    to_error: Callable[[Record, Exception, int], dict[str, Any]] = error_record,
) -> RecordRunner:
    """A :class:`RecordRunner` for a SPRI graph over records whose value is their query.

    Lines default to :func:`output_record`'s chat format, and every run gets a recursion
    limit that fits ``max_iterations`` refinements of both loops.

    Args:
        graph: A compiled SPRI graph (e.g. ``create_batch_graph(...).compile()``).
        concurrency: Most records in flight at once.
        max_iterations: The graph's ``max_iterations``.
        retry_policy: The graph's retry policy, to count attempts in error lines.
        config: Run config for every record.
        to_line: The line of a record that ran.
        to_error: The line of a record that failed.
    """
    return RecordRunner(
        graph,
        to_input=_spri_input,
        to_line=to_line,
        to_error=to_error,
        concurrency=concurrency,
        retry_policy=retry_policy,
        config={**(config or {}), "recursion_limit": 10 + 4 * int(max_iterations)},
    )


def _refuse_running_loop() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        "synthesize() cannot run inside a running event loop (e.g. a notebook); "
        "use 'await asynthesize(...)' there"
    )


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


@dataclass
class _Job:
    """A checked run: its records, what is already done, the runner and the report."""

    source: RecordSource
    fields: RecordFields
    ids: dict[Any, int]
    done: set[Any]
    runner: RecordRunner
    workers: int
    report: SynthesisReport
    on_progress: Callable[[SynthesisReport], None] | None
    batch: BatchRun | None = None
    encoder: RecordEncoder = RecordEncoder()
    target: Target | None = None
    reached: int = 0

    async def run(self, sink: RecordSink, shard: int = 0, shards: int = 1) -> None:
        """Run the records of one shard (every ``shards``-th record not done yet)."""
        if self.report.target_reached:
            return
        todo: Iterator[Record] = pending_records(self.source, self.fields, self.ids, self.done)
        if shards > 1:
            todo = (record for i, record in enumerate(todo) if i % shards == shard)
        base, extra = divmod(self.runner.concurrency, shards)
        slots = min(base + (1 if shard < extra else 0), self.report.todo)
        if self.batch is not None:
            await self.batch.run(todo, self.runner, sink, self.report, concurrency=slots)
            return
        await self.runner.run(todo, sink, concurrency=slots)

    @contextlib.contextmanager
    def writing(self) -> Iterator[FileSink]:
        """The sink of the run; times the run and closes the files and the input after it.

        When the run fails, closing does not hide its error: a second failure while
        syncing the files is dropped, as every finished line was written already.
        """
        report = self.report
        sink = FileSink(report, self.on_progress, self.encoder, self.target, self.reached)
        report.start_clock()
        try:
            yield sink
        except TargetReached:
            report.stop_clock()
            sink.close()
        except BaseException:
            report.stop_clock()
            with contextlib.suppress(OSError):
                sink.close()
            raise
        else:
            report.stop_clock()
            sink.close()
        finally:
            self.source.close()


class _Arguments(NamedTuple):
    """The arguments :func:`synthesize` and :func:`asynthesize` share, beyond the options."""

    model: ModelSpec
    output: str | os.PathLike[str]
    errors: str | os.PathLike[str] | None
    query_field: str
    id_field: str | None
    concurrency: int
    resume: bool
    config: RunnableConfig | None
    on_progress: Callable[[SynthesisReport], None] | None
    batch: bool | BatchSettings
    formats: Sequence[Format]
    pairs: Pairing
    method: Method
    target: int | None
    target_passed: bool


def _check_target(target: Any, target_passed: Any) -> Target | None:
    if not isinstance(target_passed, bool):
        raise ValueError(f"target_passed must be True or False, got {target_passed!r}")
    if target is None:
        if target_passed:
            raise ValueError("target_passed: needs a target (target=N)")
        return None
    return Target(_check_int("target", target, 1), target_passed)


def _prepare(
    records: Records,
    arguments: _Arguments,
    options: Mapping[str, Any],
    *,
    caller: str,
    workers: int = 1,
) -> _Job:
    """Everything up to the first model call: arguments, output files, graph, input."""
    settings = SPRISettings.from_options(options, caller=caller)
    model, output, errors, query_field, id_field, concurrency, resume, config, on_progress = (
        arguments[:9]
    )
    batch = arguments.batch
    formats = check_formats(arguments.formats)
    if arguments.pairs not in PAIRINGS:
        raise ValueError(
            f"pairs must be one of {', '.join(map(repr, PAIRINGS))}; got {arguments.pairs!r}"
        )
    method = check_method(arguments.method, settings)
    target = _check_target(arguments.target, arguments.target_passed)
    if batch is not False and method != "spri":
        raise ValueError(f"method: {method!r} runs without batch; batch=True runs 'spri' only")
    if batch is not False and target is not None:
        raise ValueError("target: not available with batch=True (a batch runs whole rounds)")
    _check_int("concurrency", concurrency, 1)
    _check_int("workers", workers, 1)
    if workers > 1 and "fork" not in multiprocessing.get_all_start_methods():
        raise ValueError(
            "workers > 1 needs processes started with fork (Linux); use workers=1, or "
            "spri_graph.synthesis.ray.synthesize_dataset to scale out"
        )
    if not isinstance(query_field, str) or not query_field:
        raise ValueError(f"query_field must be a non-empty string, got {query_field!r}")
    if id_field is not None and (not isinstance(id_field, str) or not id_field):
        raise ValueError(f"id_field must be a non-empty string or None, got {id_field!r}")
    if output is None or (isinstance(output, str) and not output.strip()):
        raise ValueError("output: a path for the JSONL output is required")
    out_path = check_writable(output, field="output")
    err_path = errors_path_for(out_path) if errors is None else Path(errors)
    if err_path.resolve() == out_path.resolve():
        raise ValueError("errors: the errors file must differ from the output file")
    check_writable(err_path, field="errors")
    pairs_path = pairs_path_for(out_path) if "dpo" in formats else None
    if pairs_path is not None:
        if pairs_path.resolve() == err_path.resolve():
            raise ValueError(f"errors: the errors file must differ from {str(pairs_path)!r}")
        check_writable(pairs_path, field="output")
    written = [out_path, err_path, *([pairs_path] if pairs_path is not None else [])]
    if isinstance(records, (str, os.PathLike)) and Path(records).resolve() in (
        path.resolve() for path in written
    ):
        raise ValueError("output: the output and errors files must differ from the input file")
    if config is not None and not isinstance(config, Mapping):
        raise ValueError(f"config must be a RunnableConfig dict, got {type(config).__name__}")

    policy = settings.loop.policy
    model = resolve_model(model, field="model")
    critic_model = settings.loop.critic_model
    if critic_model is not None:
        critic_model = resolve_model(critic_model, field="critic_model")
    concurrency = serving_concurrency(concurrency, model, critic_model)
    loop_options = {**settings.options(), "critic_model": critic_model}
    batch_run = prepare_batch(
        batch,
        model=model,
        critic_model=critic_model,
        output=out_path,
        resume=resume,
        workers=workers,
        spri_options=loop_options,
        build=lambda m, c: create_batch_graph(m, **{**loop_options, "critic_model": c}),
    )
    if batch_run is None:
        graph = create_method_graph(model, method, settings).compile()
    else:
        graph = batch_run.graph.compile()
    fields = RecordFields(query=query_field, id=id_field)
    source = open_source(records)
    try:
        ids = scan_input(source, fields)
        if resume:
            done, repaired = scan_output(out_path)
            if pairs_path is not None:
                repaired += scan_pairs(pairs_path, done)
        else:
            out_path.unlink(missing_ok=True)
            if pairs_path is not None:
                pairs_path.unlink(missing_ok=True)
            done, repaired = set(), 0
        err_path.unlink(missing_ok=True)  # failures of an earlier run are retried now
    except BaseException:
        source.close()
        raise
    report = SynthesisReport(
        output=out_path,
        errors_path=err_path,
        records=len(ids),
        skipped=sum(1 for rid in ids if rid in done),
        repaired=repaired,
        method=method,
        pairs_path=pairs_path,
        target=None if target is None else target.size,
    )
    threshold = settings.loop.threshold
    reached = 0
    if target is not None:
        reached = count_passed(out_path, threshold) if target.passed_only else len(done)
        report.target_reached = reached >= target.size
    runner = spri_runner(
        graph,
        concurrency=concurrency,
        max_iterations=settings.loop.max_iterations,
        retry_policy=policy,
        config=config,
        to_error=functools.partial(error_record, unit=source.unit),
    )
    return _Job(
        source=source,
        fields=fields,
        ids=ids,
        done=done,
        runner=runner,
        workers=max(1, min(workers, concurrency, report.todo)),
        report=report,
        on_progress=on_progress,
        batch=batch_run,
        encoder=RecordEncoder(arguments.pairs if pairs_path is not None else None, threshold),
        target=target,
        reached=reached,
    )


def synthesize(
    records: Records,
    *,
    model: ModelSpec = None,
    output: str | os.PathLike[str],
    errors: str | os.PathLike[str] | None = None,
    query_field: str = "instruction",
    id_field: str | None = "id",
    concurrency: int = 16,
    workers: int = 1,
    resume: bool = True,
    config: RunnableConfig | None = None,
    on_progress: Callable[[SynthesisReport], None] | None = None,
    batch: bool | BatchSettings = False,
    formats: Sequence[Format] = ("sft",),
    pairs: Pairing = "first-final",
    method: Method = "spri",
    target: int | None = None,
    target_passed: bool = False,
    **options: Unpack[SPRIOptions],
) -> SynthesisReport:
    """Run SPRI over a dataset and write chat-format SFT data, concurrently and resumably.

    Args:
        records: A JSONL file (read lazily, line by line) or an iterable of dicts. A one-shot
            iterator is spooled to a temporary file, so memory does not grow with it.
        model: Base model, as for :func:`~spri_graph.create_spri_graph`: a chat model, a
            model string, or ``None`` for the default model.
        output: JSONL file the records are appended to as they finish.
        errors: JSONL file for records that failed; defaults to ``OUT.errors.jsonl``.
        query_field: Field holding the instruction.
        id_field: Field holding the record's unique id (a string or an integer); ``None``
            uses the record's line number (its position, for an iterable) as its id.
        concurrency: Most records in flight at once, over all workers; match it to what
            the model endpoint allows. An in-process model (the embedded llama.cpp
            model) serves one call at a time, so it runs one record at a time.
        workers: Processes that run records (Linux). One event loop spends a few ms of CPU
            per record on graph bookkeeping, so a fast endpoint (hundreds of calls per
            second) keeps one core busy; more workers use more cores. Workers are forked,
            so the models need not be picklable; this process writes every line. An
            in-process model such as the embedded llama.cpp model is CPU-bound and each
            worker loads its own copy, so keep ``workers=1`` for it.
        resume: Skip records whose id is already in ``output``; ``False`` starts over and
            overwrites ``output``.
        config: Run config given to every record's graph run (callbacks, tags, metadata).
        on_progress: Called with the live report after each record finishes.
        batch: ``True`` (or a :class:`~spri_graph.synthesis.batch.BatchSettings` with
            polling and prices) sends the model calls through the endpoint's batch API at
            about half the price, one round of calls per batch; ``concurrency`` records
            share each batch, so raise it (e.g. to 10,000). It needs OpenAI-compatible
            ``ChatOpenAI`` models and ``workers=1``, keeps its state in ``OUT.batch.sqlite``
            (resumable after any crash), turns speculative drafting off and fills
            ``report.batch``. See :mod:`spri_graph.synthesis.batch`.
        formats: What to write: ``("sft",)`` chat lines, or ``("sft", "dpo")`` also
            preference pairs in TRL's conversational format, in ``OUT.dpo.jsonl``, with the
            same whole-line, resumable writes (see
            :func:`~spri_graph.synthesis.output.preference_pairs`). The SFT file is always
            written: it records which records ran.
        pairs: Which drafts the pairs compare: ``"first-final"`` (the final response over
            the first draft, when it scored higher) or ``"successive"`` (each refinement
            over the candidate before it, when it scored higher).
        method: How responses are made: ``"spri"``, or a comparison set in the same
            format: ``"direct"`` (one response call, no principles), ``"self-refine"``
            (the response loop without principles, graded by a generic standard) or
            ``"seed-principles"`` (the response loop guided by the seed examples'
            principles; needs ``seed_examples``). See :mod:`spri_graph.synthesis.methods`.
        target: Stop once the output holds this many records (those already in it
            included); the records in flight are cancelled and run on a later resume.
        target_passed: Count only records whose final response critique reached the
            threshold toward ``target``.
        **options: The shared options (:class:`~spri_graph.engine.options.LoopOptions`)
            and :class:`~spri_graph.alignment.spri.SPRIOptions`, as for
            :func:`~spri_graph.create_spri_graph` (``review_principles``, which would pause
            every record for a person, is not one).

    Returns:
        The run's :class:`SynthesisReport`.

    Raises:
        InputError: If the input has bad lines, missing fields, duplicate ids or no
            records; it lists every problem with its line number. Nothing is run.
        TypeError: If an option is unknown. Nothing is run.
        ValueError: If an argument is invalid, the output or errors file cannot be
            written, or the output cannot be resumed. Nothing is run.
        SynthesisInterrupted: On Ctrl-C, after keeping every finished line.
        OSError: If a line cannot be written mid-run (a full disk); finished lines are
            kept and the message says how to resume.
        RuntimeError: If a worker process dies; finished lines are kept.

    Example:
        >>> import json, tempfile
        >>> from pathlib import Path
        >>> from langchain_core.language_models import GenericFakeChatModel
        >>> model = GenericFakeChatModel(messages=iter([
        ...     "1. Be brief.", "Clear. [RESULT] 5", "Hello!", "Good. [RESULT] 5",
        ... ]))
        >>> out = Path(tempfile.mkdtemp()) / "sft.jsonl"
        >>> report = synthesize(
        ...     [{"id": "a1", "instruction": "Say hello."}], model=model, output=out
        ... )
        >>> report.completed, report.failed, report.calls
        (1, 0, 4)
        >>> json.loads(out.read_text())["messages"][1]
        {'role': 'assistant', 'content': 'Hello!'}
    """
    _refuse_running_loop()
    arguments = _Arguments(
        model,
        output,
        errors,
        query_field,
        id_field,
        concurrency,
        resume,
        config,
        on_progress,
        batch,
        formats,
        pairs,
        method,
        target,
        target_passed,
    )
    job = _prepare(records, arguments, options, caller="synthesize", workers=workers)
    preload(job.workers)  # loaded once here rather than by each worker as it starts
    with job.writing() as sink:
        try:
            with batch_gc():
                if job.workers > 1:
                    run_forked(job.run, sink, job.workers)
                else:
                    run_loop(lambda: job.run(sink))
        except KeyboardInterrupt:
            job.report.interrupted = True
            raise SynthesisInterrupted(job.report) from None
    return job.report


async def asynthesize(
    records: Records,
    *,
    model: ModelSpec = None,
    output: str | os.PathLike[str],
    errors: str | os.PathLike[str] | None = None,
    query_field: str = "instruction",
    id_field: str | None = "id",
    concurrency: int = 16,
    resume: bool = True,
    config: RunnableConfig | None = None,
    on_progress: Callable[[SynthesisReport], None] | None = None,
    batch: bool | BatchSettings = False,
    formats: Sequence[Format] = ("sft",),
    pairs: Pairing = "first-final",
    method: Method = "spri",
    target: int | None = None,
    target_passed: bool = False,
    **options: Unpack[SPRIOptions],
) -> SynthesisReport:
    """Async :func:`synthesize` on the running event loop; the same arguments but ``workers``.

    The checks, the input scan and the resume scan run before the first model call, as in
    :func:`synthesize`. Cancelling the task cancels the records in flight and keeps every
    finished line.

    Example:
        >>> import asyncio, tempfile
        >>> from pathlib import Path
        >>> from langchain_core.language_models import GenericFakeChatModel
        >>> model = GenericFakeChatModel(messages=iter([
        ...     "1. Be brief.", "Clear. [RESULT] 5", "Hi!", "Good. [RESULT] 5",
        ... ]))
        >>> out = Path(tempfile.mkdtemp()) / "sft.jsonl"
        >>> report = asyncio.run(asynthesize([{"id": 1, "instruction": "Greet me."}],
        ...                                  model=model, output=out))
        >>> report.completed
        1
    """
    arguments = _Arguments(
        model,
        output,
        errors,
        query_field,
        id_field,
        concurrency,
        resume,
        config,
        on_progress,
        batch,
        formats,
        pairs,
        method,
        target,
        target_passed,
    )
    job = _prepare(records, arguments, options, caller="asynthesize")
    with job.writing() as sink:
        try:
            await job.run(sink)
        except asyncio.CancelledError:
            job.report.interrupted = True
            raise
    return job.report
