"""Classification metrics on predicted labels, paired comparisons of two classifiers (or
one classifier steered and unsteered) on the same texts, and their bootstrap intervals.

Labels are integer codes 0..k-1 (the caller maps names to codes). For label l over n
texts: tp = gold l and predicted l, ``predicted`` = predicted l, ``support`` = gold l.

==============  ==============================================================  ==============
quantity        definition                                                      reference
==============  ==============================================================  ==============
accuracy        (texts predicted correctly) / n
precision_l     tp / predicted; undefined (None) when l is never predicted
recall_l        tp / support; undefined when l never occurs in the gold labels
f1_l            2·tp / (predicted + support) = 2·tp / (2·tp + fp + fn), the     van Rijsbergen
                harmonic mean of precision and recall where both are defined;   (1979)
                0 when l is gold but never predicted (or predicted, never
                gold); undefined when l is neither
macro_*         unweighted mean over the labels whose value is defined
                (scikit-learn's ``average="macro"`` with ``zero_division=nan``)
McNemar exact   b = baseline correct, steered wrong; c = baseline wrong,        McNemar (1947);
                steered correct. Conditional on b + c, b ~ Binomial(b + c, ½)   Fagerland,
                under "same accuracy"; two-sided p = min(1, 2·P(X ≤ min(b,      Lydersen &
                c))) (``binom.test(b, b + c)`` in R; scipy ``binomtest``); 1    Laake (2013)
                when b + c = 0 (no discordant pair)
McNemar χ²      (|b − c| − 1)² / (b + c) on 1 df, the continuity-corrected      McNemar (1947);
                statistic (R ``mcnemar.test``, which leaves the correction out  Edwards (1948)
                when b = c); None when b + c = 0
==============  ==============================================================  ==============

Bootstrap (:func:`paired_bootstrap`): resample texts with replacement, the same indices
for the baseline and every condition (a paired bootstrap), through the one engine of
:mod:`harness.stats.bootstrap`: texts are its units, ordered as its protocol orders
clusters (the caller passes them sorted by id), ``resample_indices(n, n_resamples,
seed)`` draws them and ``percentile_interval`` makes the interval. A resample on which a
statistic is undefined (a label never predicted in it, ...) is dropped for that statistic
and counted. The statistic of each resample is computed from multiplicity-weighted counts,
which equals recomputing it on the drawn texts exactly.

References
----------
- McNemar, Q. (1947). Note on the sampling error of the difference between correlated
  proportions or percentages. *Psychometrika* 12, 153-157.
- Edwards, A. L. (1948). Note on the "correction for continuity" in testing the
  significance of the difference between correlated proportions. *Psychometrika* 13,
  185-187.
- Fagerland, M. W., Lydersen, S. & Laake, P. (2013). The McNemar test for binary
  matched-pairs data: mid-p and asymptotic are better than exact conditional. *BMC Med.
  Res. Methodol.* 13, 91. (The exact conditional test is conservative; it is reported
  because it is the one the literature we serve cites.)
- van Rijsbergen, C. J. (1979). *Information Retrieval*, 2nd ed., ch. 7 (the F measure).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as st

from .bootstrap import percentile_interval, resample_counts, resample_indices

__all__ = [
    "CountMetrics",
    "Interval",
    "McNemarResult",
    "confusion_matrix",
    "count_metrics",
    "interval_of",
    "mcnemar",
    "paired_bootstrap",
    "per_resample_metrics",
]


def _codes(values: Sequence[int] | np.ndarray, k: int, what: str) -> np.ndarray:
    a = np.asarray(values, dtype=np.int64).reshape(-1)
    if a.size and (a.min() < 0 or a.max() >= k):
        raise ValueError(f"{what} codes must lie in 0..{k - 1}")
    return a


def confusion_matrix(
    gold: Sequence[int] | np.ndarray, pred: Sequence[int] | np.ndarray, k: int
) -> np.ndarray:
    """k x k counts: row = gold label, column = predicted label."""
    g = _codes(gold, k, "gold")
    p = _codes(pred, k, "predicted")
    if g.shape != p.shape:
        raise ValueError("gold and predicted must have the same length")
    return np.bincount(g * k + p, minlength=k * k).reshape(k, k)


@dataclass(frozen=True)
class CountMetrics:
    """Accuracy and per-label / macro precision, recall and F1 (None where undefined)."""

    n: int
    accuracy: float | None
    precision: list[float | None]
    recall: list[float | None]
    f1: list[float | None]
    macro_precision: float | None
    macro_recall: float | None
    macro_f1: float | None
    support: list[int]
    predicted: list[int]


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _nanmean_rows(x: np.ndarray) -> np.ndarray:
    ok = np.isfinite(x)
    cnt = ok.sum(axis=-1)
    tot = np.where(ok, x, 0.0).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(cnt > 0, tot / np.where(cnt > 0, cnt, 1), np.nan)


def per_resample_metrics(sums: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Metrics from weighted counts, one row per resample.

    ``sums`` is (rows x (2 + 3k)): the weighted number of texts, of correct texts, then
    tp, predicted and support per label (the layout of :func:`_indicators` times the
    weights). Returns arrays with NaN where undefined: ``accuracy`` (rows,),
    ``precision``/``recall``/``f1`` (rows x k) and ``macro_*`` (rows,)."""
    n = sums[:, 0]
    correct = sums[:, 1]
    tp = sums[:, 2 : 2 + k]
    pred = sums[:, 2 + k : 2 + 2 * k]
    gold = sums[:, 2 + 2 * k : 2 + 3 * k]
    precision = _ratio(tp, pred)
    recall = _ratio(tp, gold)
    f1 = _ratio(2.0 * tp, pred + gold)
    return {
        "accuracy": _ratio(correct, n),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "macro_precision": _nanmean_rows(precision),
        "macro_recall": _nanmean_rows(recall),
        "macro_f1": _nanmean_rows(f1),
    }


