"""Synthesis through a provider's batch API: every round of model calls as one batch.

``synthesize(..., batch=True)`` (``spri synthesize --batch``) sends the model calls to the
OpenAI Batch API (a JSONL file uploaded to ``/v1/files``, a batch created at
``/v1/batches`` for ``/v1/chat/completions``, polled, its output downloaded), which costs
about half of interactive calls; any OpenAI-compatible server offering those endpoints
works (``base_url=``). SPRI's loop is a handful of sequential calls per record (4 to 14),
so the whole dataset advances one call per round:

* every record is a LangGraph thread under a SQLite checkpointer
  (``langgraph-checkpoint-sqlite``), in a state file next to the output
  (``OUT.batch.sqlite``, see :func:`batch_state_path`);
* its models are copies of the ``ChatOpenAI`` models (:func:`batch_model`) whose HTTP
  client answers a chat request from the store of finished batch results when the request
  (its body: messages and parameters, hashed by :func:`request_key`) has one; otherwise
  the call pauses the thread with :func:`langgraph.types.interrupt`, carrying the request;
* :class:`BatchRun` steps every record that can go on, collects the requests of the paused
  threads, submits them as one batch, polls it, stores its results and resumes the threads
  (``Command(resume=...)``), round after round.

Requests equal in every byte are sent once and answer every record that makes them (a
model sampled with a temperature then gives those records the same reply). Speculative
drafting is off in batch mode: it would spend a round on a draft that may be thrown away.

Crash safety: before a batch is sent, its requests are written to the state file under a
token that also goes into the batch's metadata; once created, its id is written too. A
process killed at any moment (``kill -9``) and started again finds the batches it already
submitted (by id, or by token in the provider's batch list when it died while creating
one), resubmits none of their requests, and resumes every record where it paused. Failed
and expired requests, and those of a cancelled batch, go into the next round. Output lines
are written as in interactive runs (whole, once); the state file is removed when a run
leaves no record to resume.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import hashlib
import importlib.util
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from langchain_core.language_models import BaseChatModel
from langgraph.types import Command, interrupt

from spri_graph.synthesis.report import BatchReport, SynthesisReport
from spri_graph.synthesis.runner import Record, RecordRunner, RecordSink, attempts

try:  # the HTTP library of the installed openai SDK: httpx2 from openai 3, httpx before
    import httpx2 as httpx
except ImportError:  # pragma: no cover - openai < 3
    import httpx  # type: ignore[no-redef]

if TYPE_CHECKING:
    from langchain_openai import ChatOpenAI

__all__ = [
    "BATCH_ENDPOINT",
    "BatchRun",
    "BatchSettings",
    "GraphBuilder",
    "batch_model",
    "batch_state_path",
    "check_batch_model",
    "prepare_batch",
    "request_key",
]

BATCH_ENDPOINT = "/v1/chat/completions"
"""The endpoint every batch request goes to."""

GraphBuilder = Callable[[BaseChatModel, BaseChatModel | None], Any]
"""Builds the uncompiled graph from the batch models: ``build(model, critic_model)``."""

_TERMINAL = {"completed", "failed", "expired", "cancelled"}
_RETRY_STATUS = {408, 409, 425, 429}


@dataclass(frozen=True)
class BatchSettings:
    """How batch synthesis runs and what its calls cost.

    Attributes:
        poll_interval: Seconds between checks of an open batch.
        price_in: Interactive price of a million input tokens (for the report).
        price_out: Interactive price of a million output tokens.
        discount: Batch price as a fraction of the interactive one (OpenAI, Anthropic: 0.5).
        completion_window: How long the provider may take per batch (``"24h"``).
        max_requests: Most requests per batch (OpenAI allows 50,000); a bigger round is
            sent as several batches.
    """

    poll_interval: float = 30.0
    price_in: float = 0.0
    price_out: float = 0.0
    discount: float = 0.5
    completion_window: str = "24h"
    max_requests: int = 50_000

    def __post_init__(self) -> None:
        for name in ("poll_interval", "price_in", "price_out"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        discount = self.discount
        if isinstance(discount, bool) or not isinstance(discount, (int, float)):
            raise ValueError(f"discount must be a number in (0, 1], got {discount!r}")
        if not 0 < discount <= 1:
            raise ValueError(f"discount must be a number in (0, 1], got {discount!r}")
        size = self.max_requests
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"max_requests must be an integer >= 1, got {size!r}")


def batch_state_path(output: str | os.PathLike[str]) -> Path:
    """The state file of a batch run writing ``output``: ``out.jsonl`` -> ``out.batch.sqlite``.

    Example:
        >>> batch_state_path("data/train.jsonl").as_posix()
        'data/train.batch.sqlite'
    """
    path = Path(output)
    if path.suffix == ".jsonl":
        return path.with_suffix(".batch.sqlite")
    return path.with_name(path.name + ".batch.sqlite")


def request_key(body: Mapping[str, Any]) -> str:
    """The key of a chat request: a SHA-256 of its body as canonical JSON.

    Example:
        >>> request_key({"model": "m", "messages": []}) == request_key({"messages": [],
        ...                                                              "model": "m"})
        True
    """
    text = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- store


class _Store:
    """The state file's own tables: finished results and the batches submitted.

    The checkpointer's tables live in the same SQLite file. Reads come from the models'
    HTTP clients (any thread), writes from :class:`BatchRun` between the rounds' steps.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def open(self) -> None:
        conn = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(
            """
            CREATE TABLE IF NOT EXISTS spri_batch_results (
                key TEXT PRIMARY KEY, status INTEGER NOT NULL, body TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS spri_batches (
                token TEXT PRIMARY KEY, round INTEGER NOT NULL, state TEXT NOT NULL,
                created REAL NOT NULL, batch_id TEXT, file_id TEXT,
                requests INTEGER NOT NULL, answered INTEGER NOT NULL DEFAULT 0,
                input_tokens INTEGER NOT NULL DEFAULT 0,
                output_tokens INTEGER NOT NULL DEFAULT 0);
            CREATE TABLE IF NOT EXISTS spri_batch_requests (
                token TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (token, key));
            """
        )
        conn.commit()
        self._conn = conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("the batch state file is not open (the run has not started)")
        return self._conn

    def result(self, key: str) -> tuple[int, str] | None:
        with self._lock:
            row = self.conn.execute(
                "SELECT status, body FROM spri_batch_results WHERE key = ?", (key,)
            ).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def in_open_batches(self) -> set[str]:
        with self._lock:
            rows = self.conn.execute(
                "SELECT r.key FROM spri_batch_requests r JOIN spri_batches b USING (token) "
                "WHERE b.state != 'done'"
            ).fetchall()
        return {row[0] for row in rows}

    def next_round(self) -> int:
        with self._lock:
            row = self.conn.execute("SELECT MAX(round) FROM spri_batches").fetchone()
        return int(row[0] or 0) + 1

    def begin(self, token: str, round_: int, keys: Iterable[str]) -> None:
        keys = list(keys)
        with self._lock, self.conn:
            self.conn.execute(
                "INSERT INTO spri_batches (token, round, state, created, requests) "
                "VALUES (?, ?, 'submitting', ?, ?)",
                (token, round_, time.time(), len(keys)),
            )
            self.conn.executemany(
                "INSERT INTO spri_batch_requests (token, key) VALUES (?, ?)",
                [(token, key) for key in keys],
            )

    def update(self, token: str, **fields: Any) -> None:
        names = ", ".join(f"{name} = ?" for name in fields)
        with self._lock, self.conn:
            self.conn.execute(
                f"UPDATE spri_batches SET {names} WHERE token = ?", (*fields.values(), token)
            )

    def forget(self, token: str) -> None:
        with self._lock, self.conn:
            self.conn.execute("DELETE FROM spri_batch_requests WHERE token = ?", (token,))
            self.conn.execute("DELETE FROM spri_batches WHERE token = ?", (token,))

    def batches(self, state: str) -> list[tuple[str, str | None, str | None, float]]:
        with self._lock:
            rows = self.conn.execute(
                "SELECT token, batch_id, file_id, created FROM spri_batches WHERE state = ? "
                "ORDER BY round, created",
                (state,),
            ).fetchall()
        return [(str(r[0]), r[1], r[2], float(r[3])) for r in rows]

    def finish(
        self, token: str, results: Mapping[str, tuple[int, str]], tokens: tuple[int, int]
    ) -> None:
        with self._lock, self.conn:
            self.conn.executemany(
                "INSERT OR REPLACE INTO spri_batch_results (key, status, body) VALUES (?, ?, ?)",
                [(key, status, body) for key, (status, body) in results.items()],
            )
            self.conn.execute(
                "UPDATE spri_batches SET state = 'done', answered = ?, input_tokens = ?, "
                "output_tokens = ? WHERE token = ?",
                (len(results), tokens[0], tokens[1], token),
            )

    def report(self, settings: BatchSettings) -> BatchReport:
        with self._lock:
            rows = self.conn.execute(
                "SELECT round, batch_id, requests, answered, input_tokens, output_tokens "
                "FROM spri_batches WHERE batch_id IS NOT NULL ORDER BY round, created"
            ).fetchall()
        return BatchReport(
            rounds=len({row[0] for row in rows}),
            batch_ids=[str(row[1]) for row in rows],
            requests=sum(int(row[2]) for row in rows),
            answered=sum(int(row[3]) for row in rows),
            input_tokens=sum(int(row[4]) for row in rows),
            output_tokens=sum(int(row[5]) for row in rows),
            price_in=settings.price_in,
            price_out=settings.price_out,
            discount=settings.discount,
        )


