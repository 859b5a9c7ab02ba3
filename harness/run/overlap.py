"""Scoring overlapped with generation: scorers that need no device score texts as the
generate stage stores them, in a process of their own (or a thread), while generation
goes on.

Why: a run with a remote judge otherwise takes generation time plus judging time; the
judge waits on the network and the generator on its device, so the two can run at once
and the run takes about the longer of the two. Scorers that need a model (on the
generator's device) are not overlapped: they run in the score stage after generation.

Where the scorers run: in a process of their own (:mod:`harness.run.consumer`, started
with the run, so that a Python-bound generator does not share its interpreter lock with
them), or in a thread of this process when the environment says
``STEER_HARNESS_OVERLAP=thread`` or when a scorer cannot be sent to another process (a
class defined in ``__main__``, or one that does not pickle); the log says which.

What stays the same: the score records. The consumer is the whole score stage of its
scorers for this session: it first takes the stored texts they lack (a resumed run), then
each batch as it is stored; the score stage then runs only the other scorers, after the
consumer is joined. Records are appended by this process, the run's one writer holding
its lock, from one thread at a time (the consumer thread, or the thread that receives the
process's records); a record's id is a content id of (generation, scorer, metric). A kill
leaves at most a torn last line, which the next writer repairs; the consumer process
stops when this process goes away (end of file on its pipe) and writes nothing itself.
The manifest is written only from the calling thread, in :meth:`finish`.
"""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import harness
from harness.config.scorers import ResolvedScorer
from harness.core.manifest import Manifest
from harness.core.records import ClassificationRecord, GenerationRecord, ScoreRecord
from harness.core.scoring import is_final, uses_device
from harness.core.store import JsonlStore
from harness.run.consumer import ScorerSummary, ScoringConsumer, Start
from harness.run.plan import Plan, scorer_context
from harness.run.score_records import GENERATION_FIELDS
from harness.run.stages import (
    StageResult,
    describe_scorer,
    load_generations,
    pending_generations,
    scoring_state,
)
from harness.run.throughput import ThroughputLog

log = logging.getLogger(__name__)

MODE_ENV = "STEER_HARNESS_OVERLAP"
"""``process`` (the default) or ``thread``: where overlapped scorers run."""

STOP_WAIT_S = 30.0
"""How long a stopped consumer process may take to exit before it is killed."""


def overlappable(plan: Plan) -> list[ResolvedScorer]:
    """The plan's scorers that may run while texts are generated."""
    return [sc for sc in plan.scorers if not uses_device(sc.scorer_cls, sc.params)]


def _sendable(scorers: list[ResolvedScorer]) -> bytes | str:
    """The scorers pickled for the consumer process, or why they cannot be sent there."""
    if os.environ.get(MODE_ENV, "process") == "thread":
        return f"{MODE_ENV}=thread"
    if os.name != "posix":
        return "the consumer process needs POSIX pipes"
    for sc in scorers:
        cls = sc.scorer_cls
        module = sys.modules.get(cls.__module__)
        found: Any = module
        for part in cls.__qualname__.split("."):
            found = getattr(found, part, None)
        if cls.__module__ == "__main__" or found is not cls:
            return f"scorer '{sc.name}' ({cls.__qualname__}) is not importable by its name"
    try:
        return pickle.dumps(scorers)
    except Exception as exc:
        return f"the scorers do not pickle ({exc})"


