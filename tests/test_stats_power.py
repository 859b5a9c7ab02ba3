"""Power and planning for the paired t-test."""

from __future__ import annotations

import math

import pytest
from test_stats_refs import ref_pairs_needed, ref_power

from harness.stats import achieved_power, pairs_needed


@pytest.mark.parametrize(
    ("dz", "expected"),
    # G*Power 3.1, "Means: difference between two dependent means (matched pairs)",
    # two-tailed, alpha = 0.05, power = 0.80 (Cohen's d_z conventions 0.2 / 0.5 / 0.8)
    [(0.5, 34), (0.8, 15), (0.2, 199)],
)
def test_pairs_needed_literature(dz: float, expected: int) -> None:
    assert pairs_needed(dz) == expected
    assert pairs_needed(-dz) == expected


@pytest.mark.parametrize("dz", [0.05, 0.33, 1.0, 1.7, 3.0, 10.0])
def test_pairs_needed_matches_reference_search(dz: float) -> None:
    n = pairs_needed(dz)
    assert n == ref_pairs_needed(dz)
    assert ref_power(dz, n) >= 0.8 and (n == 2 or ref_power(dz, n - 1) < 0.8)


def test_pairs_needed_other_targets() -> None:
    assert pairs_needed(0.5, power=0.9, alpha=0.01) == ref_pairs_needed(0.5, 0.9, 0.01)


@pytest.mark.parametrize(("dz", "n"), [(0.5, 34), (0.3, 20), (-0.3, 20), (0.0, 10), (1.2, 6)])
def test_achieved_power(dz: float, n: int) -> None:
    assert math.isclose(achieved_power(dz, n), ref_power(dz, n), rel_tol=1e-9)


def test_achieved_power_where_statsmodels_returns_nan() -> None:
    # statsmodels' TTestPower gives NaN at d_z = 10, n = 3 (scipy.special.nctdtr fails in
    # the far lower tail); we fall back to scipy.stats.nct
    from statsmodels.stats.power import TTestPower

    assert math.isnan(TTestPower().power(10.0, 3, 0.05))
    assert math.isclose(achieved_power(10.0, 3), ref_power(10.0, 3), rel_tol=1e-9)
    assert pairs_needed(10.0) == 3


def test_literature_achieved_power_value() -> None:
    # G*Power reports actual power 0.8077775 for d_z = 0.5 with 34 pairs
    assert math.isclose(achieved_power(0.5, 34), 0.8077775, rel_tol=1e-6)


def test_invalid_inputs() -> None:
    with pytest.raises(ValueError):
        pairs_needed(0.0)
    with pytest.raises(ValueError):
        pairs_needed(float("nan"))
    with pytest.raises(ValueError):
        pairs_needed(0.5, power=1.0)
    with pytest.raises(ValueError):
        achieved_power(0.5, 1)
