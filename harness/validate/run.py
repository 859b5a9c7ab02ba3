"""``validate-scorer``: score a gold file with a scorer and compute its metrics."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.core.errors import ValidationError
from harness.core.ids import utc_now
from harness.core.scoring import ScoreResult, ScoringItem, close_scorer, score_batch
from harness.validate.gold import load_gold, resolve_data
from harness.validate.metrics import LEVEL, labels_metrics, ratings_metrics
from harness.validate.setup import build_scorer, load_scorer_setup


def _display_path(path: Path) -> str:
    """Relative to the working directory when inside it (no machine paths in reports)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def score_items(scorer: Any, name: str, texts: Sequence[str]) -> list[dict[str, ScoreResult]]:
    metrics = list(scorer.metrics)
    out: list[dict[str, ScoreResult]] = []
    size = max(1, int(getattr(scorer, "batch_size", 32)))
    for start in range(0, len(texts), size):
        items = [
            ScoringItem(t, "", f"gold-{start + i}", "validation")
            for i, t in enumerate(texts[start : start + size])
        ]
        out += score_batch(scorer, name, metrics, items)
    close_scorer(scorer)
    return out


def validate_scorer(
    scorer_target: str,
    data: str,
    *,
    n_resamples: int = 2000,
    seed: int = 0,
    metric: str | None = None,
    none_label: str | None = None,
    scorer: Any = None,
) -> dict[str, Any]:
    """Score the gold file with the scorer and compute the metrics (JSON-ready, no NaN)."""
    setup = load_scorer_setup(scorer_target)
    path = resolve_data(data)
    mode, gold = load_gold(path)
    if scorer is None:
        scorer = build_scorer(setup)
    metrics = list(scorer.metrics)
    result: dict[str, Any] = {
        "created": utc_now(),
        "mode": mode,
        "scorer": {
            "type": setup.type,
            "name": setup.name,
            "params": setup.params,
            "source": setup.source,
            "metrics": metrics,
        },
        "data": data,
        "data_path": _display_path(path),
        "data_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "n_texts": len(gold),
        "bootstrap": {
            "method": "percentile",
            "unit": "text",
            "level": LEVEL,
            "resamples": n_resamples,
            "seed": seed,
        },
    }
    describe = getattr(scorer, "describe", None)
    if callable(describe):
        result["scorer"]["describe"] = describe()
    if mode == "labels":
        labels = list(dict.fromkeys(str(it.label) for it in gold))
        missing = [lab for lab in labels if lab not in metrics]
        if none_label is not None:
            if none_label not in labels:
                raise ValidationError(f"--none-label '{none_label}' is not a gold label {labels}")
            if none_label in metrics:
                raise ValidationError(
                    f"--none-label '{none_label}': the scorer has a metric of that name"
                )
        elif len(missing) == 1:
            none_label = missing[0]
        others = [lab for lab in missing if lab != none_label]
        if others:
            raise ValidationError(
                f"the scorer has no metric for gold labels {others} (its metrics: "
                f"{', '.join(metrics)}); at most one label may lack one (the none label). "
                "Map model labels to these names (classifier `labels`) or choose the labels."
            )
        used = [lab for lab in labels if lab != none_label]
        needed = used
    else:
        traits = {it.trait for it in gold if it.trait}
        if metric is None:
            if len(traits) != 1:
                raise ValidationError(
                    f"{path}: records name traits {sorted(traits)}; choose one with --metric"
                )
            metric = traits.pop()
        if metric not in metrics:
            raise ValidationError(
                f"metric '{metric}' is not a metric of the scorer (has: {', '.join(metrics)}); "
                "use --metric"
            )
        needed = [metric]
    results = score_items(scorer, setup.name, [it.text for it in gold])
    keep: list[int] = []
    reasons: Counter[str] = Counter()
    for i, row in enumerate(results):
        nulls = [row[m].reason for m in needed if row[m].value is None]
        if nulls:
            reasons[str(nulls[0])] += 1
        else:
            keep.append(i)
    result["n_scored"] = len(keep)
    result["n_unscored"] = len(gold) - len(keep)
    result["unscored_reasons"] = dict(reasons)
    if mode == "labels":
        scores = {
            lab: np.array([results[i][lab].value for i in keep], dtype=np.float64) for lab in needed
        }
        result |= labels_metrics(
            [str(gold[i].label) for i in keep], scores, labels, none_label, n_resamples, seed
        )
    else:
        assert metric is not None
        result["metric"] = metric
        s = np.array([results[i][metric].value for i in keep], dtype=np.float64)
        y = np.array([gold[i].rating for i in keep], dtype=np.float64)
        result |= ratings_metrics(s, y, n_resamples, seed)
    return result
