"""The comparison record: every field against independent references, the family
adjustment, the verdict, and every degenerate case (exact nulls and reasons, JSON)."""

from __future__ import annotations

import json
import math
import statistics
import warnings
from typing import Any

import numpy as np
import pytest
from test_stats_refs import (
    JUDGE_A_BASE,
    JUDGE_A_STEER,
    JUDGE_B_BASE,
    JUDGE_B_STEER,
    JUDGE_PROMPTS,
    JUDGE_SEEDS,
    ref_cluster_bootstrap,
    ref_cohens_d,
    ref_d_ci_bisection,
    ref_d_z,
    ref_dersimonian_laird,
    ref_hedges_j,
    ref_paired_t_p,
    ref_pairs_needed,
    ref_power,
    ref_reml_random_intercept,
    ref_welch_p,
    ref_wilcoxon_p,
)

from harness.stats import FIELDS, NULLABLE_FIELDS, compare_paired, finalize

REL = 1e-6


def close(a: Any, b: float, rel: float = REL) -> bool:
    return a is not None and math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)


def rec(b: Any, s: Any, prompts: Any = None, seeds: Any = None, **kw: Any) -> dict[str, Any]:
    return compare_paired(
        b,
        s,
        JUDGE_PROMPTS if prompts is None else prompts,
        JUDGE_SEEDS if seeds is None else seeds,
        condition=kw.pop("condition", "steer+4"),
        baseline_name="base",
        scorer="judge",
        metric="score",
        **kw,
    )


def assert_contract(c: dict[str, Any]) -> None:
    """Field order, JSON safety, and a reason for exactly the null scalar fields."""
    assert tuple(c) == FIELDS
    json.dumps(c, allow_nan=False)
    nulls = {f for f in NULLABLE_FIELDS if c[f] is None}
    extra = {"seed_d"} if any(x is None for x in c["seed_d"]) else set()
    assert set(c["reasons"]) == nulls | extra
    for v in c.values():
        if isinstance(v, float):
            assert math.isfinite(v)


def reference_record(
    b: np.ndarray, s: np.ndarray, prompts: list[str], seeds: list[int]
) -> dict[str, Any]:
    """Everything except the family fields, from the complete pairs, independently."""
    ok = np.isfinite(b) & np.isfinite(s)
    b, s = b[ok], s[ok]
    prompts = [p for p, k in zip(prompts, ok, strict=True) if k]
    seeds_ok = [x for x, k in zip(seeds, ok, strict=True) if k]
    n = len(b)
    d = ref_cohens_d(s, b)
    lo, hi = ref_d_ci_bisection(d, n, n)
    dz = ref_d_z(s - b)
    seed_values = sorted(set(seeds))
    seed_n = [sum(1 for x in seeds_ok if x == v) for v in seed_values]
    seed_d = []
    for v in seed_values:
        m = np.array([x == v for x in seeds_ok])
        seed_d.append(ref_cohens_d(s[m], b[m]) if m.sum() >= 2 else None)
    defined = [(dd, m) for dd, m in zip(seed_d, seed_n, strict=True) if dd is not None]
    meta = ref_dersimonian_laird(
        [dd for dd, _ in defined], [2 / m + dd * dd / (4 * m) for dd, m in defined]
    )
    mixed = ref_reml_random_intercept(
        np.r_[b, s], np.r_[np.zeros(n), np.ones(n)], prompts + prompts
    )
    blo, bhi, bdrop = ref_cluster_bootstrap(b, s, prompts, 2000, 0)
    power = ref_power(dz, n)
    return {
        "n": n,
        "n_prompts": len(set(prompts)),
        "mean_baseline": sum(b) / n,
        "mean_steered": sum(s) / n,
        "delta": sum(s) / n - sum(b) / n,
        "cohens_d": d,
        "d_ci_low": lo,
        "d_ci_high": hi,
        "hedges_g": d * ref_hedges_j(2 * n - 2),
        "d_z": dz,
        "p_paired_t": ref_paired_t_p(s, b),
        "p_welch": ref_welch_p(s, b),
        "p_wilcoxon": ref_wilcoxon_p(s - b),
        "seeds": seed_values,
        "seed_n": seed_n,
        "seed_d": seed_d,
        "seed_sd_d": statistics.stdev([dd for dd, _ in defined]),
        "meta_estimate": meta["estimate"],
        "meta_ci_low": meta["ci_low"],
        "meta_ci_high": meta["ci_high"],
        "meta_tau2": meta["tau2"],
        "meta_i2": meta["i2"],
        "mixed_estimate": mixed["estimate"],
        "mixed_se": mixed["se"],
        "boot_ci_low": blo,
        "boot_ci_high": bhi,
        "boot_dropped": bdrop,
        "power": power,
        "n_needed": ref_pairs_needed(dz),
        "underpowered": power < 0.8,
    }


