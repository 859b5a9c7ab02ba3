"""Power and planning for the paired design (one-sample t-test on the differences).

Power of the two-sided one-sample t-test with n pairs at standardized effect d_z:
P(|T| > t_{1-α/2, n-1}) with T ~ noncentral t(df = n-1, ncp = d_z·sqrt(n)), computed by
``statsmodels.stats.power.TTestPower`` (Cohen 1988, ch. 2; Lakens 2013 for d_z).

``pairs_needed`` returns the smallest integer n ≥ 2 whose power reaches the target,
i.e. ``ceil`` of the continuous ``TTestPower().solve_power`` solution, found by an
integer search so that it is exact and never fails to converge.

Caveat: ``achieved_power`` evaluated at the *observed* effect ("post-hoc power") is a
monotone transform of the p-value and says nothing beyond it (Hoenig & Heisey 2001,
*Am. Stat.* 55, 19-24). It is reported as a planning aid: how far the run is from a
design that would detect an effect of the observed size 80% of the time.
"""

from __future__ import annotations

import math

from scipy import stats as st
from statsmodels.stats.power import TTestPower

__all__ = ["achieved_power", "pairs_needed"]

_MAX_PAIRS = 2**40


def _power(es: float, n: int, alpha: float) -> float:
    """Two-sided paired-t power at effect ``es`` >= 0 with ``n`` pairs.

    ``TTestPower`` first. It returns NaN where ``scipy.special.nctdtr`` fails in the far
    lower tail (e.g. d_z = 10, n = 3 in statsmodels 0.15 / scipy 1.17); then the same
    quantity is computed with ``scipy.stats.nct``: sf(t_crit) + cdf(-t_crit), with
    df = n - 1 and ncp = es·sqrt(n). A lower tail that is still non-finite is taken as 0
    (it is below 1e-15 whenever that happens); a non-finite upper tail raises ValueError.
    """
    p = float(TTestPower().power(effect_size=es, nobs=n, alpha=alpha, alternative="two-sided"))
    if not math.isfinite(p):
        df = n - 1
        crit = float(st.t.isf(alpha / 2.0, df))
        ncp = es * math.sqrt(n)
        upper = float(st.nct.sf(crit, df, ncp))
        lower = float(st.nct.cdf(-crit, df, ncp))
        if not math.isfinite(upper):
            raise ValueError(f"power not computable for effect {es:g} with {n} pairs")
        p = upper + (lower if math.isfinite(lower) else 0.0)
    return min(1.0, max(0.0, p))


def achieved_power(d_z: float, n: int, alpha: float = 0.05) -> float:
    """Power of the two-sided paired t-test with ``n`` pairs at effect ``|d_z|``."""
    if not math.isfinite(d_z):
        raise ValueError("d_z must be finite")
    if n < 2:
        raise ValueError("need at least 2 pairs")
    return _power(abs(d_z), n, alpha)


def pairs_needed(d_z: float, power: float = 0.8, alpha: float = 0.05) -> int:
    """Smallest number of pairs n ≥ 2 for which a two-sided paired t-test at level ``alpha``
    reaches ``power`` when the true standardized paired effect is ``|d_z|``.

    Raises ``ValueError`` for d_z = 0 or non-finite (no finite n suffices), for
    ``power`` outside (alpha, 1), ``alpha`` outside (0, 1), or if more than 2**40 pairs
    would be needed.
    """
    if not math.isfinite(d_z) or d_z == 0:
        raise ValueError("d_z must be finite and nonzero: no finite number of pairs suffices")
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")
    if not alpha < power < 1:
        raise ValueError("power must be in (alpha, 1)")
    es = abs(d_z)

    def pw(n: int) -> float:
        return _power(es, n, alpha)

    lo = 2
    if pw(lo) >= power:
        return lo
    hi = 4
    while pw(hi) < power:
        lo = hi
        hi *= 2
        if hi > _MAX_PAIRS:
            raise ValueError(f"more than {_MAX_PAIRS} pairs needed for |d_z| = {es:g}")
    # invariant: pw(lo) < power <= pw(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if pw(mid) >= power:
            hi = mid
        else:
            lo = mid
    return hi
