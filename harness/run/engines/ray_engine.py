"""The Ray engine: generation tasks handed to Ray actors, one model replica each.

:class:`ActorPool` is the part every Ray pool shares (joining the cluster, sizing the
actors, the dispatch loop and its fault rules); :class:`RayEngine` generates with it, and
:mod:`harness.run.engines.ray_scoring` scores with it.

The driver (this process) plans, dispatches :class:`~harness.run.engines.base.UnitTask` s
to idle actors and yields their outputs as they come back; it alone writes the stores, so
the run directory keeps its one writer. Each actor loads the model from the spec's model
section (:func:`harness.model.loading.load_model`) on the GPU share Ray gives it (or on
CPU), prepares the conditions it is given and runs the same
:class:`~harness.run.engines.base.UnitRunner` as the local engine; texts, ids and records
are therefore those of the local engine.

Faults: an actor that dies (process killed, node lost) has its task given to another
actor, and a fresh actor takes its place; a task whose actors died more than
``max_retries`` times stops the run with an error naming the unit. An error raised by the
generation itself (a bad spec, a method that does not restore the model) is not retried:
it would fail again the same way. A driver killed mid-run takes its actors with it (they
belong to its Ray job), and the next run resumes from the store like any other.

Ray is imported here (and by :mod:`~harness.run.engines.ray_scoring` through
:class:`ActorPool`) only, and these modules only when ``engine = "ray"``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from harness.config.spec import ExecutionSpec, GenerationSpec, ModelSpec
from harness.core.errors import EngineError
from harness.run.engines.base import BatchResult, UnitRunner, Units, UnitTask
from harness.run.plan import ResolvedCondition

log = logging.getLogger(__name__)


class GenerationWorker:
    """The body of one Ray actor: one model replica and its prepared conditions."""

    def __init__(
        self,
        model: ModelSpec,
        gen: GenerationSpec,
        conditions: list[ResolvedCondition],
        threads: int,
    ):
        import torch

        from harness.model.loading import load_model

        torch.set_num_threads(threads)
        self.runner = UnitRunner(load_model(model), conditions, gen)

    def ready(self) -> dict[str, Any]:
        """Who this actor is: its process id, node and the device its model sits on."""
        import ray

        return {
            "pid": os.getpid(),
            "node": ray.util.get_node_ip_address(),
            "device": self.runner.lm.device,
        }

    def units(self, per_batch: int) -> Units:
        return self.runner.units(per_batch)

    def run(self, task: UnitTask) -> list[BatchResult]:
        return list(self.runner.run(task))


def generation_gpus(
    execution: ExecutionSpec, model: ModelSpec, cluster_gpus: float
) -> tuple[float, str]:
    """GPUs one generation actor asks Ray for, and the spec field that decides it:
    ``execution.num_gpus`` when the user set it; else, on a cluster with GPUs,
    ``model.tensor_parallel_size`` for the vLLM backend (the engine in the actor splits
    the model over that many, so Ray must reserve them all, or two actors would be given
    the same GPU) and one for the HF backend; none on a cluster without GPUs (CPU actors,
    vLLM's CPU build too)."""
    if execution.num_gpus is not None:
        return execution.num_gpus, "execution.num_gpus"
    if cluster_gpus > 0 and model.backend == "vllm":
        return float(model.tensor_parallel_size), "model.tensor_parallel_size"
    return min(1.0, cluster_gpus), "execution.num_gpus"


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__


T = TypeVar("T")


class ActorPool:
    """Actors of one kind on a Ray cluster (joined or started by :meth:`start`), and the
    one dispatch loop with its fault rules: an actor that dies has its task given to
    another and a fresh actor takes its place; a task whose actors died more than
    ``max_retries`` times stops the run with an error naming it."""

    what = "work"
    """What the actors do, for messages ("generation", "scoring")."""

    def __init__(self, execution: ExecutionSpec, body: type[Any]):
        self.execution = execution
        self.body = body
        self.ray: Any = None
        self.owns_ray = False
        self.num_gpus = 0.0
        self.workers = 0
        self.actor_cls: Any = None
        self.actors: dict[int, Any] = {}
        """Live actors by slot number (a replacement gets a new slot)."""
        self.pids: dict[int, int] = {}
        """Process id of each ready actor, by slot."""
        self.busy: set[int] = set()
        """Slots with a task in flight."""
        self.lost = 0
        self.retried: list[str] = []
        """The tasks given to another actor after theirs died, in order."""
        self._next_slot = 0
        self._ready: list[int] = []
        """Actors started and idle, for the next :meth:`run`."""
        self.timed_out: set[int] = set()
        """Actors killed for running past ``task_timeout_s``."""

    def start(self) -> None:
        """Join (or start) Ray and size the actors: ``num_gpus`` each (default one GPU, or
        none on a cluster without GPUs), as many as the cluster fits unless ``workers``."""
        if self.ray is not None:
            return
        import ray

        execution = self.execution
        self.owns_ray = not ray.is_initialized()
        if self.owns_ray:
            try:
                ray.init(address=execution.address, logging_level=logging.WARNING)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                where = execution.address or os.environ.get("RAY_ADDRESS") or "a local cluster"
                raise EngineError(
                    f"execution.address: cannot join or start Ray ({where}): {_first_line(exc)}"
                ) from exc
        self.ray = ray
        resources = ray.cluster_resources()
        gpus = float(resources.get("GPU", 0.0))
        cpus = float(resources.get("CPU", 0.0))
        per_gpu, field = self.gpus_per_actor(gpus)
        if per_gpu > gpus:
            raise EngineError(
                f"{field}: {per_gpu:g} GPU(s) per actor, but the Ray cluster has "
                f"{gpus:g}; lower it, or set execution.num_gpus = 0 for CPU actors"
            )
        if execution.num_cpus > cpus:
            raise EngineError(
                f"execution.num_cpus: {execution.num_cpus:g} CPU(s) per actor, but the Ray "
                f"cluster has {cpus:g}; lower num_cpus"
            )
        self.num_gpus = per_gpu
        fits = gpus / per_gpu if per_gpu > 0 else cpus / execution.num_cpus
        cap = self.max_default_workers(per_gpu)
        if cap is not None:
            fits = min(fits, cap)
        self.workers = execution.workers or max(1, math.floor(fits + 1e-9))
        self.actor_cls = ray.remote(
            num_cpus=execution.num_cpus, num_gpus=per_gpu, max_restarts=0, max_task_retries=0
        )(self.body)

    def max_default_workers(self, per_gpu: float) -> int | None:
        """A cap on the actors started when ``workers`` is not set (None: as many as fit)."""
        return None

    def gpus_per_actor(self, cluster_gpus: float) -> tuple[float, str]:
        """GPUs each actor asks Ray for, and the spec field that says so: ``num_gpus``
        when set, else one (none on a cluster without GPUs)."""
        if self.execution.num_gpus is not None:
            return self.execution.num_gpus, "execution.num_gpus"
        return min(1.0, cluster_gpus), "execution.num_gpus"

    @property
    def threads(self) -> int:
        """Torch threads of an actor: its CPUs."""
        return max(1, math.floor(self.execution.num_cpus))

    def spawn_args(self) -> tuple[Any, ...]:
        """What an actor is constructed with."""
        return (self.threads,)

    def _spawn(self) -> int:
        slot = self._next_slot
        self._next_slot += 1
        self.actors[slot] = self.actor_cls.remote(*self.spawn_args())
        return slot

    def _drop(self, slot: int) -> None:
        actor = self.actors.pop(slot, None)
        self.busy.discard(slot)
        self.pids.pop(slot, None)
        if actor is not None:
            self.ray.kill(actor, no_restart=True)

    def _actor_died(self, slot: int, exc: Any) -> None:
        """Forget a dead actor; a creation error (the model cannot load) is not retried."""
        if exc.actor_init_failed:
            raise EngineError(
                f"a Ray {self.what} actor could not start: {_first_line(exc)}"
            ) from exc
        self._drop(slot)
        self.lost += 1
        log.warning("ray: actor %d died (%s)", slot, _first_line(exc))

    def _is_ready(self, slot: int, info: dict[str, Any]) -> None:
        self.pids[slot] = int(info["pid"])
        log.info(
            "ray: actor %d ready: pid %s on %s (%s)",
            slot,
            info["pid"],
            info["node"],
            info["device"],
        )

    @staticmethod
    def _raise_task_error(exc: Any) -> None:
        """Re-raise what the task itself raised (a user error stays one line)."""
        cause = getattr(exc, "cause", None)
        if isinstance(cause, Exception):
            raise cause from exc
        raise exc

    def run(
        self,
        tasks: Sequence[T],
        submit: Callable[[Any, T], Any],
        describe: Callable[[T], str],
    ) -> Iterator[tuple[int, Any]]:
        """``submit(actor, task)`` (an object ref) for every task, one at a time per idle
        actor; yields ``(task index, value)`` as each comes back, in any order."""
        ray = self.ray
        if not tasks:
            return
        n = min(self.workers, len(tasks))
        max_lost = n * (self.execution.max_retries + 1)
        log.info(
            "ray: %d actor(s), %g GPU and %g CPU each, for %d %s task(s)",
            n,
            self.num_gpus,
            self.execution.num_cpus,
            len(tasks),
            self.what,
        )
        queue: deque[int] = deque(range(len(tasks)))
        failures: Counter[int] = Counter()
        idle: deque[int] = deque(s for s in self._ready if s in self.actors)
        self._ready = []
        inflight: dict[Any, tuple[int, int | None]] = {}  # ref -> (slot, task or None: ready)
        started: dict[Any, float] = {}  # a task's ref -> when it was submitted
        for _ in range(n - len(idle)):
            slot = self._spawn()
            inflight[self.actors[slot].ready.remote()] = (slot, None)
        while queue or any(t is not None for _, t in inflight.values()):
            while queue and idle:
                slot, task_index = idle.popleft(), queue.popleft()
                ref = submit(self.actors[slot], tasks[task_index])
                inflight[ref] = (slot, task_index)
                started[ref] = time.monotonic()
                self.busy.add(slot)
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=self._wait_s(started))
            if not ready:
                self._kill_overdue(started, inflight, describe, tasks)
                continue
            ref = ready[0]
            started.pop(ref, None)
            slot, index = inflight.pop(ref)
            try:
                value = ray.get(ref)
            except ray.exceptions.RayActorError as exc:
                self._actor_died(slot, exc)
                if index is not None:
                    failures[index] += 1
                    if failures[index] > self.execution.max_retries:
                        last = (
                            f"killed after execution.task_timeout_s = "
                            f"{self.execution.task_timeout_s:g} s"
                            if slot in self.timed_out
                            else _first_line(exc)
                        )
                        raise EngineError(
                            f"{describe(tasks[index])}: its Ray actor died "
                            f"{failures[index]} time(s) (execution.max_retries = "
                            f"{self.execution.max_retries}); last: {last}"
                        ) from exc
                    log.warning("ray: %s goes to another actor", describe(tasks[index]))
                    queue.appendleft(index)
                    self.retried.append(describe(tasks[index]))
                if self.lost > max_lost:
                    raise EngineError(
                        f"{self.lost} Ray actors died during {self.what}; last: {_first_line(exc)}"
                    ) from exc
                fresh = self._spawn()
                inflight[self.actors[fresh].ready.remote()] = (fresh, None)
                continue
            except ray.exceptions.RayTaskError as exc:
                self._raise_task_error(exc)
            self.busy.discard(slot)
            idle.append(slot)
            if index is None:
                self._is_ready(slot, value)
                continue
            yield index, value
        # Actors still starting are kept too: the next run waits for them.
        self._ready = list(idle) + [s for s, _ in inflight.values()]

    def _wait_s(self, started: dict[Any, float]) -> float | None:
        """How long the dispatch loop may wait for a result: until the oldest task's
        ``task_timeout_s`` runs out (None: no limit set, wait for the next result)."""
        limit = self.execution.task_timeout_s
        if limit is None or not started:
            return None
        return max(0.0, min(started.values()) + limit - time.monotonic())

    def _kill_overdue(
        self,
        started: dict[Any, float],
        inflight: dict[Any, tuple[int, int | None]],
        describe: Callable[[Any], str],
        tasks: Sequence[Any],
    ) -> None:
        """Kill the actors whose task ran past ``task_timeout_s``: the task's result then
        comes back as the actor's death, and the loop retries it like one."""
        limit = self.execution.task_timeout_s
        assert limit is not None
        now = time.monotonic()
        for ref, t0 in list(started.items()):
            if now - t0 < limit:
                continue
            del started[ref]
            slot, index = inflight[ref]
            what = describe(tasks[index]) if index is not None else "a task"
            log.warning(
                "ray: %s ran %.0f s, past execution.task_timeout_s = %g: killing actor %d",
                what,
                now - t0,
                limit,
                slot,
            )
            actor = self.actors.get(slot)
            if actor is not None:
                self.timed_out.add(slot)
                self.ray.kill(actor, no_restart=True)

    def close(self) -> None:
        if self.ray is None:
            return
        for slot in list(self.actors):
            self._drop(slot)
        if self.owns_ray:
            self.ray.shutdown()


