"""REML mixed model score ~ condition + (1 | prompt_id) and its convergence protocol."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from statsmodels.regression.mixed_linear_model import MixedLM
from test_stats_refs import (
    JUDGE_A_BASE,
    JUDGE_A_STEER,
    JUDGE_B_BASE,
    JUDGE_B_STEER,
    JUDGE_PROMPTS,
    anova_balanced_paired,
    ref_reml_random_intercept,
)

from harness.stats import condition_effect_mixed
from harness.stats import mixed as mixed_mod

X2 = np.r_[np.zeros(100), np.ones(100)]
G2 = JUDGE_PROMPTS + JUDGE_PROMPTS


def _statsmodels_default(y: np.ndarray) -> tuple[bool, float]:
    exog = np.column_stack([np.ones_like(y), X2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = MixedLM(y, exog, groups=np.array(G2)).fit(reml=True)
    return bool(res.converged), float(res.bse_fe[1])


def test_default_optimiser_fails_on_judge_a_but_we_recover_reml() -> None:
    y = np.r_[JUDGE_A_BASE, JUDGE_A_STEER]
    ref = ref_reml_random_intercept(y, X2, G2)
    conv, _ = _statsmodels_default(y)
    if conv:  # the premise is about this statsmodels version; recovery is tested below anyway
        pytest.skip("this statsmodels' default optimiser converges on judge A")
    r = condition_effect_mixed(y, X2, G2)
    assert r.converged and r.method == "powell"
    assert math.isclose(r.estimate, ref["estimate"], rel_tol=1e-3)  # type: ignore[arg-type]
    assert math.isclose(r.se, ref["se"], rel_tol=1e-3)  # type: ignore[arg-type]
    assert math.isclose(r.tau2, ref["tau2"], rel_tol=1e-3)  # type: ignore[arg-type]
    assert math.isclose(r.sigma2, ref["sigma2"], rel_tol=1e-3)  # type: ignore[arg-type]
    assert ref["tau2"] > 0.1  # a genuine prompt random effect


def test_default_optimiser_reports_converged_at_wrong_point_on_judge_b() -> None:
    y = np.r_[JUDGE_B_BASE, JUDGE_B_STEER]
    ref = ref_reml_random_intercept(y, X2, G2)
    conv, se_default = _statsmodels_default(y)
    if not conv or abs(se_default / ref["se"] - 1) <= 3e-3:
        pytest.skip("this statsmodels' default fit is no longer off the REML optimum on judge B")
    # our optimality check rejects exactly that fit and falls back
    r = condition_effect_mixed(y, X2, G2, methods=[("bfgs", "lbfgs", "cg"), "powell"])
    assert r.attempts[0].startswith("bfgs+lbfgs+cg: rejected (not the REML maximum")
    assert r.method == "powell" and r.converged
    assert math.isclose(r.se, ref["se"], rel_tol=1e-3)  # type: ignore[arg-type]
    assert math.isclose(r.estimate, ref["estimate"], rel_tol=1e-3)  # type: ignore[arg-type]


def test_fallback_chain_records_each_failure() -> None:
    y = np.r_[JUDGE_B_BASE, JUDGE_B_STEER]
    r = condition_effect_mixed(y, X2, G2, methods=["bfgs", "lbfgs", "nm"])
    if r.attempts[0] != "bfgs: rejected (optimiser reports no convergence)":
        pytest.skip("this statsmodels' bfgs converges on judge B; nothing to fall back from")
    assert r.attempts[1].startswith("lbfgs: raised LinAlgError")
    assert r.attempts[2] == "nm: accepted"
    ref = ref_reml_random_intercept(y, X2, G2)
    assert math.isclose(r.se, ref["se"], rel_tol=1e-3)  # type: ignore[arg-type]


def test_balanced_closed_form() -> None:
    # balanced data: REML = two-way ANOVA estimators (independent closed form)
    y = np.r_[JUDGE_A_BASE, JUDGE_A_STEER]
    anova = anova_balanced_paired(JUDGE_A_BASE, JUDGE_A_STEER, JUDGE_PROMPTS)
    r = condition_effect_mixed(y, X2, G2)
    assert math.isclose(r.se, anova["se"], rel_tol=1e-3)  # type: ignore[arg-type]
    assert math.isclose(r.estimate, anova["estimate"], rel_tol=1e-9)  # type: ignore[arg-type]


def test_unbalanced_boundary_and_large_variance_ratio() -> None:
    rng = np.random.default_rng(11)
    # unbalanced: prompts with 1..6 pairs; no prompt effect (REML τ² on the boundary)
    sizes = [1, 2, 3, 4, 5, 6, 2, 3, 5, 1, 4, 6]
    groups = [f"q{i}" for i, m in enumerate(sizes) for _ in range(m)]
    n = len(groups)
    b = rng.normal(0, 1, n)
    s = rng.normal(0.4, 1, n)
    y = np.r_[b, s]
    x = np.r_[np.zeros(n), np.ones(n)]
    ref = ref_reml_random_intercept(y, x, groups + groups)
    r = condition_effect_mixed(y, x, groups + groups)
    assert r.converged
    assert math.isclose(r.estimate, ref["estimate"], rel_tol=1e-3)  # type: ignore[arg-type]
    assert math.isclose(r.se, ref["se"], rel_tol=1e-3)  # type: ignore[arg-type]
    # prompt variance 1e4 times the residual variance
    u = np.repeat(rng.normal(0, 1, 12), 5)
    g2 = [f"r{i}" for i in range(12) for _ in range(5)]
    b2 = 3 + u + rng.normal(0, 0.01, 60)
    s2 = 3.2 + u + rng.normal(0, 0.01, 60)
    y2 = np.r_[b2, s2]
    x2 = np.r_[np.zeros(60), np.ones(60)]
    ref2 = ref_reml_random_intercept(y2, x2, g2 + g2)
    r2 = condition_effect_mixed(y2, x2, g2 + g2)
    assert math.isclose(r2.se, ref2["se"], rel_tol=1e-3)  # type: ignore[arg-type]
    assert math.isclose(r2.estimate, ref2["estimate"], rel_tol=1e-6)  # type: ignore[arg-type]


def test_all_methods_fail_gives_null_with_reason() -> None:
    y = np.r_[JUDGE_A_BASE, JUDGE_A_STEER]
    r = condition_effect_mixed(y, X2, G2, methods=["bfgs"])
    assert r.estimate is None and r.se is None and r.converged is False and r.method is None
    assert r.reason == (
        "REML fit did not converge with any optimiser "
        "(bfgs: rejected (optimiser reports no convergence))"
    )


def test_forced_failure_by_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def boom(self: MixedLM, *args: object, **kwargs: object) -> None:
        calls.append(list(kwargs["method"]))  # type: ignore[call-overload]
        raise np.linalg.LinAlgError("Singular matrix")

    monkeypatch.setattr(mixed_mod.MixedLM, "fit", boom)
    y = np.r_[JUDGE_A_BASE, JUDGE_A_STEER]
    r = condition_effect_mixed(y, X2, G2)
    assert calls == [["powell"], ["nm"], ["lbfgs"], ["bfgs"], ["cg"]]
    assert r.estimate is None and not r.converged
    assert r.reason is not None and r.reason.count("raised LinAlgError: Singular matrix") == 5


def test_degenerate_inputs() -> None:
    r = condition_effect_mixed([1.0, 1.0, 2.0, 2.0], [0, 0, 1, 1], ["a", "b", "a", "b"])
    assert r.estimate is None and r.reason == "zero variance in both conditions"
    r = condition_effect_mixed([1.0, 2.0, 3.0, 5.0], [0, 0, 1, 1], ["a", "a", "a", "a"])
    assert r.estimate is None
    assert r.reason == "a random intercept needs at least 2 prompts (got 1)"
    r = condition_effect_mixed([1.0, 2.0], [0, 0], ["a", "b"])
    assert r.reason == "only one condition present"
    r = condition_effect_mixed([1.0, np.nan], [0, 1], ["a", "b"])
    assert r.reason == "no finite data"