TOL = {"d_ci_low": 1e-5, "d_ci_high": 1e-5, "mixed_estimate": 1e-3, "mixed_se": 1e-3}


def check_against_reference(c: dict[str, Any], ref: dict[str, Any]) -> None:
    for key, want in ref.items():
        got = c[key]
        if isinstance(want, (bool, int)):
            assert got == want, key
        elif isinstance(want, list):
            assert len(got) == len(want), key
            for g, w in zip(got, want, strict=True):
                assert (
                    (g is None and w is None) or (isinstance(w, int) and g == w) or close(g, w)
                ), key
        else:
            assert close(got, want, TOL.get(key, REL)), (key, got, want)


@pytest.fixture(scope="module")
def family() -> list[dict[str, Any]]:
    a = rec(JUDGE_A_BASE, JUDGE_A_STEER, condition="A")
    b = rec(JUDGE_B_BASE, JUDGE_B_STEER, condition="B")
    flat = rec(np.full(100, 5.0), np.full(100, 5.0), condition="flat")
    return [a, b, flat]


def test_every_field_matches_independent_reference(family: list[dict[str, Any]]) -> None:
    a = family[0]
    assert_contract(a)
    assert (a["condition"], a["baseline"], a["scorer"], a["metric"]) == (
        "A",
        "base",
        "judge",
        "score",
    )
    assert a["n_dropped"] == 0
    check_against_reference(
        a, reference_record(JUDGE_A_BASE, JUDGE_A_STEER, JUDGE_PROMPTS, JUDGE_SEEDS)
    )
    assert a["mixed_method"] == "powell" and a["mixed_converged"] is True
    assert a["boot_resamples"] == 2000 and a["boot_seed"] == 0
    assert a["p_holm"] is None and a["reasons"] == {
        k: "set by finalize() over the family of comparisons"
        for k in (
            "p_holm",
            "p_bh",
            "size_class",
            "significant_holm",
            "seeds_same_sign",
            "seeds_total",
            "verdict",
        )
    }


def test_dropped_pairs_and_unbalanced_prompts() -> None:
    b: list[float | None] = list(JUDGE_B_BASE)
    s: list[float | None] = list(JUDGE_B_STEER)
    b[3] = None
    b[17] = float("nan")
    b[40] = float("-inf")
    s[41] = float("inf")
    s[99] = None
    s[3] = float("nan")  # same pair as b[3]: counted once
    c = rec(b, s)
    assert_contract(c)
    assert c["n"] == 95 and c["n_dropped"] == 5
    assert c["notes"][0] == (
        "dropped 5 of 100 pairs with a non-finite score (baseline missing/NaN in 2, "
        "baseline infinite in 1, steered missing/NaN in 2, steered infinite in 1)"
    )
    bb = np.array([np.nan if x is None else x for x in b])
    ss = np.array([np.nan if x is None else x for x in s])
    check_against_reference(c, reference_record(bb, ss, JUDGE_PROMPTS, JUDGE_SEEDS))
    assert c["seed_n"] == [19, 19, 19, 19, 19]


