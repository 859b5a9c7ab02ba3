"""Labels and ratings metrics with percentile bootstrap intervals over texts (definitions
and the RNG protocol: :mod:`harness.validate`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import rankdata

from harness.stats.bootstrap import percentile_interval, resample_counts, resample_indices
from harness.stats.classification import auroc
from harness.stats.correlation import pearson, spearman

LEVEL = 0.95


def percentile_ci(values: np.ndarray, n_resamples: int) -> dict[str, Any]:
    ok = values[np.isfinite(values)]
    dropped = int(n_resamples - ok.size)
    if ok.size == 0:
        return {"ci_low": None, "ci_high": None, "dropped": dropped}
    lo, hi = percentile_interval(ok, LEVEL)
    return {"ci_low": lo, "ci_high": hi, "dropped": dropped}


def _stat(
    value: float | None, boot: np.ndarray | None, n_resamples: int, reason: str | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {"value": value}
    if value is None:
        out |= {"ci_low": None, "ci_high": None, "dropped": 0, "reason": reason or "undefined"}
    elif boot is None:
        out |= {"ci_low": None, "ci_high": None, "dropped": 0, "reason": "bootstrap disabled"}
    else:
        out |= percentile_ci(boot, n_resamples)
    return out


def _boot_auroc(s: np.ndarray, pos: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """AUROC of every resample: Σ_{i+, j-} w_i w_j ([s_i > s_j] + ½[s_i = s_j]) / (W+ W-)."""
    sp, sn = s[pos], s[~pos]
    kernel = (sp[:, None] > sn[None, :]) + 0.5 * (sp[:, None] == sn[None, :])
    wp, wn = counts[:, pos], counts[:, ~pos]
    num = np.sum((wp @ kernel) * wn, axis=1)
    den = wp.sum(axis=1) * wn.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def labels_metrics(
    gold: Sequence[str],
    scores: dict[str, np.ndarray],
    labels: Sequence[str],
    none_label: str | None,
    n_resamples: int,
    seed: int,
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-label P/R/F1 and AUROC with bootstrap CIs (module docstring).

    ``scores[label]`` are the scores of every label in ``labels`` except ``none_label``."""
    n = len(gold)
    scored = [lab for lab in labels if lab != none_label]
    mat = np.column_stack([scores[lab] for lab in scored])
    best = np.argmax(mat, axis=1)  # first maximum wins: ties go to the earlier label
    pred = [scored[int(b)] for b in best]
    if none_label is not None:
        top = mat.max(axis=1)
        pred = [none_label if t <= 0 else p for t, p in zip(top, pred, strict=True)]
    g = np.array(gold)
    p = np.array(pred)
    correct = (g == p).astype(np.float64)
    counts = (
        resample_counts(resample_indices(n, n_resamples, seed), n)
        if n_resamples > 0 and n > 0
        else None
    )
    per_label: dict[str, Any] = {}
    f1_boot = []
    for lab in labels:
        is_g = (g == lab).astype(np.float64)
        is_p = (p == lab).astype(np.float64)
        tp = float(np.sum(is_g * is_p))
        ng, npred = float(is_g.sum()), float(is_p.sum())
        f1 = 2 * tp / (ng + npred) if ng + npred > 0 else None
        entry: dict[str, Any] = {
            "n_gold": int(ng),
            "n_pred": int(npred),
            "tp": int(tp),
            "precision": tp / npred if npred else None,
            "recall": tp / ng if ng else None,
            "f1": f1,
        }
        if counts is not None:
            tp_b = counts @ (is_g * is_p)
            den_b = counts @ is_g + counts @ is_p
            with np.errstate(invalid="ignore", divide="ignore"):
                f1_boot.append(
                    np.where(den_b > 0, 2 * tp_b / np.where(den_b > 0, den_b, 1), np.nan)
                )
        if lab == none_label:
            entry["auroc"] = _stat(None, None, 0, "the scorer has no metric for this label")
        else:
            a = auroc(scores[lab], g == lab)
            boot = _boot_auroc(scores[lab], g == lab, counts) if counts is not None else None
            entry["auroc"] = _stat(a, boot, n_resamples, "no positive or no negative texts")
        per_label[lab] = entry
    f1s = [e["f1"] for e in per_label.values() if e["f1"] is not None]
    macro = float(np.mean(f1s)) if f1s else None
    acc = float(correct.mean()) if n else None
    acc_boot = macro_boot = None
    if counts is not None:
        acc_boot = (counts @ correct) / n
        stack = np.column_stack(f1_boot)
        with np.errstate(invalid="ignore"):
            valid = np.isfinite(stack).sum(axis=1)
            macro_boot = np.where(
                valid > 0, np.nansum(stack, axis=1) / np.maximum(valid, 1), np.nan
            )
    matrix = [[int(np.sum((g == a) & (p == b))) for b in labels] for a in labels]
    return {
        "labels": list(labels),
        "none_label": none_label,
        "accuracy": _stat(acc, acc_boot, n_resamples, "no scored texts"),
        "macro_f1": _stat(macro, macro_boot, n_resamples, "no scored texts"),
        "per_label": per_label,
        "confusion": {
            "rows": "gold",
            "columns": "predicted",
            "labels": list(labels),
            "matrix": matrix,
        },
    }


def _boot_corr(x: np.ndarray, y: np.ndarray, idx: np.ndarray, ranks: bool) -> np.ndarray:
    xs, ys = x[idx], y[idx]
    if ranks:
        xs, ys = rankdata(xs, axis=1), rankdata(ys, axis=1)
    xs = xs - xs.mean(axis=1, keepdims=True)
    ys = ys - ys.mean(axis=1, keepdims=True)
    den = np.sqrt(np.sum(xs * xs, axis=1) * np.sum(ys * ys, axis=1))
    const = np.all(x[idx] == x[idx][:, :1], axis=1) | np.all(y[idx] == y[idx][:, :1], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.sum(xs * ys, axis=1) / den
    return np.where(const | ~(den > 0), np.nan, np.clip(r, -1.0, 1.0))


def ratings_metrics(
    scores: np.ndarray, ratings: np.ndarray, n_resamples: int, seed: int
) -> dict[str, Any]:
    n = int(scores.size)
    rho = spearman(scores, ratings) if n >= 3 else None
    r = pearson(scores, ratings) if n >= 3 else None
    boot_s = boot_p = None
    if n_resamples > 0 and n >= 3:
        idx = resample_indices(n, n_resamples, seed)
        boot_s = _boot_corr(scores, ratings, idx, ranks=True)
        boot_p = _boot_corr(scores, ratings, idx, ranks=False)
    why = f"fewer than 3 scored texts (n={n})" if n < 3 else "constant scores or ratings"
    return {
        "spearman": _stat(rho, boot_s, n_resamples, why),
        "pearson": _stat(r, boot_p, n_resamples, why),
    }
