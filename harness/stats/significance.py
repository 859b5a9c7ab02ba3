"""Significance tests on paired scores and multiplicity adjustment.

References
----------
- Student's paired t-test and Welch's (1947) unequal-variance t-test (two-sided), as in
  ``scipy.stats.ttest_rel`` / ``scipy.stats.ttest_ind(equal_var=False)``.
- Wilcoxon, F. (1945). Individual comparisons by ranking methods. *Biometrics Bulletin*
  1, 80-83. Signed-rank test with zero differences dropped ("wilcox" zero method), the
  normal approximation z = (R+ - n(n+1)/4) / sqrt(n(n+1)(2n+1)/24 - Σ(t³-t)/48)
  (tie-corrected variance, t = size of each group of tied |differences|), no
  continuity correction: ``scipy.stats.wilcoxon(d, zero_method="wilcox",
  correction=False, method="approx")``.
- Holm, S. (1979). A simple sequentially rejective multiple test procedure.
  *Scand. J. Statist.* 6, 65-70.
- Benjamini, Y. & Hochberg, Y. (1995). Controlling the false discovery rate.
  *J. R. Statist. Soc. B* 57, 289-300.
  Both via ``statsmodels.stats.multitest.multipletests`` ("holm", "fdr_bh").
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from scipy import stats as st
from statsmodels.stats.multitest import multipletests

from ._common import FloatArray, as_float_array, finite_or_none, is_constant, max_abs, sd_is_zero

__all__ = ["adjust_bh", "adjust_holm", "paired_t_p", "welch_p", "wilcoxon_p"]


def _clean_pair(steered: FloatArray, baseline: FloatArray) -> tuple[FloatArray, FloatArray]:
    s = as_float_array(steered)
    b = as_float_array(baseline)
    if s.shape != b.shape:
        raise ValueError("paired arrays must have the same length")
    return s, b


def paired_t_p(steered: FloatArray, baseline: FloatArray) -> float | None:
    """Two-sided paired t-test p-value on diff = steered - baseline.

    ``None`` with fewer than 2 pairs, a non-finite value, or zero SD of the differences
    (same rule as :func:`harness.stats.effect_size.d_z`).
    """
    s, b = _clean_pair(steered, baseline)
    diff = s - b
    if diff.size < 2 or not np.all(np.isfinite(diff)) or is_constant(diff):
        return None
    if sd_is_zero(float(np.std(diff, ddof=1)), max_abs(diff)):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = st.ttest_rel(s, b).pvalue
    return finite_or_none(p)


def welch_p(steered: FloatArray, baseline: FloatArray) -> float | None:
    """Two-sided Welch t-test p-value (unequal variances, unpaired).

    ``None`` when a side has fewer than 2 values, a value is non-finite, or both sides
    have zero SD (constant, or SD <= 1e-10 × the largest |value|).
    """
    s = as_float_array(steered)
    b = as_float_array(baseline)
    if s.size < 2 or b.size < 2 or not (np.all(np.isfinite(s)) and np.all(np.isfinite(b))):
        return None
    if is_constant(s) and is_constant(b):
        return None
    scale = max_abs(s, b)
    if sd_is_zero(float(np.std(s, ddof=1)), scale) and sd_is_zero(float(np.std(b, ddof=1)), scale):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = st.ttest_ind(s, b, equal_var=False).pvalue
    return finite_or_none(p)


def wilcoxon_p(steered: FloatArray, baseline: FloatArray) -> float | None:
    """Two-sided Wilcoxon signed-rank p-value (Wilcoxon 1945), normal approximation with
    tie correction, no continuity correction, zero differences dropped.

    The differences are formed here (diff = steered - baseline) and passed to scipy as one
    sample, so ties and zeros are decided on exactly these floats: differences that are
    equal in exact arithmetic but not in floating point (e.g. 0.3 - 0.1 vs 0.2) are not
    ties. Integer-valued or decimal-rounded scores are unaffected. ``None`` when no nonzero finite
    difference remains.
    """
    s, b = _clean_pair(steered, baseline)
    diff = s - b
    if not np.all(np.isfinite(diff)):
        return None
    if not np.any(diff != 0):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = st.wilcoxon(diff, zero_method="wilcox", correction=False, method="approx")
    return finite_or_none(res.pvalue)


def _adjust(ps: Sequence[float | None], method: str) -> list[float | None]:
    idx = [i for i, p in enumerate(ps) if p is not None and math.isfinite(float(p))]
    out: list[float | None] = [None] * len(ps)
    if not idx:
        return out
    vals = np.array([float(ps[i]) for i in idx], dtype=np.float64)  # type: ignore[arg-type]
    adj = multipletests(vals, alpha=0.05, method=method)[1]
    for i, a in zip(idx, adj, strict=True):
        out[i] = float(min(1.0, max(0.0, a)))
    return out


def adjust_holm(ps: Sequence[float | None]) -> list[float | None]:
    """Holm (1979) step-down adjusted p-values; ``None`` entries stay ``None`` and are not
    counted in the family."""
    return _adjust(ps, "holm")


def adjust_bh(ps: Sequence[float | None]) -> list[float | None]:
    """Benjamini-Hochberg (1995) step-up adjusted p-values (q-values); ``None`` entries
    stay ``None`` and are not counted in the family."""
    return _adjust(ps, "fdr_bh")
