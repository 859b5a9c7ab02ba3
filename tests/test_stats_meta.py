"""DerSimonian-Laird random-effects pooling and the sampling variance of d."""

from __future__ import annotations

import math

import pytest
from test_stats_refs import Z975, ref_dersimonian_laird

from harness.stats import d_sampling_variance, dersimonian_laird


def test_d_sampling_variance_formula() -> None:
    # (n1+n2)/(n1 n2) + d²/(2(n1+n2)); n1 = n2 = 20, d = 0.5: 0.1 + 0.25/80
    assert math.isclose(d_sampling_variance(0.5, 20, 20), 0.1 + 0.25 / 80, rel_tol=1e-15)
    assert math.isclose(d_sampling_variance(-1.2, 7, 12), 19 / 84 + 1.44 / 38, rel_tol=1e-15)


def test_dl_heterogeneous_matches_textbook() -> None:
    y = [0.86, 0.15, 0.64, 0.34, 1.00]
    v = [d_sampling_variance(d, 20, 20) for d in y]
    ref = ref_dersimonian_laird(y, v)
    res = dersimonian_laird(y, v)
    assert ref["tau2"] > 0  # the case exercises the random-effects branch
    for key in ("estimate", "se", "ci_low", "ci_high", "tau2", "i2", "q"):
        assert math.isclose(getattr(res, key), ref[key], rel_tol=1e-9), key
    assert res.k == 5


def test_dl_hand_computed_small_case() -> None:
    # y = (0, 1), v = (0.1, 0.1): w = 10 each, ybar = 0.5, Q = 10·0.25·2 = 5,
    # C = 20 - 200/20 = 10, τ² = (5 - 1)/10 = 0.4; w* = 1/0.5 = 2 each -> est = 0.5,
    # SE = sqrt(1/4) = 0.5; I² = (5 - 1)/5 = 80%
    res = dersimonian_laird([0.0, 1.0], [0.1, 0.1])
    assert math.isclose(res.tau2, 0.4, rel_tol=1e-12)
    assert math.isclose(res.estimate, 0.5, rel_tol=1e-12)
    assert math.isclose(res.se, 0.5, rel_tol=1e-12)
    assert math.isclose(res.i2, 80.0, rel_tol=1e-12)
    assert math.isclose(res.ci_low, 0.5 - Z975 * 0.5, rel_tol=1e-9)
    assert math.isclose(res.ci_high, 0.5 + Z975 * 0.5, rel_tol=1e-9)


def test_dl_homogeneous_truncates_tau2_and_i2() -> None:
    y = [0.50, 0.52, 0.49]
    v = [0.1, 0.12, 0.09]
    res = dersimonian_laird(y, v)
    ref = ref_dersimonian_laird(y, v)
    assert res.tau2 == 0.0 and res.i2 == 0.0
    assert math.isclose(res.estimate, ref["estimate"], rel_tol=1e-12)
    # with τ² = 0 the estimate is the fixed-effect (inverse-variance) mean
    w = [1 / x for x in v]
    assert math.isclose(res.estimate, sum(a * b for a, b in zip(w, y, strict=True)) / sum(w))


def test_dl_identical_effects_q_zero() -> None:
    res = dersimonian_laird([0.3, 0.3, 0.3], [0.1, 0.1, 0.1])
    assert res.q == 0.0 and res.i2 == 0.0 and res.tau2 == 0.0
    assert math.isclose(res.estimate, 0.3)


def test_dl_single_effect_and_errors() -> None:
    res = dersimonian_laird([0.4], [0.04])
    assert res.tau2 == 0.0 and res.estimate == 0.4 and math.isclose(res.se, 0.2)
    with pytest.raises(ValueError):
        dersimonian_laird([], [])
    with pytest.raises(ValueError):
        dersimonian_laird([0.1, 0.2], [0.1, 0.0])
