"""Standardised mean differences and their intervals.

References
----------
- Cohen, J. (1988). *Statistical Power Analysis for the Behavioral Sciences* (2nd ed.).
  Pooled-SD d and the conventional 0.2 / 0.5 / 0.8 thresholds.
- Hedges, L. V. & Olkin, I. (1985). *Statistical Methods for Meta-Analysis*. The exact
  small-sample correction J(df) = Γ(df/2) / (sqrt(df/2) Γ((df-1)/2)) (evaluated via the
  beta function for accuracy at any df; see :func:`hedges_j`).
- Lakens, D. (2013). Calculating and reporting effect sizes to facilitate cumulative
  science. *Frontiers in Psychology* 4:863. d_z for paired designs.
- Steiger, J. H. & Fouladi, R. T. (1997). Noncentrality interval estimation and the
  evaluation of statistical models; Cumming, G. & Finch, S. (2001). A primer on the
  understanding, use, and calculation of confidence intervals that are based on central
  and noncentral distributions. *Educ. Psychol. Meas.* 61, 532-574. The noncentral-t
  ("pivoting the CDF") interval for d.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, special
from scipy import stats as st

from ._common import FloatArray, as_float_array, is_constant, max_abs, sd_is_zero

__all__ = [
    "SIZE_THRESHOLDS",
    "cohens_d",
    "cohens_d_ci",
    "d_z",
    "hedges_g",
    "hedges_j",
    "pooled_sd",
    "size_class",
]

#: Cohen's (1988) conventional thresholds on |d|: (upper bound, label), checked in order.
SIZE_THRESHOLDS: tuple[tuple[float, str], ...] = (
    (0.2, "negligible"),
    (0.5, "small"),
    (0.8, "medium"),
    (math.inf, "large"),
)


def pooled_sd(a: FloatArray, b: FloatArray) -> float | None:
    """Pooled SD sqrt(((n1-1)s1² + (n2-1)s2²) / (n1+n2-2)), sample variances (ddof=1).

    ``None`` when either sample has fewer than 2 values, a value is non-finite, or the
    pooled SD is zero: both samples constant, or SD <= 1e-10 × the largest |value|
    (floating-point rounding, see ``REL_ZERO_SD``).
    """
    a = as_float_array(a)
    b = as_float_array(b)
    n1, n2 = a.size, b.size
    if n1 < 2 or n2 < 2 or not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return None
    if is_constant(a) and is_constant(b):
        return None
    s1 = 0.0 if is_constant(a) else float(np.var(a, ddof=1))
    s2 = 0.0 if is_constant(b) else float(np.var(b, ddof=1))
    sp = math.sqrt(((n1 - 1) * s1 + (n2 - 1) * s2) / (n1 + n2 - 2))
    return None if sd_is_zero(sp, max_abs(a, b)) else sp


def cohens_d(steered: FloatArray, baseline: FloatArray) -> float | None:
    """Cohen's d = (mean(steered) - mean(baseline)) / pooled SD (Cohen 1988).

    Works for unequal sizes n1 = len(steered), n2 = len(baseline). Returns ``None`` when
    either side has fewer than 2 values, a value is non-finite, or the pooled SD is zero
    (both samples constant).
    """
    s = as_float_array(steered)
    b = as_float_array(baseline)
    sp = pooled_sd(s, b)
    if sp is None:
        return None
    d = (float(np.mean(s)) - float(np.mean(b))) / sp
    return d if math.isfinite(d) else None


def _ncp_for_cdf(t: float, df: float, target: float) -> float | None:
    """The noncentrality ``ncp`` with ``nct.cdf(t, df, ncp) == target``.

    The noncentral-t CDF at fixed t decreases monotonically in ncp, so the root is
    bracketed by stepping away from ``t`` (doubling the step) and refined by Brent's method.
    """

    def f(ncp: float) -> float:
        return float(st.nct.cdf(t, df, ncp)) - target

    f0 = f(t)
    if not math.isfinite(f0):
        return None
    direction = 1.0 if f0 > 0 else -1.0  # cdf too high -> need a larger ncp
    step = max(1.0, 0.25 * abs(t))
    a = t
    fa = f0
    for _ in range(80):
        b = a + direction * step
        fb = f(b)
        if not math.isfinite(fb):
            return None
        if (fa > 0) != (fb > 0) or fb == 0:
            lo, hi = (a, b) if a < b else (b, a)
            try:
                root = optimize.brentq(
                    f, lo, hi, xtol=1e-13, rtol=4 * np.finfo(float).eps, maxiter=500
                )
            except (RuntimeError, ValueError):
                return None
            return float(root)
        a, fa = b, fb
        step *= 2.0
    return None


def cohens_d_ci(d: float, n1: int, n2: int, level: float = 0.95) -> tuple[float, float] | None:
    """Noncentral-t confidence interval for Cohen's d (Steiger & Fouladi 1997;
    Cumming & Finch 2001).

    t = d·sqrt(n1·n2/(n1+n2)) with df = n1+n2-2 is noncentral-t with noncentrality
    δ = true d·sqrt(n1·n2/(n1+n2)). The interval's ends are the δ whose noncentral-t CDF at
    the observed t equals 1-(1-level)/2 (lower end) and (1-level)/2 (upper end), converted
    back with d = δ / sqrt(n1·n2/(n1+n2)). Returns ``None`` when the root search fails
    (e.g. for an astronomically large |t| where the CDF is not computable), or when
    n1 + n2 - 2 < 1.
    """
    if not math.isfinite(d) or n1 < 1 or n2 < 1 or n1 + n2 - 2 < 1 or not 0 < level < 1:
        return None
    factor = math.sqrt(n1 * n2 / (n1 + n2))
    t = d * factor
    df = n1 + n2 - 2
    alpha = 1.0 - level
    lo = _ncp_for_cdf(t, df, 1.0 - alpha / 2.0)
    hi = _ncp_for_cdf(t, df, alpha / 2.0)
    if lo is None or hi is None:
        return None
    return lo / factor, hi / factor


def hedges_j(df: float) -> float:
    """Hedges' exact small-sample correction J(df) = Γ(df/2) / (sqrt(df/2)·Γ((df-1)/2))
    (Hedges & Olkin 1985). Requires df > 1; J -> 1 as df -> infinity (≈ 1 - 3/(4df - 1)).

    Computed as sqrt(π) / (B((df-1)/2, 1/2)·sqrt(df/2)) with ``scipy.special.betaln``
    (Γ(a)/Γ(a-½) = Γ(½)/B(a-½, ½)). The difference ``gammaln(df/2) - gammaln((df-1)/2)``
    stays finite but cancels catastrophically: it gives J > 1 at df = 1e9 and J ≈ 2.9 at
    df = 1e15, whereas ``betaln`` is accurate to ~1e-15 relative throughout.
    """
    if not df > 1:
        raise ValueError(f"hedges_j needs df > 1, got {df}")
    log_ratio = 0.5 * math.log(math.pi) - float(special.betaln((df - 1.0) / 2.0, 0.5))
    return math.exp(log_ratio) / math.sqrt(df / 2.0)


def hedges_g(d: float, n1: int, n2: int) -> float:
    """Hedges' g = d × J(n1 + n2 - 2) (Hedges & Olkin 1985)."""
    return d * hedges_j(n1 + n2 - 2)


def d_z(diff: FloatArray) -> float | None:
    """d_z = mean(diff) / sd(diff) with sd at ddof=1, for paired differences (Lakens 2013).

    ``None`` with fewer than 2 differences, a non-finite value, or zero SD (constant
    differences, or SD <= 1e-10 × the largest |difference|: rounding only).
    """
    x = as_float_array(diff)
    if x.size < 2 or not np.all(np.isfinite(x)) or is_constant(x):
        return None
    sd = float(np.std(x, ddof=1))
    if sd_is_zero(sd, max_abs(x)):
        return None
    v = float(np.mean(x)) / sd
    return v if math.isfinite(v) else None


def size_class(d: float) -> str:
    """Cohen's (1988) label for |d|: < 0.2 negligible, < 0.5 small, < 0.8 medium, else large."""
    a = abs(d)
    for bound, label in SIZE_THRESHOLDS:
        if a < bound:
            return label
    return "large"