@dataclass
class OverlappedScoring:
    """A consumer of generation records (:meth:`feed`), scoring them beside generation."""

    plan: Plan
    scorers: list[ResolvedScorer]
    manifest: Manifest
    result: StageResult = field(default_factory=StageResult)
    _error: BaseException | None = None
    _summaries: list[ScorerSummary] | None = None
    _store: JsonlStore | None = None
    # a thread of this process
    _consumer: ScoringConsumer | None = None
    _thread: threading.Thread | None = None
    # or a process of its own
    _proc: subprocess.Popen[bytes] | None = None
    _to: Connection | None = None
    _send_lock: threading.Lock = field(default_factory=threading.Lock)
    _receiver: threading.Thread | None = None

    def start(self) -> OverlappedScoring:
        """Queue the stored texts these scorers still lack (a resumed run) and start the
        consumer. Call it before generation appends to the store."""
        _, done, gen_ids = scoring_state(self.plan)
        todo: set[str] = set()
        for sc in self.scorers:  # as the score stage decides, without building the scorer
            pending = pending_generations(done.get(sc.key, {}), gen_ids)
            self.result.done_before += len(gen_ids) - len(pending)
            todo.update(pending)
        resumed = load_generations(self.plan, todo) if todo else []
        self._store = JsonlStore(self.plan.run.scores)
        described: dict[str, Any] = self.manifest.data.get("scorers") or {}
        earlier = []
        for sc in self.scorers:
            before = described.get(sc.name) or {}
            earlier.append(before.get("usage") if before.get("key") == sc.key else None)
        sendable = _sendable(self.scorers)
        if isinstance(sendable, bytes):
            self._start_process(earlier, sendable)
            log.debug("overlapped scorers run in process %d", self._pid())
        else:
            self._start_thread(earlier)
            log.log(
                logging.DEBUG if sendable.startswith(MODE_ENV) else logging.INFO,
                "overlapped scorers run in a thread: %s",
                sendable,
            )
        if resumed:
            self._post(resumed)
        return self

    def feed(self, records: Sequence[GenerationRecord | ClassificationRecord]) -> None:
        """Queue stored generation records for scoring; raises the consumer's error, if it
        failed, so that a broken scorer stops the run as it would after generation."""
        self._raise_failed()
        self._post([{k: getattr(r, k) for k in GENERATION_FIELDS} for r in records])

    def finish(self) -> StageResult:
        """Score what is queued, wait for the consumer, and record its scorers and
        throughput in the manifest (from the calling thread, the run's writer)."""
        self._post(None)
        self._join()
        self._raise_failed()
        summaries = self._summaries or []
        described: dict[str, Any] = self.manifest.data.setdefault("scorers", {})
        pace = ThroughputLog(self.manifest)
        for sc, summary in zip(self.scorers, summaries, strict=False):
            described[sc.name] = describe_scorer(sc, summary.facts)
            if summary.usage is not None:
                described[sc.name]["usage"] = summary.usage
            pace.add_scorer(sc.name, summary.texts, summary.seconds, summary.calls, overlapped=True)
        self.manifest.save()
        return self.result

    def abort(self) -> None:
        """Stop now (generation failed or was interrupted): batches in flight are dropped
        (a judge's answers so far are in its cache), nothing more is scored."""
        if self._consumer is not None:
            self._consumer.stop()
        else:
            self._send("stop")
        self._join()

    # ---- both ways -------------------------------------------------------------------

    def _append(self, index: int, texts: int, records: list[ScoreRecord]) -> None:
        """A scored batch's records into the store (the consumer's one appending thread)."""
        assert self._store is not None
        self._store.append(records)
        retry = sum(not is_final(r.model_dump()) for r in records)
        details = self.result.details
        details["retryable"] = details.get("retryable", 0) + retry
        self.result.done_now += texts
        log.debug("overlapped %s: %d texts scored", self.scorers[index].name, texts)

    def _post(self, item: list[dict[str, Any]] | None) -> None:
        if self._consumer is not None:
            self._consumer.post(item)
            return
        if not self._send(item):  # the process has gone; its error (or exit) says why
            self._join()
            self._raise_failed()
            raise RuntimeError("the overlapped scoring process has gone")

    def _send(self, message: Any) -> bool:
        """Send to the consumer process; False when it cannot be reached any more."""
        with self._send_lock:
            if self._to is None:
                return False
            try:
                self._to.send(message)
            except OSError:
                return False
            return True

    def _raise_failed(self) -> None:
        error = self._error
        if error is None and self._consumer is not None:
            error = self._consumer.error
        if error is not None:
            raise error

    def _join(self) -> None:
        if self._thread is not None:
            self._thread.join()
            assert self._consumer is not None
            if self._consumer.error is None:
                self._summaries = self._consumer.summaries()
        if self._receiver is not None:
            self._receiver.join()
        if self._proc is not None:
            try:
                self._proc.wait(STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        with self._send_lock:
            if self._to is not None:
                self._to.close()
                self._to = None

    # ---- a thread of this process ----------------------------------------------------

    def _start_thread(self, earlier: list[dict[str, Any] | None]) -> None:
        self._consumer = ScoringConsumer(
            self.scorers,
            scorer_context(self.plan),
            self.plan.run.scores,
            self._append,
            earlier,
        )
        self._thread = threading.Thread(
            target=self._consumer.run, name="overlapped-scoring", daemon=True
        )
        self._thread.start()

    # ---- a process of its own --------------------------------------------------------

    def _pid(self) -> int:
        return self._proc.pid if self._proc is not None else os.getpid()

    def _start_process(self, earlier: list[dict[str, Any] | None], scorers: bytes) -> None:
        to_child, child_in = os.pipe()[::-1]  # (write end here, read end there)
        child_out, from_child = os.pipe()[::-1]
        env = dict(os.environ)
        package_root = str(Path(harness.__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_root, env.get("PYTHONPATH", "")) if p
        )
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "harness.run.consumer", str(child_in), str(child_out)],
                pass_fds=(child_in, child_out),
                stdin=subprocess.DEVNULL,
                env=env,
            )
        finally:
            os.close(child_in)
            os.close(child_out)
        self._to = Connection(to_child, readable=False)
        inbound = Connection(from_child, writable=False)
        self._to.send(
            Start(
                sys_path=list(sys.path),
                scorers=scorers,
                context=scorer_context(self.plan),
                scores_path=self.plan.run.scores,
                earlier_usage=earlier,
                log_level=logging.getLogger().getEffectiveLevel(),
            )
        )
        self._receiver = threading.Thread(
            target=self._receive, args=(inbound,), name="overlapped-records", daemon=True
        )
        self._receiver.start()

    def _receive(self, inbound: Connection) -> None:
        """Append the process's records and replay its log lines, until it is done."""
        try:
            while True:
                message = inbound.recv()
                kind = message[0]
                if kind == "records":
                    self._append(message[1], message[2], message[3])
                elif kind == "log":
                    logging.getLogger(message[2]).log(message[1], "%s", message[3])
                elif kind == "done":
                    self._summaries = message[1]
                    return
                elif kind == "error":
                    self._error = message[1]
                    return
        except EOFError:
            code = self._proc.wait() if self._proc is not None else None
            self._error = RuntimeError(
                f"the overlapped scoring process ended before it was done (exit code {code})"
            )
        except BaseException as exc:  # appending failed: stop the process
            self._error = exc
            self._send("stop")
        finally:
            inbound.close()
