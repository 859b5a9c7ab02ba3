"""Agreement between scorers that measure the same trait, over the texts of one run.

Two scorer metrics measure the same trait when they have the same metric name in different
scorers (``lexicon/fear`` and ``embedding/fear``). For each such pair the analysis adds,
under the ``agreement`` key of ``analysis.json``:

- ``spearman``: Spearman's rank correlation (Spearman 1904) over the texts both scored,
  all conditions pooled; a text is a (condition, prompt_id, seed) and ties get mid-ranks,
  so ρ is the Pearson correlation of the mid-ranks (as ``scipy.stats.spearmanr``);
- ``ci_low``/``ci_high``: its 95% percentile interval over a prompt-cluster bootstrap
  (Davison & Hinkley 1997, §3.8): a drawn prompt brings all its texts, every condition and
  seed, because texts of one prompt are not independent. RNG protocol as in
  :mod:`harness.stats.bootstrap`: prompts sorted, ``rng = np.random.default_rng(seed)``,
  ``idx = rng.integers(0, k, size=(B, k))``; resamples whose ρ is undefined (constant
  ranks) are dropped and counted; ``np.percentile`` with linear interpolation. B and the
  seed are the spec's ``analysis.bootstrap_resamples`` / ``bootstrap_seed`` (2000, 0);
- ``by_condition``: ρ within each condition alone. Pooled ρ can be high only because both
  scorers see a condition shift; the within-condition ρ says whether they also agree
  text by text;
- ``reading``: "<strength> agreement" when the interval lies above 0, "disagreement"
  when below, "no detectable agreement" when it includes 0; strength by Cohen's (1988)
  conventions for a correlation: |ρ| < 0.1 negligible, < 0.3 small, < 0.5 medium, else
  large;
- ``krippendorff_alpha``: Krippendorff's alpha with the interval metric δ² = (a - b)²
  (Krippendorff 2011, "Computing Krippendorff's Alpha-Reliability"):
  α = 1 - D_o / D_e, D_o = (1/n) Σ_u Σ_{i≠j in u} δ²(v_ui, v_uj) / (m_u - 1),
  D_e = Σ_{i≠j} δ²(v_i, v_j) / (n (n - 1)) over all n pairable values (units = texts,
  coders = the two scorers). Alpha compares values, not ranks, so it is computed only when
  the two metrics are **on one scale**: every non-null score record of both declares the
  same ``scale`` in its ``extra`` (for example ``"probability"``, which the embedding and
  classifier scorers declare, or ``"0-100"`` for judge ratings; a scorer declares it with
  ``ScoreResult.ok(value, scale="0-100")``). The lexicon's rates per 100 words declare no
  scale, so lexicon-versus-classifier pairs get ρ but a null alpha with that reason.

Nothing here raises or yields NaN on degenerate data: fewer than 3 texts scored by both,
or constant scores, give a null with a reason.

References: Spearman, C. (1904), Am. J. Psychol. 15, 72-101; Cohen, J. (1988),
Statistical Power Analysis for the Behavioral Sciences, 2nd ed.; Krippendorff, K. (2011),
Computing Krippendorff's Alpha-Reliability, Annenberg School for Communication, U. of
Pennsylvania; Hayes, A. F. & Krippendorff, K. (2007), Commun. Methods Meas. 1, 77-89;
Davison, A. C. & Hinkley, D. V. (1997), Bootstrap Methods and their Application.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any

import numpy as np

from harness.analysis.table import AnalysisInput
from harness.stats.bootstrap import cluster_bootstrap
from harness.stats.correlation import krippendorff_alpha_interval, spearman

MIN_TEXTS = 3
Text = tuple[str, str, int]  # (condition, prompt_id, seed)


def _declared_scales(records: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], str | None]:
    """(scorer, metric) -> the one scale all its non-null records declare, else None."""
    seen: dict[tuple[str, str], set[str | None]] = {}
    for r in records:
        if r.get("value") is None:
            continue
        extra = r.get("extra") or {}
        scale = extra.get("scale") if isinstance(extra, Mapping) else None
        key = (str(r["scorer"]), str(r["metric"]))
        seen.setdefault(key, set()).add(str(scale) if scale else None)
    return {k: (next(iter(v)) if len(v) == 1 else None) for k, v in seen.items()}


def _rho_with_reason(a: np.ndarray, b: np.ndarray, names: tuple[str, str]) -> dict[str, Any]:
    n = int(a.size)
    if n < MIN_TEXTS:
        return {
            "n": n,
            "spearman": None,
            "reason": f"fewer than {MIN_TEXTS} texts scored by both (n={n})",
        }
    rho = spearman(a, b)
    if rho is None:
        const = [nm for nm, v in zip(names, (a, b), strict=True) if np.all(v == v[0])]
        why = (
            f"constant scores from {' and '.join(const)}: rank correlation undefined"
            if const
            else "no spread in the ranks: rank correlation undefined"
        )
        return {"n": n, "spearman": None, "reason": why}
    return {"n": n, "spearman": rho, "reason": None}


def cluster_bootstrap_spearman(
    a: np.ndarray, b: np.ndarray, clusters: Sequence[str], n_resamples: int, seed: int
) -> dict[str, Any]:
    """Percentile 95% interval of ρ over prompt-cluster resamples (protocol: module doc)."""
    out: dict[str, Any] = {
        "ci_low": None,
        "ci_high": None,
        "boot_resamples": n_resamples,
        "boot_dropped": 0,
        "boot_seed": seed,
        "ci_reason": None,
    }
    k = len(set(clusters))
    if n_resamples < 1:
        out["ci_reason"] = "bootstrap disabled (0 resamples)"
        return out
    if k < 2:
        out["ci_reason"] = f"a cluster bootstrap needs at least 2 prompts (got {k})"
        return out

    def rho(take: np.ndarray) -> float | None:
        return spearman(a[take], b[take]) if take.size >= MIN_TEXTS else None

    boot = cluster_bootstrap(rho, clusters, n_resamples, seed)
    out["boot_dropped"] = boot.n_dropped
    if boot.ci_low is None:
        out["ci_reason"] = "every bootstrap resample had constant scores"
        return out
    out["ci_low"], out["ci_high"] = boot.ci_low, boot.ci_high
    return out


def _pair(
    metric: str,
    a_name: str,
    b_name: str,
    a_vals: Mapping[str, Mapping[tuple[str, int], float]],
    b_vals: Mapping[str, Mapping[tuple[str, int], float]],
    conditions: Sequence[str],
    scales: Mapping[tuple[str, str], str | None],
    n_boot: int,
    boot_seed: int,
) -> dict[str, Any]:
    texts: list[Text] = []
    xa: list[float] = []
    xb: list[float] = []
    n_either = 0
    conds = [c for c in conditions if c in a_vals or c in b_vals]
    conds += [c for c in list(a_vals) + list(b_vals) if c not in conds]
    for cond in conds:
        va, vb = a_vals.get(cond, {}), b_vals.get(cond, {})
        for key in sorted(set(va) | set(vb)):
            n_either += 1
            x, y = va.get(key, math.nan), vb.get(key, math.nan)
            if math.isfinite(x) and math.isfinite(y):
                texts.append((cond, key[0], key[1]))
                xa.append(x)
                xb.append(y)
    a, b = np.array(xa, dtype=np.float64), np.array(xb, dtype=np.float64)
    names = (f"{a_name}/{metric}", f"{b_name}/{metric}")
    pooled = _rho_with_reason(a, b, names)
    rec: dict[str, Any] = {
        "metric": metric,
        "scorer_a": a_name,
        "scorer_b": b_name,
        "n": pooled["n"],
        "n_incomplete": n_either - pooled["n"],
        "spearman": pooled["spearman"],
        "spearman_reason": pooled["reason"],
    }
    if pooled["spearman"] is not None:
        rec |= cluster_bootstrap_spearman(a, b, [t[1] for t in texts], n_boot, boot_seed)
    else:
        rec |= {
            "ci_low": None,
            "ci_high": None,
            "boot_resamples": 0,
            "boot_dropped": 0,
            "boot_seed": boot_seed,
            "ci_reason": pooled["reason"],
        }
    by_cond = {}
    for cond in conds:
        mask = np.array([t[0] == cond for t in texts], dtype=bool)
        by_cond[cond] = _rho_with_reason(a[mask], b[mask], names)
    rec["by_condition"] = by_cond
    sa, sb = scales.get((a_name, metric)), scales.get((b_name, metric))
    rec["scale_a"], rec["scale_b"] = sa, sb
    rec["same_scale"] = bool(sa and sa == sb)
    alpha_reason: str | None = None
    alpha: float | None = None
    if not rec["same_scale"]:
        alpha_reason = (
            f"not on one scale ({names[0]}: {sa or 'no declared scale'}, "
            f"{names[1]}: {sb or 'no declared scale'}); alpha compares raw values"
        )
    elif pooled["n"] < MIN_TEXTS:
        alpha_reason = pooled["reason"]
    else:
        alpha = krippendorff_alpha_interval(np.column_stack([a, b]))
        if alpha is None:
            alpha_reason = "no variation in the pooled values: alpha undefined"
    rec["krippendorff_alpha"] = alpha
    rec["alpha_reason"] = alpha_reason
    rec["reading"] = reading(rec["spearman"], rec["ci_low"], rec["ci_high"])
    return rec


def reading(rho: float | None, lo: float | None, hi: float | None) -> str:
    """One phrase: the sign by the interval, the strength by Cohen's (1988) conventions for
    a correlation (|ρ| < 0.1 negligible, < 0.3 small, < 0.5 medium, else large)."""
    if rho is None:
        return "undefined"
    size = abs(rho)
    strength = (
        "negligible"
        if size < 0.1
        else "small"
        if size < 0.3
        else "medium"
        if size < 0.5
        else "large"
    )
    if lo is None or hi is None:
        return f"{strength} (no interval)"
    if lo > 0:
        return f"{strength} agreement"
    if hi < 0:
        return f"disagreement ({strength} negative ρ)"
    return "no detectable agreement"


def _int_option(options: Mapping[str, Any], key: str, default: int) -> int:
    value = options.get(key, default)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def agreement(inp: AnalysisInput) -> dict[str, Any]:
    """Every pair of scorers sharing a metric name: ρ (pooled, CI, per condition) and α."""
    by_metric: dict[str, list[str]] = {}
    for scorer, metric in inp.table:
        by_metric.setdefault(metric, [])
        if scorer not in by_metric[metric]:
            by_metric[metric].append(scorer)
    n_boot = _int_option(inp.options, "bootstrap_resamples", 2000)
    seed = _int_option(inp.options, "bootstrap_seed", 0)
    scales = _declared_scales(inp.records)
    pairs = []
    for metric, scorers in by_metric.items():
        for a_name, b_name in combinations(scorers, 2):
            pairs.append(
                _pair(
                    metric,
                    a_name,
                    b_name,
                    inp.table[(a_name, metric)],
                    inp.table[(b_name, metric)],
                    inp.conditions,
                    scales,
                    n_boot,
                    seed,
                )
            )
    return {
        "definition": "Spearman's rho over texts (condition, prompt, seed) scored by both, "
        "prompt-cluster bootstrap 95% percentile CI; Krippendorff's alpha (interval) when "
        "both metrics declare the same scale. See harness/analysis/agreement.py.",
        "pairs": pairs,
    }
