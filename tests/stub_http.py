"""What the tests' stub OpenAI servers on 127.0.0.1 share: serving, JSON replies, completions."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import BaseServer
from typing import Any, TypeVar

__all__ = ["POLL_INTERVAL", "FailingServer", "chat_completion", "send_json", "serving"]

POLL_INTERVAL = 0.02
"""Seconds between the serving thread's checks for shutdown (``serve_forever``'s default
of 0.5 would make every test that stops a server wait up to half a second)."""

ServerT = TypeVar("ServerT", bound=BaseServer)


@contextlib.contextmanager
def serving(server: ServerT) -> Iterator[ServerT]:
    """Serve ``server`` on a daemon thread for the block, then shut it down and close it."""
    threading.Thread(target=server.serve_forever, args=(POLL_INTERVAL,), daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def send_json(
    handler: BaseHTTPRequestHandler, payload: Any, status: int = 200, *, raw: bytes | None = None
) -> None:
    """Reply ``payload`` as JSON (or the ``raw`` bytes) with ``status``.

    A client that is gone (a test killed it) is not an error of the server.
    """
    data = raw if raw is not None else json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    with contextlib.suppress(OSError):
        handler.wfile.write(data)


def chat_completion(
    model: str,
    text: str,
    *,
    prompt_tokens: int,
    completion_tokens: int,
    id: str = "chatcmpl-1",
    created: int = 0,
) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` object answering with ``text``."""
    return {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


class FailingServer(ThreadingHTTPServer):
    """An endpoint on 127.0.0.1 that fails every request: ``status`` with ``body``, or, with
    ``drop``, a connection that dies mid-request. ``requests`` counts what reached it."""

    def __init__(self, status: int = 400, body: bytes = b"") -> None:
        super().__init__(("127.0.0.1", 0), _FailingHandler)
        self.status, self.body, self.drop = status, body, False
        self.requests = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _FailingHandler(BaseHTTPRequestHandler):
    server: FailingServer

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.requests += 1
        if self.server.drop:
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        send_json(self, None, self.server.status, raw=self.server.body)

    def log_message(self, *args: Any) -> None:
        pass
