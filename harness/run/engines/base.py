"""The generation-engine seam: what the generate stage hands out and what comes back.

The stage plans (fixed batches per condition, units of stacked conditions) and is the one
writer of ``generations.jsonl``; an engine only turns :class:`UnitTask` s into outputs.
:class:`UnitRunner` is the one code path that generates a task's batches on one model
replica, used in this process by the local engine and inside every Ray actor, so the
engines cannot drift apart: the same rows, in the same batches, through the same
:func:`harness.run.generation.generate_rows`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from harness.config.spec import GenerationSpec
from harness.core.errors import ModelNotRestoredError, SpecError
from harness.core.params import non_finite_at
from harness.core.scoring import ScoringItem
from harness.model.loading import LoadedModel
from harness.run.classification import Classified, classify_rows
from harness.run.generation import Output, Row, generate_rows
from harness.run.plan import ResolvedCondition
from harness.steering.batched import RowwiseAddition, row_additions
from harness.steering.hooks import Positions
from harness.steering.restore import ModelSnapshot, snapshot, verify


@dataclass(frozen=True)
class BatchTask:
    """One fixed batch of a unit: the member conditions with missing texts in it, and the
    rows (member by member, in batch order) to generate."""

    index: int
    members: tuple[str, ...]
    rows: tuple[Row, ...]
    ids: tuple[str, ...]
    """The work-item id of each row (the driver's to write; the worker ignores them)."""


@dataclass(frozen=True)
class UnitTask:
    """Some of one unit's batches: conditions stacked in one forward pass (or one alone)."""

    unit: tuple[str, ...]
    batches: tuple[BatchTask, ...]

    def describe(self) -> str:
        names = ", ".join(f"'{c}'" for c in self.unit)
        first, last = self.batches[0].index, self.batches[-1].index
        where = f"batch {first}" if first == last else f"batches {first}-{last}"
        return f"generation unit {names}, {where}"


@dataclass(frozen=True)
class ModelFacts:
    """What the manifest records of the replica that generated (the same on every one)."""

    fingerprint: dict[str, Any]
    device: str
    dtype: str


@dataclass
class BatchResult:
    task: UnitTask
    batch: BatchTask
    outputs: list[Output] | list[Classified]
    """Generated texts, or a classification task's predictions (one per row)."""
    prepared: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Metadata of conditions prepared for this batch (first time on its replica)."""
    model: ModelFacts | None = None


@dataclass(frozen=True)
class ScoringUnit:
    """One batch of texts for one scorer, planned by the driver as the local engine plans
    it (the scorer's batch size over the pending texts in plan order), so every engine
    feeds a scorer the same batches and gets the same values."""

    scorer: str
    index: int
    """The batch's place in this session's plan of the scorer's pending texts."""
    items: tuple[ScoringItem, ...]

    def describe(self) -> str:
        first = self.items[0].item_id[:12] if self.items else "-"
        return (
            f"scoring unit: scorer '{self.scorer}', batch {self.index} "
            f"({len(self.items)} texts from generation {first})"
        )


Units = tuple[list[list[str]], dict[str, dict[str, Any]]]
"""Condition names generated together (:func:`generation_units`), and the metadata of the
conditions prepared to find them out (for the manifest)."""


class GenerationEngine(Protocol):
    """Generates tasks and yields each batch's outputs as it is done (in any order)."""

    def units(self, per_batch: int) -> Units: ...

    def generate(self, tasks: Sequence[UnitTask]) -> Iterator[BatchResult]: ...

    def close(self) -> None: ...


def generation_units(
    conditions: list[ResolvedCondition], per_batch: int
) -> list[list[ResolvedCondition]]:
    """Conditions generated together: additive ones that steer the same positions are
    stacked up to ``per_batch`` at a time (the baseline, adding nothing, stacks with any);
    every other condition is a unit of its own. Methods must be prepared already."""
    if per_batch <= 1:
        return [[c] for c in conditions]
    units: list[list[ResolvedCondition]] = []
    stackable: list[tuple[Positions, list[ResolvedCondition]]] = []
    for cond in conditions:
        adds = row_additions(cond.method)
        if adds is None:
            units.append([cond])
            continue
        # A condition that adds nothing fits any unit; others need the same positions.
        positions = cond.method.positions if adds else None
        unit = next(
            (u for p, u in stackable if positions in (None, p) and len(u) < per_batch), None
        )
        if unit is None:
            unit = []
            units.append(unit)
            stackable.append((positions or "all", unit))
        unit.append(cond)
    return units


def vllm_units(
    conditions: list[ResolvedCondition], per_batch: int
) -> list[list[ResolvedCondition]]:
    """The vLLM backend's units: up to ``per_batch`` conditions that can share an engine
    call (:func:`~harness.run.vllm_generation.shares_a_call`: additive ones, the baseline,
    the prompt method, a logit bias) together, in plan order; every other one alone.
    Positions need not match: the vLLM backend steers every position."""
    from harness.run.vllm_generation import shares_a_call

    if per_batch <= 1:
        return [[c] for c in conditions]
    units: list[list[ResolvedCondition]] = []
    open_unit: list[ResolvedCondition] | None = None
    for cond in conditions:
        if not shares_a_call(cond.method):
            units.append([cond])
            continue
        if open_unit is None or len(open_unit) >= per_batch:
            open_unit = []
            units.append(open_unit)
        open_unit.append(cond)
    return units


def unit_method(members: list[tuple[ResolvedCondition, int]]) -> Any:
    """The method that steers one batch of a unit: a lone condition's own, or row-wise
    additions of the stacked ones (``members``: each condition and its row count)."""
    if len(members) == 1:
        return members[0][0].method
    per_row = [row_additions(c.method) or {} for c, n in members for _ in range(n)]
    positions: Positions = "all"
    for c, _ in members:
        if row_additions(c.method):
            positions = c.method.positions
    return RowwiseAddition(per_row, positions)


class UnitRunner:
    """One model replica with its prepared conditions: generates a task's batches and
    checks after each task that every method left the model as it found it."""

    def __init__(
        self, lm: LoadedModel, conditions: Sequence[ResolvedCondition], gen: GenerationSpec
    ):
        self.lm = lm
        self.gen = gen
        self.conditions = {c.name: c for c in conditions}
        self.prepared: dict[str, dict[str, Any]] = {}
        self._before: ModelSnapshot | None = None

    def facts(self) -> ModelFacts:
        lm = self.lm
        return ModelFacts(lm.fingerprint, lm.device, str(lm.dtype).removeprefix("torch."))

    def prepare(self, names: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Prepare the conditions not prepared yet on this replica; their metadata."""
        if self._before is None and self.lm.engine is None:
            self._before = snapshot(self.lm.model)
        new = {}
        for name in names:
            if name not in self.prepared:
                cond = self.conditions[name]
                meta = cond.method.prepare(self.lm)
                if (bad := non_finite_at(meta)) is not None:
                    raise SpecError(
                        cond.name,
                        [
                            f"condition '{cond.name}': method '{cond.method_name}' prepared a "
                            f"non-finite number at '{bad}' (NaN or infinite); check its vector "
                            "or its source"
                        ],
                    )
                self.prepared[name] = {"method": cond.method_name, "key": cond.key, **meta}
                new[name] = self.prepared[name]
        return new

    def units(self, per_batch: int) -> Units:
        """Prepare every condition (stacking needs their additions) and group them."""
        meta = self.prepare(list(self.conditions))
        conditions = list(self.conditions.values())
        if self.lm.engine is not None:
            groups = vllm_units(conditions, per_batch)
        else:
            groups = generation_units(conditions, per_batch)
        return [[c.name for c in unit] for unit in groups], meta

    def run(self, task: UnitTask) -> Iterator[BatchResult]:
        if self.lm.engine is not None:
            yield from self._run_vllm(task)
            return
        prepared = self.prepare(task.unit)
        for batch in task.batches:
            # Every member has the same fixed batch of (prompt, seed) items, so as many rows.
            size = len(batch.rows) // len(batch.members)
            members = [(self.conditions[name], size) for name in batch.members]
            method = unit_method(members)
            outputs: list[Output] | list[Classified]
            if self.lm.task == "classify":
                outputs = classify_rows(self.lm, method, list(batch.rows), self.gen)
            else:
                outputs = generate_rows(self.lm, method, list(batch.rows), self.gen)
            yield BatchResult(task, batch, outputs, prepared, self.facts())
            prepared = {}
        assert self._before is not None
        names = ", ".join(f"'{n}' ({self.conditions[n].method_name})" for n in task.unit)
        verify(self.lm.model, self._before, f"condition {names}")

    def _run_vllm(self, task: UnitTask) -> Iterator[BatchResult]:
        """The vLLM backend: every row of the task's batches, of all the unit's conditions,
        in one engine call (:func:`~harness.run.vllm_generation.generate_conditions_vllm`;
        one call per condition where they cannot share one). vLLM schedules its own batches;
        per-request seeds make a row's text the same in any of them. The outputs are handed
        back batch by batch as on the HF path."""
        from harness.run.vllm_generation import generate_conditions_vllm

        prepared = self.prepare(task.unit)
        rows: dict[str, list[Row]] = {}
        for batch in task.batches:
            size = len(batch.rows) // len(batch.members)
            for k, name in enumerate(batch.members):
                rows.setdefault(name, []).extend(batch.rows[k * size : (k + 1) * size])
        parts = [(self.conditions[name].method, r) for name, r in rows.items()]
        generated = generate_conditions_vllm(self.lm, parts, self.gen)
        outputs = {name: iter(out) for name, out in zip(rows, generated, strict=True)}
        left = self.lm.engine.hooks_left()
        if left:
            names = ", ".join(f"'{n}'" for n in task.unit)
            raise ModelNotRestoredError(
                f"condition {names} left {left} hook(s) on vLLM's decoder layers"
            )
        for batch in task.batches:
            size = len(batch.rows) // len(batch.members)
            out = [next(outputs[name]) for name in batch.members for _ in range(size)]
            yield BatchResult(task, batch, out, prepared, self.facts())
            prepared = {}
