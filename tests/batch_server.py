"""A stub OpenAI server on 127.0.0.1: chat completions, Files and Batches, scripted replies.

It answers every chat request with :func:`scripted_reply`, a function of the request alone,
so a run answers the same whatever order its calls come in, interactively
(``POST /v1/chat/completions``) or through the batch endpoints (``POST /v1/files``,
``GET /v1/files/{id}/content``, ``POST /v1/batches``, ``GET /v1/batches[/{id}]``). It counts
what it is sent: interactive calls, batches, and how many times each request (by
``custom_id``) was submitted in a batch.

The script: record ``question N`` needs ``N % 3`` refinements of its principles and
``(N // 3) % 2`` of its response before the critic gives a 5 (it gives 2 before), so records
take 4 to 10 model calls; the critic of ``question 7`` leaves out its scores until reminded
(two calls in one graph node). Usage is one token per word of the prompt and of the reply.

A batch is done ``turnaround`` seconds after it was created (at its next ``GET``); batches
whose number (from 1) is in ``expire`` end ``expired`` with only the first half of their
requests answered, as providers do when a batch runs out of time. ``on_batch(number)`` runs
inside the request that creates a batch, before the reply (a test kills the client there).

Run it alone with ``python -m tests.batch_server [--turnaround S]``: it prints its base URL.
"""

from __future__ import annotations

import argparse
import email.parser
import email.policy
import hashlib
import itertools
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.stub_http import POLL_INTERVAL, chat_completion, send_json

__all__ = ["BatchServer", "scripted_reply"]

_QUESTION = re.compile(r"Question: (.+?)(?:\]|\n|$)")
_NUMBER = re.compile(r"question (\d+)")
_CANDIDATE = re.compile(
    r"### (?:Principles|Response) to Evaluate:\n(.*?)\n\n### Score Rubric", re.S
)
_REFINED = " Refined."


def _needs(query: str, stage: str) -> int:
    match = _NUMBER.search(query)
    number = int(match.group(1)) if match else 0
    return number % 3 if stage == "principles" else (number // 3) % 2


def scripted_reply(body: dict[str, Any]) -> str:
    """The reply to a chat request: a function of its messages only."""
    prompt = str(body["messages"][-1]["content"])
    system = str(body["messages"][0]["content"]) if len(body["messages"]) > 1 else ""
    if prompt.startswith("Your reply did not end with a score"):
        return "Feedback: scored when reminded. [RESULT] 5"
    if "[RESULT]" in prompt:  # a critique
        found = _QUESTION.search(prompt)
        query = found.group(1) if found else "?"
        if query == "question 7":
            return "Feedback: forgot the score."  # a second call in the same node reminds it
        stage = "principles" if "### Principles to Evaluate:" in prompt else "response"
        candidate = _CANDIDATE.search(prompt)
        refined = candidate.group(1).count(_REFINED) if candidate else 0
        score = 5 if refined >= _needs(query, stage) else 2
        return f"Feedback: {stage} of {query}, refined {refined}. [RESULT] {score}"
    query = prompt.strip().split("\n\n")[-1]  # drafts and refinements end on the question
    for opening, closing in _EARLIER:
        if opening in system:  # a refinement: the earlier text is in the system message
            return system.split(opening, 1)[1].split(closing, 1)[0] + _REFINED
    if "Principles for the answer:" in system:
        return f"Answer to {query}."
    return f"Principles for {query}."


_EARLIER = (
    ("Earlier principles for this question:\n", "\n\nFeedback on them:"),
    ("An earlier answer to this question:\n", "\n\nFeedback on that answer:"),
)


def completion(body: dict[str, Any]) -> dict[str, Any]:
    """The chat completion object answering ``body`` (the same each time it is asked)."""
    text = scripted_reply(body)
    prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
    completion_tokens = len(text.split())
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:24]
    return chat_completion(
        body.get("model", "stub"),
        text,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        id=f"chatcmpl-{digest}",
        created=1_700_000_000,
    )


@dataclass
class _Batch:
    number: int
    object: dict[str, Any]
    lines: list[dict[str, Any]]
    created: float


