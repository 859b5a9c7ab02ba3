"""Random-effects pooling of per-seed effect sizes.

References
----------
- DerSimonian, R. & Laird, N. (1986). Meta-analysis in clinical trials. *Controlled
  Clinical Trials* 7, 177-188. Method-of-moments between-study variance τ².
- Higgins, J. P. T. & Thompson, S. G. (2002). Quantifying heterogeneity in a
  meta-analysis. *Statistics in Medicine* 21, 1539-1558. I² = (Q - (k-1)) / Q.
- Hedges, L. V. & Olkin, I. (1985). Large-sample variance of d:
  (n1 + n2)/(n1·n2) + d²/(2(n1 + n2)).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as st

__all__ = ["MetaResult", "d_sampling_variance", "dersimonian_laird"]


def d_sampling_variance(d: float, n1: int, n2: int) -> float:
    """Large-sample variance of Cohen's d: (n1 + n2)/(n1·n2) + d²/(2(n1 + n2))."""
    if n1 < 1 or n2 < 1:
        raise ValueError("group sizes must be positive")
    return (n1 + n2) / (n1 * n2) + d * d / (2.0 * (n1 + n2))


@dataclass(frozen=True)
class MetaResult:
    """DerSimonian-Laird random-effects summary.

    ``i2`` is in percent. ``q`` is Cochran's Q on the fixed-effect weights, ``k`` the
    number of pooled effects.
    """

    estimate: float
    se: float
    ci_low: float
    ci_high: float
    tau2: float
    i2: float
    q: float
    k: int


def dersimonian_laird(
    effects: Sequence[float], variances: Sequence[float], level: float = 0.95
) -> MetaResult:
    """DerSimonian & Laird (1986) random-effects pooling.

    w_i = 1/v_i; ȳ_FE = Σw_i y_i / Σw_i; Q = Σ w_i (y_i - ȳ_FE)²;
    C = Σw_i - Σw_i² / Σw_i; τ² = max(0, (Q - (k-1)) / C) (τ² = 0 when k = 1);
    w*_i = 1/(v_i + τ²); estimate = Σw*_i y_i / Σw*_i; SE = sqrt(1/Σw*_i);
    CI = estimate ± z·SE with z = Φ⁻¹(1 - (1-level)/2) (1.959964 at 95%);
    I² = max(0, (Q - (k-1))/Q)·100, 0 when Q = 0 (Higgins & Thompson 2002).

    Raises ``ValueError`` for no effects, mismatched lengths, or non-positive/non-finite
    variances.
    """
    y = np.asarray(effects, dtype=np.float64)
    v = np.asarray(variances, dtype=np.float64)
    k = int(y.size)
    if k < 1 or v.size != k:
        raise ValueError("need at least one effect and one variance per effect")
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(v)) and np.all(v > 0)):
        raise ValueError("effects must be finite and variances finite and positive")
    w = 1.0 / v
    sw = float(np.sum(w))
    y_fe = float(np.sum(w * y)) / sw
    q = float(np.sum(w * (y - y_fe) ** 2))
    c = sw - float(np.sum(w * w)) / sw
    tau2 = max(0.0, (q - (k - 1)) / c) if k > 1 and c > 0 else 0.0
    ws = 1.0 / (v + tau2)
    est = float(np.sum(ws * y)) / float(np.sum(ws))
    se = math.sqrt(1.0 / float(np.sum(ws)))
    z = float(st.norm.ppf(1.0 - (1.0 - level) / 2.0))
    i2 = max(0.0, (q - (k - 1)) / q) * 100.0 if q > 0 else 0.0
    return MetaResult(
        estimate=est,
        se=se,
        ci_low=est - z * se,
        ci_high=est + z * se,
        tau2=tau2,
        i2=i2,
        q=q,
        k=k,
    )
