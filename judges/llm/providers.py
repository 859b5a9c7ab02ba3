"""Remote judges: OpenAI-compatible chat completions and the Anthropic messages API.

Why one small class per API: the scorer only needs two questions answered (the top
logprobs of a one-token answer, or one sampled answer), and each API phrases them and its
failures differently. Providers translate both into plain data and
:class:`~judges.llm.retry.JudgeCallError`, so the scorer, the retry loop and the cache
never see an SDK type.

Online calls go out through :class:`~judges.llm.http.JsonClient`, a lean HTTP/1.1 client,
not through the SDK: at 32 calls in flight the SDK's CPU per call (1.3-2.8 ms against
0.45 ms) capped the speedup over sequential calls (``benchmarks/judge_concurrency.py``).
The request is the body the SDK would send, with the SDK's headers for the key (and for
OpenAI the organization and project from the environment, as the SDK reads them). Where
the environment sets a proxy for the URL, the provider uses the SDK instead (it speaks to
proxies), with its own retries switched off (``max_retries=0``): retries are ours on either
path, so that they are counted, honour Retry-After the same way for every provider, and
stay within the concurrency bound. Both paths end in the same errors
(:func:`~judges.llm.http.status_error`). Responses are parsed from plain dicts,
defensively: a body that is not JSON or lacks the expected fields is a final "malformed
response" failure, not a crash.

API keys are read from the environment by the scorer and given to the client only;
every error text that leaves a provider passes through :func:`redact` (by value and by
pattern, :mod:`harness.core.secrets`), because servers echo keys in authentication errors
and proxies in malformed bodies.
"""

from __future__ import annotations

import functools
import os
import ssl
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from harness.core.secrets import scrub
from judges.llm.cost import Tokens
from judges.llm.http import JsonClient, proxy_for, short, status_error
from judges.llm.retry import MALFORMED_RETRIES, JudgeCallError

CLIENT_ENV = "STEER_HARNESS_JUDGE_CLIENT"
"""Set to ``sdk`` to send online judge calls through the provider's SDK instead of the lean
client (a way around a gateway the lean client does not speak to; slower per call)."""


def use_lean_client(url: str) -> bool:
    """Whether online calls to ``url`` go through :class:`JsonClient`: not behind a proxy
    (the SDK speaks to proxies) and not switched off by ``$STEER_HARNESS_JUDGE_CLIENT``."""
    return os.environ.get(CLIENT_ENV, "").strip().lower() != "sdk" and proxy_for(url) is None


__all__ = ["short"]  # batch.py takes it from here


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """The text with the given secret values, every known key value and key-like strings
    replaced (:func:`harness.core.secrets.scrub`)."""
    return scrub(text, secrets)


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """One TLS context for every client of this process. Each scoring batch makes its
    clients anew (they are bound to the batch's event loop) and loading the CA bundle
    took longer than a whole batch of local calls; a context is not bound to a loop."""
    cafile, capath = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    if cafile or capath:  # as httpx honours them
        return ssl.create_default_context(cafile=cafile, capath=capath)
    try:
        import certifi

        return ssl.create_default_context(cafile=certifi.where())
    except ImportError:
        return ssl.create_default_context()


class Provider(Protocol):
    """What the scorer asks of a judge backend."""

    name: str
    model: str
    supports_logprobs: bool

    @property
    def identity(self) -> dict[str, Any]:
        """What, besides the model name, decides the judge's answers (part of cache keys)."""
        ...

    async def top_logprobs(self, prompt: str, decoding: Mapping[str, Any]) -> list[list[Any]]:
        """``[[token, logprob], ...]`` for the first output token."""
        ...

    async def sample(self, prompt: str, decoding: Mapping[str, Any]) -> str:
        """One sampled answer's text."""
        ...

    async def aclose(self) -> None: ...


def _has_class(exc: BaseException, name: str) -> bool:
    return any(c.__name__ == name for c in type(exc).__mro__)


def translate_error(exc: BaseException, secrets: Iterable[str]) -> JudgeCallError:
    """An SDK (or transport) exception as a JudgeCallError with the retry decision."""
    if isinstance(exc, JudgeCallError):
        return exc
    status = getattr(exc, "status_code", None)
    message = short(redact(str(getattr(exc, "message", None) or exc), secrets))
    if isinstance(status, int):
        headers = getattr(getattr(exc, "response", None), "headers", None)
        return status_error(status, message, headers, secrets)
    if _has_class(exc, "APITimeoutError") or isinstance(exc, TimeoutError):
        return JudgeCallError("timeout: no answer within the time limit", retryable=True)
    if _has_class(exc, "APIConnectionError"):
        cause = exc.__cause__ or exc.__context__
        detail = short(redact(str(cause), secrets)) if cause else message
        return JudgeCallError(f"connection error: {detail}", retryable=True)
    return JudgeCallError(f"{type(exc).__name__}: {message}")


