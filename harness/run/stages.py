"""The generate and score stages, each reading the previous stage's records.

Every stage resumes: it reads what its output store already holds (by content id) and
does only the missing work. :mod:`harness.run.runner` chains them with analysis and the
report inside one manifest session.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from harness.config.scorers import ResolvedScorer
from harness.core.batching import chunks
from harness.core.errors import StoreError
from harness.core.manifest import Manifest
from harness.core.records import ClassificationRecord, GenerationRecord
from harness.core.scoring import (
    ScoreResult,
    ScorerFacts,
    check_results,
    close_scorer,
    is_final,
    runs_elsewhere,
    score_batch,
)
from harness.core.store import STORED_GENERATION_CHECKS, STORED_SCORE_CHECKS, JsonlStore
from harness.model.loading import LoadedModel, load_model
from harness.run.classification import Classified
from harness.run.engines import open_engine, open_scoring
from harness.run.engines.base import BatchResult, BatchTask, ScoringUnit, UnitTask
from harness.run.engines.base import generation_units as generation_units
from harness.run.generation import Output, Row
from harness.run.plan import Plan, ResolvedCondition, WorkItem, scorer_context
from harness.run.score_records import (
    GENERATION_FIELDS,
    result_records,
    scored_metrics,
    scoring_items,
)
from harness.run.throughput import ThroughputLog, calls_made, unit_throughput

if TYPE_CHECKING:
    from harness.run.engines.ray_scoring import RayScoring

log = logging.getLogger(__name__)


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
            self._lm = load_model(self.plan.spec.model, self.plan.task)
            self.manifest.set_model(
                self._lm.fingerprint, self._lm.device, str(self._lm.dtype).removeprefix("torch.")
            )
        return self._lm


def generation_tasks(
    plan: Plan, units: list[list[str]], done: set[str], per_task: int | None
) -> list[UnitTask]:
    """The missing work as tasks: per unit, its fixed batches that still lack a text, in
    groups of ``per_task`` (None: one task per unit)."""
    batches = {c.name: batch_plan(plan, c.name) for c in plan.conditions}
    tasks = []
    for unit in units:
        todo = []
        for j in range(len(batches[unit[0]])):
            # Per condition, the same fixed batch as when generated alone.
            members = [(c, batches[c][j]) for c in unit]
            members = [(c, b) for c, b in members if any(it.id not in done for it in b)]
            if members:
                its = [it for _, b in members for it in b]
                rows = tuple(Row(it.prompt.id, it.prompt.text, it.seed) for it in its)
                ids = tuple(it.id for it in its)
                todo.append(BatchTask(j, tuple(c for c, _ in members), rows, ids))
        for group in chunks(todo, per_task or max(1, len(todo))):
            tasks.append(UnitTask(tuple(unit), tuple(group)))
    return tasks


OnRecords = Callable[[list[GenerationRecord | ClassificationRecord]], None]
"""Told of each batch of generation records once they are stored (overlapped scoring)."""


def generate_stage(
    plan: Plan,
    manifest: Manifest,
    models: ModelHolder,
    on_records: OnRecords | None = None,
    local: bool = False,
) -> StageResult:
    """Generate every missing text through the spec's engine (``local``: in this process
    whatever the spec says); this process alone appends the records, batch by batch, and
    hands each stored batch to ``on_records``. Throughput per unit is the driver's wall
    time between results, so with parallel workers the units' seconds add up to the
    stage's wall time."""
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
    todo = {it.condition for it in plan.items if it.id not in done}
    pending = [c for c in plan.conditions if c.name in todo]
    execution = plan.spec.execution
    if local:
        execution = execution.model_copy(update={"engine": "local"})
    gen = plan.spec.generation
    engine = open_engine(execution, plan.spec.model, gen, pending, models.get)
    prepared: dict[str, Any] = manifest.data.setdefault("conditions", {})
    by_name = {c.name: c for c in pending}
    pace = ThroughputLog(manifest)
    paced: dict[tuple[str, ...], list[float]] = {}  # unit -> [texts, new tokens, seconds]
    try:
        units, meta = engine.units(gen.conditions_per_batch)
        prepared.update(meta)
        manifest.save()
        per_task = execution.batches_per_task if execution.engine != "local" else None
        tasks = generation_tasks(plan, units, done, per_task)
        model_set = execution.engine == "local"  # the local model was recorded on loading
        with tqdm(total=missing, desc="generate", unit="text") as bar:
            last = time.perf_counter()
            for res in engine.generate(tasks):
                if res.prepared or (res.model is not None and not model_set):
                    prepared.update(res.prepared)
                    if res.model is not None and not model_set:
                        manifest.set_model(res.model.fingerprint, res.model.device, res.model.dtype)
                        model_set = True
                    manifest.save()
                bar.set_postfix_str(", ".join(res.task.unit))
                records = _records(plan, res, by_name, done)
                store.append(records)
                if on_records is not None:
                    on_records(records)
                done.update(r.id for r in records)
                result.done_now += len(records)
                bar.update(len(records))
                now = time.perf_counter()
                figures = paced.setdefault(res.task.unit, [0, 0, 0.0])
                figures[0] += len(records)
                figures[1] += sum(getattr(r, "n_new_tokens", 0) for r in records)
                figures[2] += now - last
                last = now
    finally:
        engine.close()
        for unit, (texts, new_tokens, seconds) in paced.items():
            if texts:
                pace.add_unit(unit_throughput(list(unit), int(texts), int(new_tokens), seconds))
    return result


