"""The overlapped scorers' consumer: scores generations on one event loop as they arrive,
in a thread of the run's process or in a process of its own (:mod:`harness.run.overlap`
decides; ``python -m harness.run.consumer`` is that process).

Why one event loop: a judge (an ``ascore`` scorer that says ``concurrent_batches``) is
given each batch as it comes, without waiting for the last one's answers; its limit on
calls in flight holds across batches, so the limit stays full while texts arrive, as when
judging alone. Waiting for each batch instead left the tail of every batch's calls below
the limit (measured: a judge that kept up alone fell behind generation beside it). Other
scorers get one batch at a time, in order.

Why a process of its own: a generator whose steps are Python-bound (HF ``generate`` on a
small model, or launching kernels on a GPU) shares the interpreter lock with a consumer
thread, and ran 15-50% slower beside one; beside a consumer process it ran as fast as
alone (measured on the tiny model: 2.49 s against 2.37 s alone, 3.1 s with the thread).
This module therefore imports no torch and no model code: the process starts in about a
second, while the run loads its model.

The consumer never writes a store. It hands each batch's records to its ``sink``: in a
thread the sink appends them to the scores store (the run's one writer process); from a
process they go back over a pipe and the run's process appends them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from harness.config.scorers import ResolvedScorer
from harness.core.batching import chunks
from harness.core.records import ScoreRecord
from harness.core.scoring import (
    ScorerContext,
    ScoreResult,
    ScorerFacts,
    ascore_batch,
    close_scorer,
    concurrent_batches,
    is_async_scorer,
    score_batch,
)
from harness.core.secrets import scrub
from harness.core.store import STORED_SCORE_CHECKS, JsonlStore
from harness.run.score_records import result_records, scored_metrics, scoring_items
from harness.run.throughput import calls_made

log = logging.getLogger(__name__)

Sink = Callable[[int, int, list[ScoreRecord]], None]
"""Told of each scored batch: (scorer index, texts in the batch, its records)."""


@dataclass
class ScorerState:
    """One scorer in the consumer, and what it did this session."""

    sc: ResolvedScorer
    scorer: Any
    have: dict[str, frozenset[str]]
    turn: asyncio.Lock | None
    """One batch at a time (an ``ascore`` scorer that does not say ``concurrent_batches``)."""
    texts: int = 0
    seconds: float = 0.0
    """Time with at least one batch in flight (batches in flight at once count once)."""
    calls_before: int | None = None
    in_flight: int = 0
    busy_since: float = 0.0

    def begin(self) -> None:
        if self.in_flight == 0:
            self.busy_since = time.perf_counter()
        self.in_flight += 1

    def end(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self.seconds += time.perf_counter() - self.busy_since

    def calls(self) -> int | None:
        after = calls_made(self.scorer)
        return None if after is None else after - (self.calls_before or 0)


@dataclass(frozen=True)
class ScorerSummary:
    """What the run's manifest records of a consumer's scorer (picklable)."""

    facts: ScorerFacts
    usage: dict[str, Any] | None
    texts: int
    seconds: float
    calls: int | None


_WAKE = object()
"""Put in the inbox when a batch failed, so that the consumer stops at once."""


@dataclass
class ScoringConsumer:
    """Scores what is :meth:`post`-ed (lists of generation dicts; None ends) until the
    end, on the loop :meth:`run` runs; the scorers are built there, on the first batch."""

    scorers: list[ResolvedScorer]
    context: ScorerContext
    scores_path: Path
    sink: Sink
    earlier_usage: list[dict[str, Any] | None] = field(default_factory=list)
    error: BaseException | None = None
    active: list[ScorerState] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _loop: asyncio.AbstractEventLoop | None = None
    _inbox: asyncio.Queue[Any] | None = None
    _early: list[Any] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # ---- from any thread -----------------------------------------------------------------

    def post(self, item: list[dict[str, Any]] | None) -> None:
        """Queue a batch of generations (None: no more will come)."""
        with self._lock:
            loop, inbox = self._loop, self._inbox
            if loop is None or inbox is None:
                self._early.append(item)  # before the loop runs
                return
        with contextlib.suppress(RuntimeError):  # the loop has ended: nothing to do
            loop.call_soon_threadsafe(inbox.put_nowait, item)

    def stop(self) -> None:
        """End now: batches in flight are dropped (a judge's answers so far are cached)."""
        self._stop.set()
        self.post(None)

    # ---- on the consumer's own thread ------------------------------------------------

    def run(self) -> None:
        """Score until the end; the error that stopped it, if any, is in :attr:`error`."""
        try:
            asyncio.run(self._consume())
        except BaseException as exc:
            if self.error is None:
                self.error = exc
        finally:
            for s in self.active:
                close_scorer(s.scorer)

    def summaries(self) -> list[ScorerSummary]:
        out = []
        for i, s in enumerate(self.active):
            usage_record = getattr(s.scorer, "usage_record", None)
            earlier = self.earlier_usage[i] if i < len(self.earlier_usage) else None
            usage = usage_record(earlier) if usage_record is not None else None
            out.append(
                ScorerSummary(ScorerFacts.of(s.scorer), usage, s.texts, s.seconds, s.calls())
            )
        return out

    async def _consume(self) -> None:
        inbox: asyncio.Queue[Any] = asyncio.Queue()
        with self._lock:
            self._loop = asyncio.get_running_loop()
            self._inbox = inbox
            for item in self._early:
                inbox.put_nowait(item)
            self._early.clear()
        in_flight: set[asyncio.Task[None]] = set()
        try:
            ended = False
            while not ended:
                batch: list[dict[str, Any]] = []
                item = await inbox.get()
                while True:  # take everything that waits
                    if item is None:
                        ended = True
                    elif item is not _WAKE:
                        batch += item
                    if ended or inbox.empty():
                        break
                    item = inbox.get_nowait()
                if self.error is not None or self._stop.is_set():
                    break
                if batch:
                    self._dispatch(batch, in_flight)
            if self.error is None and not self._stop.is_set() and in_flight:
                await asyncio.wait(in_flight)
        finally:
            for task in in_flight:
                task.cancel()
            if in_flight:
                await asyncio.wait(in_flight)
        if self.error is not None:
            raise self.error

    def _scoring(self) -> list[ScorerState]:
        if not self.active:
            done = scored_metrics(JsonlStore(self.scores_path, STORED_SCORE_CHECKS))
            for sc in self.scorers:
                scorer = sc.build(self.context)
                one_at_a_time = is_async_scorer(scorer) and not concurrent_batches(scorer)
                self.active.append(
                    ScorerState(
                        sc,
                        scorer,
                        done.get(sc.key, {}),
                        asyncio.Lock() if one_at_a_time else None,
                        calls_before=calls_made(scorer),
                    )
                )
        return self.active

    def _dispatch(
        self, generations: list[dict[str, Any]], in_flight: set[asyncio.Task[None]]
    ) -> None:
        """Score a synchronous scorer's batches now; start an ``ascore`` scorer's."""
        none: frozenset[str] = frozenset()
        for i, s in enumerate(self._scoring()):
            wanted = set(s.scorer.metrics)
            todo = [g for g in generations if not wanted <= s.have.get(g["id"], none)]
            for batch in chunks(todo, max(1, int(s.scorer.batch_size))):
                if is_async_scorer(s.scorer):
                    task = asyncio.create_task(self._score_async(i, s, batch))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                    continue
                metrics = list(s.scorer.metrics)
                s.begin()
                try:
                    results = score_batch(s.scorer, s.sc.name, metrics, scoring_items(batch))
                finally:
                    s.end()
                self._hand_over(i, s, batch, results, metrics)

    async def _score_async(self, i: int, s: ScorerState, batch: list[dict[str, Any]]) -> None:
        try:
            if s.turn is not None:
                async with s.turn:
                    await self._await_batch(i, s, batch)
            else:
                await self._await_batch(i, s, batch)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # stops the consumer
            if self.error is None:
                self.error = exc
            if self._inbox is not None:
                self._inbox.put_nowait(_WAKE)

    async def _await_batch(self, i: int, s: ScorerState, batch: list[dict[str, Any]]) -> None:
        metrics = list(s.scorer.metrics)
        s.begin()
        try:
            results = await ascore_batch(s.scorer, s.sc.name, metrics, scoring_items(batch))
        finally:
            s.end()
        if self.error is None and not self._stop.is_set():
            self._hand_over(i, s, batch, results, metrics)

    def _hand_over(
        self,
        i: int,
        s: ScorerState,
        batch: list[dict[str, Any]],
        results: list[dict[str, ScoreResult]],
        metrics: list[str],
    ) -> None:
        records = result_records(s.sc, metrics, batch, results, s.have)
        s.texts += len(batch)
        self.sink(i, len(batch), records)


# ---- the consumer process -----------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    """The first message to the process: what to score and where from."""

    sys_path: list[str]
    scorers: bytes
    """The pickled ``ResolvedScorer`` list (unpickled after ``sys_path`` is set, so that
    plug-ins named by dotted path import there as here)."""
    context: ScorerContext
    scores_path: Path
    earlier_usage: list[dict[str, Any] | None]
    log_level: int


class _PipeLog(logging.Handler):
    """Sends the process's log records to the run's process (scrubbed here as well)."""

    def __init__(self, send: Callable[[Any], None]):
        super().__init__()
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self._send(("log", record.levelno, record.name, scrub(record.getMessage())))


def serve(inbound: Connection, outbound: Connection) -> None:
    """The process's life: read :class:`Start`, then batches, score them, send back
    ("records", scorer index, texts, records) per batch, then ("done", summaries) or
    ("error", exception). The run's process going away (end of file) stops it."""
    send_lock = threading.Lock()

    def send(message: Any) -> None:
        with send_lock:
            outbound.send(message)

    start: Start = inbound.recv()
    sys.path[:] = start.sys_path
    root = logging.getLogger()
    root.handlers[:] = [_PipeLog(send)]
    root.setLevel(start.log_level)
    try:
        scorers = pickle.loads(start.scorers)
    except Exception as exc:  # a plug-in that does not import here
        send(("error", _picklable(exc)))
        return
    consumer = ScoringConsumer(
        scorers,
        start.context,
        start.scores_path,
        lambda i, n, records: send(("records", i, n, records)),
        start.earlier_usage,
    )

    def read() -> None:
        while True:
            try:
                message = inbound.recv()
            except (EOFError, OSError):  # the run's process has gone: stop now
                consumer.stop()
                return
            if message == "stop":
                consumer.stop()
                return
            consumer.post(message)
            if message is None:
                return

    threading.Thread(target=read, name="consumer-inbox", daemon=True).start()
    consumer.run()
    if consumer.error is not None:
        send(("error", _picklable(consumer.error)))
    else:
        send(("done", consumer.summaries()))


def _picklable(exc: BaseException) -> BaseException:
    """The error as is when it survives pickling, else a RuntimeError with its text."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def main() -> None:
    """``python -m harness.run.consumer IN_FD OUT_FD``; started by the run's process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the run's to handle
    inbound = Connection(int(sys.argv[1]), writable=False)
    outbound = Connection(int(sys.argv[2]), readable=False)
    code = 0
    try:
        serve(inbound, outbound)
    except (BrokenPipeError, EOFError):  # the run's process has gone
        pass
    except BaseException as exc:  # could not even report it: say it here
        print(f"overlapped scoring process: {type(exc).__name__}: {exc}", file=sys.stderr)
        code = 1
    finally:
        os._exit(code)  # no interpreter teardown: the scorers were closed


if __name__ == "__main__":
    # Run the module imported under its own name, so that what this process pickles
    # (summaries) names harness.run.consumer, not __main__.
    from harness.run.consumer import main as run_as_module

    run_as_module()
