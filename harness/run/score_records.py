"""Score records from a scorer's results, and what the score stage reads of the stores.

Kept apart from :mod:`harness.run.stages` and light (no torch, no model code): the
overlapped scoring process (:mod:`harness.run.consumer`) builds records with it and starts
in well under a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.config.scorers import ResolvedScorer
from harness.core.ids import content_id
from harness.core.records import ScoreRecord
from harness.core.scoring import ScoreResult, ScoringItem, is_final
from harness.core.secrets import scrub
from harness.core.store import JsonlStore

GENERATION_FIELDS = ("id", "condition", "prompt_id", "seed", "prompt", "text")
"""What the score stage needs of a generation record (the rest stays on disk)."""


def scoring_items(batch: list[dict[str, Any]]) -> list[ScoringItem]:
    """What a scorer sees of a batch of generations (:data:`GENERATION_FIELDS` dicts)."""
    return [ScoringItem(g["text"], g["prompt"], g["id"], g["condition"]) for g in batch]


def result_records(
    sc: ResolvedScorer,
    metrics: Sequence[str],
    batch: list[dict[str, Any]],
    results: list[dict[str, ScoreResult]],
    have: dict[str, frozenset[str]],
) -> list[ScoreRecord]:
    """The records of one batch's checked results, wherever the scorer ran; metrics
    already final in ``have`` are left out."""
    records = []
    none: frozenset[str] = frozenset()
    for g, row in zip(batch, results, strict=True):
        for metric in metrics:
            if metric in have.get(g["id"], none):
                continue
            res = row[metric]
            records.append(
                ScoreRecord(
                    id=content_id({"generation": g["id"], "scorer": sc.key, "metric": metric}),
                    generation_id=g["id"],
                    condition=g["condition"],
                    prompt_id=g["prompt_id"],
                    seed=g["seed"],
                    scorer=sc.name,
                    scorer_key=sc.key,
                    metric=metric,
                    value=res.value,
                    reason=scrub(res.reason) if res.reason else None,
                    extra=dict(res.extra),
                )
            )
    return records


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
