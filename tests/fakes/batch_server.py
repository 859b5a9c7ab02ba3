"""A fake of the two batch APIs on 127.0.0.1, for the judge's batch path (tests only).

OpenAI: ``POST /v1/files`` (multipart, purpose ``batch``), ``POST /v1/batches``,
``GET /v1/batches/{id}``, ``GET /v1/files/{id}/content``. Anthropic:
``POST /v1/messages/batches``, ``GET /v1/messages/batches/{id}``,
``GET /v1/messages/batches/{id}/results``. Each request of a batch is answered, when the
batch is submitted, by an *answer* function given the request's body (chat-completion
body or Messages params): it returns ``(status, body)``; non-200 statuses become the
API's per-request errors. A batch stays in progress for ``polls_in_progress`` polls
(or while ``hold`` is set), then ends; ``expire`` makes it end expired, with the keys in
``expire_keys`` (all, when empty) unanswered. Everything asked is counted.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOST = "127.0.0.1"

Answer = Callable[[dict[str, Any]], tuple[int, Any]]
EXPIRED_MESSAGE = "This request could not be executed before the completion window expired."


@dataclass
class FakeBatch:
    id: str
    api: str
    """openai or anthropic."""
    requests: list[dict[str, Any]]
    """Each {custom_id, body}."""
    results: dict[str, tuple[int, Any]] = field(default_factory=dict)
    polls: int = 0
    ended: bool = False
    expired: bool = False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _send(self, status: int, payload: Any, ctype: str = "application/json") -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def do_GET(self) -> None:
        fake = self.server.owner
        path = self.path.split("?")[0]
        with fake.lock:
            fake.log.append(("GET", path))
            if path.startswith("/v1/messages/batches/") and path.endswith("/results"):
                batch = fake.batches.get(path.split("/")[4])
                if batch is None or not batch.ended:
                    return self._send(
                        404,
                        {
                            "type": "error",
                            "error": {"type": "not_found_error", "message": "no results"},
                        },
                    )
                return self._send(200, fake.anthropic_results(batch), "application/binary")
            if path.startswith("/v1/messages/batches/"):
                batch = fake.batches.get(path.split("/")[4])
                if batch is None:
                    return self._send(
                        404,
                        {
                            "type": "error",
                            "error": {"type": "not_found_error", "message": "no batch"},
                        },
                    )
                fake.poll(batch)
                return self._send(200, fake.anthropic_batch(batch))
            if path.startswith("/v1/batches/"):
                batch = fake.batches.get(path.split("/")[3])
                if batch is None:
                    return self._send(404, {"error": {"message": "No such batch"}})
                fake.poll(batch)
                return self._send(200, fake.openai_batch(batch))
            if path.startswith("/v1/files/") and path.endswith("/content"):
                content = fake.files.get(path.split("/")[3])
                if content is None:
                    return self._send(404, {"error": {"message": "No such file"}})
                return self._send(200, content, "application/octet-stream")
        self._send(404, {"error": {"message": f"not faked: GET {path}"}})

    def do_POST(self) -> None:
        fake = self.server.owner
        path = self.path.split("?")[0]
        raw = self._body()
        with fake.lock:
            fake.log.append(("POST", path))
            if fake.auth_fails:
                return self._send(401, {"error": {"message": "Incorrect API key provided"}})
            if path == "/v1/files":
                fields = _multipart(self.headers.get("content-type", ""), raw)
                fid = f"file-{next(fake.ids)}"
                fake.uploads.append(fields)
                fake.files[fid] = fields.get("file", b"")
                return self._send(
                    200,
                    {
                        "id": fid,
                        "object": "file",
                        "bytes": len(fake.files[fid]),
                        "created_at": 0,
                        "filename": "batch.jsonl",
                        "purpose": fields.get("purpose", b"").decode(),
                        "status": "processed",
                    },
                )
            if path == "/v1/batches":
                body = json.loads(raw)
                lines = fake.files[body["input_file_id"]].decode().splitlines()
                reqs = [json.loads(x) for x in lines if x.strip()]
                batch = fake.submit(
                    "openai",
                    [
                        {"custom_id": r["custom_id"], "body": r["body"], "url": r["url"]}
                        for r in reqs
                    ],
                )
                fake.created.append(body)
                return self._send(200, fake.openai_batch(batch))
            if path == "/v1/messages/batches":
                body = json.loads(raw)
                batch = fake.submit(
                    "anthropic",
                    [{"custom_id": r["custom_id"], "body": r["params"]} for r in body["requests"]],
                )
                fake.created.append(body)
                return self._send(200, fake.anthropic_batch(batch))
        self._send(404, {"error": {"message": f"not faked: POST {path}"}})


def _multipart(ctype: str, raw: bytes) -> dict[str, bytes]:
    msg = BytesParser(policy=default_policy).parsebytes(
        b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + raw
    )
    out: dict[str, bytes] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            out[name] = payload
    return out


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: FakeBatchServer


class FakeBatchServer:
    """Both batch APIs on 127.0.0.1 and a free port; see the module doc."""

    def __init__(self, answer: Answer, polls_in_progress: int = 2):
        self.answer = answer
        self.polls_in_progress = polls_in_progress
        self.hold = threading.Event()
        """While set, batches stay in progress however often they are polled."""
        self.expire = False
        self.expire_keys: set[str] = set()
        self.auth_fails = False
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        self.batches: dict[str, FakeBatch] = {}
        self.files: dict[str, bytes] = {}
        self.uploads: list[dict[str, bytes]] = []
        self.created: list[dict[str, Any]] = []
        """Every batch creation body, in order: the submissions."""
        self.log: list[tuple[str, str]] = []
        self._server: _Server | None = None

    # ---- behaviour ----------------------------------------------------------------------

    def submit(self, api: str, requests: list[dict[str, Any]]) -> FakeBatch:
        prefix = "batch_" if api == "openai" else "msgbatch_"
        batch = FakeBatch(f"{prefix}{next(self.ids)}", api, requests)
        for r in requests:
            batch.results[r["custom_id"]] = self.answer(r["body"])
        self.batches[batch.id] = batch
        return batch

    def poll(self, batch: FakeBatch) -> None:
        batch.polls += 1
        if not self.hold.is_set() and batch.polls > self.polls_in_progress:
            batch.ended = True
            batch.expired = self.expire

    def _unanswered(self, batch: FakeBatch, key: str) -> bool:
        return batch.expired and (not self.expire_keys or key in self.expire_keys)

    def counts(self, batch: FakeBatch) -> tuple[int, int]:
        """(succeeded, failed) among the processed requests."""
        if not batch.ended:
            return 0, 0
        ok = failed = 0
        for key, (status, _) in batch.results.items():
            if self._unanswered(batch, key) or status != 200:
                failed += 1
            else:
                ok += 1
        return ok, failed

    # ---- OpenAI -------------------------------------------------------------------------

    def openai_batch(self, batch: FakeBatch) -> dict[str, Any]:
        ok, failed = self.counts(batch)
        status = "in_progress"
        out: dict[str, Any] = {
            "id": batch.id,
            "object": "batch",
            "endpoint": "/v1/chat/completions",
            "input_file_id": "file-x",
            "completion_window": "24h",
            "created_at": 0,
        }
        if batch.ended:
            status = "expired" if batch.expired else "completed"
            out["output_file_id"] = self._openai_file(batch, errors=False)
            out["error_file_id"] = self._openai_file(batch, errors=True)
        out["status"] = status
        out["request_counts"] = {"total": len(batch.requests), "completed": ok, "failed": failed}
        return out

    def _openai_file(self, batch: FakeBatch, errors: bool) -> str | None:
        lines = []
        for key, (status, body) in batch.results.items():
            if self._unanswered(batch, key):
                if errors:
                    lines.append(
                        {
                            "id": "r",
                            "custom_id": key,
                            "response": None,
                            "error": {
                                "code": "batch_expired",
                                "message": EXPIRED_MESSAGE,
                            },
                        }
                    )
                continue
            if (status == 200) != errors:
                lines.append(
                    {
                        "id": "r",
                        "custom_id": key,
                        "error": None,
                        "response": {"status_code": status, "request_id": "x", "body": body},
                    }
                )
        if not lines:
            return None
        fid = f"file-{batch.id}-{'err' if errors else 'out'}"
        self.files[fid] = ("\n".join(json.dumps(x) for x in lines) + "\n").encode()
        return fid

    # ---- Anthropic ----------------------------------------------------------------------

    def anthropic_batch(self, batch: FakeBatch) -> dict[str, Any]:
        ok, failed = self.counts(batch)
        n = len(batch.requests)
        expired = sum(self._unanswered(batch, k) for k in batch.results) if batch.ended else 0
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": "ended" if batch.ended else "in_progress",
            "request_counts": {
                "processing": 0 if batch.ended else n,
                "succeeded": ok,
                "errored": failed - expired,
                "canceled": 0,
                "expired": expired,
            },
            "created_at": "2026-01-01T00:00:00Z",
            "expires_at": "2026-01-02T00:00:00Z",
            "ended_at": "2026-01-01T01:00:00Z" if batch.ended else None,
            "archived_at": None,
            "cancel_initiated_at": None,
            "results_url": f"{self.root_url}/v1/messages/batches/{batch.id}/results"
            if batch.ended
            else None,
        }

    def anthropic_results(self, batch: FakeBatch) -> bytes:
        lines = []
        for key, (status, body) in batch.results.items():
            if self._unanswered(batch, key):
                result: dict[str, Any] = {"type": "expired"}
            elif status == 200:
                result = {"type": "succeeded", "message": body}
            else:
                result = {"type": "errored", "error": {"type": "error", "error": body["error"]}}
            lines.append({"custom_id": key, "result": result})
        return ("\n".join(json.dumps(x) for x in lines) + "\n").encode()

    # ---- serving ------------------------------------------------------------------------

    @property
    def submissions(self) -> int:
        with self.lock:
            return len(self.created)

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return int(self._server.server_address[1])

    @property
    def root_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def openai_url(self) -> str:
        return f"{self.root_url}/v1"

    def __enter__(self) -> FakeBatchServer:
        self._server = _Server((HOST, 0), _Handler)
        self._server.owner = self
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
