"""The generate and score stages, each reading the previous stage's records.

Every stage resumes: it reads what its output store already holds (by content id) and
does only the missing work. :mod:`harness.run.runner` chains them with analysis and the
report inside one manifest session.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tqdm.auto import tqdm

from harness.core.errors import SpecError, StoreError
from harness.core.ids import content_id
from harness.core.manifest import Manifest
from harness.core.records import GenerationRecord, ScoreRecord
from harness.core.scoring import ScoringItem, close_scorer, is_final, score_batch
from harness.core.store import STORED_GENERATION_CHECKS, STORED_SCORE_CHECKS, JsonlStore
from harness.model.loading import LoadedModel, load_model
from harness.run.generation import Row, generate_rows
from harness.run.plan import Plan, ResolvedCondition, WorkItem, scorer_context
from harness.steering.batched import RowwiseAddition, row_additions
from harness.steering.hooks import Positions
from harness.steering.restore import snapshot, verify

log = logging.getLogger(__name__)
T = TypeVar("T")


def chunks(seq: Sequence[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(seq), size):
        yield list(seq[start : start + size])


def batch_plan(plan: Plan, condition: str) -> list[list[WorkItem]]:
    """Fixed batches per condition: same prompts and seeds in the same rows everywhere.

    Batches are defined on all of a condition's items, not on the missing ones, so a
    resumed run regenerates whole batches exactly as an uninterrupted run would, and the
    baseline and every condition see identical batch compositions. Items are ordered by
    prompt length to limit padding; the seeds of a prompt sit next to each other.
    """
    items = [it for it in plan.items if it.condition == condition]
    items.sort(key=lambda it: (len(it.prompt.text), it.prompt.id, it.seed))
    return list(chunks(items, plan.spec.generation.batch_size))


@dataclass
class StageResult:
    done_before: int = 0
    done_now: int = 0
    details: dict[str, Any] = field(default_factory=dict)


class ModelHolder:
    """Loads the model on first use only: a finished stage never pays for loading it."""

    def __init__(self, plan: Plan, manifest: Manifest):
        self.plan = plan
        self.manifest = manifest
        self._lm: LoadedModel | None = None

    def get(self) -> LoadedModel:
        if self._lm is None:
            log.info("loading model %s", self.plan.spec.model.id)
            self._lm = load_model(self.plan.spec.model)
            self.manifest.set_model(
                self._lm.fingerprint, self._lm.device, str(self._lm.dtype).removeprefix("torch.")
            )
        return self._lm


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


def _unit_method(
    unit: list[ResolvedCondition], members: list[tuple[ResolvedCondition, list[WorkItem]]]
) -> Any:
    """The method that steers one unit's batch: the condition's own, or row-wise additions."""
    if len(unit) == 1:
        return unit[0].method
    per_row = [row_additions(c.method) or {} for c, batch in members for _ in batch]
    positions: Positions = "all"
    for c, _ in members:
        if row_additions(c.method):
            positions = c.method.positions
    return RowwiseAddition(per_row, positions)


def generate_stage(plan: Plan, manifest: Manifest, models: ModelHolder) -> StageResult:
    store = JsonlStore(plan.run.generations)
    dropped = store.repair()
    if dropped:
        log.warning("%s: dropped a torn last record (%d bytes)", store.path, dropped)
    done = store.ids()
    wanted = {it.id for it in plan.items}
    result = StageResult(done_before=len(done & wanted))
    missing = len(wanted - done)
    if missing == 0:
        return result
    batches = {c.name: batch_plan(plan, c.name) for c in plan.conditions}
    pending = [
        c for c in plan.conditions if any(it.id not in done for b in batches[c.name] for it in b)
    ]
    lm = models.get()
    prepared: dict[str, Any] = manifest.data.setdefault("conditions", {})
    before = snapshot(lm.model)
    for cond in pending:
        meta = cond.method.prepare(lm)
        if (bad := non_finite_at(meta)) is not None:
            raise SpecError(
                plan.spec.name,
                [
                    f"condition '{cond.name}': method '{cond.method_name}' prepared a "
                    f"non-finite number at '{bad}' (NaN or infinite); check its vector or "
                    "its source"
                ],
            )
        prepared[cond.name] = {"method": cond.method_name, "key": cond.key, **meta}
    manifest.save()
    gen = plan.spec.generation
    with tqdm(total=missing, desc="generate", unit="text") as bar:
        for unit in generation_units(pending, gen.conditions_per_batch):
            bar.set_postfix_str(", ".join(c.name for c in unit))
            for j in range(len(batches[unit[0].name])):
                # Per condition, the same fixed batch as when generated alone.
                members = [(c, batches[c.name][j]) for c in unit]
                members = [(c, b) for c, b in members if any(it.id not in done for it in b)]
                if not members:
                    continue
                rows = [Row(it.prompt.id, it.prompt.text, it.seed) for _, b in members for it in b]
                outputs = iter(generate_rows(lm, _unit_method(unit, members), rows, gen))
                records = []
                for cond, batch in members:
                    for it in batch:
                        out = next(outputs)
                        if it.id in done:
                            continue
                        records.append(
                            GenerationRecord(
                                id=it.id,
                                condition=cond.name,
                                method=cond.method_name,
                                prompt_id=it.prompt.id,
                                seed=it.seed,
                                prompt=it.prompt.text,
                                rendered_prompt=out.rendered_prompt,
                                text=out.text,
                                n_prompt_tokens=out.n_prompt_tokens,
                                n_new_tokens=out.n_new_tokens,
                                finish=out.finish,
                                model=plan.spec.model.id,
                            )
                        )
                store.append(records)
                done.update(r.id for r in records)
                result.done_now += len(records)
                bar.update(len(records))
            names = ", ".join(f"'{c.name}' ({c.method_name})" for c in unit)
            verify(lm.model, before, f"condition {names}")
    return result


# --- reading the stores (streamed: only ids, or the fields a stage needs, are kept) ---

GENERATION_FIELDS = ("id", "condition", "prompt_id", "seed", "prompt", "text")
"""What the score stage needs of a generation record (the rest stays on disk)."""


def load_generations(plan: Plan, ids: set[str]) -> list[dict[str, Any]]:
    """The :data:`GENERATION_FIELDS` of these generations, in plan order (the last record
    of an id wins), streamed from the store so that only the requested ones are held."""
    path = plan.run.generations
    by_id: dict[str, dict[str, Any]] = {}
    for rec in JsonlStore(path, STORED_GENERATION_CHECKS).iter_dicts():
        if rec.get("id") not in ids:
            continue
        missing = [k for k in GENERATION_FIELDS if k not in rec]
        if missing:
            raise StoreError(
                f"{path}: generation record {rec['id']} lacks {missing}; delete that line "
                "and run the same command again to regenerate it"
            )
        by_id[rec["id"]] = {k: rec[k] for k in GENERATION_FIELDS}
    return [by_id[it.id] for it in plan.items if it.id in by_id]


def current_generations(plan: Plan) -> list[dict[str, Any]]:
    """This plan's generation records (records of items no longer in the spec are skipped)."""
    return load_generations(plan, {it.id for it in plan.items})


