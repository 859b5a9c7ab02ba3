"""The one bootstrap engine: resampling units (texts) or clusters (prompts) with
replacement, and percentile intervals. Cohen's d (here), the agreement between scorers
(:mod:`harness.analysis.agreement`) and scorer validation (:mod:`harness.validate`) all
draw their resamples and intervals from these functions, under one RNG protocol.

References
----------
- Davison, A. C. & Hinkley, D. V. (1997). *Bootstrap Methods and their Application*,
  §3.8 (resampling clustered data: resample whole clusters with replacement).
- Field, C. A. & Welsh, A. H. (2007). Bootstrapping clustered data. *J. R. Statist.
  Soc. B* 69, 369-390.

RNG protocol (exact, so that anyone can reproduce an interval)
-------------------------------------------------------------
1. ``clusters_sorted = sorted(set(str(c) for c in clusters))``; k = its length.
2. ``rng = np.random.default_rng(seed)``;
   ``idx = rng.integers(0, k, size=(n_resamples, k))``; row r is resample r. This is the
   same stream as calling ``rng.integers(0, k, size=k)`` once per resample in order
   (numpy's default int64 output; the tests' reference uses the per-resample loop).
3. Resample r consists of all pairs of the prompts ``clusters_sorted[idx[r, j]]`` for
   j = 0..k-1, a prompt drawn twice contributing its pairs twice. Its d is
   ``cohens_d(steered, baseline)`` over those pairs (n1 = n2 = number of pairs).
4. Resamples whose d is undefined (zero pooled SD: every drawn value constant within each
   condition, or pooled SD <= 1e-10 × the largest |value| in the data) are dropped and
   counted.
5. ``np.percentile(kept_d, [100·(1-level)/2, 100·(1+level)/2])`` with numpy's default
   linear interpolation.

The d of each resample is computed from per-prompt sums and sums of squares (after
centring each condition at its overall mean), which equals the direct formula up to
rounding; zero pooled SD is decided exactly from per-prompt minima and maxima.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._common import REL_ZERO_SD, FloatArray, as_float_array, max_abs

__all__ = [
    "BootResult",
    "cluster_bootstrap",
    "cluster_bootstrap_d",
    "percentile_interval",
    "resample_counts",
    "resample_indices",
]


@dataclass(frozen=True)
class BootResult:
    """Percentile interval (``ci_low``, ``ci_high``; ``None`` with ``reason`` when
    unavailable), ``n_resamples`` drawn, ``n_dropped`` resamples with undefined d, the
    ``seed`` used and the number of clusters ``k``."""

    ci_low: float | None
    ci_high: float | None
    n_resamples: int
    n_dropped: int
    seed: int
    k: int
    reason: str | None = None


def resample_indices(k: int, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples x k) draws of unit indices 0..k-1 with replacement (protocol step 2)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, k, size=(n_resamples, k))


def resample_counts(idx: np.ndarray, k: int) -> np.ndarray:
    """(rows x k) multiplicity of each unit in each resample of ``idx``, as floats."""
    r = idx.shape[0]
    flat = (np.arange(r)[:, None] * k + idx).reshape(-1)
    return np.bincount(flat, minlength=r * k).reshape(r, k).astype(np.float64)


def percentile_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap values (numpy's default linear interpolation)."""
    alpha = 1.0 - level
    lo, hi = np.percentile(values, [100.0 * alpha / 2.0, 100.0 * (1.0 - alpha / 2.0)])
    return float(lo), float(hi)


def cluster_bootstrap(
    statistic: Callable[[np.ndarray], float | None],
    clusters: Sequence[Any],
    n_resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    min_kept: int = 1,
) -> BootResult:
    """Percentile interval of any statistic over cluster resamples.

    ``statistic(rows)`` receives the row indices of one resample (every row of each drawn
    cluster, a cluster drawn twice contributing twice) and returns a number, or None when
    undefined on that resample (dropped and counted). Clusters are ordered as in step 1 of
    the protocol, so a cluster's rows are drawn exactly as in :func:`cluster_bootstrap_d`."""
    labels = [str(c) for c in clusters]
    uniq = sorted(set(labels))
    k = len(uniq)
    if n_resamples < 1:
        return BootResult(None, None, 0, 0, seed, k, reason="n_resamples < 1")
    pos = {c: i for i, c in enumerate(uniq)}
    members: list[list[int]] = [[] for _ in uniq]
    for i, c in enumerate(labels):
        members[pos[c]].append(i)
    arrays = [np.array(m, dtype=np.intp) for m in members]
    kept = []
    for row in resample_indices(k, n_resamples, seed):
        value = statistic(np.concatenate([arrays[j] for j in row]))
        if value is not None and math.isfinite(value):
            kept.append(value)
    n_dropped = n_resamples - len(kept)
    if len(kept) < min_kept:
        why = f"only {len(kept)} of {n_resamples} resamples had a defined value"
        return BootResult(None, None, n_resamples, n_dropped, seed, k, reason=why)
    lo, hi = percentile_interval(np.array(kept), level)
    return BootResult(lo, hi, n_resamples, n_dropped, seed, k)


