"""Judge calls through the providers' batch APIs, at about half the online price.

Why: a benchmark's judge calls are many, independent and not urgent, which is what the
batch APIs are priced for (OpenAI Batch API, Anthropic Message Batches: 50% off, results
within 24 hours). With ``batch = true`` the scorer hands its cache misses here instead of
asking them one by one; what comes back becomes the same cached answers, and so the same
score records, as the online path (:mod:`judges.llm.scorer` does the rest).

The flow, per scoring stage:

1. batches this run directory submitted earlier and has not collected (the ledger,
   ``judge-batches.json``, written atomically) are polled again for the calls they hold,
   so a run killed while waiting does not pay for a second batch;
2. the remaining calls are split into batches of at most ``batch_max_requests`` and
   submitted (OpenAI: one JSONL file uploaded with purpose ``batch``, then
   ``POST /v1/batches``; Anthropic: ``POST /v1/messages/batches``); each id goes into the
   ledger before anything else happens;
3. every batch is polled with backoff (``batch_poll_interval`` growing 1.5x per poll up to
   ``batch_poll_max``, for at most ``batch_timeout`` seconds), a progress bar counting the
   requests done;
4. an ended batch's results are read; each answer is handed to the scorer the moment it
   is parsed (it caches it) and the batch leaves the ledger. Requests that errored,
   expired, were cancelled or are missing from the results are failures with the reason,
   which the scorer records as retryable nulls: a re-run sends them again.

A batch not ended within ``batch_timeout`` stays in the ledger; its calls are retryable
nulls for now and the next run polls it again. The custom id of each request is the
call's cache key (64 hex digits: what both APIs accept), so results map back directly.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from tqdm import tqdm

from harness.core.artifacts import ArtifactError
from harness.core.files import write_json_atomic
from harness.core.ids import utc_now
from harness.core.rundir import RunDir, set_aside_path
from judges.llm.providers import (
    as_data,
    chat_body,
    messages_body,
    parse_anthropic_text,
    parse_chat_text,
    parse_chat_top_logprobs,
    redact,
    short,
    translate_error,
)
from judges.llm.retry import FatalJudgeError, JudgeCallError, RetryPolicy, call_with_retry

log = logging.getLogger(__name__)

T = TypeVar("T")

OPENAI_ENDPOINT = "/v1/chat/completions"
COMPLETION_WINDOW = "24h"
OPENAI_ENDED = frozenset({"completed", "expired", "failed", "cancelled"})


class BatchCall(Protocol):
    """What a batch needs of one judge call (the scorer's ``Call``)."""

    @property
    def key(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def prompt(self) -> str: ...
    @property
    def decoding(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class BatchStatus:
    """One poll's answer: whether the batch ended, the provider's word for its state, and
    how many of its requests are done."""

    ended: bool
    state: str
    done: int
    total: int
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """One request's result: the answer as the cache stores it, or an error; and the
    response body (for its token usage)."""

    answer: dict[str, Any] | None = None
    error: str | None = None
    response: Any = None


class BatchBackend(Protocol):
    """A provider's batch API, in the scorer's terms."""

    name: str
    where: str
    """The account or server the batches live on (the ledger keeps batches per place)."""

    async def submit(self, calls: Sequence[BatchCall]) -> str: ...
    async def status(self, batch_id: str) -> BatchStatus: ...
    async def results(
        self, status: BatchStatus, calls: Mapping[str, BatchCall]
    ) -> dict[str, Outcome]: ...
    async def aclose(self) -> None: ...


def parse_answer(kind: str, body: Any, parse_text: Callable[[Any], str]) -> dict[str, Any]:
    """A response body as the cache stores the answer (the online path's shape)."""
    if kind == "logprobs":
        return {"top_logprobs": parse_chat_top_logprobs(body)}
    return {"text": parse_text(body)}


def _outcome(kind: str, body: Any, parse_text: Callable[[Any], str]) -> Outcome:
    try:
        return Outcome(answer=parse_answer(kind, body, parse_text), response=body)
    except JudgeCallError as exc:
        return Outcome(error=exc.message, response=body)


class _SDKBatches:
    def __init__(
        self,
        *,
        model: str,
        api_key: str,
        base_url: str,
        timeout: float,
        extra_body: Mapping[str, Any],
    ):
        self.model = model
        self.where = f"{self.name} {base_url}"
        self._secrets = (api_key,)
        self._extra = dict(extra_body)
        self._client = self._make_client(api_key, base_url, timeout)

    name = ""

    def _make_client(self, api_key: str, base_url: str, timeout: float) -> Any:
        raise NotImplementedError

    async def _sdk(self, op: Awaitable[T]) -> T:
        try:
            return await op
        except Exception as exc:
            raise translate_error(exc, self._secrets) from None

    async def aclose(self) -> None:
        await self._client.close()


class OpenAIBatches(_SDKBatches):
    """OpenAI's Batch API: a JSONL file of chat-completion requests, ``/v1/batches``."""

    name = "openai"

    def _make_client(self, api_key: str, base_url: str, timeout: float) -> Any:
        import openai

        return openai.AsyncOpenAI(
            api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout
        )

    def body(self, call: BatchCall) -> dict[str, Any]:
        """The request body the online provider sends for this call."""
        body = chat_body(self.model, call.prompt, call.decoding, call.kind == "logprobs")
        return body | self._extra

    async def submit(self, calls: Sequence[BatchCall]) -> str:
        lines = [
            json.dumps(
                {
                    "custom_id": c.key,
                    "method": "POST",
                    "url": OPENAI_ENDPOINT,
                    "body": self.body(c),
                },
                ensure_ascii=False,
            )
            for c in calls
        ]
        data = ("\n".join(lines) + "\n").encode("utf-8")
        uploaded = await self._sdk(
            self._client.files.create(
                file=("steer-harness-judge.jsonl", data, "application/jsonl"), purpose="batch"
            )
        )
        batch = await self._sdk(
            self._client.batches.create(
                input_file_id=uploaded.id,
                endpoint=OPENAI_ENDPOINT,
                completion_window=COMPLETION_WINDOW,
                metadata={"source": "steer-harness judge"},
            )
        )
        return str(batch.id)

    async def status(self, batch_id: str) -> BatchStatus:
        raw = as_data(await self._sdk(self._client.batches.retrieve(batch_id)))
        if not isinstance(raw, dict) or "status" not in raw:
            raise JudgeCallError(f"malformed batch status for {batch_id}")
        counts = raw.get("request_counts") or {}
        done = int(counts.get("completed", 0)) + int(counts.get("failed", 0))
        state = str(raw["status"])
        return BatchStatus(state in OPENAI_ENDED, state, done, int(counts.get("total", 0)), raw)

    async def _lines(self, file_id: str | None) -> list[dict[str, Any]]:
        if not file_id:
            return []
        content = await self._sdk(self._client.files.content(file_id))
        out = []
        for line in content.text.splitlines():
            if line.strip():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if isinstance(rec, dict) and isinstance(rec.get("custom_id"), str):
                    out.append(rec)
        return out

    async def results(
        self, status: BatchStatus, calls: Mapping[str, BatchCall]
    ) -> dict[str, Outcome]:
        raw = status.raw
        out: dict[str, Outcome] = {}
        lines = await self._lines(raw.get("output_file_id"))
        lines += await self._lines(raw.get("error_file_id"))
        for rec in lines:
            key = rec["custom_id"]
            call = calls.get(key)
            if call is None:
                continue
            got = rec.get("response")
            response: dict[str, Any] = got if isinstance(got, dict) else {}
            code = response.get("status_code")
            body = response.get("body")
            if code == 200 and rec.get("error") is None:
                out[key] = _outcome(call.kind, body, parse_chat_text)
                continue
            error = rec.get("error") if isinstance(rec.get("error"), dict) else None
            if error is None and isinstance(body, dict) and isinstance(body.get("error"), dict):
                error = body["error"]
            message = short(str((error or {}).get("message") or "no detail"))
            label = f"HTTP {code}" if isinstance(code, int) else str((error or {}).get("code"))
            out[key] = Outcome(
                error=redact(f"batch request failed ({label}): {message}", self._secrets)
            )
        if status.state == "failed":
            errs = ((raw.get("errors") or {}).get("data")) or []
            detail = "; ".join(short(str(e.get("message", e)), 120) for e in errs[:2])
            for key in calls:
                out.setdefault(key, Outcome(error=f"batch failed: {detail or 'no detail'}"))
        return out


class AnthropicBatches(_SDKBatches):
    """Anthropic's Message Batches: ``POST /v1/messages/batches`` and its results JSONL."""

    name = "anthropic"

    def _make_client(self, api_key: str, base_url: str, timeout: float) -> Any:
        import anthropic

        return anthropic.AsyncAnthropic(
            api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout
        )

    def params(self, call: BatchCall) -> dict[str, Any]:
        """The Messages API parameters the online provider sends for this call."""
        return messages_body(self.model, call.prompt, call.decoding, self._extra)

    async def submit(self, calls: Sequence[BatchCall]) -> str:
        if any(c.kind == "logprobs" for c in calls):
            raise JudgeCallError("the Anthropic API gives no logprobs; use mode = 'sample'")
        requests = [{"custom_id": c.key, "params": self.params(c)} for c in calls]
        batch = await self._sdk(self._client.messages.batches.create(requests=requests))
        return str(batch.id)

    async def status(self, batch_id: str) -> BatchStatus:
        raw = as_data(await self._sdk(self._client.messages.batches.retrieve(batch_id)))
        if not isinstance(raw, dict) or "processing_status" not in raw:
            raise JudgeCallError(f"malformed batch status for {batch_id}")
        counts = {k: int(v) for k, v in (raw.get("request_counts") or {}).items()}
        total = sum(counts.values())
        state = str(raw["processing_status"])
        return BatchStatus(state == "ended", state, total - counts.get("processing", 0), total, raw)

    async def results(
        self, status: BatchStatus, calls: Mapping[str, BatchCall]
    ) -> dict[str, Outcome]:
        out: dict[str, Outcome] = {}
        stream = await self._sdk(self._client.messages.batches.results(str(status.raw["id"])))
        async for entry in stream:
            rec = as_data(entry)
            key = rec.get("custom_id") if isinstance(rec, dict) else None
            call = calls.get(key) if isinstance(key, str) else None
            if call is None or not isinstance(key, str):
                continue
            result = rec.get("result") or {}
            kind = result.get("type")
            if kind == "succeeded":
                out[key] = _outcome(call.kind, result.get("message"), parse_anthropic_text)
            elif kind == "errored":
                err = (result.get("error") or {}).get("error") or result.get("error") or {}
                message = short(str(err.get("message") or "no detail"))
                out[key] = Outcome(
                    error=redact(
                        f"batch request errored ({err.get('type')}): {message}", self._secrets
                    )
                )
            else:  # expired, canceled
                out[key] = Outcome(error=f"batch request {kind} before it was processed")
        return out


# ---- the ledger -------------------------------------------------------------------------


class BatchLedger:
    """Batches submitted from a run directory and not yet collected (``judge-batches.json``).

    Written atomically after each submission and each collection, so a kill at any point
    leaves either the batch's id or its answers (in the cache) behind, never neither.
    Without a run directory (validation, tests) it lives in memory only."""

    def __init__(self, path: Path | None):
        self.path = path
        self.batches: dict[str, dict[str, Any]] = {}
        if path is not None and path.exists():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                if not isinstance(data, dict) or not isinstance(data.get("batches"), dict):
                    raise ValueError("not a ledger of batches")
                self.batches = data["batches"]
            except (OSError, ValueError) as exc:
                aside = set_aside_path(path)
                path.replace(aside)
                log.warning(
                    "%s",
                    ArtifactError(
                        path,
                        str(exc),
                        f"kept it as {aside.name}; its batches "
                        "are not polled again (their calls are sent anew)",
                    ),
                )

    def pending(self, where: str) -> dict[str, list[str]]:
        """Batch id -> call keys, of the batches kept for this provider and place."""
        mine = {bid: b for bid, b in self.batches.items() if b.get("where") == where}
        return {bid: list(b.get("keys", [])) for bid, b in mine.items()}

    def add(self, batch_id: str, where: str, model: str, keys: Sequence[str]) -> None:
        self.batches[batch_id] = {
            "where": where,
            "model": model,
            "submitted": utc_now(),
            "keys": list(keys),
        }
        self._save()

    def remove(self, batch_id: str) -> None:
        if self.batches.pop(batch_id, None) is not None:
            self._save()

    def _save(self) -> None:
        if self.path is not None:
            write_json_atomic(self.path, {"batches": self.batches})


# ---- the runner -------------------------------------------------------------------------


@dataclass(frozen=True)
class PollPolicy:
    """How often and how long to wait for a batch: the interval grows by ``factor`` per
    poll up to ``max_interval``; after ``timeout`` seconds the run stops waiting."""

    interval: float = 30.0
    max_interval: float = 600.0
    timeout: float = 25 * 3600.0
    factor: float = 1.5


@dataclass
class BatchCounts:
    """What a batch round did (for the log and the tests)."""

    submitted: int = 0
    """Batches submitted now."""
    resumed: int = 0
    """Batches of an earlier run polled again."""
    requests: int = 0
    """Requests submitted now."""


@dataclass
class _Job:
    batch_id: str
    calls: dict[str, BatchCall]
    done: int = 0


Answer = Callable[[str, dict[str, Any], Any], None]
"""``on_answer(key, answer, response_body)``: the scorer caches and counts it."""


class BatchRunner:
    """Sends calls through one backend, tracking them in a ledger; see the module doc."""

    def __init__(
        self,
        backend: BatchBackend,
        ledger: BatchLedger,
        *,
        model: str,
        max_requests: int,
        poll: PollPolicy,
        retry: RetryPolicy,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
        self.backend = backend
        self.ledger = ledger
        self.model = model
        self.max_requests = max_requests
        self.poll = poll
        self.retry = retry
        self.rng = rng or random.Random()
        self.sleep = sleep
        self.counts = BatchCounts()

    async def _retrying(self, op: Callable[[], Awaitable[T]]) -> T:
        """``op`` with the judge's retry policy; a final failure raises JudgeCallError."""
        outcome = await call_with_retry(op, self.retry, self.rng, sleep=self.sleep)
        if outcome.error is not None:
            raise JudgeCallError(outcome.error)
        return outcome.value

    async def run(
        self, calls: Sequence[BatchCall], on_answer: Answer, errors: dict[str, str]
    ) -> BatchCounts:
        todo: dict[str, BatchCall] = {c.key: c for c in calls}
        jobs: list[_Job] = []
        for batch_id, keys in self.ledger.pending(self.backend.where).items():
            held = {k: todo.pop(k) for k in keys if k in todo}
            if held:
                jobs.append(_Job(batch_id, held))
                self.counts.resumed += 1
                log.info("judge batch %s: submitted earlier, polled again", batch_id)
        bar = tqdm(total=len(calls), desc=f"judge batch:{self.backend.name}", unit="req")
        try:
            rest = list(todo.values())
            for start in range(0, len(rest), self.max_requests):
                chunk = rest[start : start + self.max_requests]
                job = await self._submit(chunk, errors)
                if job is not None:
                    jobs.append(job)
            async with asyncio.TaskGroup() as group:
                for job in jobs:
                    group.create_task(self._follow(job, jobs, bar, on_answer, errors))
        except BaseExceptionGroup as eg:
            fatal = [e for e in eg.exceptions if isinstance(e, FatalJudgeError)]
            raise (fatal[0] if fatal else eg.exceptions[0]) from None
        finally:
            bar.close()
        return self.counts

    async def _submit(self, chunk: Sequence[BatchCall], errors: dict[str, str]) -> _Job | None:
        try:
            batch_id = await self._retrying(lambda: self.backend.submit(chunk))
        except JudgeCallError as exc:
            if exc.fatal:
                raise FatalJudgeError(
                    f"judge {self.backend.name}:{self.model}",
                    f"batch submission refused: {exc.message}; check the model name, base_url "
                    "and the key (answers received so far are cached)",
                ) from None
            for c in chunk:
                errors[c.key] = f"batch submission failed: {exc.message}"
            return None
        self.ledger.add(batch_id, self.backend.where, self.model, [c.key for c in chunk])
        self.counts.submitted += 1
        self.counts.requests += len(chunk)
        log.info("judge batch %s: %d requests submitted", batch_id, len(chunk))
        return _Job(batch_id, {c.key: c for c in chunk})

    async def _follow(
        self,
        job: _Job,
        jobs: list[_Job],
        bar: tqdm[Any],
        on_answer: Answer,
        errors: dict[str, str],
    ) -> None:
        started = time.monotonic()
        interval = self.poll.interval
        while True:
            try:
                status = await self._retrying(lambda: self.backend.status(job.batch_id))
            except JudgeCallError as exc:
                if exc.status == 404:  # the provider no longer has it: send its calls anew
                    log.warning(
                        "judge batch %s: unknown to the provider, resubmitted", job.batch_id
                    )
                    self.ledger.remove(job.batch_id)
                    fresh = await self._submit(list(job.calls.values()), errors)
                    if fresh is None:
                        return
                    job.batch_id, started = fresh.batch_id, time.monotonic()
                    continue
                if exc.fatal:
                    raise FatalJudgeError(
                        f"judge {self.backend.name}:{self.model}",
                        f"polling batch {job.batch_id} refused: {exc.message}",
                    ) from None
                self._give_up(job, f"could not poll batch {job.batch_id}: {exc.message}", errors)
                return
            job.done = min(status.done, len(job.calls)) if status.total else job.done
            bar.n = min(sum(j.done for j in jobs), bar.total)
            bar.refresh()
            if status.ended:
                break
            if time.monotonic() - started + interval > self.poll.timeout:
                self._give_up(
                    job,
                    f"batch {job.batch_id} still {status.state} after {self.poll.timeout:g}s "
                    "(batch_timeout)",
                    errors,
                )
                return
            await self.sleep(interval)
            interval = min(interval * self.poll.factor, self.poll.max_interval)
        try:
            outcomes = await self._retrying(lambda: self.backend.results(status, job.calls))
        except JudgeCallError as exc:
            if exc.fatal and exc.status != 404:
                raise FatalJudgeError(
                    f"judge {self.backend.name}:{self.model}",
                    f"reading batch {job.batch_id}'s results refused: {exc.message}",
                ) from None
            self._give_up(job, f"could not read batch {job.batch_id}: {exc.message}", errors)
            return
        for key in job.calls:
            o = outcomes.get(key)
            if o is None:
                errors[key] = f"batch {job.batch_id} ({status.state}): no result for this request"
            elif o.answer is not None:
                on_answer(key, o.answer, o.response)
            else:
                errors[key] = o.error or "batch request failed"
        job.done = len(job.calls)
        bar.n = min(sum(j.done for j in jobs), bar.total)
        bar.refresh()
        self.ledger.remove(job.batch_id)
        log.info("judge batch %s: %s, results read", job.batch_id, status.state)

    def _give_up(self, job: _Job, why: str, errors: dict[str, str]) -> None:
        """Stop waiting for a batch this run: its calls are retryable nulls, and its id
        stays in the ledger so that the next run polls it again."""
        where = self.ledger.path or "memory"
        log.warning("%s; its id is kept in %s and polled again by the next run", why, where)
        for key in job.calls:
            errors[key] = f"{why}; re-run to poll it again"


DEFAULT_URLS = {"openai": "https://api.openai.com/v1", "anthropic": "https://api.anthropic.com"}


def make_runner(
    provider: str,
    *,
    model: str,
    api_key: str,
    base_url: str | None,
    timeout: float,
    extra_body: Mapping[str, Any],
    run_dir: Path | None,
    max_requests: int,
    poll: PollPolicy,
    retry: RetryPolicy,
) -> BatchRunner:
    """A runner for the judge's provider, its ledger in the run directory (if any)."""
    kinds: dict[str, Any] = {"openai": OpenAIBatches, "anthropic": AnthropicBatches}
    if provider not in kinds:
        raise FatalJudgeError(
            f"judge {provider}:{model}", "params.batch: only providers openai and anthropic"
        )
    try:
        backend = kinds[provider](
            model=model,
            api_key=api_key,
            base_url=base_url or DEFAULT_URLS[provider],
            timeout=timeout,
            extra_body=extra_body,
        )
    except ImportError as exc:
        raise FatalJudgeError(
            f"judge {provider}:{model}",
            f"provider '{provider}' needs its SDK ({exc.name}): "
            "pip install 'steer-harness[judges]'",
        ) from None
    ledger = BatchLedger(RunDir(run_dir).judge_batches if run_dir is not None else None)
    return BatchRunner(
        backend, ledger, model=model, max_requests=max_requests, poll=poll, retry=retry
    )