def _records(
    plan: Plan, res: BatchResult, conditions: dict[str, ResolvedCondition], done: set[str]
) -> list[GenerationRecord | ClassificationRecord]:
    """The generation (or classification) records of one batch's outputs, less those
    already in the store."""
    batch = res.batch
    size = len(batch.rows) // len(batch.members)
    records: list[GenerationRecord | ClassificationRecord] = []
    gold = {p.id: p.label for p in plan.prompts}
    for k, (row, gid, out) in enumerate(zip(batch.rows, batch.ids, res.outputs, strict=True)):
        if gid in done:
            continue
        cond = conditions[batch.members[k // size]]
        if isinstance(out, Classified):
            records.append(
                ClassificationRecord(
                    id=gid,
                    condition=cond.name,
                    method=cond.method_name,
                    prompt_id=row.prompt_id,
                    seed=row.seed,
                    prompt=row.prompt,
                    gold=gold.get(row.prompt_id),
                    predicted=out.predicted,
                    text=out.predicted,
                    probs=out.probs,
                    n_tokens=out.n_tokens,
                    truncated=out.truncated,
                    model=plan.spec.model.id,
                )
            )
            continue
        assert isinstance(out, Output)
        records.append(
            GenerationRecord(
                id=gid,
                condition=cond.name,
                method=cond.method_name,
                prompt_id=row.prompt_id,
                seed=row.seed,
                prompt=row.prompt,
                rendered_prompt=out.rendered_prompt,
                text=out.text,
                n_prompt_tokens=out.n_prompt_tokens,
                n_new_tokens=out.n_new_tokens,
                finish=out.finish,
                model=plan.spec.model.id,
            )
        )
    return records


# --- reading the stores (streamed: only ids, or the fields a stage needs, are kept) ---


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


def describe_scorer(sc: ResolvedScorer, facts: ScorerFacts) -> dict[str, Any]:
    """What the manifest records of a scorer: type, key, metrics and its own description."""
    return {"type": sc.type_name, "key": sc.key, "metrics": list(facts.metrics)} | dict(
        facts.description
    )


def scoring_state(
    plan: Plan,
) -> tuple[JsonlStore, dict[str, dict[str, frozenset[str]]], list[str]]:
    """Where scoring starts: the scores store (a torn last line repaired), what it holds
    (:func:`scored_metrics`) and the ids of this plan's stored generations, in plan order;
    shared by the score stage and the overlapped consumer so that both decide alike."""
    store = JsonlStore(plan.run.scores, STORED_SCORE_CHECKS)
    dropped = store.repair()
    if dropped:
        log.warning("%s: dropped a torn last record (%d bytes)", store.path, dropped)
    present = JsonlStore(plan.run.generations).ids()
    return store, scored_metrics(store), [it.id for it in plan.items if it.id in present]


def pending_generations(have: dict[str, frozenset[str]], gen_ids: list[str]) -> list[str]:
    """The generations a scorer still has to score, decided without constructing it (which
    may load a model): those with no record of it or fewer metrics than others have (a
    kill between the records of one text). Records whose id exists are not written twice.
    ``have``: generation id -> the scorer's final metrics."""
    none: frozenset[str] = frozenset()
    seen = none.union(*have.values())
    return [g for g in gen_ids if have.get(g, none) != seen or not seen]


Scored = Iterator[tuple[list[dict[str, Any]], list[dict[str, ScoreResult]]]]
"""(batch of generations, their checked results), batch by batch in plan order."""


def score_stage(
    plan: Plan,
    manifest: Manifest,
    models: ModelHolder | None = None,
    scorers: list[ResolvedScorer] | None = None,
) -> StageResult:
    """Score the stored texts with ``scorers`` (default: all the plan's), each doing only
    the (text, metric) pairs not already final.

    With the Ray engine, a model-using scorer with a synchronous ``score``
    (:func:`~harness.core.scoring.runs_elsewhere`) is built on scoring actors, which score
    its batches; a judge stays here and sends its local model's calls to them. Batches,
    records and their order are the local engine's either way: this process plans them
    and alone appends the records."""
    pool = open_scoring(plan.spec.execution)
    try:
        return _score_stage(plan, manifest, models, scorers, pool)
    finally:
        if pool is not None:
            pool.close()


def _score_stage(
    plan: Plan,
    manifest: Manifest,
    models: ModelHolder | None,
    scorers: list[ResolvedScorer] | None,
    pool: RayScoring | None,
) -> StageResult:
    store, done, gen_ids = scoring_state(plan)
    result = StageResult()
    described: dict[str, Any] = manifest.data.setdefault("scorers", {})
    pace = ThroughputLog(manifest)
    none: frozenset[str] = frozenset()
    for sc in plan.scorers if scorers is None else scorers:
        have = done.get(sc.key, {})
        pending_ids = pending_generations(have, gen_ids)
        result.done_before += len(gen_ids) - len(pending_ids)
        if not pending_ids:
            continue
        scorer: Any = None
        if pool is not None and runs_elsewhere(sc.scorer_cls, sc.params):
            build = functools.partial(sc.build, scorer_context(plan))
            facts = pool.facts(sc.name, sc.key, build)
        else:
            context = scorer_context(plan, models.get if models else None, pool)
            scorer = sc.build(context)
            facts = ScorerFacts.of(scorer)
        metrics = list(facts.metrics)
        wanted = set(metrics)
        pending = load_generations(plan, {g for g in gen_ids if not wanted <= have.get(g, none)})
        before = described.get(sc.name) or {}
        earlier = before.get("usage") if before.get("key") == sc.key else None
        described[sc.name] = describe_scorer(sc, facts)
        manifest.save()
        batches = list(chunks(pending, facts.batch_size))
        scored: Scored
        if scorer is None:
            assert pool is not None
            units = [
                ScoringUnit(sc.name, i, tuple(scoring_items(b))) for i, b in enumerate(batches)
            ]
            scored = (
                (batches[unit.index], check_results(sc.name, metrics, unit.items, results))
                for unit, results in pool.score(units, sc.key, build)
            )
        else:
            scored = ((b, score_batch(scorer, sc.name, metrics, scoring_items(b))) for b in batches)
        seconds, calls_before = 0.0, calls_made(scorer)
        with tqdm(total=len(pending), desc=f"score:{sc.name}", unit="text") as bar:
            while True:
                started = time.perf_counter()
                step = next(scored, None)
                seconds += time.perf_counter() - started
                if step is None:
                    break
                batch, results = step
                records = result_records(sc, metrics, batch, results, have)
                store.append(records)
                retry = sum(not is_final(r.model_dump()) for r in records)
                result.details["retryable"] = result.details.get("retryable", 0) + retry
                result.done_now += len(batch)
                bar.update(len(batch))
                record_usage(scorer, described[sc.name], earlier, manifest)
        calls_after = calls_made(scorer)
        calls = None if calls_after is None else calls_after - (calls_before or 0)
        pace.add_scorer(sc.name, len(pending), seconds, calls, overlapped=False)
        if scorer is not None:
            close_scorer(scorer)
    return result


def record_usage(
    scorer: Any, entry: dict[str, Any], earlier: dict[str, Any] | None, manifest: Manifest
) -> None:
    """Store a scorer's calls, tokens and cost (a judge's ``usage_record``) in its manifest
    entry, added to what earlier sessions of the same scorer key recorded; saved after
    every batch, so a killed run still shows what it spent."""
    usage_record: Callable[[dict[str, Any] | None], dict[str, Any]] | None = getattr(
        scorer, "usage_record", None
    )
    if usage_record is not None:
        entry["usage"] = usage_record(earlier)
        manifest.save()


def current_scores(plan: Plan) -> list[dict[str, Any]]:
    """Score records of this plan's generations and scorers, deduplicated by id."""
    gen_ids = {it.id for it in plan.items}
    keys = {sc.key for sc in plan.scorers}
    by_id: dict[str, dict[str, Any]] = {}
    for rec in JsonlStore(plan.run.scores, STORED_SCORE_CHECKS).iter_dicts():
        if rec.get("generation_id") in gen_ids and rec.get("scorer_key") in keys:
            by_id[rec["id"]] = rec
    return list(by_id.values())