# --------------------------------------------------------------------------- the models


class _Pending(Exception):
    """Raised inside the HTTP client: the request has no result yet (it is recorded)."""


class _Attempt:
    """One try of a model call; catches the request it leaves pending, if any.

    ``with _Attempt() as attempt: return <call>`` returns the call's result; when the call
    failed because its request has no result yet, the block ends quietly and
    :meth:`pause` pauses the thread until a batch answers it.
    """

    def __init__(self) -> None:
        self.request: tuple[str, dict[str, Any]] | None = None

    def __enter__(self) -> _Attempt:
        self._token = _ATTEMPT.set(self)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        _ATTEMPT.reset(self._token)
        return self.request is not None and isinstance(exc, Exception)

    def pause(self) -> None:
        """Pause the thread on the pending request (returns when resumed with a stale value).

        A node making several calls is resumed once per call; ``interrupt`` then hands it
        the earlier resume values, and the caller tries the call again.
        """
        assert self.request is not None
        key, body = self.request
        interrupt({"spri_batch_request": key, "body": body})


_ATTEMPT: contextvars.ContextVar[_Attempt | None] = contextvars.ContextVar(
    "spri_batch_attempt", default=None
)


class _StoreTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """An HTTP transport that answers chat requests from the store, never the network."""

    def __init__(self, store: _Store) -> None:
        self.store = store

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._answer(request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return self._answer(request)

    def _answer(self, request: httpx.Request) -> httpx.Response:
        if request.method != "POST" or not request.url.path.endswith("/chat/completions"):
            return httpx.Response(
                400,
                json={"error": {"message": f"batch mode sends only {BATCH_ENDPOINT} requests"}},
                request=request,
            )
        body = json.loads(request.content)
        key = request_key(body)
        found = self.store.result(key)
        if found is not None:
            status, text = found
            headers = {"content-type": "application/json"}
            return httpx.Response(status, content=text.encode(), headers=headers, request=request)
        attempt = _ATTEMPT.get()
        if attempt is None:
            raise RuntimeError("a batch model was called outside its own call")
        attempt.request = (key, body)
        raise _Pending(key)


def _model_name(model: Any) -> str:
    name = getattr(model, "model_name", None) or getattr(model, "model", None)
    kind = type(model).__name__
    return f"{kind}({name!r})" if isinstance(name, str) else kind


def check_batch_model(model: Any, *, field: str = "model") -> ChatOpenAI:
    """Check that ``model`` can go through a batch API: an OpenAI-compatible ``ChatOpenAI``.

    Raises:
        ValueError: Naming ``field`` and the model when it is anything else (the embedded
            local model, a fake model, another provider's), or uses the Responses API.
    """
    from langchain_openai import ChatOpenAI

    if not isinstance(model, ChatOpenAI):
        raise ValueError(
            f"{field}: {_model_name(model)} has no batch API; batch mode needs an "
            "OpenAI-compatible ChatOpenAI (e.g. 'openai:gpt-4o-mini', or a model name with "
            "base_url= / --base-url)"
        )
    if model.use_responses_api:
        raise ValueError(
            f"{field}: {_model_name(model)} uses the Responses API; batch mode sends "
            f"{BATCH_ENDPOINT} requests (use_responses_api=False)"
        )
    return model


@functools.cache
def _batched_class(kind: type[BaseChatModel]) -> type[BaseChatModel]:
    """``kind`` whose calls pause the thread until a batch has answered them."""

    class Batched(kind):  # type: ignore[valid-type,misc]
        def _generate(self, *args: Any, **kwargs: Any) -> Any:
            while True:
                with _Attempt() as attempt:
                    return super()._generate(*args, **kwargs)
                attempt.pause()

        async def _agenerate(self, *args: Any, **kwargs: Any) -> Any:
            while True:
                with _Attempt() as attempt:
                    return await super()._agenerate(*args, **kwargs)
                attempt.pause()

    Batched.__name__ = Batched.__qualname__ = f"Batched{kind.__name__}"
    Batched.__doc__ = f"{kind.__name__} answering from finished batch results."
    return Batched


def batch_model(model: ChatOpenAI, store: _Store) -> BaseChatModel:
    """A copy of a ``ChatOpenAI`` model that answers from ``store`` and pauses otherwise.

    The copy builds every request as ``model`` would (same class, same settings, so the
    same bodies as an interactive run), but its HTTP client never reaches the network: a
    request with a stored result gets it as the response, one without pauses the LangGraph
    thread with an interrupt whose value is ``{"spri_batch_request": key, "body": body}``.
    Streaming is off (batches do not stream), and so are the client's retries.
    """
    import openai

    check_batch_model(model)
    transport = _StoreTransport(store)
    url = "http://batch.invalid/v1"  # never reached: the transport answers every request
    sync = openai.OpenAI(
        api_key="batch", base_url=url, max_retries=0, http_client=httpx.Client(transport=transport)
    )
    aio = openai.AsyncOpenAI(
        api_key="batch",
        base_url=url,
        max_retries=0,
        http_client=httpx.AsyncClient(transport=transport),
    )
    fields = {name: getattr(model, name) for name in type(model).model_fields}
    fields.update(
        client=sync.chat.completions,
        root_client=sync,
        async_client=aio.chat.completions,
        root_async_client=aio,
        http_client=None,
        http_async_client=None,
        streaming=False,
        disable_streaming=True,
    )
    batched: BaseChatModel = _batched_class(type(model))(**fields)
    return batched


# --------------------------------------------------------------------------- the driver


def prepare_batch(
    batch: bool | BatchSettings,
    *,
    model: Any,
    critic_model: Any,
    output: Path,
    resume: bool,
    workers: int,
    spri_options: Mapping[str, Any],
    build: GraphBuilder,
) -> BatchRun | None:
    """The checks of ``synthesize(batch=...)`` and its :class:`BatchRun` (``None``: no batch).

    Raises:
        ValueError: If ``batch`` is not a bool or :class:`BatchSettings`, ``workers`` > 1,
            ``speculative=True`` is asked for, or a model has no batch API (named).
    """
    if batch is False:
        return None
    if batch is True:
        batch = BatchSettings()
    if not isinstance(batch, BatchSettings):
        raise ValueError(f"batch must be True, False or a BatchSettings, got {batch!r}")
    if workers > 1:
        raise ValueError("workers: batch mode runs in one process; use workers=1")
    if spri_options.get("speculative"):
        raise ValueError(
            "speculative: off in batch mode (a speculative draft would spend a round on a "
            "call that may be thrown away)"
        )
    if importlib.util.find_spec("langgraph.checkpoint.sqlite") is None:
        raise ValueError(
            "batch: needs langgraph-checkpoint-sqlite (pip install 'spri-graph[batch]')"
        )
    from spri_graph.models import resolve_model

    base = resolve_model(model, field="model")
    critic = None if critic_model is None else resolve_model(critic_model, field="critic_model")
    return BatchRun.prepare(
        batch, model=base, critic_model=critic, output=output, resume=resume, build=build
    )


@dataclass
class _Flight:
    """A record in flight: its thread and what it waits for."""

    record: Record
    thread: str
    resume: Any  # the next ``ainvoke`` input: the record's, None, or Command(resume=...)
    key: str | None = None
    body: dict[str, Any] | None = None
    done: Mapping[str, Any] | None = None  # a finished thread's state, not written yet


def _retryable(status: int) -> bool:
    return status in _RETRY_STATUS or status >= 500


class BatchRun:
    """Runs records round by round through one endpoint's batch API.

    Args:
        graph: The uncompiled SPRI graph, built with :func:`batch_model` models.
        client: The ``openai.AsyncOpenAI`` client of the endpoint (the model's own).
        store: The state file's store (the models' :func:`batch_model` store).
        settings: Polling, batch size and prices.
    """

    def __init__(self, graph: Any, *, client: Any, store: _Store, settings: BatchSettings) -> None:
        self.graph = graph
        self.client = client
        self.store = store
        self.settings = settings
        self.fresh = False

    @classmethod
    def prepare(
        cls,
        settings: BatchSettings,
        *,
        model: Any,
        critic_model: Any,
        output: Path,
        resume: bool,
        build: GraphBuilder,
    ) -> BatchRun:
        """Check the models and build the graph; nothing is sent and no file is opened.

        Args:
            settings: The run's batch settings.
            model: The resolved base model.
            critic_model: The resolved critic model (``None``: the base model).
            output: The output file; the state file goes next to it.
            resume: ``False``: the run removes an earlier state file and starts over.
            build: ``build(model, critic_model) -> StateGraph`` for the batch models.

        Raises:
            ValueError: If a model has no batch API, or the critic is served elsewhere.
        """
        base = check_batch_model(model, field="model")
        critic = (
            base if critic_model is None else check_batch_model(critic_model, field="critic_model")
        )
        if (critic.openai_api_base, critic.openai_organization) != (
            base.openai_api_base,
            base.openai_organization,
        ):
            raise ValueError(
                "critic_model: batch mode sends every call to one endpoint; serve the critic "
                f"where the base model is ({base.openai_api_base or 'api.openai.com'})"
            )
        store = _Store(batch_state_path(output))
        batched_critic = None if critic_model is None else batch_model(critic, store)
        graph = build(batch_model(base, store), batched_critic)
        run = cls(graph, client=base.root_async_client, store=store, settings=settings)
        run.fresh = not resume
        return run

    async def run(
        self,
        records: Iterator[Record],
        runner: RecordRunner,
        sink: RecordSink,
        report: SynthesisReport,
        *,
        concurrency: int,
    ) -> None:
        """Run every record, ``concurrency`` in flight, writing each line to ``sink``.

        ``runner`` gives the records' inputs, lines, error lines and run config.
        ``report.batch`` is filled in as batches finish.
        """
        import aiosqlite
        from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        if self.fresh:
            self._remove_state()
        self.store.open()
        try:
            async with aiosqlite.connect(self.store.path, timeout=60) as conn:
                # WAL with NORMAL sync: a committed checkpoint survives a killed process
                # (only an operating-system crash can lose the last ones), at a fraction
                # of the cost of syncing every checkpoint.
                await conn.execute("PRAGMA journal_mode=WAL")
                await conn.execute("PRAGMA synchronous=NORMAL")
                saver = AsyncSqliteSaver(conn, serde=JsonPlusSerializer())
                graph = self.graph.compile(checkpointer=saver)
                await self._recover()
                await self._rounds(graph, saver, records, runner, sink, report, concurrency)
            report.batch = self.store.report(self.settings)
        finally:
            self.store.close()
        if report.remaining == 0:  # nothing left to resume
            self._remove_state()

    def _remove_state(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.store.path}{suffix}").unlink(missing_ok=True)

    async def _rounds(
        self,
        graph: Any,
        saver: Any,
        records: Iterator[Record],
        runner: RecordRunner,
        sink: RecordSink,
        report: SynthesisReport,
        concurrency: int,
    ) -> None:
        flight: dict[str, _Flight] = {}
        todo = iter(records)
        while True:
            while True:  # step every record that can go on; new ones join as slots free up
                while len(flight) < concurrency:
                    record = next(todo, None)
                    if record is None:
                        break
                    one = await self._board(graph, runner, record)
                    flight[one.thread] = one
                ready = [one for one in flight.values() if self._ready(one)]
                if not ready:
                    break
                await asyncio.gather(
                    *(self._step(graph, saver, runner, sink, one, flight) for one in ready)
                )
            if not flight:
                return
            sent = self.store.in_open_batches()
            unsent: dict[str, dict[str, Any]] = {}
            for one in flight.values():
                if one.key is not None and one.key not in sent and one.body is not None:
                    unsent[one.key] = one.body
            if unsent:
                await self._submit(unsent)
            await self._wait(report)

    def _config(self, runner: RecordRunner, record: Record) -> dict[str, Any]:
        metadata = {**(runner.config.get("metadata") or {}), "spri_record_id": record.id}
        thread = f"spri-record:{json.dumps(record.id)}"
        return {**runner.config, "metadata": metadata, "configurable": {"thread_id": thread}}

    async def _board(self, graph: Any, runner: RecordRunner, record: Record) -> _Flight:
        """Take a record in flight, where an earlier run left its thread (if it did)."""
        config = self._config(runner, record)
        thread = config["configurable"]["thread_id"]
        snapshot = await graph.aget_state(config)
        if not snapshot.values:
            return _Flight(record, thread, runner.to_input(record))
        if snapshot.interrupts:
            one = _Flight(record, thread, Command(resume=True))
            one.key, one.body = _request(snapshot.interrupts)
            return one
        if snapshot.next:  # stopped between a checkpoint and its next node: go on
            return _Flight(record, thread, None)
        return _Flight(record, thread, None, done=snapshot.values)

    def _ready(self, one: _Flight) -> bool:
        return one.key is None or self.store.result(one.key) is not None

    async def _step(
        self,
        graph: Any,
        saver: Any,
        runner: RecordRunner,
        sink: RecordSink,
        one: _Flight,
        flight: dict[str, _Flight],
    ) -> None:
        """Run a record until it pauses on a request or ends; write its line if it ended."""
        record, config = one.record, self._config(runner, one.record)
        try:
            output = one.done
            if output is None:
                output = await graph.ainvoke(one.resume, config)
            if "__interrupt__" in output:
                one.key, one.body = _request(output["__interrupt__"])
                one.resume = Command(resume=True)
                return
            output = _restored(output)
            line, usage = runner.to_line(record, output), runner.usage(output)
        except Exception as exc:  # noqa: BLE001 - an error line, and the run goes on
            error = runner.to_error(record, exc, attempts(exc, runner.retry_policy))
            del flight[one.thread]
            sink.error(record, error)
        else:
            del flight[one.thread]
            sink.ok(record, line, usage)
        await saver.adelete_thread(one.thread)

    async def _recover(self) -> None:
        """Find batches a killed run was creating: adopt those the provider has, drop others."""
        submitting = {token: created for token, _, _, created in self.store.batches("submitting")}
        if not submitting:
            return
        oldest = min(submitting.values()) - 3600
        async for batch in self.client.batches.list(limit=100):
            token = (batch.metadata or {}).get("spri_token")
            if token in submitting:
                self.store.update(token, state="open", batch_id=batch.id)
                del submitting[token]
            if not submitting or batch.created_at < oldest:
                break
        for token in submitting:  # never created: their requests go out in the next batch
            self.store.forget(token)

    async def _submit(self, bodies: Mapping[str, dict[str, Any]]) -> None:
        """Send the requests as batches of at most ``max_requests``, recording each first."""
        keys = list(bodies)
        round_ = self.store.next_round()
        size = self.settings.max_requests
        for start in range(0, len(keys), size):
            chunk = keys[start : start + size]
            token = uuid.uuid4().hex
            self.store.begin(token, round_, chunk)
            lines = "".join(
                json.dumps(
                    {"custom_id": k, "method": "POST", "url": BATCH_ENDPOINT, "body": bodies[k]},
                    ensure_ascii=False,
                )
                + "\n"
                for k in chunk
            )
            try:
                upload = await self.client.files.create(
                    file=(f"spri-{token}.jsonl", lines.encode("utf-8")), purpose="batch"
                )
                self.store.update(token, file_id=upload.id)
                batch = await self.client.batches.create(
                    input_file_id=upload.id,
                    endpoint=BATCH_ENDPOINT,
                    completion_window=self.settings.completion_window,
                    metadata={"spri_token": token},
                )
            except Exception as exc:
                self.store.forget(token)
                raise RuntimeError(f"batch: cannot submit a batch ({exc})") from exc
            self.store.update(token, state="open", batch_id=batch.id)

    async def _wait(self, report: SynthesisReport) -> None:
        """Poll the open batches until each has ended; store what they answered."""
        waiting = {token: batch_id for token, batch_id, _, _ in self.store.batches("open")}
        while waiting:
            for token, batch_id in list(waiting.items()):
                batch = await self.client.batches.retrieve(batch_id)
                if batch.status in _TERMINAL:
                    await self._collect(token, batch)
                    del waiting[token]
            report.batch = self.store.report(self.settings)
            if waiting:
                await asyncio.sleep(self.settings.poll_interval)

    async def _collect(self, token: str, batch: Any) -> None:
        """Store a finished batch's results; failed and expired requests stay unanswered."""
        results: dict[str, tuple[int, str]] = {}
        tokens = [0, 0]
        if batch.output_file_id:
            content = await self.client.files.content(batch.output_file_id)
            for raw in content.text.splitlines():
                if not raw.strip():
                    continue
                line = json.loads(raw)
                response = line.get("response") or {}
                status = int(response.get("status_code") or 0)
                body = response.get("body")
                if not status or body is None or _retryable(status):
                    continue
                results[line["custom_id"]] = (status, json.dumps(body, ensure_ascii=False))
                usage = body.get("usage") or {} if isinstance(body, dict) else {}
                tokens[0] += int(usage.get("prompt_tokens") or 0)
                tokens[1] += int(usage.get("completion_tokens") or 0)
        self.store.finish(token, results, (tokens[0], tokens[1]))
        if batch.status == "failed" and not results:
            errors = getattr(batch, "errors", None)
            detail = "; ".join(
                str(getattr(e, "message", e)) for e in (getattr(errors, "data", None) or [])
            )
            raise RuntimeError(
                f"batch {batch.id} failed{': ' + detail if detail else ''}; its requests go "
                "into the next batch when the run is started again"
            )


def _restored(output: Mapping[str, Any]) -> dict[str, Any]:
    """A state read back from the checkpointer, its critiques :class:`Critique` again.

    Critiques are dicts with methods; the checkpointer keeps their fields only.
    """
    from spri_graph.readers.scores import Critique

    restored = dict(output)
    for name in ("principle_critiques", "response_critiques"):
        if isinstance(restored.get(name), list):
            restored[name] = [Critique.of(c) for c in restored[name]]
    return restored


def _request(interrupts: Any) -> tuple[str, dict[str, Any]]:
    """The pending request of a paused thread, from its interrupt."""
    for item in interrupts:
        value = getattr(item, "value", None)
        if isinstance(value, Mapping) and "spri_batch_request" in value:
            return str(value["spri_batch_request"]), dict(value["body"])
    raise RuntimeError(f"a record paused for something other than a batch: {interrupts!r}")
