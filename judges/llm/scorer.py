"""The ``judge`` scorer: LLM-judged trait intensity and coherence, 0-100, per text.

Why a judge: lexicon counts miss most of what steering changes; an LLM judge reads the
text. Why two rubrics: a trait judge alone rewards "steering" that merely breaks the text
(a looping "afraid afraid afraid" is very fearful), so every text also gets a coherence
score and the analysis reports the trait effect among coherent texts
(:mod:`harness.analysis.coherence`).

One scoring call of a batch:

1. every (text, metric) is rendered through its rubric (:mod:`judges.llm.rubric`) into one
   judge prompt (sample mode: ``samples`` calls with sample index 0..n-1);
2. each call is looked up in the cache (:mod:`judges.llm.cache`); only misses reach the
   judge, identical calls in a batch are asked once;
3. misses run concurrently, at most ``max_concurrency`` in flight, each with retries
   (:mod:`judges.llm.retry`); an answer is cached the moment it arrives;
4. answers become scores (:mod:`judges.llm.aggregation`); a call that failed for good is
   a null with the error as reason, never a 0.

A call that failed for good (retries exhausted on 429, 5xx or timeouts) gives a null that
is marked retryable (:meth:`ScoreResult.failed`): the run goes on, and re-running it asks
those calls again, while everything answered comes from the cache. A malformed answer (not
JSON, no logprobs) is retried once and then a final null with the reason: asking the same
server again in every later run would not change it. Credential, model and
URL errors (HTTP 401/403/404, a missing key, a local model that cannot be loaded) stop
scoring with a configuration error instead, since every call would fail; what was
answered before is cached. ``fail_fast = N`` (off by default) also stops scoring when the
first N calls all fail, for users who prefer to stop early on a judge that does not work.

Metric names are the trait names and ``coherence``, so judges and other scorers measuring
the same trait can be compared by name. Every record's ``extra`` holds the judge
(``provider:model``), the template's SHA-256, ``scale = "0-100"`` (so agreement analyses
may compare values across judges) and, in logprob mode, the number mass and the raw top
logprobs (sample mode: the parsed samples and their spread).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from harness.config.spec import ChatTemplate, DType
from harness.core import secrets
from harness.core.scoring import ScorerContext, ScoreResult, ScorerParams, ScoringItem
from judges.llm.aggregation import expected_score, summarize_samples
from judges.llm.cache import JudgeCache, NullCache, cache_key, default_cache_path
from judges.llm.cost import JudgeUsage, Price, estimate_calls_cost, judge_price
from judges.llm.providers import AnthropicProvider, OpenAIProvider, Provider, redact
from judges.llm.retry import (
    FatalJudgeError,
    JudgeCallError,
    RetryPolicy,
    call_with_retry,
)
from judges.llm.rubric import Rubric, RubricError, builtin_definitions, load_rubric

log = logging.getLogger(__name__)

COHERENCE = "coherence"
TRAIT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
DEFAULT_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
BATCH_MODE_TEXTS = 10**9
CHARS_PER_TOKEN = 4
QUESTION_TOKENS = 30
LOCAL_PLACEHOLDER_KEY = "EMPTY"
"""Sent when base_url points at a server and no key is set: vLLM, llama.cpp and ollama
accept any key, and the OpenAI SDK refuses to start without one."""


class JudgeParams(ScorerParams):
    """Parameters of the ``judge`` scorer (``[scorers.params]`` in a spec)."""

    provider: Literal["openai", "anthropic", "hf"] = Field(
        "openai",
        description="openai: any OpenAI-compatible chat API (OpenAI, vLLM, llama.cpp, "
        "ollama); anthropic: the Messages API; hf: a local causal LM.",
    )
    model: str = Field(description="Judge model name, or for hf a hub id, path or alias.")
    base_url: str | None = Field(None, description="API base URL, e.g. http://host:8000/v1.")
    api_key_env: str | None = Field(
        None,
        description="Name of the environment variable holding the key (default "
        "OPENAI_API_KEY / ANTHROPIC_API_KEY). The key itself never goes in a spec.",
    )
    mode: Literal["auto", "logprobs", "sample"] = Field(
        "auto", description="auto: logprobs for openai and hf, sample for anthropic."
    )
    traits: list[str] = Field(default_factory=list, description="Trait names = metric names.")
    definitions: dict[str, str] = Field(
        default_factory=dict, description="Trait definitions; shipped ones are defaults."
    )
    coherence: bool = Field(True, description="Also score coherence (metric 'coherence').")
    trait_template: str = Field("trait", description="'trait' (built-in) or a file path.")
    coherence_template: str = Field(
        "coherence", description="'coherence' (built-in) or a file path."
    )
    min_number_mass: float = Field(0.25, ge=0, le=1, description="Below it: null.")
    top_logprobs: int = Field(20, ge=1, le=20)
    samples: int = Field(5, ge=1, description="Sample mode: answers drawn per text.")
    sample_temperature: float | None = Field(
        None, ge=0, description="Sample mode; None: the provider's default (1.0)."
    )
    sample_max_tokens: int = Field(8, ge=1)
    extra_body: dict[str, Any] = Field(
        default_factory=dict, description="Extra JSON fields sent with every request."
    )
    max_response_chars: int = Field(4000, gt=0, description="Longer responses are truncated.")
    max_question_chars: int = Field(2000, gt=0)
    max_concurrency: int = Field(16, ge=1, description="Judge calls in flight at most.")
    max_retries: int = Field(6, ge=0)
    backoff_base: float = Field(1.0, ge=0, description="Seconds; doubles per retry.")
    backoff_max: float = Field(60.0, ge=0, description="Longest wait, Retry-After included.")
    timeout: float = Field(60.0, gt=0, description="Seconds per request.")
    cache: bool = Field(True, description="false: ask the judge every time.")
    cache_path: str | None = Field(
        None,
        description="SQLite file; default $STEER_HARNESS_JUDGE_CACHE or "
        "~/.cache/steer-harness/judge.sqlite.",
    )
    fail_fast: int = Field(
        0,
        ge=0,
        description="Stop scoring when this many calls have failed for good and none has "
        "succeeded yet (the judge does not work at all); 0: never stop.",
    )
    batch_size: int = Field(
        256, ge=1, description="Texts per scoring batch (batch = true: all pending at once)."
    )
    batch: bool = Field(
        False,
        description="openai/anthropic: send cache misses through the provider's batch API "
        "(about half price, results within 24 h) instead of one request each.",
    )
    batch_max_requests: int = Field(20000, ge=1, description="Requests per submitted batch.")
    batch_poll_interval: float = Field(
        30.0, gt=0, description="Seconds before the first poll; grows 1.5x per poll."
    )
    batch_poll_max: float = Field(600.0, gt=0, description="Longest wait between polls.")
    batch_timeout: float = Field(
        90000.0,
        gt=0,
        description="Seconds to wait for a batch; after it the calls are retryable nulls "
        "and the next run polls the same batch again.",
    )
    price: Price | None = Field(
        None,
        description="$ per million tokens {input, output, batch_input, batch_output}; "
        "default: the shipped table (prompts/judges/prices.toml).",
    )
    device: str = Field("auto", description="hf: auto, cpu, cuda, cuda:N, mps.")
    dtype: DType = "auto"
    revision: str | None = None
    chat_template: ChatTemplate = "auto"
    trust_remote_code: bool = False
    hf_batch_size: int = Field(101, ge=1, description="hf: candidate sequences per forward.")

    NOT_IN_KEY = frozenset(
        {
            "api_key_env",
            "max_concurrency",
            "max_retries",
            "backoff_base",
            "backoff_max",
            "timeout",
            "cache",
            "cache_path",
            "fail_fast",
            "batch_size",
            "hf_batch_size",
            "batch",
            "batch_max_requests",
            "batch_poll_interval",
            "batch_poll_max",
            "batch_timeout",
            "price",
        }
    )
    """How the judge is asked (online or by batch, what it costs), never what it answers:
    changing these re-scores nothing."""

    def key_data(self, base_dir: Path) -> dict[str, Any]:
        """The fields that change a score, plus what they point at: each template's
        SHA-256 (an edited template file re-scores) and the definitions in force
        (shipped ones included)."""
        data = super().key_data(base_dir)
        with contextlib.suppress(RubricError):  # reported by check(); no key is used then
            rubrics = _load_rubrics(self, base_dir)
            data["template_sha256"] = {k: r.sha256 for k, r in rubrics.items()}
        data["definitions_in_force"] = _definitions(self)
        return data

    @model_validator(mode="after")
    def _some_metric(self) -> JudgeParams:
        if not self.traits and not self.coherence:
            raise ValueError("give at least one trait in `traits` or set coherence = true")
        return self

    @property
    def resolved_mode(self) -> Literal["logprobs", "sample"]:
        if self.mode != "auto":
            return self.mode
        return "sample" if self.provider == "anthropic" else "logprobs"


@dataclass(frozen=True)
class Call:
    """One request to the judge (cached under ``key``)."""

    key: str
    kind: Literal["logprobs", "sample"]
    prompt: str
    decoding: dict[str, Any]


@dataclass
class Task:
    """One (text, metric): its calls and what its record will say."""

    metric: str
    template_sha256: str
    truncated: bool
    calls: list[Call] = field(default_factory=list)


@dataclass
class JudgeStats:
    """Counts for the log and the benchmark script (not written to records)."""

    requested: int = 0
    """Calls a batch needed (after merging identical ones)."""
    cache_hits: int = 0
    attempts: int = 0
    """Requests sent to the judge, retries included."""
    retries: int = 0
    failures: int = 0
    answered: int = 0
    """Calls answered by the judge in this scoring stage (cache hits included)."""


def _load_rubrics(params: JudgeParams, base_dir: Path) -> dict[str, Rubric]:
    out: dict[str, Rubric] = {}
    if params.traits:
        out["trait"] = load_rubric("trait", params.trait_template, base_dir)
    if params.coherence:
        out[COHERENCE] = load_rubric(COHERENCE, params.coherence_template, base_dir)
    return out


def _definitions(params: JudgeParams) -> dict[str, str]:
    shipped = builtin_definitions()
    return {t: params.definitions.get(t) or shipped.get(t, "") for t in params.traits}


@dataclass
class _InFlight:
    """Shared by the batches a judge scores at once on one event loop."""

    gate: asyncio.Semaphore
    """At most ``max_concurrency`` calls in flight, whichever batch they are for."""
    asked: dict[str, asyncio.Future[tuple[bool, Any]]] = field(default_factory=dict)
    """Call key -> (answered, answer or error) of the calls being asked: a second batch
    with the same call (the same text and prompt) waits for that answer instead of asking
    again, as it would have found it in the cache had the batches run one after another."""


class JudgeScorer:
    """LLM judge: trait intensity and coherence 0-100 (logprob expectation or samples)."""

    Params = JudgeParams
    concurrent_batches = True
    """Several batches may be scored at once on one loop: ``max_concurrency`` holds across
    them (one gate per event loop), so the overlapped consumer keeps the limit's calls in
    flight while texts arrive instead of waiting for each batch's slowest call."""

    def __init__(self, params: JudgeParams, context: ScorerContext):
        self.params = params
        self.rubrics = _load_rubrics(params, context.base_dir)
        self.definitions = _definitions(params)
        self.mode = params.resolved_mode
        self.batch_size = params.batch_size
        if params.batch and "batch_size" not in params.model_fields_set:
            self.batch_size = BATCH_MODE_TEXTS  # one round of batches, not one per 256 texts
        self.run_dir = context.run_dir
        self.usage = JudgeUsage()
        self.policy = RetryPolicy(params.max_retries, params.backoff_base, params.backoff_max)
        self.stats = JudgeStats()
        self._rng = random.Random()
        self._final_errors: set[str] = set()
        """Keys of calls that failed in a way a re-run will not fix (malformed bodies)."""
        self._hf: Provider | None = None  # kept across batches: loading a model is slow
        self._shared: tuple[asyncio.AbstractEventLoop, _InFlight] | None = None
        self.model_workers = context.model_workers
        """Where the ``hf`` model computes (the Ray engine's actors); None: here."""
        if params.provider != "hf":
            # Its value is scrubbed from every error text, record, manifest and log line.
            secrets.register_variable(params.api_key_env or DEFAULT_KEY_ENV[params.provider])
            secrets.install_log_scrubber()
        if params.cache:
            path = Path(params.cache_path).expanduser() if params.cache_path else None
            if path is not None and not path.is_absolute():
                path = context.base_dir / path
            self.cache: JudgeCache | NullCache = JudgeCache(path or default_cache_path())
        else:
            self.cache = NullCache()

    # ---- validation -------------------------------------------------------------------

    @classmethod
    def uses_device(cls, params: JudgeParams) -> bool:
        """A remote judge runs alongside generation; the local ``hf`` one loads a model. A
        batch-API judge also waits until generation is done, so that its texts go out as one
        job (the cheaper and faster path) rather than one small job per generated batch."""
        return params.provider == "hf" or params.batch

    @classmethod
    def check(cls, params: JudgeParams, base_dir: Path) -> list[str]:
        """Problems found without calling the judge: templates, traits, definitions, mode."""
        problems: list[str] = []
        templates = [("trait", params.trait_template, bool(params.traits))]
        templates.append((COHERENCE, params.coherence_template, params.coherence))
        for kind, value, used in templates:
            try:
                if used:
                    load_rubric(kind, value, base_dir)
            except RubricError as exc:
                problems.append(f"params.{kind}_template: {exc}")
        shipped = builtin_definitions()
        for i, trait in enumerate(params.traits):
            if not TRAIT_RE.fullmatch(trait):
                problems.append(f"params.traits[{i}]: '{trait}' is not a valid metric name")
            elif trait == COHERENCE:
                problems.append(
                    f"params.traits[{i}]: 'coherence' is the coherence metric; use coherence = true"
                )
            elif not (params.definitions.get(trait) or shipped.get(trait)):
                problems.append(
                    f"params.definitions: no definition for trait '{trait}'; add "
                    f'definitions = {{ {trait} = "..." }} (shipped: {", ".join(sorted(shipped))})'
                )
        if len(set(params.traits)) != len(params.traits):
            problems.append("params.traits: trait names must be unique")
        unused = sorted(set(params.definitions) - set(params.traits))
        if unused:
            problems.append(f"params.definitions: definitions for traits not listed: {unused}")
        if params.provider == "anthropic" and params.mode == "logprobs":
            problems.append("params.mode: the Anthropic API gives no logprobs; use 'sample'")
        if params.provider == "hf" and (params.base_url or params.api_key_env):
            problems.append("params.base_url/api_key_env: not used by provider 'hf'")
        if params.provider == "hf" and params.batch:
            problems.append("params.batch: batch APIs are for provider 'openai' or 'anthropic'")
        return problems

    @classmethod
    def estimate(
        cls,
        params: JudgeParams,
        base_dir: Path,
        n_texts: int,
        response_tokens: int,
        measured: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """What judging ``n_texts`` texts will cost before any call: calls x typical tokens.

        Typical tokens are those measured by earlier sessions of this judge (``measured``:
        its manifest usage) when there are any, else the rubric's length at ~4 characters
        per token plus ``response_tokens`` and a short question, and one output token
        (logprobs) or ``sample_max_tokens`` (samples, an upper bound). The cache is not
        consulted: calls it holds cost nothing, so this is the most a run can cost."""
        rubrics = _load_rubrics(params, base_dir)
        metrics = len(params.traits) + int(params.coherence)
        per_text = 1 if params.resolved_mode == "logprobs" else params.samples
        calls = n_texts * metrics * per_text
        done = (measured or {}).get("calls") or 0
        if done:
            tin = measured["input_tokens"] / done  # type: ignore[index]
            tout = measured["output_tokens"] / done  # type: ignore[index]
            basis = f"measured over {done} calls"
        else:
            chars = sum(len(r.text) for r in rubrics.values()) / max(1, len(rubrics))
            tin = chars / CHARS_PER_TOKEN + QUESTION_TOKENS + response_tokens
            tout = 1.0 if params.resolved_mode == "logprobs" else float(params.sample_max_tokens)
            basis = f"~{CHARS_PER_TOKEN} characters per token"
        price, source = judge_price(params.provider, params.model, params.price)
        return {
            "judge": f"{params.provider}:{params.model}",
            "calls": calls,
            "input_tokens_per_call": tin,
            "output_tokens_per_call": tout,
            "basis": basis,
            "batch": params.batch,
            "cost_online_usd": estimate_calls_cost(calls, tin, tout, price, batch=False),
            "cost_batch_usd": estimate_calls_cost(calls, tin, tout, price, batch=True),
            "price_source": source,
        }

    # ---- protocol -----------------------------------------------------------------------

    @classmethod
    def metric_names(cls, params: JudgeParams, base_dir: Path) -> list[str]:
        """The metrics these params give: one per trait, and coherence when asked for
        (what ``check`` compares a search's trait and guards with)."""
        return [*params.traits, *([COHERENCE] if params.coherence else [])]

    @property
    def metrics(self) -> list[str]:
        return type(self).metric_names(self.params, Path("."))

    @property
    def judge_name(self) -> str:
        return f"{self.params.provider}:{self.params.model}"

    def describe(self) -> dict[str, Any]:
        """What the manifest records: never the key, only the variable's name."""
        p = self.params
        out: dict[str, Any] = {
            "judge": self.judge_name,
            "mode": self.mode,
            "templates": {
                name: {"source": r.source, "sha256": r.sha256} for name, r in self.rubrics.items()
            },
            "definitions": self.definitions,
            "cache": str(self.cache.path) if self.cache.path else None,
        }
        if p.provider != "hf":
            out["base_url"] = p.base_url
            out["api_key_env"] = p.api_key_env or DEFAULT_KEY_ENV[p.provider]
        if p.batch:
            out["batch"] = True
        if self.mode == "logprobs":
            out["min_number_mass"] = p.min_number_mass
        else:
            out["samples"] = p.samples
        return out

    async def ascore(self, items: Sequence[ScoringItem]) -> list[dict[str, ScoreResult]]:
        provider_identity = self._identity()
        tasks = [[self._task(item, m, provider_identity) for m in self.metrics] for item in items]
        unique: dict[str, Call] = {}
        for row in tasks:
            for task in row:
                for call in task.calls:
                    unique.setdefault(call.key, call)
        answers: dict[str, Any] = {}
        errors: dict[str, str] = {}
        misses = []
        for key, call in unique.items():
            hit = self.cache.get(key)
            if hit is None:
                misses.append(call)
            else:
                answers[key] = hit
        self.stats.requested += len(unique)
        self.stats.cache_hits += len(unique) - len(misses)
        self.stats.answered += len(unique) - len(misses)
        if misses:
            ask = self._ask_batched if self.params.batch else self._ask_all
            await ask(misses, answers, errors)
        return [{t.metric: self._result(t, answers, errors) for t in row} for row in tasks]

    def close(self) -> None:
        s = self.stats
        log.info(
            "judge %s: %d calls needed, %d from the cache, %d requests sent (%d retries), "
            "%d failed",
            self.judge_name,
            s.requested,
            s.cache_hits,
            s.attempts,
            s.retries,
            s.failures,
        )
        self.cache.close()

    # ---- building calls -------------------------------------------------------------------

    def _identity(self) -> dict[str, Any]:
        p = self.params
        if p.provider == "hf":
            return self._hf_provider().identity
        default = (OpenAIProvider if p.provider == "openai" else AnthropicProvider).default_base_url
        return {"provider": p.provider, "base_url": p.base_url or default}

    def _decoding(self, sample_index: int | None) -> dict[str, Any]:
        p = self.params
        d: dict[str, Any]
        if sample_index is None:
            d = {"max_tokens": 1, "temperature": 0.0, "top_logprobs": p.top_logprobs}
        else:
            d = {
                "max_tokens": p.sample_max_tokens,
                "temperature": p.sample_temperature,
                "sample": sample_index,
            }
        if p.extra_body:
            d["extra_body"] = p.extra_body
        return d

    def _task(self, item: ScoringItem, metric: str, identity: dict[str, Any]) -> Task:
        p = self.params
        rubric = self.rubrics[COHERENCE if metric == COHERENCE else "trait"]
        prompt, truncated = rubric.render(
            question=item.prompt,
            response=item.text,
            trait=metric,
            definition=self.definitions.get(metric, ""),
            max_response_chars=p.max_response_chars,
            max_question_chars=p.max_question_chars,
        )
        task = Task(metric, rubric.sha256, truncated)
        indices: list[int | None] = [None] if self.mode == "logprobs" else list(range(p.samples))
        for i in indices:
            decoding = self._decoding(i)
            key = cache_key(identity, p.model, rubric.sha256, prompt, decoding)
            kind: Literal["logprobs", "sample"] = "logprobs" if i is None else "sample"
            task.calls.append(Call(key, kind, prompt, decoding))
        return task

    # ---- asking -------------------------------------------------------------------------

    def _hf_provider(self) -> Provider:
        if self._hf is None:
            p = self.params
            kwargs: dict[str, Any] = {
                "model": p.model,
                "revision": p.revision,
                "device": p.device,
                "dtype": p.dtype,
                "chat_template": p.chat_template,
                "trust_remote_code": p.trust_remote_code,
                "batch_size": p.hf_batch_size,
            }
            # Imported here: it brings torch, which a remote judge (the overlapped
            # scoring process) does without.
            from judges.llm.hf import HFProvider, OffloadedHFProvider

            workers = self.model_workers
            self._hf = (
                HFProvider(**kwargs) if workers is None else OffloadedHFProvider(workers, **kwargs)
            )
        return self._hf

    def _api_key(self) -> str:
        """The key from the environment (never from the spec)."""
        p = self.params
        env = p.api_key_env or DEFAULT_KEY_ENV[p.provider]
        key = os.environ.get(env, "")
        if not key:
            if p.base_url is None:
                raise FatalJudgeError(
                    f"judge {self.judge_name}",
                    f"params.api_key_env: the environment variable {env} is not set; export "
                    "the API key there (keys are read from the environment only)",
                )
            key = LOCAL_PLACEHOLDER_KEY
        return key

    def _remote_provider(self) -> Provider:
        """A client bound to the running event loop (each batch runs in its own loop)."""
        p = self.params
        kwargs: dict[str, Any] = {
            "model": p.model,
            "api_key": self._api_key(),
            "base_url": p.base_url,
            "timeout": p.timeout,
            "extra_body": p.extra_body,
        }
        try:
            if p.provider == "openai":
                from judges.llm.providers import OpenAIProvider

                return OpenAIProvider(**kwargs)
            from judges.llm.providers import AnthropicProvider

            return AnthropicProvider(**kwargs)
        except ImportError as exc:
            raise FatalJudgeError(
                f"judge {self.judge_name}",
                f"provider '{p.provider}' needs its SDK ({exc.name}): "
                "pip install 'steer-harness[judges]'",
            ) from None

    async def _ask_all(
        self, calls: list[Call], answers: dict[str, Any], errors: dict[str, str]
    ) -> None:
        provider = self._hf_provider() if self.params.provider == "hf" else self._remote_provider()
        shared = self._in_flight()
        try:
            async with asyncio.TaskGroup() as group:
                for call in calls:
                    group.create_task(self._ask(provider, shared, call, answers, errors))
        except BaseExceptionGroup as group_error:
            raise self._fatal(group_error) from None
        finally:
            tokens = getattr(provider, "usage", None)
            if tokens is not None:  # remote providers count what they were answered
                self.usage.online.add(tokens)
            if provider is not self._hf:
                await provider.aclose()

    def _in_flight(self) -> _InFlight:
        """What every batch scored on the running loop shares: the limit on calls in flight
        and the calls being asked (a semaphore belongs to one loop; ``score_batch`` runs
        each batch on a new one)."""
        loop = asyncio.get_running_loop()
        if self._shared is None or self._shared[0] is not loop:
            self._shared = (loop, _InFlight(asyncio.Semaphore(self.params.max_concurrency)))
        return self._shared[1]

    async def _ask_batched(
        self, calls: list[Call], answers: dict[str, Any], errors: dict[str, str]
    ) -> None:
        """The misses through the provider's batch API (:mod:`judges.llm.batch`)."""
        from judges.llm.batch import PollPolicy, make_runner

        p = self.params
        runner = make_runner(
            p.provider,
            model=p.model,
            api_key=self._api_key(),
            base_url=p.base_url,
            timeout=p.timeout,
            extra_body=p.extra_body,
            run_dir=self.run_dir,
            max_requests=p.batch_max_requests,
            poll=PollPolicy(p.batch_poll_interval, p.batch_poll_max, p.batch_timeout),
            retry=self.policy,
        )

        def on_answer(key: str, answer: Any, response: Any) -> None:
            self.cache.put(key, self.params.provider, self.params.model, answer)
            answers[key] = answer
            self.usage.batch.record(response)
            self.stats.answered += 1

        try:
            counts = await runner.run(calls, on_answer, errors)
        finally:
            await runner.backend.aclose()
        self.stats.attempts += counts.requests
        self.stats.failures += sum(c.key in errors for c in calls)

    def usage_record(self, previous: dict[str, Any] | None = None) -> dict[str, Any]:
        """Calls, tokens and cost of this scorer's sessions so far (``previous``: what the
        manifest held from earlier sessions), for the manifest and the run summary."""
        total = JudgeUsage.of(previous)
        total.add(JudgeUsage(self.usage.online, self.usage.batch, self.stats.cache_hits))
        price, source = judge_price(self.params.provider, self.params.model, self.params.price)
        return total.summary(price, source)

    def _fatal(self, group_error: BaseExceptionGroup) -> BaseException:
        """The configuration error that stopped the calls (or an unexpected error as is)."""
        flat: list[BaseException] = []
        stack: list[BaseException] = [group_error]
        while stack:
            exc = stack.pop()
            if isinstance(exc, BaseExceptionGroup):
                stack.extend(exc.exceptions)
            else:
                flat.append(exc)
        for exc in flat:
            if isinstance(exc, FatalJudgeError):
                return exc
        for exc in flat:
            if isinstance(exc, JudgeCallError):
                env = self.params.api_key_env or DEFAULT_KEY_ENV.get(self.params.provider, "")
                return FatalJudgeError(
                    f"judge {self.judge_name}",
                    f"{exc.message}; check the model name, base_url and the key in ${env} "
                    "(answers received so far are cached)",
                )
        return flat[0] if flat else group_error

    async def _ask(
        self,
        provider: Provider,
        shared: _InFlight,
        call: Call,
        answers: dict[str, Any],
        errors: dict[str, str],
    ) -> None:
        async def once() -> Any:
            self.stats.attempts += 1
            if call.kind == "logprobs":
                return {"top_logprobs": await provider.top_logprobs(call.prompt, call.decoding)}
            return {"text": await provider.sample(call.prompt, call.decoding)}

        def on_retry(exc: JudgeCallError, wait: float) -> None:
            self.stats.retries += 1
            log.debug("judge call retried in %.2fs: %s", wait, exc.message)

        asked = shared.asked
        first = asked.get(call.key)
        if first is not None:  # asked for another batch in flight: its answer is ours
            answered, value = await asyncio.shield(first)
            (answers if answered else errors)[call.key] = value
            return
        mine: asyncio.Future[tuple[bool, Any]] = asyncio.get_running_loop().create_future()
        asked[call.key] = mine
        try:
            async with shared.gate:
                outcome = await call_with_retry(once, self.policy, self._rng, on_retry=on_retry)
        except BaseException as exc:
            mine.set_result((False, f"not answered ({type(exc).__name__})"))
            raise
        finally:
            del asked[call.key]
        if outcome.error is None:
            self.cache.put(call.key, provider.name, self.params.model, outcome.value)
            answers[call.key] = outcome.value
            self.stats.answered += 1
            mine.set_result((True, outcome.value))
            return
        self.stats.failures += 1
        errors[call.key] = redact(outcome.error)
        mine.set_result((False, errors[call.key]))
        if outcome.final:
            self._final_errors.add(call.key)
        limit = self.params.fail_fast
        if limit and self.stats.answered == 0 and self.stats.failures >= limit:
            raise FatalJudgeError(
                f"judge {self.judge_name}",
                f"the first {self.stats.failures} judge calls all failed and none succeeded "
                f"(first error: {errors[call.key]}); the judge does not work as configured "
                "(logprobs unsupported? wrong model, URL or server down?), so scoring "
                "stopped instead of storing nulls; fix it and re-run, or set fail_fast = 0 "
                "to record such failures as nulls",
            )

    # ---- scores -----------------------------------------------------------------------

    def _result(self, task: Task, answers: dict[str, Any], errors: dict[str, str]) -> ScoreResult:
        extra: dict[str, Any] = {
            "judge": self.judge_name,
            "template_sha256": task.template_sha256,
            "scale": "0-100",
        }
        if task.truncated:
            extra["truncated"] = True
        if self.mode == "logprobs":
            call = task.calls[0]
            if call.key in errors:
                reason = f"judge call failed: {errors[call.key]}"
                if call.key in self._final_errors:
                    return ScoreResult.null(reason, **extra)
                return ScoreResult.failed(reason, **extra)
            top = answers[call.key]["top_logprobs"]
            exp = expected_score([(str(t), lp) for t, lp in top], self.params.min_number_mass)
            extra |= {"number_mass": exp.mass, "top_logprobs": top}
            if exp.score is None:
                return ScoreResult.null(exp.reason or "low number mass", **extra)
            return ScoreResult.ok(exp.score, **extra)
        texts = [answers.get(c.key, {}).get("text") for c in task.calls]
        errs = [errors.get(c.key) for c in task.calls]
        summary = summarize_samples(texts, errs)
        extra |= summary.extra
        if summary.score is None:
            final = all(c.key in self._final_errors for c in task.calls)
            if all(errs) and not final:  # no sample answered: transient, worth asking again
                return ScoreResult.failed(summary.reason or "no samples", **extra)
            return ScoreResult.null(summary.reason or "no samples", **extra)
        return ScoreResult.ok(summary.score, **extra)
