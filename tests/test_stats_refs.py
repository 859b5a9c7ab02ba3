"""Independent reference implementations for the harness.stats tests.

Nothing here imports harness.stats: every quantity is written out from its textbook
definition with numpy/math/scipy primitives, or computed by a different algorithm
(bisection, numerical integration, an explicit loop, a hand-written REML). The tests at
the bottom check the references themselves against values known exactly.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import integrate, optimize
from scipy import stats as st

Z975 = 1.959963984540054  # Φ⁻¹(0.975)


# --------------------------------------------------------------------------- fixtures


def decode_scores(code: str) -> np.ndarray:
    """Judge scores 1..10 stored as one character each ('T' = 10)."""
    return np.array([10 if ch == "T" else int(ch) for ch in code], dtype=np.float64)


# Two benchmark-shaped data sets (20 prompts x 5 seeds, integer judge scores 1-10, a
# prompt random intercept with SD 0.45 and residual SD 1.5; row i = prompt i // 5,
# seed i % 5). Generated once with numpy and frozen here. On both, statsmodels'
# default MixedLM optimiser gets the REML fit wrong (see test_stats_mixed.py).
JUDGE_A_BASE = decode_scores(
    "4455725462564767744556333455844534563755656546474385385745334569474533334366687644655756385565465352"
)
JUDGE_A_STEER = decode_scores(
    "8559966785787774526837655645677474566565456586158654877788476676187656355446897736726367446757485666"
)
JUDGE_B_BASE = decode_scores(
    "2255745341645663766433554867746525677355556637864553537653544743688685885634646657867855267688754565"
)
JUDGE_B_STEER = decode_scores(
    "54625566544876547568456746557676746444763775575T6655564447446457668553675978477365379756856668476536"
)
JUDGE_PROMPTS = [f"p{i // 5:02d}" for i in range(100)]
JUDGE_SEEDS = [i % 5 for i in range(100)]


# --------------------------------------------------------------------------- effect sizes


def ref_cohens_d(s: np.ndarray, b: np.ndarray) -> float:
    n1, n2 = len(s), len(b)
    ms, mb = sum(s) / n1, sum(b) / n2
    vs = sum((x - ms) ** 2 for x in s) / (n1 - 1)
    vb = sum((x - mb) ** 2 for x in b) / (n2 - 1)
    sp = math.sqrt(((n1 - 1) * vs + (n2 - 1) * vb) / (n1 + n2 - 2))
    return (ms - mb) / sp


def ref_hedges_j(df: float) -> float:
    if df < 300:
        return math.gamma(df / 2) / (math.sqrt(df / 2) * math.gamma((df - 1) / 2))
    # large df: Stirling series of the gamma ratio, J = 1 - 3/(4df) - 7/(32df^2) + ...
    # (relative error O(df^-3))
    return 1 - 3 / (4 * df) - 7 / (32 * df**2)


def ref_d_z(diff: np.ndarray) -> float:
    n = len(diff)
    m = sum(diff) / n
    sd = math.sqrt(sum((x - m) ** 2 for x in diff) / (n - 1))
    return m / sd


def ref_d_ci_bisection(d: float, n1: int, n2: int, level: float = 0.95) -> tuple[float, float]:
    """Noncentral-t interval by plain bisection on the noncentrality parameter."""
    f = math.sqrt(n1 * n2 / (n1 + n2))
    t = d * f
    df = n1 + n2 - 2
    a = 1 - level

    def solve(target: float) -> float:
        lo, hi = t - 50.0, t + 50.0  # cdf(lo) > target > cdf(hi)
        assert st.nct.cdf(t, df, lo) > target > st.nct.cdf(t, df, hi)
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if st.nct.cdf(t, df, mid) > target:
                lo = mid
            else:
                hi = mid
        return 0.5 * (lo + hi)

    return solve(1 - a / 2) / f, solve(a / 2) / f


def nct_cdf_by_integration(t: float, df: int, ncp: float) -> float:
    """P(T <= t), T = (Z + ncp) / sqrt(V/df), V ~ chi²(df), by numerical integration of
    Φ(t·sqrt(v/df) - ncp) against the chi-square density (no scipy nct)."""

    def integrand(v: float) -> float:
        return st.norm.cdf(t * math.sqrt(v / df) - ncp) * st.chi2.pdf(v, df)

    val, _ = integrate.quad(integrand, 0, np.inf, epsabs=1e-13, epsrel=1e-12, limit=400)
    return float(val)


# --------------------------------------------------------------------------- tests


def ref_paired_t_p(s: np.ndarray, b: np.ndarray) -> float:
    diff = s - b
    n = len(diff)
    t = ref_d_z(diff) * math.sqrt(n)
    return float(2 * st.t.sf(abs(t), n - 1))


def ref_welch_p(s: np.ndarray, b: np.ndarray) -> float:
    n1, n2 = len(s), len(b)
    v1 = float(np.sum((s - s.mean()) ** 2)) / (n1 - 1)
    v2 = float(np.sum((b - b.mean()) ** 2)) / (n2 - 1)
    se2 = v1 / n1 + v2 / n2
    t = (s.mean() - b.mean()) / math.sqrt(se2)
    df = se2**2 / ((v1 / n1) ** 2 / (n1 - 1) + (v2 / n2) ** 2 / (n2 - 1))
    return float(2 * st.t.sf(abs(t), df))


def ref_wilcoxon_p(diff: np.ndarray, tie_correction: bool = True) -> float:
    """Signed-rank normal approximation by hand: drop zeros, midranks of |d|,
    var = n(n+1)(2n+1)/24 - Σ(t³ - t)/48, no continuity correction."""
    d = [x for x in diff if x != 0]
    n = len(d)
    a = sorted(abs(x) for x in d)
    # midranks
    rank_of: dict[float, float] = {}
    i = 0
    ties: list[int] = []
    while i < n:
        j = i
        while j + 1 < n and a[j + 1] == a[i]:
            j += 1
        rank_of[a[i]] = (i + 1 + j + 1) / 2
        ties.append(j - i + 1)
        i = j + 1
    r_plus = sum(rank_of[abs(x)] for x in d if x > 0)
    var = n * (n + 1) * (2 * n + 1) / 24
    if tie_correction:
        var -= sum(t**3 - t for t in ties) / 48
    z = (r_plus - n * (n + 1) / 4) / math.sqrt(var)
    return float(2 * st.norm.sf(abs(z)))


# --------------------------------------------------------------------------- meta


def ref_dersimonian_laird(y: list[float], v: list[float]) -> dict[str, float]:
    k = len(y)
    w = [1 / x for x in v]
    sw = sum(w)
    ybar = sum(wi * yi for wi, yi in zip(w, y, strict=True)) / sw
    q = sum(wi * (yi - ybar) ** 2 for wi, yi in zip(w, y, strict=True))
    c = sw - sum(wi * wi for wi in w) / sw
    tau2 = max(0.0, (q - (k - 1)) / c)
    ws = [1 / (vi + tau2) for vi in v]
    est = sum(wi * yi for wi, yi in zip(ws, y, strict=True)) / sum(ws)
    se = math.sqrt(1 / sum(ws))
    i2 = max(0.0, (q - (k - 1)) / q) * 100 if q > 0 else 0.0
    return {
        "estimate": est,
        "se": se,
        "ci_low": est - Z975 * se,
        "ci_high": est + Z975 * se,
        "tau2": tau2,
        "i2": i2,
        "q": q,
    }


# --------------------------------------------------------------------------- REML


def ref_reml_random_intercept(y: np.ndarray, x: np.ndarray, groups: list[str]) -> dict[str, float]:
    """REML fit of y = b0 + b1·x + u_g + e, u_g ~ N(0, τ²), e ~ N(0, σ²), written out.

    With γ = τ²/σ² and H = I + γ ZZ', the REML log-likelihood profiled over σ² is
    -½[(N-p) log σ̂²(γ) + log|H| + log|X'H⁻¹X|], σ̂² = r'H⁻¹r/(N-p), r = y - Xβ̂_GLS.
    Each group block of H⁻¹ is I - γ/(1+γm)·11' (Sherman-Morrison), |H| = Π(1+γm).
    γ is maximised on a log grid then refined by bounded Brent search; γ = 0 is also
    evaluated. Returns β̂1, its SE sqrt(σ̂²·[(X'H⁻¹X)⁻¹]₁₁), τ², σ².
    """
    X = np.column_stack([np.ones_like(y), x])
    n_obs, p = X.shape
    labels = sorted(set(groups))
    idx = [np.array([i for i, g in enumerate(groups) if g == lab]) for lab in labels]

    def fit(gam: float) -> tuple[float, np.ndarray, float, np.ndarray]:
        xhx = np.zeros((p, p))
        xhy = np.zeros(p)
        logdet = 0.0
        for ii in idx:
            xg, yg = X[ii], y[ii]
            c = gam / (1 + gam * len(ii))
            sx, sy = xg.sum(axis=0), yg.sum()
            xhx += xg.T @ xg - c * np.outer(sx, sx)
            xhy += xg.T @ yg - c * sx * sy
            logdet += math.log1p(gam * len(ii))
        beta = np.linalg.solve(xhx, xhy)
        rhr = 0.0
        for ii in idx:
            r = y[ii] - X[ii] @ beta
            c = gam / (1 + gam * len(ii))
            rhr += float(r @ r - c * r.sum() ** 2)
        s2 = rhr / (n_obs - p)
        ll = -0.5 * ((n_obs - p) * math.log(s2) + logdet + np.linalg.slogdet(xhx)[1])
        return ll, beta, s2, np.linalg.inv(xhx) * s2

    grid = np.logspace(-8, 8, 161)
    lls = [fit(g)[0] for g in grid]
    i = int(np.argmax(lls))
    lo = math.log(grid[max(i - 1, 0)])
    hi = math.log(grid[min(i + 1, len(grid) - 1)])
    res = optimize.minimize_scalar(
        lambda lg: -fit(math.exp(lg))[0],
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": 1e-10},
    )
    gam = math.exp(res.x)
    if fit(0.0)[0] >= fit(gam)[0]:
        gam = 0.0
    _, beta, s2, cov = fit(gam)
    return {"estimate": float(beta[1]), "se": math.sqrt(cov[1, 1]), "tau2": gam * s2, "sigma2": s2}


# --------------------------------------------------------------------------- bootstrap


def ref_cluster_bootstrap(
    b: np.ndarray,
    s: np.ndarray,
    clusters: list[str],
    n_resamples: int,
    seed: int,
    level: float = 0.95,
) -> tuple[float | None, float | None, int]:
    """The documented protocol, as an explicit loop over resamples (one RNG call each)."""
    labels = sorted(set(clusters))
    k = len(labels)
    members = {lab: [i for i, c in enumerate(clusters) if c == lab] for lab in labels}
    rng = np.random.default_rng(seed)
    ds = []
    for _ in range(n_resamples):
        draw = rng.integers(0, k, size=k)  # one call per resample, in order
        rows = [i for j in draw for i in members[labels[j]]]
        bb, ss = b[rows], s[rows]
        if np.all(bb == bb[0]) and np.all(ss == ss[0]):
            continue
        ds.append(ref_cohens_d(ss, bb))
    a = 100 * (1 - level) / 2
    if len(ds) < 2:
        return None, None, n_resamples - len(ds)
    lo, hi = np.percentile(ds, [a, 100 - a])
    return float(lo), float(hi), n_resamples - len(ds)


# --------------------------------------------------------------------------- power


def ref_power(dz: float, n: int, alpha: float = 0.05) -> float:
    df = n - 1
    crit = st.t.ppf(1 - alpha / 2, df)
    ncp = abs(dz) * math.sqrt(n)
    return float(st.nct.sf(crit, df, ncp) + st.nct.cdf(-crit, df, ncp))


def ref_pairs_needed(dz: float, target: float = 0.8, alpha: float = 0.05) -> int:
    n = 2
    while ref_power(dz, n, alpha) < target:
        n += 1
    return n


# =========================================================================== self-checks


def test_reference_hedges_j_known_values() -> None:
    # J(df) = Γ(df/2)/(sqrt(df/2)Γ((df-1)/2)); J(2) = 1/sqrt(π) exactly (Γ(1)=1, Γ(½)=√π)
    assert math.isclose(ref_hedges_j(2), 1 / math.sqrt(math.pi), rel_tol=1e-14)
    # J(3) = Γ(3/2)/(sqrt(3/2)·Γ(1)) = (√π/2)/sqrt(1.5)
    assert math.isclose(ref_hedges_j(3), (math.sqrt(math.pi) / 2) / math.sqrt(1.5), rel_tol=1e-14)
    # the series agrees with the exact ratio where both are computable
    exact = math.exp(math.lgamma(150.0) - math.lgamma(149.5)) / math.sqrt(150.0)
    assert math.isclose(1 - 3 / 1200 - 7 / (32 * 300**2), exact, rel_tol=1e-8)


def test_reference_nct_integration_matches_central_t() -> None:
    # with ncp = 0 the integral must give the central t CDF
    assert math.isclose(nct_cdf_by_integration(1.3, 7, 0.0), st.t.cdf(1.3, 7), rel_tol=1e-9)


def test_reference_wilcoxon_without_ties_matches_textbook_variance() -> None:
    d = np.array([1.0, -2.0, 3.0, 4.0, 5.0])  # ranks 1..5, R+ = 13, n = 5
    z = (13 - 7.5) / math.sqrt(5 * 6 * 11 / 24)
    assert math.isclose(ref_wilcoxon_p(d), 2 * st.norm.sf(z), rel_tol=1e-12)


def anova_balanced_paired(b: np.ndarray, s: np.ndarray, groups: list[str]) -> dict[str, float]:
    """Closed form for a balanced layout (every prompt has the same number of pairs):
    additive two-way ANOVA (prompt + condition). σ̂² = MS_resid on N - k - 1 df,
    τ̂² = (MS_prompt - MS_resid)/m (m rows per prompt), SE(condition) = sqrt(4σ̂²/N).
    These equal the REML estimates whenever τ̂² >= 0 (balanced-data identity)."""
    y = np.concatenate([b, s])
    cond = np.concatenate([np.zeros(len(b)), np.ones(len(s))])
    g = np.array(list(groups) + list(groups))
    labels = sorted(set(groups))
    n_obs, k = len(y), len(labels)
    m = n_obs // k
    gmean = {lab: y[g == lab].mean() for lab in labels}
    cmean = {c: y[cond == c].mean() for c in (0.0, 1.0)}
    grand = y.mean()
    fitted = np.array([gmean[gi] + cmean[ci] - grand for gi, ci in zip(g, cond, strict=True)])
    ms_res = float(((y - fitted) ** 2).sum()) / (n_obs - k - 1)
    ms_prompt = m * sum((gmean[lab] - grand) ** 2 for lab in labels) / (k - 1)
    return {
        "estimate": cmean[1.0] - cmean[0.0],
        "se": math.sqrt(4 * ms_res / n_obs),
        "tau2": (ms_prompt - ms_res) / m,
        "sigma2": ms_res,
    }


def test_reference_reml_matches_balanced_anova_identity() -> None:
    for b, s in ((JUDGE_A_BASE, JUDGE_A_STEER), (JUDGE_B_BASE, JUDGE_B_STEER)):
        ref = ref_reml_random_intercept(
            np.concatenate([b, s]),
            np.r_[np.zeros(100), np.ones(100)],
            JUDGE_PROMPTS + JUDGE_PROMPTS,
        )
        anova = anova_balanced_paired(b, s, JUDGE_PROMPTS)
        assert anova["tau2"] > 0
        for key in ("estimate", "se", "tau2", "sigma2"):
            assert math.isclose(ref[key], anova[key], rel_tol=1e-6), key
