"""Retries with exponential backoff and full jitter, honouring Retry-After.

Why: hosted judges rate-limit (429) and fail transiently (5xx, timeouts, dropped
connections); a benchmark of thousands of calls meets these routinely. Retrying with
jittered exponential backoff (Brooker 2015, "Exponential Backoff And Jitter", AWS
Architecture Blog: ``sleep = uniform(0, min(cap, base * 2**attempt))``) spreads the
retries of many concurrent calls instead of having them hit the server in lock-step.
When the server says how long to wait (``Retry-After``: seconds or an HTTP date, RFC 9110
§10.2.3; or ``retry-after-ms``), the wait is at least that long (and at most
``backoff_max``).

What is retried: 408, 409, 429, every 5xx, timeouts and connection errors. Other errors
are final at once (400: this request will not succeed), except the fatal ones (401, 403,
404: wrong key, model or URL), which stop the run (see :class:`FatalJudgeError`) because
every other call would fail the same way and be recorded as a null. A malformed body (not
JSON, no logprobs) is retried at most :data:`MALFORMED_RETRIES` times, to catch a body
broken in transit, and is then *final* (``CallOutcome.final``): the score is a null that a
re-run does not ask again, since a server that answers without logprobs twice will not
start to; transient failures stay retryable by the next run.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from harness.core.errors import SpecError

T = TypeVar("T")

RETRY_STATUS = frozenset({408, 409, 429})
MALFORMED_RETRIES = 1
FATAL_STATUS = frozenset({401, 403, 404})


class JudgeCallError(Exception):
    """A judge call that failed; ``retryable`` says whether trying again may help."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = False,
        retry_after: float | None = None,
        status: int | None = None,
        fatal: bool = False,
        final: bool = False,
        retry_limit: int | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status
        self.fatal = fatal
        self.final = final
        """Once retries are spent, a re-run would get the same answer: a final null."""
        self.retry_limit = retry_limit
        """At most this many retries for this kind of error (None: the policy's)."""


class FatalJudgeError(SpecError):
    """A judge error that every call would hit (bad key, model or URL): stops scoring.

    A SpecError, so the CLI prints it as a configuration problem. Answers received before
    it are in the cache, so fixing the configuration and re-running loses nothing."""

    def __init__(self, where: str, message: str):
        super().__init__(where, [message])


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 6
    """Retries after the first attempt (so at most max_retries + 1 attempts)."""
    backoff_base: float = 1.0
    backoff_max: float = 60.0

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        ceiling = min(self.backoff_max, self.backoff_base * (2.0**attempt))
        wait = rng.uniform(0.0, ceiling)
        if retry_after is not None:
            wait = max(wait, retry_after)
        return min(wait, self.backoff_max)


def parse_retry_after(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (delta or HTTP date)."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass
class CallOutcome:
    """What a call with retries ended with: a value or a final error, and how many tries."""

    value: Any = None
    error: str | None = None
    attempts: int = 0
    final: bool = False
    """The error is one that asking again (in a later run) will not fix."""


async def call_with_retry(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    rng: random.Random,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    on_retry: Callable[[JudgeCallError, float], None] | None = None,
) -> CallOutcome:
    """Run ``call`` until it succeeds, fails for good, or runs out of retries.

    ``call`` raises :class:`JudgeCallError` on failure (providers translate their SDK's
    exceptions). A fatal error propagates; every other final failure is returned."""
    attempt = 0
    while True:
        try:
            value = await call()
            return CallOutcome(value=value, attempts=attempt + 1)
        except JudgeCallError as exc:
            if exc.fatal:
                raise
            limit = policy.max_retries
            if exc.retry_limit is not None:
                limit = min(limit, exc.retry_limit)
            if not exc.retryable or attempt >= limit:
                suffix = f" (after {attempt + 1} attempts)" if attempt else ""
                return CallOutcome(
                    error=exc.message + suffix, attempts=attempt + 1, final=exc.final
                )
            wait = policy.delay(attempt, exc.retry_after, rng)
            if on_retry is not None:
                on_retry(exc, wait)
            await sleep(wait)
            attempt += 1
