"""SFT data synthesis: run SPRI over an instruction dataset and write chat-format training data.

:func:`synthesize` (and :func:`asynthesize`) build the SPRI graph once and run every record
through it concurrently, bounded by ``concurrency``. Each finished record is appended to the
output as one JSONL line in the chat format that TRL's ``SFTTrainer`` and OpenAI fine-tuning
read::

    {"id": "a1",
     "messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}],
     "principles": "...", "principle_critiques": [...], "response_critiques": [...],
     "usage": {"principles": {...}, "response": {...}}}

With ``formats=("sft", "dpo")`` a second file, ``OUT.dpo.jsonl``, gets the record's preference
pairs in TRL's conversational format (``prompt``, ``chosen``, ``rejected``; see
:func:`~spri_graph.synthesis.output.preference_pairs`), written before its SFT line so both
files keep the guarantees below. ``method=`` writes a comparison set in the same format instead
of SPRI's (:mod:`~spri_graph.synthesis.methods`); ``target=`` stops once the output holds that
many records.

Nothing is lost and nothing is written twice:

* The arguments, and whether the output and errors files can be written, are checked
  before the first model call, and so is the input, in full: unreadable JSON lines, records
  that are not objects, missing or empty query fields, missing or duplicate ids and an empty
  input are reported together, with their line numbers, as one :class:`InputError`.
* The input is read lazily, twice (a first pass keeps only the ids); at most ``concurrency``
  records are in flight, so memory does not grow with the dataset.
* Every output line is written whole with a single ``write()`` on an append-only file
  descriptor: once it returns, the line is the operating system's and survives a killed
  process. The file is ``fsync``-ed about once a second and on close, which bounds what an
  operating-system crash or power loss can take to the last second; syncing every line would
  cap throughput at the disk's sync rate. A write that fails mid-run (a full disk) stops the
  run, keeping every finished line.
* With ``resume=True`` (the default) ids already in the output are skipped. A line torn by a
  crash is cut off, so the file stays valid JSONL, and its record runs again.
* A record whose model calls still fail after the graph's retries (``retry_policy=``) goes to
  the errors file (``OUT.errors.jsonl``: id, line, error type, message, attempts) and the run
  goes on. Failed records are not in the output, so the next run with ``resume=True`` tries
  them again; the errors file lists the failures of the latest run.
* Ctrl-C stops scheduling, cancels the records in flight and keeps every finished line;
  :func:`synthesize` then raises :class:`SynthesisInterrupted` carrying the report.

One event loop spends a few milliseconds of CPU per record on graph bookkeeping, so an
endpoint that answers hundreds of calls per second keeps a core busy. ``workers=N`` forks
``N`` processes that each run every ``N``-th record and send finished lines back to the
parent, the only writer (in batches, each at most 50 ms old). On Python 3.12+ the loops
synthesis owns start tasks eagerly, which keeps a busy loop's model calls going out sooner.
Beyond one machine, see :mod:`spri_graph.synthesis.ray`.

The modules, in the order a record goes through them:

* :mod:`~spri_graph.synthesis.records`: the JSONL reader (:func:`read_jsonl`, also used by
  ``spri judge FILE``), input sources and the input check;
* :mod:`~spri_graph.synthesis.methods`: the graphs of the comparison sets (``method=``);
* :mod:`~spri_graph.synthesis.runner`: :class:`RecordRunner`, which runs a compiled graph
  over records (also used by :mod:`spri_graph.synthesis.ray` and the judge's file mode);
* :mod:`~spri_graph.synthesis.workers`: the event loop and the pool of forked workers;
* :mod:`~spri_graph.synthesis.output`: the line format, the writability check, resume and
  whole-line writes;
* :mod:`~spri_graph.synthesis.run`: :func:`synthesize` and :func:`asynthesize`;
* :mod:`~spri_graph.synthesis.batch`: ``batch=True``, the calls of every round sent as one
  batch to the endpoint's batch API (:class:`BatchSettings`, :class:`BatchReport`).
"""

from spri_graph.synthesis.batch import BatchSettings
from spri_graph.synthesis.methods import METHODS, Method
from spri_graph.synthesis.output import (
    FORMATS,
    PAIRINGS,
    Format,
    Pairing,
    check_writable,
    errors_path_for,
    output_record,
    pairs_path_for,
    preference_pairs,
)
from spri_graph.synthesis.records import InputError, Records, read_jsonl
from spri_graph.synthesis.report import BatchReport, SynthesisInterrupted, SynthesisReport
from spri_graph.synthesis.run import asynthesize, spri_runner, synthesize
from spri_graph.synthesis.runner import (
    Record,
    RecordRunner,
    RecordSink,
    error_record,
    total_usage,
)

__all__ = [
    "FORMATS",
    "METHODS",
    "PAIRINGS",
    "BatchReport",
    "BatchSettings",
    "Format",
    "InputError",
    "Method",
    "Pairing",
    "Record",
    "RecordRunner",
    "RecordSink",
    "Records",
    "SynthesisInterrupted",
    "SynthesisReport",
    "asynthesize",
    "check_writable",
    "error_record",
    "errors_path_for",
    "output_record",
    "pairs_path_for",
    "preference_pairs",
    "read_jsonl",
    "spri_runner",
    "synthesize",
    "total_usage",
]