def test_finalize_family_adjustment_and_verdicts(family: list[dict[str, Any]]) -> None:
    before = json.dumps(family, allow_nan=False)
    out = finalize(family)
    assert json.dumps(family, allow_nan=False) == before  # inputs untouched
    for c in out:
        assert_contract(c)
    pa, pb = family[0]["p_paired_t"], family[1]["p_paired_t"]
    assert family[2]["p_paired_t"] is None  # not counted: the family has 2 members
    lo_p, hi_p = sorted([pa, pb])
    holm_lo, holm_hi = 2 * lo_p, max(2 * lo_p, hi_p)
    bh_hi = hi_p
    bh_lo = min(2 * lo_p, bh_hi)
    a, b, flat = out
    assert close(a["p_holm"], holm_lo if pa < pb else holm_hi, 1e-12)
    assert close(b["p_holm"], holm_hi if pa < pb else holm_lo, 1e-12)
    assert close(a["p_bh"], bh_lo if pa < pb else bh_hi, 1e-12)
    assert close(b["p_bh"], bh_hi if pa < pb else bh_lo, 1e-12)
    assert flat["p_holm"] is None and flat["p_bh"] is None
    assert flat["reasons"]["p_holm"] == (
        "p_paired_t is null: zero variance of the paired differences"
    )
    assert a["notes"] == ["p_holm and p_bh adjust over a family of 2 comparisons"]

    assert a["size_class"] == "medium" and a["significant_holm"] is True
    assert (a["seeds_same_sign"], a["seeds_total"]) == (5, 5)
    assert a["verdict"] == (
        f"medium effect (d = {a['cohens_d']:.2f}), significant after Holm "
        f"(p = {a['p_holm']:.2g}), same sign in 5/5 seeds (I² = {a['meta_i2']:.0f}%)"
    )
    # B: small and underpowered
    assert b["size_class"] == "small" and b["significant_holm"] is False
    assert b["underpowered"] is True
    signs = [np.sign(x) == np.sign(b["meta_estimate"]) for x in b["seed_d"]]
    assert b["seeds_same_sign"] == sum(signs) and b["seeds_total"] == 5
    assert b["verdict"] == (
        f"small effect (d = {b['cohens_d']:.2f}), not significant after Holm "
        f"(p = {b['p_holm']:.3f}), same sign in {sum(signs)}/5 seeds "
        f"(I² = {b['meta_i2']:.0f}%), underpowered (power = {b['power']:.2f}; "
        f"~{b['n_needed']} pairs needed for 80%)"
    )
    assert flat["verdict"] == (
        "effect size undefined (zero variance in both conditions), no Holm-adjusted p "
        "(p_paired_t is null: zero variance of the paired differences), "
        "no seed with a defined d"
    )


def test_all_equal_values() -> None:
    c = finalize([rec(np.full(100, 5.0), np.full(100, 5.0))])[0]
    assert_contract(c)
    assert (c["n"], c["mean_baseline"], c["mean_steered"], c["delta"]) == (100, 5.0, 5.0, 0.0)
    r = c["reasons"]
    for f in (
        "cohens_d",
        "d_ci_low",
        "d_ci_high",
        "hedges_g",
        "p_welch",
        "mixed_estimate",
        "mixed_se",
        "mixed_method",
        "mixed_converged",
        "boot_ci_low",
        "boot_ci_high",
        "boot_resamples",
        "boot_dropped",
        "size_class",
    ):
        assert c[f] is None and r[f] == "zero variance in both conditions", f
    for f in ("d_z", "p_paired_t"):
        assert c[f] is None and r[f] == "zero variance of the paired differences"
    for f in ("power", "n_needed", "underpowered"):
        assert c[f] is None
        assert r[f] == "d_z is undefined: zero variance of the paired differences"
    assert r["p_wilcoxon"] == "all paired differences are zero"
    assert c["seed_d"] == [None] * 5
    assert r["seed_d"] == "; ".join(f"seed {i}: zero variance in both conditions" for i in range(5))
    for f in ("seed_sd_d", "meta_estimate", "meta_ci_low", "meta_ci_high", "meta_tau2", "meta_i2"):
        assert c[f] is None and r[f] == "fewer than 2 seeds with a defined d (0)"
    assert c["seeds_total"] == 0 and c["seeds_same_sign"] is None