class RayEngine(ActorPool):
    """Dispatches generation tasks to ``workers`` actors, one model replica each."""

    what = "generation"

    def __init__(
        self,
        execution: ExecutionSpec,
        model: ModelSpec,
        gen: GenerationSpec,
        conditions: Sequence[ResolvedCondition],
    ):
        super().__init__(execution, GenerationWorker)
        self.model = model
        self.gen = gen
        self.conditions = list(conditions)
        self._conditions_ref: Any = None
        self.start()

    def gpus_per_actor(self, cluster_gpus: float) -> tuple[float, str]:
        return generation_gpus(self.execution, self.model, cluster_gpus)

    def max_default_workers(self, per_gpu: float) -> int | None:
        """vLLM's CPU build binds its threads to every core of its node whatever the actor's
        ``num_cpus``, so two vLLM CPU actors on one node would compete for the same cores:
        by default one per live node (``workers`` overrides it)."""
        if self.model.backend != "vllm" or per_gpu > 0:
            return None
        return max(1, sum(1 for node in self.ray.nodes() if node.get("Alive")))

    def spawn_args(self) -> tuple[Any, ...]:
        if self._conditions_ref is None:
            self._conditions_ref = self.ray.put(self.conditions)
        return (self.model, self.gen, self._conditions_ref, self.threads)

    def units(self, per_batch: int) -> Units:
        """Single conditions need no model; stacking them needs their additions, so one
        actor prepares every condition first and groups them (it then generates too)."""
        names = [c.name for c in self.conditions]
        if per_batch <= 1:
            return [[n] for n in names], {}
        ray = self.ray
        for _ in range(self.execution.max_retries + 1):
            slot = self._spawn()
            try:
                info = ray.get(self.actors[slot].ready.remote())
                groups, meta = ray.get(self.actors[slot].units.remote(per_batch))
            except ray.exceptions.RayActorError as exc:
                self._actor_died(slot, exc)
                continue
            except ray.exceptions.RayTaskError as exc:
                self._raise_task_error(exc)
            self.pids[slot] = int(info["pid"])
            self._ready.append(slot)
            return groups, meta
        raise EngineError(
            f"preparing conditions {', '.join(names)}: {self.lost} Ray actor(s) died "
            f"(execution.max_retries = {self.execution.max_retries})"
        )

    def generate(self, tasks: Sequence[UnitTask]) -> Iterator[BatchResult]:
        for _, value in self.run(tasks, lambda actor, task: actor.run.remote(task), _describe):
            yield from value


def _describe(task: UnitTask) -> str:
    return task.describe()
