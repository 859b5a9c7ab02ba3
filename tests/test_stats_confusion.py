"""Classification metrics, McNemar's test and the paired text bootstrap
(harness.stats.confusion): hand-computed confusion matrices, scikit-learn, exact binomial
arithmetic and the one bootstrap engine's own protocol."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import precision_recall_fscore_support

from harness.stats import (
    cluster_bootstrap,
    confusion_matrix,
    count_metrics,
    interval_of,
    mcnemar,
    paired_bootstrap,
    resample_indices,
)

# gold 0,0,0,1,1,2 ; predicted 0,0,1,1,2,2 (and a 4th label that never occurs)
GOLD = [0, 0, 0, 1, 1, 2]
PRED = [0, 0, 1, 1, 2, 2]


def test_confusion_matrix_by_hand() -> None:
    cm = confusion_matrix(GOLD, PRED, 3)
    assert cm.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    with pytest.raises(ValueError):
        confusion_matrix([0, 3], [0, 0], 3)


def test_count_metrics_by_hand() -> None:
    m = count_metrics(GOLD, PRED, 4)
    assert m.n == 6
    assert m.accuracy == pytest.approx(4 / 6)
    # precision tp/predicted: 2/2, 1/2, 1/2; label 3 never predicted -> undefined
    assert m.precision[:3] == pytest.approx([1.0, 0.5, 0.5])
    # recall tp/support: 2/3, 1/2, 1/1
    assert m.recall[:3] == pytest.approx([2 / 3, 0.5, 1.0])
    # F1 2tp/(predicted + support): 4/5, 2/4, 2/3
    assert m.f1[:3] == pytest.approx([0.8, 0.5, 2 / 3])
    assert m.precision[3] is None and m.recall[3] is None and m.f1[3] is None
    # macro over the defined labels only (label 3 is neither gold nor predicted)
    assert m.macro_precision == pytest.approx(2 / 3)
    assert m.macro_recall == pytest.approx((2 / 3 + 0.5 + 1.0) / 3)
    assert m.macro_f1 == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert m.support == [3, 2, 1, 0]
    assert m.predicted == [2, 2, 2, 0]


def test_count_metrics_gold_but_never_predicted_is_f1_zero_not_null() -> None:
    # label 1 is gold twice and never predicted: precision undefined, recall 0, F1 0
    m = count_metrics([0, 1, 1], [0, 0, 0], 2)
    assert m.precision[1] is None
    assert m.recall[1] == 0.0 and m.f1[1] == 0.0
    assert m.macro_precision == pytest.approx(1 / 3)  # label 0 only: 1/3


@pytest.mark.parametrize("seed", range(6))
def test_count_metrics_match_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k = 5
    n = int(rng.integers(5, 40))
    gold = rng.integers(0, 3 + seed % 2, n)  # labels 3/4 often absent from the gold
    pred = np.where(rng.random(n) < 0.6, gold, rng.integers(0, k - (seed % 3), n))
    m = count_metrics(gold, pred, k)
    labels = list(range(k))
    p, r, f, s = precision_recall_fscore_support(
        gold, pred, labels=labels, zero_division=np.nan, average=None
    )
    for ours, theirs in ((m.precision, p), (m.recall, r), (m.f1, f)):
        for a, b in zip(ours, theirs, strict=True):
            assert (a is None) == bool(np.isnan(b))
            if a is not None:
                assert math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15)
    assert m.support == [int(x) for x in s]
    mp, mr, mf, _ = precision_recall_fscore_support(
        gold, pred, labels=labels, zero_division=np.nan, average="macro"
    )
    assert m.macro_precision == pytest.approx(mp, rel=1e-12)
    assert m.macro_recall == pytest.approx(mr, rel=1e-12)
    assert m.macro_f1 == pytest.approx(mf, rel=1e-12)
    assert m.accuracy == pytest.approx(float(np.mean(gold == pred)), rel=1e-12)


def test_mcnemar_exact_by_hand() -> None:
    base = [True] * 10 + [False] * 5
    # b = 0 (never right -> wrong), c = 5: p = 2 * 0.5^5
    steer = [True] * 10 + [True] * 5
    res = mcnemar(base, steer)
    assert (res.b, res.c, res.both_correct, res.both_wrong) == (0, 5, 10, 0)
    assert res.p_exact == pytest.approx(2 * 0.5**5, rel=1e-12)
    assert res.chi2 == pytest.approx((5 - 1) ** 2 / 5)
    # b = 8, c = 2: p = 2·P(X ≤ 2 | 10, ½) = 2·(1 + 10 + 45)/1024; χ² = (6 - 1)²/10
    base = [True] * 8 + [False] * 2 + [True] * 3
    steer = [False] * 8 + [True] * 2 + [True] * 3
    res = mcnemar(base, steer)
    assert (res.b, res.c) == (8, 2)
    assert res.p_exact == pytest.approx(2 * 56 / 1024, rel=1e-12)
    assert res.chi2 == pytest.approx(2.5)
    assert res.p_chi2 == pytest.approx(math.erfc(math.sqrt(2.5 / 2)), rel=1e-12)


def test_mcnemar_without_discordant_pairs() -> None:
    res = mcnemar([True, False, True], [True, False, True])
    assert res.p_exact == 1.0
    assert res.chi2 is None and res.p_chi2 is None and res.reason
    tied = mcnemar([True, True, False, False], [False, True, True, False])  # b = c = 1
    assert tied.p_exact == 1.0 and tied.chi2 == 0.0 and tied.p_chi2 == 1.0


def _data(n: int = 30, seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gold = rng.integers(0, 3, n)
    base = np.where(rng.random(n) < 0.7, gold, rng.integers(0, 3, n))
    steer = np.where(rng.random(n) < 0.3, 0, base)
    return gold, base, steer


def test_weighted_counts_equal_recomputing_on_the_drawn_texts() -> None:
    gold, base, steer = _data()
    (mb, ms), (mean,) = paired_bootstrap(
        gold, [base, steer], 3, values=[steer - base], n_resamples=25, seed=7
    )
    idx = resample_indices(gold.size, 25, 7)
    for r in range(25):
        drawn = count_metrics(gold[idx[r]], steer[idx[r]], 3)
        assert ms["accuracy"][r] == pytest.approx(drawn.accuracy)
        for j in range(3):
            got = ms["f1"][r, j]
            assert (drawn.f1[j] is None) == bool(np.isnan(got))
            if drawn.f1[j] is not None:
                assert got == pytest.approx(drawn.f1[j])
        assert ms["macro_recall"][r] == pytest.approx(drawn.macro_recall)
        assert mb["accuracy"][r] == pytest.approx(float(np.mean(gold[idx[r]] == base[idx[r]])))
        assert mean[r] == pytest.approx(float(np.mean((steer - base)[idx[r]])))


def test_paired_interval_equals_the_one_engine_with_texts_as_clusters() -> None:
    gold, base, steer = _data()
    (mb, ms), _ = paired_bootstrap(gold, [base, steer], 3, n_resamples=300, seed=11)
    ours = interval_of(ms["accuracy"] - mb["accuracy"])
    ids = [f"t{i:02d}" for i in range(gold.size)]  # already in the engine's sorted order

    def stat(rows: np.ndarray) -> float:
        return float(np.mean(gold[rows] == steer[rows]) - np.mean(gold[rows] == base[rows]))

    ref = cluster_bootstrap(stat, ids, n_resamples=300, seed=11)
    assert ours.low == pytest.approx(ref.ci_low, abs=1e-12)
    assert ours.high == pytest.approx(ref.ci_high, abs=1e-12)


def test_interval_contains_the_estimate_and_is_deterministic() -> None:
    gold, _base, steer = _data(n=60)
    point = count_metrics(gold, steer, 3)

    def run(seed: int) -> tuple[float | None, float | None]:
        (m,), _ = paired_bootstrap(gold, [steer], 3, n_resamples=400, seed=seed)
        iv = interval_of(m["macro_f1"])
        return iv.low, iv.high

    lo, hi = run(5)
    assert lo is not None and hi is not None
    assert lo <= point.macro_f1 <= hi
    assert run(5) == (lo, hi)
    assert run(6) != (lo, hi)


def test_interval_drops_undefined_resamples() -> None:
    # label 1 predicted once in 40 texts: many resamples never draw it -> precision undefined
    gold = np.array([0] * 39 + [1])
    pred = np.array([0] * 39 + [1])
    (m,), _ = paired_bootstrap(gold, [pred], 2, n_resamples=200, seed=0)
    iv = interval_of(m["precision"][:, 1])
    assert 0 < iv.n_dropped < 200
    assert iv.low == iv.high == 1.0
    none = interval_of(np.full(10, np.nan))
    assert none.low is None and none.reason and none.n_dropped == 10
