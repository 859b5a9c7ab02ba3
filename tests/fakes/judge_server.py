"""A fake judge server on 127.0.0.1 for tests and benchmarks (never another address).

Why it is shipped: the judge's behaviour under rate limits, slow answers, server errors and
malformed bodies must be tested through the real ``openai`` and ``anthropic`` SDKs, and the
concurrency benchmark needs a server with a known latency; both need a server that speaks
the two APIs and counts what it is asked. It answers ``POST .../chat/completions``
(OpenAI-compatible) and ``POST .../messages`` (Anthropic) with whatever an *app* function
returns, records every request, and tracks how many are in flight.

    with FakeJudgeServer(app) as server:
        base_url = server.openai_url      # http://127.0.0.1:PORT/v1
        ...
        server.requests                   # every request, in arrival order
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOST = "127.0.0.1"


@dataclass
class Request:
    path: str
    body: Any
    """Parsed JSON (or the raw text if it was not JSON)."""
    headers: dict[str, str]
    started: float

    @property
    def prompt(self) -> str:
        """The text of the last user message."""
        if not isinstance(self.body, dict):
            return ""
        messages = self.body.get("messages") or []
        content = messages[-1].get("content", "") if messages else ""
        if isinstance(content, list):
            return "".join(b.get("text", "") for b in content if isinstance(b, dict))
        return str(content)


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    """dict/list: sent as JSON; str/bytes: sent as is (to fake malformed bodies)."""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds to wait before answering (latency, timeouts)."""


App = Callable[[Request], Reply]


def chat_logprobs(dist: Mapping[str, float], model: str = "fake-judge") -> dict[str, Any]:
    """An OpenAI chat completion whose first token has these top probabilities."""
    items = sorted(dist.items(), key=lambda kv: -kv[1])
    top = [
        {"token": t, "logprob": math.log(p) if p > 0 else -9999.0, "bytes": list(t.encode())}
        for t, p in items
    ]
    first = top[0] if top else {"token": "", "logprob": 0.0, "bytes": []}
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": first["token"]},
                "logprobs": {"content": [{**first, "top_logprobs": top}]},
                "finish_reason": "length",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def chat_text(text: str, model: str = "fake-judge") -> dict[str, Any]:
    """An OpenAI chat completion answering ``text``."""
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def anthropic_text(text: str, model: str = "fake-claude") -> dict[str, Any]:
    """An Anthropic Messages API response answering ``text``."""
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }


def error_body(message: str, kind: str = "error") -> dict[str, Any]:
    return {"error": {"message": message, "type": kind}}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle's algorithm and the client's
    # delayed ACK every answer would wait ~40 ms, swamping any latency we simulate.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return None

    def do_GET(self) -> None:
        """``GET /_stats`` (``?reset=1`` to clear): counts for a client in another process."""
        owner = self.server.owner
        if not self.path.startswith("/_stats"):
            self.send_error(404)
            return
        with owner.lock:
            data = json.dumps(
                {"requests": len(owner.requests), "max_in_flight": owner.max_in_flight}
            ).encode()
            if "reset=1" in self.path:
                owner.requests.clear()
                owner.max_in_flight = 0
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length).decode("utf-8", "replace")
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw
        req = Request(self.path, body, {k.lower(): v for k, v in self.headers.items()}, 0.0)
        owner = self.server.owner
        with owner.lock:
            req.started = time.monotonic()
            owner.requests.append(req)
            owner.in_flight += 1
            owner.max_in_flight = max(owner.max_in_flight, owner.in_flight)
        try:
            reply = owner.app(req)
            if reply.delay > 0:
                time.sleep(reply.delay)
            payload = reply.body
            if isinstance(payload, dict | list):
                data = json.dumps(payload).encode()
                ctype = "application/json"
            elif isinstance(payload, bytes):
                data, ctype = payload, "text/plain"
            else:
                data, ctype = str(payload or "").encode(), "text/plain"
            self.send_response(reply.status)
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(data)))
            for k, v in reply.headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
            pass
        finally:
            with owner.lock:
                owner.in_flight -= 1


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256
    owner: FakeJudgeServer


class FakeJudgeServer:
    """A threaded HTTP server on 127.0.0.1 and a free port, answering with ``app``."""

    def __init__(self, app: App):
        self.app = app
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return int(self._server.server_address[1])

    @property
    def root_url(self) -> str:
        """Base URL for the Anthropic SDK."""
        return f"http://{HOST}:{self.port}"

    @property
    def openai_url(self) -> str:
        """Base URL for the OpenAI SDK."""
        return f"{self.root_url}/v1"

    def start(self) -> FakeJudgeServer:
        self._server = _Server((HOST, 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.max_in_flight = 0

    def __enter__(self) -> FakeJudgeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