def as_data(response: Any) -> Any:
    """An SDK response as plain JSON data (a str when the body was not JSON)."""
    dump = getattr(response, "model_dump", None)
    if callable(dump):
        try:
            return dump(mode="json", warnings=False)
        except Exception:  # a lenient model holding values of the wrong type
            return dump(mode="python", warnings=False)
    return response


def malformed(data: Any, what: str) -> JudgeCallError:
    """Retried once (a body broken in transit), then a final null (see
    :data:`~judges.llm.retry.MALFORMED_RETRIES`)."""
    body = scrub(data if isinstance(data, str) else repr(data))
    return JudgeCallError(
        f"malformed response: {what} (body: {short(body, 120)!r})",
        retryable=True,
        final=True,
        retry_limit=MALFORMED_RETRIES,
    )


def parse_chat_top_logprobs(data: Any) -> list[list[Any]]:
    """``choices[0].logprobs.content[0].top_logprobs`` as ``[[token, logprob], ...]``."""
    if not isinstance(data, dict):
        raise malformed(data, "not a JSON object")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise malformed(data, "no choices")
    logprobs = choices[0].get("logprobs")
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(content, list) or not content or not isinstance(content[0], dict):
        raise malformed(data, "no logprobs (does the server support logprobs?)")
    top = content[0].get("top_logprobs")
    if not isinstance(top, list) or not top:
        raise malformed(data, "no top_logprobs (does the server support top_logprobs?)")
    out: list[list[Any]] = []
    for entry in top:
        if not isinstance(entry, dict):
            raise malformed(data, "top_logprobs entry is not an object")
        token, logprob = entry.get("token"), entry.get("logprob")
        if not isinstance(token, str) or not isinstance(logprob, int | float):
            raise malformed(data, "top_logprobs entry without token or logprob")
        out.append([token, float(logprob)])
    return out


def parse_chat_text(data: Any) -> str:
    """``choices[0].message.content``."""
    if not isinstance(data, dict):
        raise malformed(data, "not a JSON object")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise malformed(data, "no choices")
    message = choices[0].get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, str):
        raise malformed(data, "no message content")
    return content


def parse_anthropic_text(data: Any) -> str:
    """The concatenated text blocks of a Messages API response."""
    if not isinstance(data, dict):
        raise malformed(data, "not a JSON object")
    content = data.get("content")
    if not isinstance(content, list):
        raise malformed(data, "no content")
    texts = [
        b["text"]
        for b in content
        if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
    ]
    if not texts:
        raise malformed(data, "no text block in content")
    return "".join(texts)


class SDKProvider:
    """What the remote providers share: the model, the URL, the client (the lean one, or
    the SDK's behind a proxy), and the key, kept only for the request headers and so that
    error messages can be redacted. The judge retries with its own policy
    (:mod:`judges.llm.retry`)."""

    name: str
    supports_logprobs: bool
    default_base_url: str

    def __init__(
        self,
        *,
        model: str,
        api_key: str,
        base_url: str | None,
        timeout: float,
        extra_body: Mapping[str, Any],
    ):
        self.model = model
        self.base_url = base_url or self.default_base_url
        self._secrets = (api_key,)
        self._extra = dict(extra_body)
        self._direct: JsonClient | None = None
        self._client: Any = None
        if use_lean_client(self.base_url):
            self._direct = JsonClient(
                self.base_url,
                self._headers(api_key),
                timeout=timeout,
                secrets=self._secrets,
                ssl_context=shared_ssl_context(),
            )
        else:
            self._client = self._make_client(api_key, timeout)
        self.usage = Tokens()
        """Calls answered and the tokens their responses reported (cost accounting)."""

    def _make_client(self, api_key: str, timeout: float) -> Any:
        """The SDK's client (used where a proxy is set)."""
        raise NotImplementedError

    def _headers(self, api_key: str) -> dict[str, str]:
        """The headers the SDK sends with the key (lean path)."""
        raise NotImplementedError

    @property
    def direct(self) -> bool:
        """Whether calls go out through the lean client (no proxy in the way)."""
        return self._direct is not None

    @property
    def identity(self) -> dict[str, Any]:
        return {"provider": self.name, "base_url": self.base_url}

    async def aclose(self) -> None:
        if self._direct is not None:
            await self._direct.aclose()
        if self._client is not None:
            await self._client.close()


