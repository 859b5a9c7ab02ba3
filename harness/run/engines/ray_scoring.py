"""Scoring on Ray actors: model-using scorers spread over a pool of scoring actors.

Two ways in, both with the driver as the one writer of ``scores.jsonl``:

- :meth:`RayScoring.score`: a scorer with a synchronous ``score`` that needs a device
  (fluency, classifier, embedding; :func:`harness.core.scoring.runs_elsewhere`). The
  driver plans the batches exactly as the local engine does and sends each
  :class:`~harness.run.engines.base.ScoringUnit` (texts, never file paths) to an idle
  actor; results come back in plan order, and the driver turns them into records.
- :meth:`RayScoring.acall` / :meth:`RayScoring.call`: the
  :class:`~harness.core.scoring.ModelWorkers` a judge on the driver sends its local
  model's computations to (the ``hf`` judge's 101-candidate passes). The judge, its
  SQLite cache and the aggregation stay on the driver; only cache misses reach an actor.

Each actor (:class:`ScoringWorker`) builds the object it is asked for once and keeps one
at a time: when the next scorer's first batch arrives it releases the previous model. The
pool is started only when a scorer first needs it, after the generate stage has released
its own actors (:meth:`~harness.run.engines.ray_engine.ActorPool.close`), so an actor's
memory is that of the largest scorer model, never the generator's replica beside it.

Faults are those of generation: an actor that dies has its unit (or call) retried on
another actor, at most ``execution.max_retries`` times, then the run stops with an error
naming the unit. Remote judges (``openai``, ``anthropic``, batch APIs) never come here.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from harness.config.spec import ExecutionSpec
from harness.core.errors import EngineError
from harness.core.scoring import ScoreResult, ScorerFacts, close_scorer
from harness.run.engines.base import ScoringUnit
from harness.run.engines.ray_engine import ActorPool, _first_line

log = logging.getLogger(__name__)


class ScoringWorker:
    """The body of one scoring actor: one built scorer (or judge model) at a time."""

    def __init__(self, threads: int):
        import torch

        torch.set_num_threads(threads)
        self.key: str | None = None
        self.held: Any = None

    def ready(self) -> dict[str, Any]:
        import ray
        import torch

        return {
            "pid": os.getpid(),
            "node": ray.util.get_node_ip_address(),
            "device": "cuda" if torch.cuda.is_available() else "cpu",
        }

    def _get(self, key: str, build: Callable[[], Any]) -> Any:
        if key != self.key:
            self._release()
            self.held = build()
            self.key = key
        return self.held

    def _release(self) -> None:
        if self.held is None:
            return
        close_scorer(self.held)
        self.held, self.key = None, None
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def facts(self, key: str, build: Callable[[], Any]) -> ScorerFacts:
        return ScorerFacts.of(self._get(key, build))

    def call(self, key: str, build: Callable[[], Any], method: str, args: tuple[Any, ...]) -> Any:
        attr = getattr(self._get(key, build), method)
        value = attr(*args) if callable(attr) else attr
        if inspect.iscoroutine(value):
            value = asyncio.run(value)
        return value


class RayScoring(ActorPool):
    """The scoring actors of one score stage; Ray is joined on first use only."""

    what = "scoring"

    def __init__(self, execution: ExecutionSpec):
        super().__init__(execution, ScoringWorker)
        self.current: str | None = None
        """The key of what the actors compute now (for logs and tests)."""
        self._load: Counter[int] = Counter()
        """Calls in flight per actor (:meth:`acall`)."""
        self._builds: dict[str, Any] = {}
        """Object refs of the builders sent so far, by key (each is pickled once)."""

    def _build_ref(self, key: str, build: Callable[[], Any]) -> Any:
        if key not in self._builds:
            self._builds[key] = self.ray.put(build)
        return self._builds[key]

    def _fill(self) -> None:
        """Start actors up to ``workers`` and wait until each is ready (blocking)."""
        self.start()
        fresh = [self._spawn() for _ in range(self.workers - len(self.actors))]
        for slot in fresh:
            try:
                self._is_ready(slot, self.ray.get(self.actors[slot].ready.remote()))
            except self.ray.exceptions.RayActorError as exc:
                self._actor_died(slot, exc)
        self._ready = [s for s in self.actors if s not in self.busy]

    # ---- whole batches of a synchronous scorer --------------------------------------------

    def facts(self, name: str, key: str, build: Callable[[], Any]) -> ScorerFacts:
        """Build the scorer on one actor (which keeps it for its batches) and say what it
        is; retried on another actor when that one dies."""
        self._fill()
        self.current = key
        ref = self._build_ref(key, build)
        died = 0
        while True:
            slot = next(iter(self._ready), None)
            if slot is None:
                self._fill()
                continue
            self.busy.add(slot)
            try:
                facts: ScorerFacts = self.ray.get(self.actors[slot].facts.remote(key, ref))
            except self.ray.exceptions.RayActorError as exc:
                self._actor_died(slot, exc)
                died += 1
                if died > self.execution.max_retries:
                    raise EngineError(
                        f"building scorer '{name}': its Ray actor died {died} time(s) "
                        f"(execution.max_retries = {self.execution.max_retries}); last: "
                        f"{_first_line(exc)}"
                    ) from exc
                self.retried.append(f"building scorer '{name}'")
                self._fill()
                continue
            except self.ray.exceptions.RayTaskError as exc:
                self._raise_task_error(exc)
            finally:
                self.busy.discard(slot)
            return facts

    def score(
        self, units: Sequence[ScoringUnit], key: str, build: Callable[[], Any]
    ) -> Iterator[tuple[ScoringUnit, list[dict[str, ScoreResult]]]]:
        """Each unit's results from whichever actor scored it, yielded in plan order."""
        self.start()
        self.current = key
        ref = self._build_ref(key, build)
        waiting: dict[int, Any] = {}
        nxt = 0

        def submit(actor: Any, unit: ScoringUnit) -> Any:
            return actor.call.remote(key, ref, "score", (list(unit.items),))

        for index, value in self.run(units, submit, ScoringUnit.describe):
            waiting[index] = value
            while nxt in waiting:
                yield units[nxt], waiting.pop(nxt)
                nxt += 1

    # ---- single calls of a judge on the driver (ModelWorkers) -----------------------------

    def call(self, key: str, build: Callable[[], Any], method: str, *args: Any) -> Any:
        """One call, blocking (a judge's identity, computed where its model runs)."""
        died = 0
        while True:
            slot, ref = self._submit(key, build, method, args)
            try:
                return self.ray.get(ref)
            except self.ray.exceptions.RayActorError as exc:
                died = self._call_died(slot, exc, died, f"scoring call '{method}' of {key}")
            except self.ray.exceptions.RayTaskError as exc:
                self._raise_task_error(exc)
            finally:
                self._done(slot)

    async def acall(self, key: str, build: Callable[[], Any], method: str, *args: Any) -> Any:
        """One call on the least-loaded actor, awaited; retried on another when that one
        dies. Calls queue on an actor, which runs one at a time."""
        died = 0
        while True:
            slot, ref = self._submit(key, build, method, args)
            try:
                return await asyncio.wrap_future(ref.future())
            except self.ray.exceptions.RayActorError as exc:
                died = self._call_died(slot, exc, died, f"scoring call '{method}' of {key}")
            except self.ray.exceptions.RayTaskError as exc:
                self._raise_task_error(exc)
            finally:
                self._done(slot)

    def _submit(
        self, key: str, build: Callable[[], Any], method: str, args: tuple[Any, ...]
    ) -> tuple[int, Any]:
        if not self.actors:
            self._fill()
        self.current = key
        ref = self._build_ref(key, build)
        slot = min(self.actors, key=lambda s: self._load[s])
        self._load[slot] += 1
        self.busy.add(slot)
        return slot, self.actors[slot].call.remote(key, ref, method, args)

    def _done(self, slot: int) -> None:
        if slot in self._load:
            self._load[slot] -= 1
            if self._load[slot] <= 0:
                del self._load[slot]
                self.busy.discard(slot)

    def _call_died(self, slot: int, exc: Any, died: int, what: str) -> int:
        """Count a call's lost actor (replacing it, once per actor); the count so far, or
        the error naming the call once it passes ``max_retries``."""
        if slot in self.actors:  # the first of its calls to hear of it
            self._actor_died(slot, exc)
            self._fill()
        died += 1
        if died > self.execution.max_retries:
            raise EngineError(
                f"{what}: its Ray actor died {died} time(s) (execution.max_retries = "
                f"{self.execution.max_retries}); last: {_first_line(exc)}"
            ) from exc
        self.retried.append(what)
        log.warning("ray: %s goes to another actor", what)
        return died

    def _drop(self, slot: int) -> None:
        self._load.pop(slot, None)
        super()._drop(slot)
