"""Scoring overlapped with generation: scorers that need no device score texts as the
generate stage stores them, in a thread, while generation goes on.

Why: a run with a remote judge otherwise takes generation time plus judging time; the
judge waits on the network and the generator on its device, so the two can run at once
and the run takes about the longer of the two. Scorers that need a model (on the
generator's device) are not overlapped: they run in the score stage after generation.

What stays the same: the score records. The consumer is the whole score stage of its
scorers for this session: it first takes the stored texts they lack (a resumed run), then
each batch as it is stored; the score stage then runs only the other scorers, after the
consumer is joined (so one thread at a time appends to the scores store). A record's id
is a content id of (generation, scorer, metric), and the records are appended by this
process, the run's one writer holding its lock. A kill leaves at most a torn last line,
which the next writer repairs. The consumer builds its scorers in its own thread (a
judge's SQLite cache is bound to the thread that opened it) and never touches the
manifest: its descriptions and throughput are handed to the main thread when joined.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.config.scorers import ResolvedScorer
from harness.core.manifest import Manifest
from harness.core.records import ClassificationRecord, GenerationRecord
from harness.core.scoring import ScorerFacts, close_scorer, is_final, uses_device
from harness.core.store import STORED_SCORE_CHECKS, JsonlStore
from harness.run.plan import Plan, scorer_context
from harness.run.stages import (
    GENERATION_FIELDS,
    StageResult,
    chunks,
    describe_scorer,
    load_generations,
    pending_generations,
    record_usage,
    score_records,
    scored_metrics,
    scoring_state,
)
from harness.run.throughput import ThroughputLog, calls_made

log = logging.getLogger(__name__)


def overlappable(plan: Plan) -> list[ResolvedScorer]:
    """The plan's scorers that may run while texts are generated."""
    return [sc for sc in plan.scorers if not uses_device(sc.scorer_cls, sc.params)]


@dataclass
class _Scoring:
    sc: ResolvedScorer
    scorer: Any
    have: dict[str, frozenset[str]]
    texts: int = 0
    seconds: float = 0.0
    calls_before: int | None = None


@dataclass
class OverlappedScoring:
    """A consumer of generation records (:meth:`feed`), scoring them in a thread.

    Whatever waits in the queue when the thread is free is scored together, up to each
    scorer's batch size, so a judge sees large batches while generation is slow and
    small ones only when it keeps up."""

    plan: Plan
    scorers: list[ResolvedScorer]
    result: StageResult = field(default_factory=StageResult)
    _queue: queue.Queue[list[dict[str, Any]] | None] = field(default_factory=queue.Queue)
    _stop: threading.Event = field(default_factory=threading.Event)
    _error: BaseException | None = None
    _active: list[_Scoring] = field(default_factory=list)
    _thread: threading.Thread | None = None

    def start(self) -> OverlappedScoring:
        """Queue the stored texts these scorers still lack (a resumed run), then start the
        thread. Call it before generation appends to the store."""
        _, done, gen_ids = scoring_state(self.plan)
        todo: set[str] = set()
        for sc in self.scorers:  # as the score stage decides, without building the scorer
            pending = pending_generations(done.get(sc.key, {}), gen_ids)
            self.result.done_before += len(gen_ids) - len(pending)
            todo.update(pending)
        if todo:
            self._queue.put(load_generations(self.plan, todo))
        self._thread = threading.Thread(target=self._run, name="overlapped-scoring", daemon=True)
        self._thread.start()
        return self

    def feed(self, records: Sequence[GenerationRecord | ClassificationRecord]) -> None:
        """Queue stored generation records for scoring; raises the consumer's error, if it
        failed, so that a broken scorer stops the run as it would after generation."""
        if self._error is not None:
            raise self._error
        self._queue.put([{k: getattr(r, k) for k in GENERATION_FIELDS} for r in records])

    def finish(self, manifest: Manifest) -> StageResult:
        """Score what is queued, join the thread, and record its scorers and throughput in
        the manifest (from the calling thread, the run's writer)."""
        self._join()
        if self._error is not None:
            raise self._error
        described: dict[str, Any] = manifest.data.setdefault("scorers", {})
        pace = ThroughputLog(manifest)
        for s in self._active:
            before = described.get(s.sc.name) or {}
            earlier = before.get("usage") if before.get("key") == s.sc.key else None
            described[s.sc.name] = describe_scorer(s.sc, ScorerFacts.of(s.scorer))
            record_usage(s.scorer, described[s.sc.name], earlier, manifest)
            after = calls_made(s.scorer)
            calls = None if after is None else after - (s.calls_before or 0)
            pace.add_scorer(s.sc.name, s.texts, s.seconds, calls, overlapped=True)
        manifest.save()
        return self.result

    def abort(self) -> None:
        """Stop after the batch being scored (generation failed or was interrupted)."""
        self._stop.set()
        self._join()

    def _join(self) -> None:
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join()

    # ---- the consumer thread -------------------------------------------------------------

    def _run(self) -> None:
        try:
            ended = False
            while not ended and not self._stop.is_set():
                first = self._queue.get()
                if first is None:
                    break
                batch = first
                while True:  # take everything that waits
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        ended = True
                        break
                    batch += more
                self._score(batch)
        except BaseException as exc:  # handed to the main thread by feed / finish
            self._error = exc
        finally:
            for s in self._active:
                close_scorer(s.scorer)

    def _scoring(self) -> list[_Scoring]:
        if not self._active:
            done = scored_metrics(JsonlStore(self.plan.run.scores, STORED_SCORE_CHECKS))
            for sc in self.scorers:
                scorer = sc.build(scorer_context(self.plan))
                active = _Scoring(sc, scorer, done.get(sc.key, {}), calls_before=calls_made(scorer))
                self._active.append(active)
        return self._active

    def _score(self, generations: list[dict[str, Any]]) -> None:
        store = JsonlStore(self.plan.run.scores)
        none: frozenset[str] = frozenset()
        for s in self._scoring():
            wanted = set(s.scorer.metrics)
            todo = [g for g in generations if not wanted <= s.have.get(g["id"], none)]
            for batch in chunks(todo, max(1, int(s.scorer.batch_size))):
                if self._stop.is_set():
                    return
                started = time.perf_counter()
                records = score_records(s.sc, s.scorer, batch, s.have)
                s.seconds += time.perf_counter() - started
                store.append(records)
                s.texts += len(batch)
                retry = sum(not is_final(r.model_dump()) for r in records)
                details = self.result.details
                details["retryable"] = details.get("retryable", 0) + retry
                self.result.done_now += len(batch)
                log.debug("overlapped %s: %d texts scored", s.sc.name, len(batch))
