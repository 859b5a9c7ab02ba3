"""A lean HTTP/1.1 client for the judges' one request: POST a JSON body, read a JSON body.

Why not the SDK or httpx: a judge call is one small POST, and at 32 calls in flight on
one event loop the client's CPU per call decides the throughput. The calls of a round are
answered together and then handled one after another, so every millisecond of client CPU
per call delays the next round by 32 ms. The openai SDK over httpx took 1.3-2.8 ms of CPU
per call (request building, connection-pool bookkeeping, header models, anyio layers); a
bare asyncio client takes about 0.2 ms (``benchmarks/judge_concurrency.py``). This client
keeps what a judge call needs and nothing else: keep-alive connections on the running
loop (one per call in flight, reused), TLS with the shared context, and h11 (the parser
under httpx) to read the response, so chunked and close-delimited bodies are handled as
httpx would.

What it does not do, and who does instead: proxies (a proxy set in the environment for the
URL's host makes the provider use its SDK, see :func:`proxy_for`), redirects (API
endpoints do not redirect; a 3xx is an HTTP error with its status), HTTP/2 and
compression (not asked for: no ``Accept-Encoding`` is sent).

Errors are :class:`~judges.llm.retry.JudgeCallError` with the same decisions the SDK path
makes (:func:`status_error`): the status and Retry-After for HTTP errors, ``timeout`` and
``connection error`` as retryable. A reused keep-alive connection that the server closed
while idle is retried once on a new connection at once, as httpcore does, since the request
never reached the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import h11

from harness.core.secrets import scrub
from judges.llm.retry import FATAL_STATUS, RETRY_STATUS, JudgeCallError, parse_retry_after

MAX_ERROR_CHARS = 300
MAX_IDLE = 256
"""Idle keep-alive connections kept at most (the scorer's concurrency bounds the rest)."""
READ_SIZE = 65536


def short(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def status_error(
    status: int, message: str, headers: Mapping[str, str] | None, secrets: Iterable[str]
) -> JudgeCallError:
    """An HTTP error status as a JudgeCallError with the retry decision (both paths)."""
    retryable = status in RETRY_STATUS or status >= 500
    return JudgeCallError(
        f"HTTP {status}: {short(scrub(message, secrets))}",
        retryable=retryable,
        retry_after=parse_retry_after(headers),
        status=status,
        fatal=status in FATAL_STATUS,
    )


def error_message(body: bytes) -> str:
    """The ``error.message`` of an error body (both APIs use it), else the body's text."""
    text = body.decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except ValueError:
        return text or "(empty body)"
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        return str(err["message"])
    return text


def proxy_for(url: str) -> str | None:
    """The proxy the environment sets for this URL (as httpx's ``trust_env`` reads it), or
    None. Where there is one the providers go through their SDK, which speaks to proxies."""
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxy


@dataclass
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    h11: h11.Connection

    def close(self) -> None:
        self.writer.close()


class _Stale(Exception):
    """A reused connection gave no response at all: the server closed it while idle."""


class JsonClient:
    """POSTs JSON to one origin over keep-alive connections of the running event loop.

    Bound to the loop it is first used on (as the SDK clients are); one per scoring batch.
    ``headers`` are sent with every request and may hold the key: they never appear in an
    error message, and every error text passes through :func:`~harness.core.secrets.scrub`
    with ``secrets``."""

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str],
        *,
        timeout: float,
        secrets: Iterable[str] = (),
        ssl_context: ssl.SSLContext | None = None,
    ):
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an http(s) URL, not {base_url!r}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/")
        netloc = parts.netloc.rpartition("@")[2]  # never send userinfo as the Host
        self._headers = [
            ("Host", netloc),
            ("Accept", "application/json"),
            ("Content-Type", "application/json"),
            ("User-Agent", "steer-harness-judge"),
            *headers.items(),
        ]
        self.timeout = timeout
        self._secrets = tuple(secrets)
        self._ssl = ssl_context if parts.scheme == "https" else None
        self._idle: list[_Conn] = []

    async def post(self, path: str, body: Mapping[str, Any]) -> Any:
        """The response body as parsed JSON (a str when it is not JSON); raises
        JudgeCallError for an HTTP error status, a timeout or a broken connection."""
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        target = self.prefix + path
        try:
            async with asyncio.timeout(self.timeout):
                status, headers, payload = await self._exchange(target, data)
        except TimeoutError:
            raise JudgeCallError(
                "timeout: no answer within the time limit", retryable=True
            ) from None
        if status >= 400:
            raise status_error(status, error_message(payload), headers, self._secrets)
        if status >= 300 or status < 200:
            raise status_error(status, f"unexpected status {status}", headers, self._secrets)
        text = payload.decode("utf-8", "replace")
        try:
            return json.loads(text)
        except ValueError:
            return text

    async def _exchange(self, target: str, data: bytes) -> tuple[int, dict[str, str], bytes]:
        while self._idle:  # a reused connection may have been closed by the server
            conn = self._idle.pop()
            try:
                return await self._request(conn, target, data, reused=True)
            except _Stale:
                continue
        return await self._request(await self._connect(), target, data, reused=False)

    async def _connect(self) -> _Conn:
        try:
            reader, writer = await asyncio.open_connection(
                self.host,
                self.port,
                ssl=self._ssl,
                server_hostname=self.host if self._ssl else None,
                limit=READ_SIZE,
            )
        except (OSError, ssl.SSLError) as exc:
            raise self._connection_error(exc) from None
        return _Conn(reader, writer, h11.Connection(h11.CLIENT))

    def _connection_error(self, exc: BaseException) -> JudgeCallError:
        detail = short(scrub(str(exc) or type(exc).__name__, self._secrets))
        return JudgeCallError(f"connection error: {detail}", retryable=True)

    async def _request(
        self, conn: _Conn, target: str, data: bytes, reused: bool
    ) -> tuple[int, dict[str, str], bytes]:
        h = conn.h11
        got_any = False
        keep = False
        try:
            headers = [*self._headers, ("Content-Length", str(len(data)))]
            out = h.send(h11.Request(method="POST", target=target, headers=headers))
            out += h.send(h11.Data(data=data)) + h.send(h11.EndOfMessage())
            conn.writer.write(out)
            await conn.writer.drain()
            status, head, chunks = 0, {}, []
            while True:
                event = h.next_event()
                if event is h11.NEED_DATA:
                    raw = await conn.reader.read(READ_SIZE)
                    if raw:
                        got_any = True
                    elif not got_any and reused:
                        raise _Stale()
                    h.receive_data(raw)
                    continue
                if isinstance(event, h11.Response):
                    status = event.status_code
                    head = {
                        k.decode("latin-1").lower(): v.decode("latin-1") for k, v in event.headers
                    }
                elif isinstance(event, h11.Data):
                    chunks.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    raise h11.RemoteProtocolError("connection closed before the body ended")
            keep = h.our_state is h11.DONE and h.their_state is h11.DONE
            if keep:
                h.start_next_cycle()
            return status, head, b"".join(chunks)
        except (ConnectionError, BrokenPipeError) as exc:
            if reused and not got_any:
                raise _Stale() from exc
            raise self._connection_error(exc) from None
        except (OSError, ssl.SSLError, h11.ProtocolError) as exc:
            raise self._connection_error(exc) from None
        finally:
            if keep and len(self._idle) < MAX_IDLE:
                self._idle.append(conn)
            else:
                conn.close()

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        for conn in idle:
            with contextlib.suppress(OSError, ssl.SSLError):
                await conn.writer.wait_closed()