def cluster_bootstrap_d(
    baseline: FloatArray,
    steered: FloatArray,
    clusters: Sequence[Any],
    n_resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> BootResult:
    """Percentile CI for Cohen's d by resampling clusters (prompts) with replacement,
    keeping all pairs (seeds) of a drawn prompt together. See the module docstring for
    the exact RNG protocol. Inputs must be complete pairs (finite values)."""
    b = as_float_array(baseline)
    s = as_float_array(steered)
    labels = [str(c) for c in clusters]
    if not (b.size == s.size == len(labels)):
        raise ValueError("baseline, steered and clusters must have the same length")
    uniq = sorted(set(labels))
    k = len(uniq)
    if n_resamples < 1:
        return BootResult(None, None, 0, 0, seed, k, reason="n_resamples < 1")
    if b.size == 0 or not (np.all(np.isfinite(b)) and np.all(np.isfinite(s))):
        return BootResult(None, None, 0, 0, seed, k, reason="no complete finite pairs")
    if k < 2:
        return BootResult(
            None,
            None,
            0,
            0,
            seed,
            k,
            reason=f"a cluster bootstrap needs at least 2 prompts (got {k})",
        )
    pos = {c: i for i, c in enumerate(uniq)}
    cid = np.array([pos[c] for c in labels], dtype=np.intp)

    # Per-cluster summaries (centred for numerical stability).
    bc = b - float(np.mean(b))
    sc = s - float(np.mean(s))
    m = np.bincount(cid, minlength=k).astype(np.float64)
    sum_b = np.bincount(cid, weights=bc, minlength=k)
    sum_s = np.bincount(cid, weights=sc, minlength=k)
    ss_b = np.bincount(cid, weights=bc * bc, minlength=k)
    ss_s = np.bincount(cid, weights=sc * sc, minlength=k)
    min_b = np.full(k, np.inf)
    max_b = np.full(k, -np.inf)
    min_s = np.full(k, np.inf)
    max_s = np.full(k, -np.inf)
    np.minimum.at(min_b, cid, b)
    np.maximum.at(max_b, cid, b)
    np.minimum.at(min_s, cid, s)
    np.maximum.at(max_s, cid, s)

    idx = resample_indices(k, n_resamples, seed)
    shift = float(np.mean(s)) - float(np.mean(b))
    zero_sd = REL_ZERO_SD * max_abs(b, s)  # same zero rule as effect_size.pooled_sd
    d = np.empty(n_resamples, dtype=np.float64)
    ok = np.zeros(n_resamples, dtype=bool)
    chunk = max(1, min(n_resamples, 4_000_000 // k))  # bounds the (chunk x k) matrices
    for start in range(0, n_resamples, chunk):
        rows = idx[start : start + chunk]
        r = rows.shape[0]
        counts = resample_counts(rows, k)
        n = counts @ m
        mean_b = (counts @ sum_b) / n
        mean_s = (counts @ sum_s) / n
        var_b = np.maximum(counts @ ss_b - n * mean_b**2, 0.0) / (n - 1)
        var_s = np.maximum(counts @ ss_s - n * mean_s**2, 0.0) / (n - 1)
        drawn = counts > 0
        const_b = np.where(drawn, max_b, -np.inf).max(axis=1) == np.where(drawn, min_b, np.inf).min(
            axis=1
        )
        const_s = np.where(drawn, max_s, -np.inf).max(axis=1) == np.where(drawn, min_s, np.inf).min(
            axis=1
        )
        var_b = np.where(const_b, 0.0, var_b)
        var_s = np.where(const_s, 0.0, var_s)
        # n1 = n2 = n: pooled variance ((n-1)·s_s² + (n-1)·s_b²) / (2n - 2) = mean of the two.
        pooled = np.sqrt((var_b + var_s) / 2.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            dd = (mean_s - mean_b + shift) / pooled
        good = ~(const_b & const_s) & (n >= 2) & (pooled > zero_sd) & np.isfinite(dd)
        d[start : start + r] = dd
        ok[start : start + r] = good
    kept = d[ok]
    n_dropped = int(n_resamples - kept.size)
    if kept.size < 2:
        return BootResult(
            None,
            None,
            n_resamples,
            n_dropped,
            seed,
            k,
            reason=f"only {kept.size} of {n_resamples} resamples had a defined d",
        )
    lo_f, hi_f = percentile_interval(kept, level)
    if not (math.isfinite(lo_f) and math.isfinite(hi_f)):  # pragma: no cover - defensive
        return BootResult(None, None, n_resamples, n_dropped, seed, k, reason="non-finite")
    return BootResult(lo_f, hi_f, n_resamples, n_dropped, seed, k)
