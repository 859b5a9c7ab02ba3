"""The lean judge HTTP client (judges/llm/http.py) against servers on 127.0.0.1.

Error decisions must be those of the SDK path (same status, retry, Retry-After, fatal,
redacted message); bodies in any HTTP/1.1 framing must parse; keep-alive connections are
reused and a connection the server closed while idle is replaced without a failed call.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from fakes.judge_server import FakeJudgeServer, Reply, Request, chat_logprobs, error_body

from judges.llm import providers
from judges.llm.http import JsonClient, proxy_for
from judges.llm.providers import AnthropicProvider, OpenAIProvider
from judges.llm.retry import JudgeCallError

pytest.importorskip("openai")
pytest.importorskip("anthropic")

KEY = "sk-test-http-0123456789abcdefXYZ"
LOGPROBS = {"max_tokens": 1, "temperature": 0.0, "top_logprobs": 5}


def provider(cls: type, url: str, timeout: float = 2.0) -> Any:
    return cls(model="fake-judge", api_key=KEY, base_url=url, timeout=timeout, extra_body={})


async def first_error(call: Callable[[], Awaitable[Any]]) -> JudgeCallError:
    with pytest.raises(JudgeCallError) as info:
        await call()
    return info.value


def errors_by_status(url: str, direct: bool) -> dict[int, JudgeCallError]:
    async def run() -> dict[int, JudgeCallError]:
        out = {}
        for status in (429, 500, 401, 400):
            p = provider(OpenAIProvider, f"{url}/s{status}")
            assert p.direct is direct
            out[status] = await first_error(lambda p=p: p.top_logprobs("hi", LOGPROBS))
            await p.aclose()
        return out

    return asyncio.run(run())


def status_app(req: Request) -> Reply:
    status = int(req.path.split("/")[1][1:])
    headers = {"retry-after": "2"} if status == 429 else {}
    return Reply(status=status, body=error_body(f"no luck, key {KEY}"), headers=headers)


def test_http_errors_get_the_decisions_of_the_sdk_path(monkeypatch):
    with FakeJudgeServer(status_app) as server:
        lean = errors_by_status(server.root_url, direct=True)
        monkeypatch.setattr(providers, "proxy_for", lambda url: "http://proxy.invalid")
        sdk = errors_by_status(server.root_url, direct=False)
    for status, err in lean.items():
        other = sdk[status]
        assert err.status == other.status == status
        assert (err.retryable, err.fatal, err.retry_after) == (
            other.retryable,
            other.fatal,
            other.retry_after,
        )
        assert err.message.startswith(f"HTTP {status}: ") and "no luck" in err.message
        assert KEY not in err.message and KEY not in other.message
    assert lean[429].retryable and lean[429].retry_after == 2.0 and not lean[429].fatal
    assert lean[500].retryable and not lean[500].fatal
    assert lean[401].fatal and not lean[401].retryable
    assert not lean[400].retryable and not lean[400].fatal


def test_the_request_is_what_the_sdk_sends(monkeypatch):
    monkeypatch.setenv("OPENAI_ORG_ID", "org-1")
    seen: list[Request] = []

    def app(req: Request) -> Reply:
        seen.append(req)
        if req.path.endswith("/messages"):
            return Reply(body={"content": [{"type": "text", "text": "42"}], "usage": {}})
        return Reply(body=chat_logprobs({"7": 1.0}))

    async def run(url: str) -> tuple[Any, Any]:
        o = provider(OpenAIProvider, f"{url}/v1")
        a = provider(AnthropicProvider, url)
        got = (await o.top_logprobs("hi", LOGPROBS), await a.sample("hi", {"max_tokens": 4}))
        await o.aclose()
        await a.aclose()
        return got

    with FakeJudgeServer(app) as server:
        top, text = asyncio.run(run(server.root_url))
    assert top == [["7", 0.0]] and text == "42"
    chat, msg = seen
    assert chat.path == "/v1/chat/completions" and msg.path == "/v1/messages"
    assert chat.headers["authorization"] == f"Bearer {KEY}"
    assert chat.headers["openai-organization"] == "org-1"
    assert chat.body["logprobs"] is True and chat.body["top_logprobs"] == 5
    assert msg.headers["x-api-key"] == KEY and msg.headers["anthropic-version"]
    assert msg.body == {
        "model": "fake-judge",
        "max_tokens": 4,
        "messages": [{"role": "user", "content": "hi"}],
    }


class RawServer:
    """An asyncio HTTP server that answers every request with ``chunks`` of a JSON body
    (chunked transfer encoding) and, when ``close_after`` is set, closes each connection
    after that many answers without saying so; counts connections."""

    def __init__(self, close_after: int | None = None):
        self.close_after = close_after
        self.connections = 0
        self.requests = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                size = next(
                    int(line.split(b":")[1])
                    for line in head.lower().split(b"\r\n")
                    if line.startswith(b"content-length")
                )
                body = json.loads(await reader.readexactly(size))
                self.requests += 1
                data = json.dumps({"echo": body["n"]}).encode()
                parts = [data[:5], data[5:]]
                out = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                out += b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
                writer.write(out)
                await writer.drain()
                served += 1
                if self.close_after is not None and served >= self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


async def with_raw_server(raw: RawServer, body: Callable[[str], Awaitable[Any]]) -> Any:
    server = await asyncio.start_server(raw.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        return await body(f"http://127.0.0.1:{port}/v1")
    finally:
        server.close()
        await server.wait_closed()


def test_chunked_bodies_parse_and_connections_are_kept_alive():
    raw = RawServer()

    async def body(url: str) -> list[Any]:
        client = JsonClient(url, {}, timeout=5.0)
        got = [await client.post("/x", {"n": i}) for i in range(5)]
        await client.aclose()
        return got

    assert asyncio.run(with_raw_server(raw, body)) == [{"echo": i} for i in range(5)]
    assert raw.connections == 1 and raw.requests == 5


def test_a_connection_closed_while_idle_is_replaced_without_a_failure():
    raw = RawServer(close_after=1)

    async def body(url: str) -> list[Any]:
        client = JsonClient(url, {}, timeout=5.0)
        got = []
        for i in range(3):
            got.append(await client.post("/x", {"n": i}))
            await asyncio.sleep(0.05)  # the server's close arrives while the connection idles
        await client.aclose()
        return got

    assert asyncio.run(with_raw_server(raw, body)) == [{"echo": i} for i in range(3)]
    assert raw.connections == 3 and raw.requests == 3


def test_refused_connections_and_timeouts_are_retryable():
    async def refused() -> JudgeCallError:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()  # nothing listens there now
        client = JsonClient(f"http://127.0.0.1:{port}", {"Authorization": KEY}, timeout=2.0)
        return await first_error(lambda: client.post("/x", {}))

    err = asyncio.run(refused())
    assert err.retryable and err.message.startswith("connection error") and KEY not in err.message

    with FakeJudgeServer(lambda req: Reply(body={}, delay=1.0)) as server:
        client = JsonClient(server.openai_url, {}, timeout=0.2)
        err = asyncio.run(first_error(lambda: client.post("/chat/completions", {})))
    assert err.retryable and err.message.startswith("timeout")


def test_a_body_that_is_not_json_is_returned_as_text():
    with FakeJudgeServer(lambda req: Reply(body="<html>busy</html>")) as server:
        client = JsonClient(server.openai_url, {}, timeout=2.0)
        assert asyncio.run(client.post("/chat/completions", {})) == "<html>busy</html>"


def test_a_proxy_in_the_environment_sends_calls_through_the_sdk(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    url = "https://judge.example.com/v1"
    assert proxy_for(url) is None
    assert provider(OpenAIProvider, url).direct
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    assert proxy_for(url) == "http://127.0.0.1:3128"
    assert not provider(OpenAIProvider, url).direct
    assert not provider(AnthropicProvider, "https://judge.example.com").direct
    monkeypatch.setenv("NO_PROXY", "judge.example.com")
    assert proxy_for(url) is None and provider(OpenAIProvider, url).direct


def test_the_environment_can_switch_the_lean_client_off(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    url = "https://judge.example.com/v1"
    monkeypatch.setenv(providers.CLIENT_ENV, "SDK")
    assert not provider(OpenAIProvider, url).direct
    assert not provider(AnthropicProvider, "https://judge.example.com").direct
    monkeypatch.setenv(providers.CLIENT_ENV, "lean")
    assert provider(OpenAIProvider, url).direct
