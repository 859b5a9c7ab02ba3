"""The scorer protocol: the one contract every scorer (lexicon, classifier, LLM judge) meets.

A scorer turns a batch of texts into, per text and per metric, either a number or a null
with a reason. A failure is never mapped to 0: a 0 would bias every mean downward, while
a null drops the pair from the statistics and is counted.

Metric names are trait names where the metric measures a trait (``fear``, ``joy``), so
that scorers measuring the same trait can be compared with each other by name.

Scorers are plain classes registered under the entry-point group
``steer_harness.scorers`` (or named by dotted path in a spec). The harness constructs
them as ``cls(params, context)`` where ``params`` is an instance of the class's
``Params`` pydantic model, validated when the spec loads, before any work starts.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel

from harness.core.params import Strict
from harness.core.registry import Registry


class ScorerParams(Strict):
    """Base for scorer parameter models: unknown keys are errors, not silently ignored."""

    NOT_IN_KEY: ClassVar[frozenset[str]] = frozenset()
    """Fields that change how scores are computed but never their values (concurrency,
    timeouts, retries, cache location, batch sizes): left out of the scorer's key, so
    changing them re-scores nothing and keeps every score id."""

    def key_data(self, base_dir: Path) -> dict[str, Any]:
        """What the scorer's content key hashes: every field but :attr:`NOT_IN_KEY`.
        Override to add what a field points at (a file's hash, resolved defaults);
        ``base_dir`` is the spec's folder, where relative paths resolve."""
        return self.model_dump(mode="json", exclude=set(self.NOT_IN_KEY))


@dataclass(frozen=True)
class ScoreResult:
    """One metric's outcome for one text: a finite number, or None with a reason."""

    value: float | None
    reason: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.value is None:
            if not self.reason:
                raise ValueError("a null score needs a reason")
        elif not math.isfinite(self.value):
            raise ValueError(f"score must be finite, got {self.value}; return a null instead")

    @classmethod
    def ok(cls, value: float, **extra: Any) -> ScoreResult:
        return cls(float(value), None, extra)

    @classmethod
    def null(cls, reason: str, **extra: Any) -> ScoreResult:
        return cls(None, reason, extra)

    @classmethod
    def failed(cls, reason: str, **extra: Any) -> ScoreResult:
        """A null from a transient failure (a call that timed out, a server error): recorded
        as null with its reason, and scored again when the run is re-run."""
        return cls(None, reason, {**extra, RETRY_KEY: True})


RETRY_KEY = "retry"
"""In a null score's ``extra``: the failure was transient, a re-run should try again."""


def is_final(record: Mapping[str, Any]) -> bool:
    """Whether a stored score record is done (a value, or a null that retrying won't fix)."""
    return not (record.get("value") is None and (record.get("extra") or {}).get(RETRY_KEY))


@dataclass(frozen=True)
class ScoringItem:
    """What a scorer sees of one generation."""

    text: str
    """The generated response (without the prompt)."""
    prompt: str
    """The user's prompt as written in the prompt set (never the persona or template)."""
    item_id: str
    """The generation record's content id."""
    condition: str


class ModelWorkers(Protocol):
    """Processes elsewhere that hold a scorer's model (the Ray engine's scoring actors).

    ``build`` (picklable, called with no arguments) makes the object that computes; each
    worker builds it once per ``key`` and keeps one such object at a time. ``method`` is
    then called on it with ``args`` (an attribute that is not callable is returned as is),
    on whichever worker is free; a worker that dies has the call retried on another."""

    def call(self, key: str, build: Callable[[], Any], method: str, *args: Any) -> Any: ...

    async def acall(self, key: str, build: Callable[[], Any], method: str, *args: Any) -> Any: ...


@dataclass(frozen=True)
class ScorerContext:
    """What the harness tells a scorer about where it runs."""

    run_dir: Path | None = None
    """The run directory (a place for caches); None outside a run."""
    base_dir: Path = field(default_factory=Path.cwd)
    """Folder that relative paths in params resolve against (the spec's folder)."""
    generator_model: Mapping[str, Any] = field(default_factory=dict)
    """The run's model section, for scorers that need the unsteered generator."""
    device: str | None = None
    load_generator: Callable[[], Any] | None = None
    """Returns the run's generator, already loaded when the run generated texts, so a
    scorer that needs it does not load a second copy. The model is unsteered here."""
    model_workers: ModelWorkers | None = None
    """Where a scorer that runs here (an ``ascore`` judge) may send its model's computations
    instead of loading the model in this process: the Ray engine's scoring actors; None
    with the local engine. Its cache and aggregation stay here, with the run's writer."""


@runtime_checkable
class Scorer(Protocol):
    """A batch of texts in; per text, a mapping metric -> ScoreResult out.

    Implement ``score`` (synchronous, local scorers) or ``ascore`` (async, remote judges);
    the runner picks whichever exists, batches by ``batch_size`` and shows progress. An
    ``ascore`` scorer that may score several batches at once on one event loop says so with
    ``concurrent_batches = True`` (see :func:`concurrent_batches`).
    """

    Params: ClassVar[type[ScorerParams]]

    @property
    def metrics(self) -> Sequence[str]: ...

    batch_size: int


def is_scorer_class(obj: object) -> bool:
    """Whether a resolved registry entry looks like a scorer class."""
    return (
        inspect.isclass(obj)
        and isinstance(getattr(obj, "Params", None), type)
        and issubclass(getattr(obj, "Params"), BaseModel)  # noqa: B009 (mypy: obj is a type)
        and (callable(getattr(obj, "score", None)) or callable(getattr(obj, "ascore", None)))
    )


def check_results(
    scorer_name: str, metrics: Sequence[str], items: Sequence[ScoringItem], results: Any
) -> list[dict[str, ScoreResult]]:
    """Validate a scorer's output shape so a buggy plug-in fails loudly, not silently."""
    if not isinstance(results, list) or len(results) != len(items):
        got = len(results) if isinstance(results, list) else type(results).__name__
        raise TypeError(f"scorer '{scorer_name}' returned {got} results for {len(items)} texts")
    out: list[dict[str, ScoreResult]] = []
    for row in results:
        missing = [m for m in metrics if m not in row]
        if missing:
            raise TypeError(f"scorer '{scorer_name}' gave no result for metrics {missing}")
        for metric, result in row.items():
            if not isinstance(result, ScoreResult):
                raise TypeError(
                    f"scorer '{scorer_name}' metric '{metric}' returned "
                    f"{type(result).__name__}, expected ScoreResult"
                )
        out.append(dict(row))
    return out


def is_async_scorer(scorer: Any) -> bool:
    """Whether a scorer (class or instance) scores with a coroutine ``ascore``."""
    ascore = getattr(scorer, "ascore", None)
    return ascore is not None and inspect.iscoroutinefunction(ascore)


def score_batch(
    scorer: Any, name: str, metrics: Sequence[str], items: Sequence[ScoringItem]
) -> list[dict[str, ScoreResult]]:
    """Score one batch with whichever of ``ascore`` (async) or ``score`` the scorer has, and
    check the shape of what it returned. The one dispatch used by runs and validation."""
    if is_async_scorer(scorer):
        raw = asyncio.run(scorer.ascore(list(items)))
    else:
        raw = scorer.score(list(items))
    return check_results(name, metrics, items, raw)


async def ascore_batch(
    scorer: Any, name: str, metrics: Sequence[str], items: Sequence[ScoringItem]
) -> list[dict[str, ScoreResult]]:
    """:func:`score_batch` on a running event loop (an ``ascore`` scorer is awaited there,
    so several batches can be in flight at once)."""
    if is_async_scorer(scorer):
        raw = await scorer.ascore(list(items))
    else:
        raw = scorer.score(list(items))
    return check_results(name, metrics, items, raw)


def concurrent_batches(scorer: Any) -> bool:
    """Whether an ``ascore`` scorer may be given its next batch before the last one is
    answered (it says so with ``concurrent_batches = True``; the LLM judge does, its limit
    on calls in flight holding across batches). One that says nothing gets one batch at a
    time."""
    return bool(getattr(scorer, "concurrent_batches", False))


def uses_device(scorer_cls: Any, params: Any) -> bool:
    """Whether a scorer computes on a device (loads a model), so it must wait until the
    generator is done with its device. A scorer class says it does not with a classmethod
    ``uses_device(params) -> bool`` returning False (the lexicon; a remote judge); one that
    says nothing is taken to need it, and is run after generation."""
    says = getattr(scorer_cls, "uses_device", None)
    return bool(says(params)) if callable(says) else True


@dataclass(frozen=True)
class ScorerFacts:
    """What the harness needs of a built scorer: its metrics, batch size and description
    (its ``describe()``, for the manifest). Picklable, so a scorer built in another process
    (a Ray actor) can say it."""

    metrics: tuple[str, ...]
    batch_size: int
    description: dict[str, Any]

    @classmethod
    def of(cls, scorer: Any) -> ScorerFacts:
        describe: Callable[[], dict[str, Any]] | None = getattr(scorer, "describe", None)
        return cls(
            tuple(scorer.metrics),
            max(1, int(scorer.batch_size)),
            dict(describe()) if describe is not None else {},
        )


def runs_elsewhere(scorer_cls: Any, params: Any) -> bool:
    """Whether another engine than the local one may run this scorer's batches in its
    workers: a synchronous ``score`` that needs a device (fluency, classifier, embedding).
    An ``ascore`` scorer (a judge) stays with the run's writer, whose cache it fills."""
    return not is_async_scorer(scorer_cls) and uses_device(scorer_cls, params)


def close_scorer(scorer: Any) -> None:
    """Release what a scorer holds (connections, models), if it says how."""
    close = getattr(scorer, "close", None)
    if callable(close):
        close()


SCORERS: Registry[Scorer] = Registry("scorer", "steer_harness.scorers", is_scorer_class)
"""Scorers by name: entry points of the group ``steer_harness.scorers`` (ours included),
names registered at run time, or dotted paths."""