def test_constant_shift_has_wilcoxon_but_no_d() -> None:
    # every steered score is baseline + 1: both sides vary, the differences do not
    b = JUDGE_A_BASE.copy()
    c = rec(b, b + 1.0)
    assert_contract(c)
    assert c["d_z"] is None and c["p_paired_t"] is None
    assert c["cohens_d"] is not None  # both conditions vary
    n = 100  # all differences tie at +1: var = n(n+1)(2n+1)/24 - (n³ - n)/48
    z = (n * (n + 1) / 2 - n * (n + 1) / 4) / math.sqrt(
        n * (n + 1) * (2 * n + 1) / 24 - (n**3 - n) / 48
    )
    assert close(c["p_wilcoxon"], math.erfc(z / math.sqrt(2)))


def test_constant_within_each_condition_but_different() -> None:
    c = rec(np.full(100, 1.0), np.full(100, 2.0))
    assert_contract(c)
    assert c["delta"] == 1.0 and c["cohens_d"] is None
    assert c["reasons"]["cohens_d"] == "zero variance in both conditions"
    assert c["p_welch"] is None and c["p_wilcoxon"] is not None


@pytest.mark.parametrize("n", [0, 1, 2])
def test_fewer_than_three_pairs(n: int) -> None:
    b = [1.0, 2.0, 4.0, None]
    s = [2.0, 2.5, 6.0, 3.0]
    for i in range(n, 3):
        b[i] = None
    c = finalize([rec(b, s, prompts=["p1", "p2", "p3", "p4"], seeds=[0, 0, 1, 1])])[0]
    assert_contract(c)
    assert c["n"] == n and c["n_dropped"] == 4 - n
    why = f"fewer than 3 complete pairs (n={n})"
    for f in (
        "cohens_d",
        "d_ci_low",
        "d_ci_high",
        "hedges_g",
        "d_z",
        "p_paired_t",
        "p_welch",
        "p_wilcoxon",
        "seed_sd_d",
        "meta_estimate",
        "meta_ci_low",
        "meta_ci_high",
        "meta_tau2",
        "meta_i2",
        "mixed_estimate",
        "mixed_se",
        "mixed_method",
        "mixed_converged",
        "boot_ci_low",
        "boot_ci_high",
        "boot_resamples",
        "boot_dropped",
        "power",
        "n_needed",
        "underpowered",
    ):
        assert c[f] is None and c["reasons"][f] == why, f
    assert c["seed_d"] == [None, None] and c["reasons"]["seed_d"] == why
    assert c["verdict"] == f"insufficient data: fewer than 3 complete pairs (n={n})"
    if n == 0:
        for f in ("mean_baseline", "mean_steered", "delta"):
            assert c[f] is None and c["reasons"][f] == "no complete pairs (n=0)"
    else:
        ok_b = [x for x in b[:n] if x is not None]
        assert close(c["mean_baseline"], sum(ok_b) / n)
        assert close(c["delta"], sum(s[:n]) / n - sum(ok_b) / n)  # type: ignore[arg-type]


def test_condition_with_no_pairs() -> None:
    c = finalize([rec(JUDGE_A_BASE, [None] * 100)])[0]
    assert_contract(c)
    assert c["n"] == 0 and c["n_dropped"] == 100
    assert c["notes"][0] == (
        "dropped 100 of 100 pairs with a non-finite score (steered missing/NaN in 100)"
    )
    assert c["seeds"] == [0, 1, 2, 3, 4] and c["seed_n"] == [0, 0, 0, 0, 0]
    assert c["reasons"]["delta"] == "no complete pairs (n=0)"


