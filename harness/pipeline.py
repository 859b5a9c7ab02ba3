"""The stages: generate -> score -> analyze -> report, each reading the previous stage's files.

Every stage resumes: it reads what its output file already holds (by content id) and does
only the missing work. ``run`` chains the four.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tqdm.auto import tqdm

from harness.generate import Row, generate_rows
from harness.manifest import Manifest
from harness.models import LoadedModel, load_model
from harness.plan import Plan, WorkItem, scorer_context
from harness.records import GenerationRecord, JsonlStore, ScoreRecord, content_id
from judges.base import ScoringItem, check_results

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


def generate_stage(plan: Plan, manifest: Manifest, models: ModelHolder) -> StageResult:
    store = JsonlStore(plan.path("generations"))
    dropped = store.repair()
    if dropped:
        log.warning("%s: dropped a torn last record (%d bytes)", store.path, dropped)
    done = store.ids()
    wanted = {it.id for it in plan.items}
    result = StageResult(done_before=len(done & wanted))
    missing = len(wanted - done)
    if missing == 0:
        return result
    prepared: dict[str, Any] = manifest.data.setdefault("conditions", {})
    with tqdm(total=missing, desc="generate", unit="text") as bar:
        for cond in plan.conditions:
            batches = [b for b in batch_plan(plan, cond.name) if any(it.id not in done for it in b)]
            if not batches:
                continue
            lm = models.get()
            bar.set_postfix_str(cond.name)
            meta = cond.method.prepare(lm)
            prepared[cond.name] = {"method": cond.spec.method, "key": cond.key, **meta}
            manifest.save()
            for batch in batches:
                rows = [Row(it.prompt.id, it.prompt.text, it.seed) for it in batch]
                outputs = generate_rows(lm, cond.method, rows, plan.spec.generation)
                records = [
                    GenerationRecord(
                        id=it.id,
                        condition=cond.name,
                        method=cond.spec.method,
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
                    for it, out in zip(batch, outputs, strict=True)
                    if it.id not in done
                ]
                store.append(records)
                done.update(r.id for r in records)
                result.done_now += len(records)
                bar.update(len(records))
    return result


def current_generations(plan: Plan) -> list[dict[str, Any]]:
    """This plan's generation records (records of items no longer in the spec are skipped)."""
    wanted = {it.id for it in plan.items}
    by_id = {r["id"]: r for r in JsonlStore(plan.path("generations")).iter_dicts()}
    return [by_id[it.id] for it in plan.items if it.id in by_id and it.id in wanted]


def _run_scorer(scorer: Any, items: list[ScoringItem]) -> Any:
    ascore = getattr(scorer, "ascore", None)
    if ascore is not None and inspect.iscoroutinefunction(ascore):
        return asyncio.run(ascore(items))
    return scorer.score(items)


def score_stage(plan: Plan, manifest: Manifest) -> StageResult:
    store = JsonlStore(plan.path("scores"))
    dropped = store.repair()
    if dropped:
        log.warning("%s: dropped a torn last record (%d bytes)", store.path, dropped)
    existing_ids = store.ids()
    done_pairs: dict[tuple[str, str], set[str]] = defaultdict(set)
    for rec in store.iter_dicts():
        done_pairs[(rec["generation_id"], rec["scorer_key"])].add(rec["metric"])
    generations = current_generations(plan)
    result = StageResult()
    described: dict[str, Any] = manifest.data.setdefault("scorers", {})
    for sc in plan.scorers:
        # Without constructing the scorer (which may load a model), a generation is pending
        # when it has no record of this scorer or fewer metrics than others have (a kill
        # between the records of one text). Records whose id exists are not written twice.
        seen = set().union(*(m for (_, key), m in done_pairs.items() if key == sc.key))
        pending = [
            g for g in generations if done_pairs.get((g["id"], sc.key), set()) != seen or not seen
        ]
        result.done_before += len(generations) - len(pending)
        if not pending:
            continue
        scorer = sc.scorer_cls(sc.params, scorer_context(plan))
        metrics = list(scorer.metrics)
        pending = [
            g for g in generations if not set(metrics) <= done_pairs.get((g["id"], sc.key), set())
        ]
        describe: Callable[[], dict[str, Any]] | None = getattr(scorer, "describe", None)
        described[sc.name] = {"type": sc.spec.type, "key": sc.key, "metrics": metrics}
        if describe is not None:
            described[sc.name] |= describe()
        manifest.save()
        with tqdm(total=len(pending), desc=f"score:{sc.name}", unit="text") as bar:
            for batch in chunks(pending, max(1, int(scorer.batch_size))):
                items = [
                    ScoringItem(g["text"], g["prompt"], g["id"], g["condition"]) for g in batch
                ]
                results = check_results(sc.name, metrics, items, _run_scorer(scorer, items))
                records = []
                for g, row in zip(batch, results, strict=True):
                    for metric in metrics:
                        res = row[metric]
                        rid = content_id(
                            {"generation": g["id"], "scorer": sc.key, "metric": metric}
                        )
                        if rid in existing_ids:
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
                existing_ids.update(r.id for r in records)
                result.done_now += len(batch)
                bar.update(len(batch))
        close = getattr(scorer, "close", None)
        if callable(close):
            close()
    return result


def current_scores(plan: Plan) -> list[dict[str, Any]]:
    """Score records of this plan's generations and scorers, deduplicated by id."""
    gen_ids = {it.id for it in plan.items}
    keys = {sc.key for sc in plan.scorers}
    by_id: dict[str, dict[str, Any]] = {}
    for rec in JsonlStore(plan.path("scores")).iter_dicts():
        if rec.get("generation_id") in gen_ids and rec.get("scorer_key") in keys:
            by_id[rec["id"]] = rec
    return list(by_id.values())


def ensure_dirs(plan: Plan) -> None:
    Path(plan.run_dir).mkdir(parents=True, exist_ok=True)
