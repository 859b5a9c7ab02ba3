"""Cluster bootstrap percentile interval for d, against an explicit-loop reference."""

from __future__ import annotations

import math

import numpy as np
from test_stats_refs import (
    JUDGE_A_BASE,
    JUDGE_A_STEER,
    JUDGE_PROMPTS,
    ref_cluster_bootstrap,
)

from harness.stats import cluster_bootstrap_d


def test_matches_reference_loop_on_benchmark_shaped_data() -> None:
    res = cluster_bootstrap_d(
        JUDGE_A_BASE, JUDGE_A_STEER, JUDGE_PROMPTS, n_resamples=2000, seed=123
    )
    lo, hi, dropped = ref_cluster_bootstrap(JUDGE_A_BASE, JUDGE_A_STEER, JUDGE_PROMPTS, 2000, 123)
    assert res.n_resamples == 2000 and res.n_dropped == dropped == 0 and res.k == 20
    assert math.isclose(res.ci_low, lo, rel_tol=1e-6)  # type: ignore[arg-type]
    assert math.isclose(res.ci_high, hi, rel_tol=1e-6)  # type: ignore[arg-type]


def test_unbalanced_clusters_and_large_offset() -> None:
    # prompts with different numbers of pairs; a large common offset stresses the
    # sum-of-squares computation
    rng = np.random.default_rng(2)
    sizes = [1, 3, 5, 2, 4, 6, 1, 2]
    clusters = [f"c{i}" for i, m in enumerate(sizes) for _ in range(m)]
    n = len(clusters)
    b = 1e6 + rng.normal(0, 1, n)
    s = 1e6 + 0.5 + rng.normal(0, 1, n)
    res = cluster_bootstrap_d(b, s, clusters, n_resamples=500, seed=7)
    lo, hi, dropped = ref_cluster_bootstrap(b, s, clusters, 500, 7)
    assert res.n_dropped == dropped
    assert math.isclose(res.ci_low, lo, rel_tol=1e-6)  # type: ignore[arg-type]
    assert math.isclose(res.ci_high, hi, rel_tol=1e-6)  # type: ignore[arg-type]


def test_undefined_resamples_are_dropped_and_counted() -> None:
    # prompts A and B: baseline always 1, steered always 2 -> a resample drawing only A/B
    # has zero pooled SD. P(no C in 3 draws) = 8/27, so ~30% of resamples are dropped.
    clusters = ["A"] * 3 + ["B"] * 3 + ["C"] * 3
    b = np.array([1, 1, 1, 1, 1, 1, 0.0, 1.5, 3.0])
    s = np.array([2, 2, 2, 2, 2, 2, 1.0, 4.0, 2.5])
    res = cluster_bootstrap_d(b, s, clusters, n_resamples=1000, seed=0)
    lo, hi, dropped = ref_cluster_bootstrap(b, s, clusters, 1000, 0)
    assert res.n_dropped == dropped
    assert 200 < dropped < 400
    assert math.isclose(res.ci_low, lo, rel_tol=1e-6)  # type: ignore[arg-type]
    assert math.isclose(res.ci_high, hi, rel_tol=1e-6)  # type: ignore[arg-type]


def test_seeded_and_reproducible() -> None:
    a = cluster_bootstrap_d(JUDGE_A_BASE, JUDGE_A_STEER, JUDGE_PROMPTS, 300, seed=5)
    b = cluster_bootstrap_d(JUDGE_A_BASE, JUDGE_A_STEER, JUDGE_PROMPTS, 300, seed=5)
    c = cluster_bootstrap_d(JUDGE_A_BASE, JUDGE_A_STEER, JUDGE_PROMPTS, 300, seed=6)
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    assert (a.ci_low, a.ci_high) != (c.ci_low, c.ci_high)


def test_degenerate() -> None:
    r = cluster_bootstrap_d([1.0, 2.0, 3.0], [2.0, 3.0, 5.0], ["p", "p", "p"])
    assert r.ci_low is None and r.reason == "a cluster bootstrap needs at least 2 prompts (got 1)"
    r = cluster_bootstrap_d([1.0, 1.0], [2.0, 2.0], ["p", "q"], n_resamples=50)
    assert r.ci_low is None and r.n_dropped == 50
    assert r.reason == "only 0 of 50 resamples had a defined d"