def chat_body(
    model: str, prompt: str, decoding: Mapping[str, Any], logprobs: bool
) -> dict[str, Any]:
    """The chat-completions request for one judge call, online or in a batch (the same
    body either way, so a batched answer is the answer the online path would get)."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": int(decoding["max_tokens"]),
    }
    if logprobs:
        body |= {
            "temperature": float(decoding["temperature"]),
            "logprobs": True,
            "top_logprobs": int(decoding["top_logprobs"]),
        }
    elif decoding.get("temperature") is not None:
        body["temperature"] = float(decoding["temperature"])
    return body


class OpenAIProvider(SDKProvider):
    """Any OpenAI-compatible chat-completions server: OpenAI, vLLM, llama.cpp, ollama, ..."""

    name = "openai"
    supports_logprobs = True
    default_base_url = "https://api.openai.com/v1"

    def _headers(self, api_key: str) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {api_key}"}
        # as the SDK reads them (its organization and project defaults)
        for env, name in (
            ("OPENAI_ORG_ID", "OpenAI-Organization"),
            ("OPENAI_PROJECT_ID", "OpenAI-Project"),
        ):
            if os.environ.get(env):
                headers[name] = os.environ[env]
        return headers

    def _make_client(self, api_key: str, timeout: float) -> Any:
        import openai

        return openai.AsyncOpenAI(
            api_key=api_key,
            base_url=self.base_url,
            max_retries=0,
            timeout=timeout,
            http_client=openai.DefaultAsyncHttpxClient(verify=shared_ssl_context()),
        )

    async def _chat(self, body: dict[str, Any]) -> Any:
        """One chat completion as plain JSON (a str when the body was not JSON).

        ``extra_body`` is merged last, as the SDK does. Behind a proxy: through the SDK's
        generic ``post``, its documented way to call any endpoint, not the typed
        ``chat.completions.create``, which validates the request and builds a typed
        response that we would dump back to JSON; four fields of the answer are read."""
        full = {**body, **self._extra}
        if self._direct is not None:
            return await self._direct.post("/chat/completions", full)
        try:
            return await self._client.post("/chat/completions", body=full, cast_to=object)
        except Exception as exc:
            raise translate_error(exc, self._secrets) from None

    async def top_logprobs(self, prompt: str, decoding: Mapping[str, Any]) -> list[list[Any]]:
        data = await self._chat(chat_body(self.model, prompt, decoding, logprobs=True))
        parsed = as_data(data)
        self.usage.record(parsed)
        return parse_chat_top_logprobs(parsed)

    async def sample(self, prompt: str, decoding: Mapping[str, Any]) -> str:
        data = as_data(await self._chat(chat_body(self.model, prompt, decoding, logprobs=False)))
        self.usage.record(data)
        return parse_chat_text(data)


MESSAGES_KEYWORDS = ("model", "max_tokens", "messages")
"""The fields of :func:`messages_body` that the SDK's ``messages.create`` takes by name."""


def messages_body(
    model: str, prompt: str, decoding: Mapping[str, Any], extra: Mapping[str, Any]
) -> dict[str, Any]:
    """The Messages API request for one judge call, online or in a batch (the same body
    either way, so a batched answer is the answer the online path would get);
    ``extra_body`` is merged last, so its fields win."""
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": int(decoding["max_tokens"]),
        "messages": [{"role": "user", "content": prompt}],
    }
    if decoding.get("temperature") is not None:
        body["temperature"] = float(decoding["temperature"])
    return body | dict(extra)


def anthropic_version() -> str:
    """The ``anthropic-version`` header the installed SDK sends (the API's dated version,
    which decides the response's shape), else the first Messages API version."""
    try:
        from anthropic._constants import ANTHROPIC_API_VERSION
    except ImportError:
        return "2023-06-01"
    return str(ANTHROPIC_API_VERSION)


class AnthropicProvider(SDKProvider):
    """The Anthropic Messages API: no logprobs, so sample mode only."""

    name = "anthropic"
    supports_logprobs = False
    default_base_url = "https://api.anthropic.com"

    def _headers(self, api_key: str) -> dict[str, str]:
        return {"x-api-key": api_key, "anthropic-version": anthropic_version()}

    def _make_client(self, api_key: str, timeout: float) -> Any:
        import anthropic

        return anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=self.base_url,
            max_retries=0,
            timeout=timeout,
            http_client=anthropic.DefaultAsyncHttpxClient(verify=shared_ssl_context()),
        )

    async def top_logprobs(self, prompt: str, decoding: Mapping[str, Any]) -> list[list[Any]]:
        raise JudgeCallError("the Anthropic API gives no logprobs; use mode = 'sample'")

    async def sample(self, prompt: str, decoding: Mapping[str, Any]) -> str:
        body = messages_body(self.model, prompt, decoding, self._extra)
        if self._direct is not None:
            data = await self._direct.post("/v1/messages", body)
            self.usage.record(data)
            return parse_anthropic_text(data)
        typed = {k: body.pop(k) for k in MESSAGES_KEYWORDS}
        try:
            # The rest (temperature, extra_body) is not a keyword of this SDK version's
            # create(); the API still reads it from the body.
            response = await self._client.messages.create(**typed, extra_body=body or None)
        except Exception as exc:
            raise translate_error(exc, self._secrets) from None
        data = as_data(response)
        self.usage.record(data)
        return parse_anthropic_text(data)
