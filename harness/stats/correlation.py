"""Correlation and reliability: Pearson's r, Spearman's ρ, Krippendorff's alpha (interval).

References: Pearson, K. (1896), Phil. Trans. R. Soc. A 187, 253-318; Spearman, C. (1904),
Am. J. Psychol. 15, 72-101; Krippendorff, K. (2011), Computing Krippendorff's
Alpha-Reliability, Annenberg School for Communication, U. of Pennsylvania; Hayes, A. F. &
Krippendorff, K. (2007), Commun. Methods Meas. 1, 77-89.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata

__all__ = ["krippendorff_alpha_interval", "pearson", "spearman"]


def _vec(x: Sequence[float] | np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).reshape(-1)


def pearson(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float | None:
    """Pearson's r (Pearson 1896); None when n < 2 or either side is exactly constant."""
    a, b = _vec(x), _vec(y)
    if a.size != b.size:
        raise ValueError("x and y must have the same length")
    if a.size < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return None
    a = a - a.mean()
    b = b - b.mean()
    denom = float(np.sqrt(np.sum(a * a)) * np.sqrt(np.sum(b * b)))
    if not (denom > 0 and math.isfinite(denom)):
        return None
    return max(-1.0, min(1.0, float(np.sum(a * b)) / denom))


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float | None:
    """Spearman's ρ: Pearson's r of the mid-ranks; None when n < 2 or ranks are constant."""
    a, b = _vec(x), _vec(y)
    if a.size != b.size:
        raise ValueError("x and y must have the same length")
    if a.size < 2:
        return None
    return pearson(rankdata(a), rankdata(b))


def krippendorff_alpha_interval(data: Sequence[Sequence[float]] | np.ndarray) -> float | None:
    """Krippendorff's alpha, interval metric, for a units x coders matrix (NaN = missing).

    Units with fewer than 2 values are not pairable and are left out. None when fewer than
    2 pairable units or no variation among the pairable values (D_e = 0)."""
    m = np.asarray(data, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError("data must be a units x coders matrix")
    counts = np.sum(np.isfinite(m), axis=1)
    units = m[counts >= 2]
    mu = counts[counts >= 2].astype(np.float64)
    if units.shape[0] < 2:
        return None
    values = units[np.isfinite(units)]
    n = values.size
    # Σ_{i≠j} (v_i - v_j)² = 2 N Σ (v - mean)² over a set of N values
    ss_total = float(np.sum((values - values.mean()) ** 2))
    d_e = 2.0 * n * ss_total / (n * (n - 1))
    if np.all(values == values[0]) or not d_e > 0:
        return None
    unit_means = np.nanmean(units, axis=1)
    ss_units = np.nansum((units - unit_means[:, None]) ** 2, axis=1)
    d_o = float(np.sum(2.0 * mu * ss_units / (mu - 1.0))) / n
    return 1.0 - d_o / d_e