@dataclass
class BatchServer:
    """The stub server; a context manager that serves on a free port of 127.0.0.1.

    Attributes:
        turnaround: Seconds from a batch's creation to its completion.
        expire: Numbers (from 1) of the batches that expire.
        on_batch: Called with a batch's number inside the request creating it.
        chat_calls: Interactive ``/v1/chat/completions`` calls served.
        submitted: How many times each request (``custom_id``) was sent in a batch.
        batch_ids: Ids of the batches created, in order.
        usage: Prompt and completion tokens of the requests answered in batches.
    """

    turnaround: float = 0.0
    expire: frozenset[int] = frozenset()
    on_batch: Callable[[int], None] | None = None
    chat_calls: int = 0
    submitted: Counter[str] = field(default_factory=Counter)
    batch_ids: list[str] = field(default_factory=list)
    usage: Counter[str] = field(default_factory=Counter)
    _files: dict[str, bytes] = field(default_factory=dict)
    _batches: dict[str, _Batch] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _http: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        """The base URL to give ``ChatOpenAI(base_url=...)`` or ``--base-url``."""
        assert self._http is not None, "the server is not running"
        return f"http://127.0.0.1:{self._http.server_address[1]}/v1"

    @property
    def batches(self) -> int:
        """Batches created so far."""
        return len(self.batch_ids)

    def __enter__(self) -> BatchServer:
        server = self

        class Handler(_Handler):
            stub = server

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        threading.Thread(
            target=self._http.serve_forever, args=(POLL_INTERVAL,), daemon=True
        ).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._http is not None
        self._http.shutdown()
        self._http.server_close()

    # ------------------------------------------------------------------ endpoints

    def new_id(self, prefix: str) -> str:
        with self._lock:
            return f"{prefix}-{next(self._ids)}"

    def upload(self, content: bytes, filename: str) -> dict[str, Any]:
        file_id = self.new_id("file")
        self._files[file_id] = content
        return _file_object(file_id, filename, len(content))

    def create_batch(self, request: dict[str, Any]) -> dict[str, Any]:
        content = self._files[request["input_file_id"]]
        lines = [json.loads(line) for line in content.decode().splitlines() if line.strip()]
        with self._lock:
            batch_id = f"batch-{next(self._ids)}"
            number = len(self.batch_ids) + 1
            self.batch_ids.append(batch_id)
            for line in lines:
                self.submitted[line["custom_id"]] += 1
            obj = {
                "id": batch_id,
                "object": "batch",
                "endpoint": request["endpoint"],
                "completion_window": request["completion_window"],
                "input_file_id": request["input_file_id"],
                "status": "in_progress",
                "created_at": int(time.time()),
                "metadata": request.get("metadata"),
                "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
            }
            self._batches[batch_id] = _Batch(number, obj, lines, time.monotonic())
        if self.on_batch is not None:
            self.on_batch(number)
        return obj

    def batch(self, batch_id: str) -> dict[str, Any]:
        with self._lock:
            batch = self._batches[batch_id]
            if (
                batch.object["status"] == "in_progress"
                and time.monotonic() - batch.created >= self.turnaround
            ):
                self._finish(batch)
            return batch.object

    def list_batches(self) -> dict[str, Any]:
        with self._lock:
            data = [self._batches[i].object for i in reversed(self.batch_ids)]
        return {"object": "list", "data": data, "has_more": False}

    def _finish(self, batch: _Batch) -> None:
        expired = batch.number in self.expire
        answered = len(batch.lines) // 2 if expired else len(batch.lines)
        out, errors = [], []
        for index, line in enumerate(batch.lines):
            custom_id = line["custom_id"]
            if index < answered:
                body = completion(line["body"])
                self.usage["prompt_tokens"] += body["usage"]["prompt_tokens"]
                self.usage["completion_tokens"] += body["usage"]["completion_tokens"]
                response = {"status_code": 200, "request_id": custom_id[:8], "body": body}
                out.append({"id": custom_id[:8], "custom_id": custom_id, "response": response})
            else:
                error = {"code": "batch_expired", "message": "This request could not be executed"}
                errors.append({"id": custom_id[:8], "custom_id": custom_id, "error": error})
        obj = batch.object
        for key, rows in (("output_file_id", out), ("error_file_id", errors)):
            if rows:
                file_id = self.new_id("file")
                self._files[file_id] = "".join(json.dumps(r) + "\n" for r in rows).encode()
                obj[key] = file_id
        obj["status"] = "expired" if expired else "completed"
        obj["request_counts"] = {"total": len(batch.lines), "completed": len(out), "failed": 0}


def _file_object(file_id: str, filename: str, size: int) -> dict[str, Any]:
    return {
        "id": file_id,
        "object": "file",
        "bytes": size,
        "created_at": int(time.time()),
        "filename": filename,
        "purpose": "batch",
        "status": "processed",
    }


class _Handler(BaseHTTPRequestHandler):
    stub: BatchServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, obj: Any, status: int = 200, raw: bytes | None = None) -> None:
        send_json(self, obj, status, raw=raw)

    def do_POST(self) -> None:
        stub, path, data = self.stub, self.path.split("?")[0], self._body()
        if path == "/v1/chat/completions":
            with stub._lock:
                stub.chat_calls += 1
            self._send(completion(json.loads(data)))
        elif path == "/v1/files":
            head = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode()
            form = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + data)
            upload = next(p for p in form.iter_parts() if p.get_filename())
            content = upload.get_payload(decode=True)
            self._send(stub.upload(content, str(upload.get_filename())))
        elif path == "/v1/batches":
            self._send(stub.create_batch(json.loads(data)))
        else:
            self._send({"error": {"message": f"no route {path}"}}, status=404)

    def do_GET(self) -> None:
        stub, path = self.stub, self.path.split("?")[0]
        parts = path.strip("/").split("/")
        if path == "/v1/batches":
            self._send(stub.list_batches())
        elif parts[:2] == ["v1", "batches"] and len(parts) == 3:
            self._send(stub.batch(parts[2]))
        elif parts[:2] == ["v1", "files"] and len(parts) == 4 and parts[3] == "content":
            self._send(None, raw=stub._files[parts[2]])
        else:
            self._send({"error": {"message": f"no route {path}"}}, status=404)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turnaround", type=float, default=0.0)
    args = parser.parse_args()
    with BatchServer(turnaround=args.turnaround) as server:
        print(server.url, flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