def non_finite_at(obj: Any, where: str = "") -> str | None:
    """The path of the first NaN or infinite number in a JSON-like value, if any."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return where or "(top level)"
    items = (
        obj.items()
        if isinstance(obj, dict)
        else enumerate(obj)
        if isinstance(obj, list | tuple)
        else ()
    )
    for key, value in items:
        found = non_finite_at(value, f"{where}.{key}" if where else str(key))
        if found is not None:
            return found
    return None


def scored_metrics(store: JsonlStore) -> dict[str, dict[str, frozenset[str]]]:
    """scorer key -> generation id -> the metrics it has a final record of, streamed.

    Nulls from transient failures are not final: they are scored again, and the new
    record (same id) supersedes the old one when scores are read."""
    done: dict[str, dict[str, set[str]]] = {}
    names: dict[str, str] = {}
    for rec in store.iter_dicts():
        if not is_final(rec):
            continue
        metric = names.setdefault(rec["metric"], rec["metric"])  # one string per metric
        done.setdefault(rec["scorer_key"], {}).setdefault(rec["generation_id"], set()).add(metric)
    shared: dict[frozenset[str], frozenset[str]] = {}
    return {
        key: {gid: shared.setdefault(frozenset(m), frozenset(m)) for gid, m in by_gen.items()}
        for key, by_gen in done.items()
    }


def score_stage(plan: Plan, manifest: Manifest, models: ModelHolder | None = None) -> StageResult:
    store = JsonlStore(plan.run.scores, STORED_SCORE_CHECKS)
    dropped = store.repair()
    if dropped:
        log.warning("%s: dropped a torn last record (%d bytes)", store.path, dropped)
    done = scored_metrics(store)
    present = JsonlStore(plan.run.generations).ids()
    gen_ids = [it.id for it in plan.items if it.id in present]
    del present
    result = StageResult()
    described: dict[str, Any] = manifest.data.setdefault("scorers", {})
    none: frozenset[str] = frozenset()
    for sc in plan.scorers:
        have = done.get(sc.key, {})
        # Without constructing the scorer (which may load a model), a generation is pending
        # when it has no record of this scorer or fewer metrics than others have (a kill
        # between the records of one text). Records whose id exists are not written twice.
        seen = none.union(*have.values())
        pending_ids = [g for g in gen_ids if have.get(g, none) != seen or not seen]
        result.done_before += len(gen_ids) - len(pending_ids)
        if not pending_ids:
            continue
        scorer = sc.build(scorer_context(plan, models.get if models else None))
        metrics = list(scorer.metrics)
        wanted = set(metrics)
        pending = load_generations(plan, {g for g in gen_ids if not wanted <= have.get(g, none)})
        describe: Callable[[], dict[str, Any]] | None = getattr(scorer, "describe", None)
        described[sc.name] = {"type": sc.type_name, "key": sc.key, "metrics": metrics}
        if describe is not None:
            described[sc.name] |= describe()
        manifest.save()
        with tqdm(total=len(pending), desc=f"score:{sc.name}", unit="text") as bar:
            for batch in chunks(pending, max(1, int(scorer.batch_size))):
                items = [
                    ScoringItem(g["text"], g["prompt"], g["id"], g["condition"]) for g in batch
                ]
                results = score_batch(scorer, sc.name, metrics, items)
                records = []
                for g, row in zip(batch, results, strict=True):
                    for metric in metrics:
                        res = row[metric]
                        rid = content_id(
                            {"generation": g["id"], "scorer": sc.key, "metric": metric}
                        )
                        if metric in have.get(g["id"], none):
                            continue
                        records.append(
                            ScoreRecord(
                                id=rid,
                                generation_id=g["id"],
                                condition=g["condition"],
                                prompt_id=g["prompt_id"],
                                seed=g["seed"],
                                scorer=sc.name,
                                scorer_key=sc.key,
                                metric=metric,
                                value=res.value,
                                reason=res.reason,
                                extra=dict(res.extra),
                            )
                        )
                store.append(records)
                retry = sum(not is_final(r.model_dump()) for r in records)
                result.details["retryable"] = result.details.get("retryable", 0) + retry
                result.done_now += len(batch)
                bar.update(len(batch))
        close_scorer(scorer)
    return result


def current_scores(plan: Plan) -> list[dict[str, Any]]:
    """Score records of this plan's generations and scorers, deduplicated by id."""
    gen_ids = {it.id for it in plan.items}
    keys = {sc.key for sc in plan.scorers}
    by_id: dict[str, dict[str, Any]] = {}
    for rec in JsonlStore(plan.run.scores, STORED_SCORE_CHECKS).iter_dicts():
        if rec.get("generation_id") in gen_ids and rec.get("scorer_key") in keys:
            by_id[rec["id"]] = rec
    return list(by_id.values())