def _indicators(gold: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """(n x (2 + 3k)) per-text indicators: 1, correct, tp_l, predicted_l, gold_l."""
    n = gold.size
    out = np.zeros((n, 2 + 3 * k), dtype=np.float64)
    out[:, 0] = 1.0
    out[:, 1] = gold == pred
    rows = np.arange(n)
    out[rows[gold == pred], 2 + gold[gold == pred]] = 1.0
    out[rows, 2 + k + pred] = 1.0
    out[rows, 2 + 2 * k + gold] = 1.0
    return out


def _opt(x: float) -> float | None:
    return float(x) if math.isfinite(float(x)) else None


def count_metrics(
    gold: Sequence[int] | np.ndarray, pred: Sequence[int] | np.ndarray, k: int
) -> CountMetrics:
    """Accuracy, per-label and macro precision, recall and F1 (definitions above)."""
    g = _codes(gold, k, "gold")
    p = _codes(pred, k, "predicted")
    if g.shape != p.shape:
        raise ValueError("gold and predicted must have the same length")
    sums = _indicators(g, p, k).sum(axis=0)[None, :]
    m = per_resample_metrics(sums, k)
    return CountMetrics(
        n=int(g.size),
        accuracy=_opt(m["accuracy"][0]),
        precision=[_opt(v) for v in m["precision"][0]],
        recall=[_opt(v) for v in m["recall"][0]],
        f1=[_opt(v) for v in m["f1"][0]],
        macro_precision=_opt(m["macro_precision"][0]),
        macro_recall=_opt(m["macro_recall"][0]),
        macro_f1=_opt(m["macro_f1"][0]),
        support=[int(v) for v in sums[0, 2 + 2 * k :]],
        predicted=[int(v) for v in sums[0, 2 + k : 2 + 2 * k]],
    )


@dataclass(frozen=True)
class McNemarResult:
    """Paired correctness: ``b`` baseline right / steered wrong, ``c`` the reverse."""

    both_correct: int
    b: int
    c: int
    both_wrong: int
    p_exact: float
    chi2: float | None
    p_chi2: float | None
    reason: str | None = None
    """Why the χ² fields are None (no discordant pair)."""


def mcnemar(
    baseline_correct: Sequence[bool] | np.ndarray, steered_correct: Sequence[bool] | np.ndarray
) -> McNemarResult:
    """McNemar's exact conditional test and the continuity-corrected χ² (see the table)."""
    x = np.asarray(baseline_correct, dtype=bool).reshape(-1)
    y = np.asarray(steered_correct, dtype=bool).reshape(-1)
    if x.shape != y.shape:
        raise ValueError("paired correctness arrays must have the same length")
    b = int(np.sum(x & ~y))
    c = int(np.sum(~x & y))
    both = int(np.sum(x & y))
    neither = int(np.sum(~x & ~y))
    if b + c == 0:
        return McNemarResult(
            both, b, c, neither, 1.0, None, None, reason="no discordant pair (b + c = 0)"
        )
    p_exact = float(min(1.0, st.binomtest(b, b + c, 0.5).pvalue))
    stat = (abs(b - c) - (1 if b != c else 0)) ** 2 / (b + c)
    p_chi2 = float(st.chi2.sf(stat, 1))
    return McNemarResult(both, b, c, neither, p_exact, float(stat), p_chi2)


@dataclass(frozen=True)
class Interval:
    """A percentile interval and the resamples dropped because the value was undefined."""

    low: float | None
    high: float | None
    n_dropped: int
    reason: str | None = None


def paired_bootstrap(
    gold: Sequence[int] | np.ndarray,
    preds: Sequence[Sequence[int] | np.ndarray],
    k: int,
    values: Sequence[Sequence[float] | np.ndarray] = (),
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[list[dict[str, np.ndarray]], list[np.ndarray]]:
    """Per-resample metrics of several prediction vectors on the same texts, and the
    per-resample means of paired value vectors (e.g. probability differences), all from
    the same resample indices (see the module docstring).

    Returns ``(metrics, means)``: ``metrics[j]`` is :func:`per_resample_metrics` of
    ``preds[j]`` (arrays with ``n_resamples`` rows), ``means[j]`` the resampled means of
    ``values[j]``. Pass the resulting arrays (or their differences, row by row) to
    :func:`interval_of`. Texts must be in the protocol's order (sorted by id)."""
    g = _codes(gold, k, "gold")
    n = g.size
    blocks = [_indicators(g, _codes(p, k, "predicted"), k) for p in preds]
    for p in preds:
        if np.asarray(p).size != n:
            raise ValueError("every prediction vector must have one entry per text")
    vals = [np.asarray(v, dtype=np.float64).reshape(-1) for v in values]
    if any(v.size != n for v in vals):
        raise ValueError("every value vector must have one entry per text")
    width = 2 + 3 * k
    design = np.concatenate([*blocks, *(v[:, None] for v in vals), np.zeros((n, 0))], axis=1)
    sums = np.zeros((n_resamples, design.shape[1]), dtype=np.float64)
    if n:
        idx = resample_indices(n, n_resamples, seed)
        chunk = max(1, min(n_resamples, 4_000_000 // n))  # bounds the (chunk x n) counts
        for start in range(0, n_resamples, chunk):
            rows = idx[start : start + chunk]
            sums[start : start + rows.shape[0]] = resample_counts(rows, n) @ design
    metrics = [
        per_resample_metrics(sums[:, j * width : (j + 1) * width], k) for j in range(len(blocks))
    ]
    off = len(blocks) * width
    means = [sums[:, off + j] / n if n else np.full(n_resamples, np.nan) for j in range(len(vals))]
    return metrics, means


def interval_of(values: np.ndarray, level: float = 0.95) -> Interval:
    """Percentile interval of per-resample values, NaN (undefined) resamples dropped and
    counted; None ends (with a reason) when fewer than 2 resamples are defined."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    kept = v[np.isfinite(v)]
    dropped = int(v.size - kept.size)
    if kept.size < 2:
        why = f"only {kept.size} of {v.size} resamples had a defined value"
        return Interval(None, None, dropped, why)
    lo, hi = percentile_interval(kept, level)
    return Interval(lo, hi, dropped)