def test_seed_with_one_pair() -> None:
    # seeds 0 and 1 with 10 pairs each; seed 2 has a single pair
    b = np.r_[JUDGE_A_BASE[:20], JUDGE_A_BASE[20:21]]
    s = np.r_[JUDGE_A_STEER[:20], JUDGE_A_STEER[20:21]]
    prompts = [f"p{i % 10}" for i in range(20)] + ["p0"]
    seeds = [0] * 10 + [1] * 10 + [2]
    c = rec(b, s, prompts=prompts, seeds=seeds)
    assert_contract(c)
    assert c["seeds"] == [0, 1, 2] and c["seed_n"] == [10, 10, 1]
    assert c["seed_d"][2] is None
    assert c["reasons"]["seed_d"] == "seed 2: fewer than 2 pairs (n=1)"
    assert close(c["seed_d"][0], ref_cohens_d(s[:10], b[:10]))
    assert close(c["seed_sd_d"], statistics.stdev([c["seed_d"][0], c["seed_d"][1]]))
    assert "seed_sd_d and the meta-analysis leave out seed(s) 2 whose d is undefined" in c["notes"]
    v = [2 / 10 + d * d / 40 for d in c["seed_d"][:2]]
    meta = ref_dersimonian_laird(c["seed_d"][:2], v)
    assert close(c["meta_estimate"], meta["estimate"])
    assert close(c["meta_i2"], meta["i2"])
    out = finalize([c])[0]
    assert out["seeds_total"] == 2
    assert out["notes"][-1] == "p_holm and p_bh adjust over a family of 1 comparison"
    assert close(out["p_holm"], c["p_paired_t"], 1e-12)
    again = finalize([out])[0]  # re-finalizing does not duplicate notes
    assert again["notes"] == out["notes"] and again["verdict"] == out["verdict"]


def test_single_seed_run() -> None:
    c = finalize(
        [rec(JUDGE_A_BASE[::5], JUDGE_A_STEER[::5], prompts=JUDGE_PROMPTS[::5], seeds=[0] * 20)]
    )[0]
    assert_contract(c)
    assert c["seed_sd_d"] is None
    assert c["reasons"]["meta_estimate"] == "fewer than 2 seeds with a defined d (1)"
    assert c["seeds_total"] == 1 and c["seeds_same_sign"] == 1
    assert "only 1 seed with a defined d: seed agreement not assessable" in c["verdict"]


def test_mixed_failure_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    c = rec(JUDGE_A_BASE, JUDGE_A_STEER, mixed_methods=["bfgs"])
    assert_contract(c)
    assert c["mixed_estimate"] is None and c["mixed_converged"] is False
    assert c["reasons"]["mixed_se"] == (
        "REML fit did not converge with any optimiser "
        "(bfgs: rejected (optimiser reports no convergence))"
    )


def test_extreme_values_never_raise() -> None:
    b = [1e308, -1e308, 1e308, 5.0, 1e-300]
    s = [-1e308, 1e308, 1e308, 6.0, 0.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warnings leak either
        c = finalize([rec(b, s, prompts=list("abcde"), seeds=[0, 0, 1, 1, 2])])[0]
    assert_contract(c)
    why = "scores exceed 1e+150 in magnitude (variances would overflow)"
    for f in ("cohens_d", "d_z", "p_paired_t", "meta_estimate", "mixed_se", "boot_ci_low", "power"):
        assert c[f] is None and c["reasons"][f] == why
    assert c["mean_baseline"] == pytest.approx(2e307)
    # 1e308 + 1e308 overflows inside the mean: the guard turns it into a null with a reason
    c2 = rec([1e308, 1e308, 1e308], [1.0, 2.0, 3.0], prompts=list("abc"), seeds=[0, 0, 0])
    assert_contract(c2)
    assert c2["mean_baseline"] is None
    assert c2["reasons"]["mean_baseline"] == "computation gave a non-finite value"


def test_misaligned_inputs_raise() -> None:
    with pytest.raises(ValueError):
        rec([1.0, 2.0], [1.0], prompts=["a", "b"], seeds=[0, 0])
    with pytest.raises(ValueError):
        rec([1.0], [1.0], prompts=["a"], seeds=[0.5])
