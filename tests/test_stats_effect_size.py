"""Effect sizes: Cohen's d, its noncentral-t interval, Hedges' J/g, d_z, size classes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st
from test_stats_refs import (
    nct_cdf_by_integration,
    ref_cohens_d,
    ref_d_ci_bisection,
    ref_d_z,
    ref_hedges_j,
)

from harness.stats import cohens_d, cohens_d_ci, d_z, hedges_g, hedges_j, pooled_sd, size_class

S = np.array([5.1, 6.3, 4.8, 7.2, 6.6, 5.9, 6.1, 7.4])
B = np.array([4.9, 5.2, 5.0, 6.1, 5.5, 5.8, 4.7, 6.0])


def test_cohens_d_equal_n_matches_formula() -> None:
    assert math.isclose(cohens_d(S, B), ref_cohens_d(S, B), rel_tol=1e-12)


def test_cohens_d_hand_value() -> None:
    # means 3 and 1; SDs (ddof=1) 1 and 1 -> pooled SD 1 -> d = 2
    assert math.isclose(cohens_d([2.0, 3.0, 4.0], [0.0, 1.0, 2.0]), 2.0, rel_tol=1e-12)
    # unequal n: s = [1,2,3,4] (var 5/3), b = [0, 2] (var 2) -> sp² = (3·5/3 + 1·2)/4 = 7/4
    assert math.isclose(
        cohens_d([1, 2, 3, 4], [0, 2]), (2.5 - 1.0) / math.sqrt(7 / 4), rel_tol=1e-12
    )


def test_cohens_d_unequal_n_matches_formula() -> None:
    s = S[:5]
    assert math.isclose(cohens_d(s, B), ref_cohens_d(s, B), rel_tol=1e-12)


def test_cohens_d_undefined_cases() -> None:
    assert cohens_d([1.0, 1.0, 1.0], [2.0, 2.0, 2.0]) is None  # zero pooled SD
    assert cohens_d([0.1, 0.1, 0.1], [0.1, 0.1, 0.1]) is None  # np.var would give ~1e-34
    assert cohens_d([1.0], [2.0, 3.0]) is None  # a side with < 2 values
    assert cohens_d([1.0, np.nan, 2.0], [2.0, 3.0, 1.0]) is None
    assert pooled_sd(np.array([1.0, 1.0]), np.array([2.0, 2.0])) is None
    # values that differ only by rounding (1 ulp) are treated as constant
    near = np.array([0.3, 0.1 + 0.2, 0.3])
    assert np.ptp(near) > 0
    assert cohens_d(near, np.array([0.2, 0.2, 0.2])) is None
    # one side constant is fine
    assert math.isclose(
        cohens_d([1.0, 1.0, 1.0], [0.0, 1.0, 2.0]),
        ref_cohens_d(np.array([1.0, 1.0, 1.0]), np.array([0.0, 1.0, 2.0])),
    )


@pytest.mark.parametrize(
    ("d", "n1", "n2"),
    [(0.62, 20, 20), (-1.3, 5, 5), (0.0, 3, 3), (2.5, 100, 100), (0.4, 12, 7), (4.0, 4, 4)],
)
def test_d_ci_matches_bisection(d: float, n1: int, n2: int) -> None:
    lo, hi = cohens_d_ci(d, n1, n2)  # type: ignore[misc]
    rlo, rhi = ref_d_ci_bisection(d, n1, n2)
    assert math.isclose(lo, rlo, rel_tol=1e-5, abs_tol=1e-9)
    assert math.isclose(hi, rhi, rel_tol=1e-5, abs_tol=1e-9)
    assert lo < d < hi


def test_d_ci_zero_effect_is_symmetric() -> None:
    lo, hi = cohens_d_ci(0.0, 10, 10)  # type: ignore[misc]
    assert math.isclose(lo, -hi, rel_tol=1e-9)


def test_d_ci_ends_pivot_the_noncentral_t_cdf_by_integration() -> None:
    # Check the defining property with a noncentral-t CDF that does not use scipy's nct:
    # at the interval ends, P(T <= t_obs; df, δ) equals 0.975 and 0.025.
    d, n = 0.62, 20
    f = math.sqrt(n / 2)
    lo, hi = cohens_d_ci(d, n, n)  # type: ignore[misc]
    assert math.isclose(nct_cdf_by_integration(d * f, 2 * n - 2, lo * f), 0.975, rel_tol=1e-5)
    assert math.isclose(nct_cdf_by_integration(d * f, 2 * n - 2, hi * f), 0.025, rel_tol=1e-5)


def test_d_ci_level() -> None:
    lo90, hi90 = cohens_d_ci(0.5, 15, 15, level=0.90)  # type: ignore[misc]
    rlo, rhi = ref_d_ci_bisection(0.5, 15, 15, level=0.90)
    assert math.isclose(lo90, rlo, rel_tol=1e-5) and math.isclose(hi90, rhi, rel_tol=1e-5)


def test_d_ci_invalid() -> None:
    assert cohens_d_ci(float("nan"), 10, 10) is None
    assert cohens_d_ci(0.5, 1, 1) is None  # df = 0


@pytest.mark.parametrize("df", [2, 3, 10, 38, 198])
def test_hedges_j_exact_gamma_ratio(df: int) -> None:
    assert math.isclose(hedges_j(df), ref_hedges_j(df), rel_tol=1e-12)


@pytest.mark.parametrize("df", [1_000, 100_000, 10**9, 10**12, 10**15])
def test_hedges_j_large_df_accurate(df: int) -> None:
    # (a naive exp(gammaln(df/2) - gammaln((df-1)/2)) fails this: J > 1 from df ~ 1e9)
    j = hedges_j(df)
    assert math.isfinite(j) and j < 1
    assert math.isclose(j, ref_hedges_j(df), rel_tol=1e-9)


@pytest.mark.parametrize("df", [2, 38, 1_000, 10**7, 10**12])
def test_hedges_j_against_mpmath(df: int) -> None:
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 40
    exact = mpmath.gamma(mpmath.mpf(df) / 2) / (
        mpmath.sqrt(mpmath.mpf(df) / 2) * mpmath.gamma((mpmath.mpf(df) - 1) / 2)
    )
    assert math.isclose(hedges_j(df), float(exact), rel_tol=1e-12)


def test_hedges_j_literature_value() -> None:
    # J(2) = Γ(1)/(1·Γ(1/2)) = 1/sqrt(π)
    assert math.isclose(hedges_j(2), 1 / math.sqrt(math.pi), rel_tol=1e-14)
    with pytest.raises(ValueError):
        hedges_j(1)


def test_hedges_g() -> None:
    d = ref_cohens_d(S, B)
    assert math.isclose(hedges_g(d, 8, 8), d * ref_hedges_j(14), rel_tol=1e-12)


def test_d_z() -> None:
    diff = S - B
    assert math.isclose(d_z(diff), ref_d_z(diff), rel_tol=1e-12)
    # hand value: diffs 1, 2, 3 -> mean 2, sd 1
    assert math.isclose(d_z([1.0, 2.0, 3.0]), 2.0, rel_tol=1e-12)
    assert d_z([0.5, 0.5, 0.5]) is None
    assert d_z([1.0]) is None
    # rounding-only spread counts as zero: (B + 0.1) - B is not exactly constant
    frac = np.array([0.33, 0.71, 0.12, 0.95, 0.48, 0.27])
    rounded = (frac + 0.1) - frac
    assert np.ptp(rounded) > 0
    assert d_z(rounded) is None


@pytest.mark.parametrize(
    ("d", "label"),
    [
        (0.0, "negligible"),
        (0.199, "negligible"),
        (-0.2, "small"),
        (0.499, "small"),
        (0.5, "medium"),
        (-0.79, "medium"),
        (0.8, "large"),
        (-3.0, "large"),
    ],
)
def test_size_class_cohen_thresholds(d: float, label: str) -> None:
    assert size_class(d) == label


def test_scipy_nct_consistent_with_integration() -> None:
    # guards the reference: scipy's nct agrees with the integral at a typical point
    assert math.isclose(
        st.nct.cdf(2.1, 30, 1.5), nct_cdf_by_integration(2.1, 30, 1.5), rel_tol=1e-8
    )
