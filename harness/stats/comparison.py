"""Build one JSON-ready comparison record per (condition, scorer, metric) vs. a baseline.

``compare_paired`` computes everything that depends on one comparison alone;
``finalize`` adjusts p-values over the family of comparisons (Holm, BH) and adds the
verdict fields. The field definitions are documented in :mod:`harness.stats`.
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._common import FloatArray, as_float_array, finite_or_none, max_abs
from .bootstrap import cluster_bootstrap_d
from .effect_size import cohens_d, cohens_d_ci, d_z, hedges_g
from .meta import d_sampling_variance, dersimonian_laird
from .mixed import DEFAULT_MIXED_METHODS, condition_effect_mixed
from .power import achieved_power, pairs_needed
from .significance import adjust_bh, adjust_holm, paired_t_p, welch_p, wilcoxon_p
from .verdict import verdict_fields

__all__ = ["FIELDS", "TARGET_POWER", "compare_paired", "finalize"]

#: Target power for ``n_needed`` and the ``underpowered`` flag (two-sided alpha = 0.05).
TARGET_POWER = 0.8
POWER_ALPHA = 0.05

#: The fields of a comparison record, in order.
FIELDS: tuple[str, ...] = (
    "condition",
    "baseline",
    "scorer",
    "metric",
    "n",
    "n_dropped",
    "n_prompts",
    "mean_baseline",
    "mean_steered",
    "delta",
    "cohens_d",
    "d_ci_low",
    "d_ci_high",
    "hedges_g",
    "d_z",
    "p_paired_t",
    "p_welch",
    "p_wilcoxon",
    "p_holm",
    "p_bh",
    "seeds",
    "seed_n",
    "seed_d",
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
    "boot_seed",
    "power",
    "n_needed",
    "underpowered",
    "size_class",
    "significant_holm",
    "seeds_same_sign",
    "seeds_total",
    "verdict",
    "reasons",
    "notes",
)

_PASSTHROUGH = ("condition", "baseline", "scorer", "metric")
_LIST_FIELDS = ("seeds", "seed_n", "seed_d")
_STRUCT_FIELDS = ("reasons", "notes")
#: Fields that must carry a reason whenever they are null.
NULLABLE_FIELDS: tuple[str, ...] = tuple(
    f for f in FIELDS if f not in _PASSTHROUGH + _LIST_FIELDS + _STRUCT_FIELDS
)

_MAX_MAGNITUDE = 1e150
_PENDING = "set by finalize() over the family of comparisons"
_FAMILY_FIELDS = (
    "p_holm",
    "p_bh",
    "size_class",
    "significant_holm",
    "seeds_same_sign",
    "seeds_total",
    "verdict",
)


def _as_seed(x: Any) -> int:
    if isinstance(x, bool):
        raise ValueError(f"seed must be an integer, got {x!r}")
    f = float(x)
    if not f.is_integer():
        raise ValueError(f"seed must be an integer, got {x!r}")
    return int(f)


def _drop_note(b: FloatArray, s: FloatArray, n_dropped: int) -> str:
    parts = []
    for name, arr in (("baseline", b), ("steered", s)):
        n_nan = int(np.isnan(arr).sum())
        n_inf = int(np.isinf(arr).sum())
        if n_nan:
            parts.append(f"{name} missing/NaN in {n_nan}")
        if n_inf:
            parts.append(f"{name} infinite in {n_inf}")
    return (
        f"dropped {n_dropped} of {b.size} pairs with a non-finite score (" + ", ".join(parts) + ")"
    )


def _null(out: dict[str, Any], reasons: dict[str, str], fields: Sequence[str], why: str) -> None:
    for f in fields:
        out[f] = None
        reasons[f] = why


def compare_paired(
    baseline: FloatArray | Sequence[float | None],
    steered: FloatArray | Sequence[float | None],
    prompt_ids: Sequence[str],
    seeds: Sequence[int],
    *,
    condition: str,
    baseline_name: str,
    scorer: str,
    metric: str,
    n_boot: int = 2000,
    boot_seed: int = 0,
    mixed_methods: Sequence[str | Sequence[str]] = DEFAULT_MIXED_METHODS,
) -> dict[str, Any]:
    """One comparison record (a dict with the keys of :data:`FIELDS`).

    ``baseline``, ``steered``, ``prompt_ids`` and ``seeds`` are aligned over the union of
    (prompt_id, seed) keys; a missing or failed score is NaN (``None`` is converted to
    NaN). Pairs with a non-finite value on either side are dropped and counted in
    ``n_dropped``. Degenerate data never raises and never yields NaN/inf: the field is
    ``None`` and ``reasons[field]`` says why. Misaligned inputs (different lengths) or
    non-integer seeds raise ``ValueError`` (caller bugs, not data problems).

    ``p_holm``, ``p_bh`` and the verdict fields are filled by :func:`finalize`.
    """
    b_all = as_float_array(baseline)
    s_all = as_float_array(steered)
    pid_all = [str(p) for p in prompt_ids]
    seed_all = [_as_seed(x) for x in seeds]
    total = b_all.size
    if not (s_all.size == total == len(pid_all) == len(seed_all)):
        raise ValueError(
            "baseline, steered, prompt_ids and seeds must be aligned (same length); got "
            f"{b_all.size}, {s_all.size}, {len(pid_all)}, {len(seed_all)}"
        )

    out: dict[str, Any] = dict.fromkeys(FIELDS)
    reasons: dict[str, str] = {}
    notes: list[str] = []
    out["condition"] = condition
    out["baseline"] = baseline_name
    out["scorer"] = scorer
    out["metric"] = metric

    dup = [k for k, c in Counter(zip(pid_all, seed_all, strict=True)).items() if c > 1]
    if dup:
        notes.append(
            f"{len(dup)} (prompt_id, seed) keys occur more than once; each row is used as "
            "a separate pair"
        )

    ok = np.isfinite(b_all) & np.isfinite(s_all)
    n = int(ok.sum())
    out["n"] = n
    out["n_dropped"] = int(total - n)
    if total - n:
        notes.append(_drop_note(b_all, s_all, total - n))
    b = b_all[ok]
    s = s_all[ok]
    with np.errstate(over="ignore", invalid="ignore"):
        diff = s - b
    pids = [p for p, keep in zip(pid_all, ok, strict=True) if keep]
    sds = [x for x, keep in zip(seed_all, ok, strict=True) if keep]
    out["n_prompts"] = len(set(pids))

    # --- means ---
    if n >= 1:
        with np.errstate(over="ignore", invalid="ignore"):
            out["mean_baseline"] = float(np.mean(b))
            out["mean_steered"] = float(np.mean(s))
            out["delta"] = float(np.mean(s)) - float(np.mean(b))
    else:
        _null(out, reasons, ("mean_baseline", "mean_steered", "delta"), "no complete pairs (n=0)")

    # "small" = nothing beyond the means can be computed (too few pairs, or magnitudes
    # whose squares overflow float64).
    small = n < 3 or max_abs(b, s) > _MAX_MAGNITUDE
    small_why = (
        f"fewer than 3 complete pairs (n={n})"
        if n < 3
        else f"scores exceed {_MAX_MAGNITUDE:g} in magnitude (variances would overflow)"
    )

    # --- effect sizes and tests on all pairs ---
    if small:
        _null(
            out,
            reasons,
            (
                "cohens_d",
                "d_ci_low",
                "d_ci_high",
                "hedges_g",
                "d_z",
                "p_paired_t",
                "p_welch",
                "p_wilcoxon",
            ),
            small_why,
        )
    else:
        d = cohens_d(s, b)
        if d is None:
            _null(
                out,
                reasons,
                ("cohens_d", "d_ci_low", "d_ci_high", "hedges_g"),
                "zero variance in both conditions",
            )
        else:
            out["cohens_d"] = d
            out["hedges_g"] = hedges_g(d, n, n)
            ci = cohens_d_ci(d, n, n)
            if ci is None:
                _null(
                    out,
                    reasons,
                    ("d_ci_low", "d_ci_high"),
                    "noncentral-t interval search failed (|t| too large to evaluate)",
                )
            else:
                out["d_ci_low"], out["d_ci_high"] = ci
        dz = d_z(diff)
        if dz is None:
            _null(out, reasons, ("d_z", "p_paired_t"), "zero variance of the paired differences")
        else:
            out["d_z"] = dz
            out["p_paired_t"] = paired_t_p(s, b)
            if out["p_paired_t"] is None:
                reasons["p_paired_t"] = "paired t-test returned no finite p-value"
        out["p_welch"] = welch_p(s, b)
        if out["p_welch"] is None:
            reasons["p_welch"] = "zero variance in both conditions"
        out["p_wilcoxon"] = wilcoxon_p(s, b)
        if out["p_wilcoxon"] is None:
            reasons["p_wilcoxon"] = (
                "all paired differences are zero"
                if not np.any(diff != 0)
                else "Wilcoxon test returned no finite p-value"
            )
        else:
            nz = int(np.count_nonzero(diff))
            if nz < 10:
                notes.append(
                    f"p_wilcoxon uses the normal approximation with only {nz} nonzero "
                    "differences; treat it as rough"
                )

    for f in ("p_holm", "p_bh"):
        reasons[f] = _PENDING

    # --- per-seed ---
    seed_values = sorted(set(seed_all))
    out["seeds"] = seed_values
    seed_arr = np.asarray(sds, dtype=np.int64)
    seed_n: list[int] = []
    seed_d: list[float | None] = []
    seed_why: list[str] = []
    for sv in seed_values:
        mask = seed_arr == sv
        m = int(mask.sum())
        seed_n.append(m)
        if small:
            seed_d.append(None)
            continue
        if m < 2:
            seed_d.append(None)
            seed_why.append(f"seed {sv}: fewer than 2 pairs (n={m})")
            continue
        ds = cohens_d(s[mask], b[mask])
        seed_d.append(ds)
        if ds is None:
            seed_why.append(f"seed {sv}: zero variance in both conditions")
    out["seed_n"] = seed_n
    out["seed_d"] = seed_d
    if small:
        reasons["seed_d"] = small_why
    elif seed_why:
        reasons["seed_d"] = "; ".join(seed_why)

    defined = [
        (sv, dd, m) for sv, dd, m in zip(seed_values, seed_d, seed_n, strict=True) if dd is not None
    ]
    meta_fields = ("meta_estimate", "meta_ci_low", "meta_ci_high", "meta_tau2", "meta_i2")
    if small:
        _null(out, reasons, ("seed_sd_d", *meta_fields), small_why)
    elif len(defined) < 2:
        why = f"fewer than 2 seeds with a defined d ({len(defined)})"
        _null(out, reasons, ("seed_sd_d", *meta_fields), why)
    else:
        out["seed_sd_d"] = float(np.std([dd for _, dd, _ in defined], ddof=1))
        meta = dersimonian_laird(
            [dd for _, dd, _ in defined],
            [d_sampling_variance(dd, m, m) for _, dd, m in defined],
        )
        out["meta_estimate"] = meta.estimate
        out["meta_ci_low"] = meta.ci_low
        out["meta_ci_high"] = meta.ci_high
        out["meta_tau2"] = meta.tau2
        out["meta_i2"] = meta.i2
        left_out = [sv for sv, dd in zip(seed_values, seed_d, strict=True) if dd is None]
        if left_out:
            notes.append(
                "seed_sd_d and the meta-analysis leave out seed(s) "
                + ", ".join(str(x) for x in left_out)
                + " whose d is undefined"
            )

    # --- mixed model ---
    if small:
        _null(
            out,
            reasons,
            ("mixed_estimate", "mixed_se", "mixed_method", "mixed_converged"),
            small_why,
        )
    else:
        mr = condition_effect_mixed(
            np.concatenate([b, s]),
            np.concatenate([np.zeros(n), np.ones(n)]),
            pids + pids,
            methods=mixed_methods,
        )
        out["mixed_converged"] = mr.converged
        if mr.estimate is None or mr.se is None:
            why = mr.reason or "mixed model not estimable"
            _null(out, reasons, ("mixed_estimate", "mixed_se", "mixed_method"), why)
            if not mr.attempts:  # nothing was fitted: convergence is not applicable
                _null(out, reasons, ("mixed_converged",), why)
        else:
            out["mixed_estimate"] = mr.estimate
            out["mixed_se"] = mr.se
            out["mixed_method"] = mr.method
            if len(mr.attempts) > 1:
                notes.append("mixed model optimisers: " + "; ".join(mr.attempts))

    # --- cluster bootstrap ---
    out["boot_seed"] = int(boot_seed)
    boot_fields = ("boot_ci_low", "boot_ci_high", "boot_resamples", "boot_dropped")
    if small:
        _null(out, reasons, boot_fields, small_why)
    elif out["cohens_d"] is None:
        _null(out, reasons, boot_fields, "zero variance in both conditions")
    else:
        br = cluster_bootstrap_d(b, s, pids, n_resamples=n_boot, seed=boot_seed)
        out["boot_resamples"] = br.n_resamples
        out["boot_dropped"] = br.n_dropped
        if br.ci_low is None or br.ci_high is None:
            _null(
                out, reasons, ("boot_ci_low", "boot_ci_high"), br.reason or "bootstrap unavailable"
            )
            if br.n_resamples == 0:
                _null(
                    out,
                    reasons,
                    ("boot_resamples", "boot_dropped"),
                    br.reason or "bootstrap not run",
                )
        else:
            out["boot_ci_low"] = br.ci_low
            out["boot_ci_high"] = br.ci_high
        if br.n_dropped and br.n_resamples:
            notes.append(
                f"cluster bootstrap: {br.n_dropped} of {br.n_resamples} resamples had an "
                "undefined d (zero pooled SD) and were dropped"
            )

    # --- power ---
    power_fields = ("power", "n_needed", "underpowered")
    if small:
        _null(out, reasons, power_fields, small_why)
    elif out["d_z"] is None:
        _null(out, reasons, power_fields, "d_z is undefined: " + reasons["d_z"])
    else:
        dzv = float(out["d_z"])
        try:
            out["power"] = achieved_power(dzv, n, POWER_ALPHA)
            out["underpowered"] = bool(out["power"] < TARGET_POWER)
        except ValueError as exc:
            _null(out, reasons, ("power", "underpowered"), str(exc))
        if dzv == 0:
            _null(
                out, reasons, ("n_needed",), "d_z = 0: no finite number of pairs reaches 80% power"
            )
        else:
            try:
                out["n_needed"] = pairs_needed(dzv, TARGET_POWER, POWER_ALPHA)
            except ValueError as exc:
                _null(out, reasons, ("n_needed",), str(exc))

    for f in ("size_class", "significant_holm", "seeds_same_sign", "seeds_total", "verdict"):
        out[f] = None
        reasons[f] = _PENDING

    out["reasons"] = reasons
    out["notes"] = notes
    return _sanitize(out)


def _sanitize(out: dict[str, Any]) -> dict[str, Any]:
    """Guarantee JSON-ready values: numpy scalars become Python scalars and any non-finite
    float becomes ``None`` with a reason (a guard; it should never trigger)."""
    reasons: dict[str, str] = out["reasons"]

    def fix(name: str, v: Any) -> Any:
        if isinstance(v, (bool, np.bool_)):
            return bool(v)
        if isinstance(v, (int, np.integer)):
            return int(v)
        if isinstance(v, (float, np.floating)):
            f = finite_or_none(v)
            if f is None:
                reasons.setdefault(name, "computation gave a non-finite value")
            return f
        return v

    for key in FIELDS:
        if key in _STRUCT_FIELDS:
            continue
        v = out[key]
        if isinstance(v, list):
            out[key] = [fix(key, x) for x in v]
        else:
            out[key] = fix(key, v)
    for key in NULLABLE_FIELDS:
        if out[key] is None and key not in reasons:  # pragma: no cover - guard
            reasons[key] = "unavailable"
    return out


def finalize(comparisons: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Adjust ``p_paired_t`` over the family (all comparisons given; null p-values stay
    null and are not counted) with Holm and Benjamini-Hochberg, then fill the verdict
    fields. Returns new dicts; the inputs are not modified."""
    ps = [c.get("p_paired_t") for c in comparisons]
    holm = adjust_holm(ps)
    bh = adjust_bh(ps)
    m = sum(1 for p in ps if p is not None and math.isfinite(float(p)))
    result: list[dict[str, Any]] = []
    for c, ph, pb in zip(comparisons, holm, bh, strict=True):
        out = copy.deepcopy(c)
        reasons: dict[str, str] = out.setdefault("reasons", {})
        notes: list[str] = out.setdefault("notes", [])
        for f in _FAMILY_FIELDS:
            if reasons.get(f) == _PENDING:
                del reasons[f]
        out["p_holm"] = ph
        out["p_bh"] = pb
        if ph is None:
            why = "p_paired_t is null: " + reasons.get("p_paired_t", "no p-value")
            reasons["p_holm"] = why
            reasons["p_bh"] = why
        else:
            notes[:] = [x for x in notes if not x.startswith("p_holm and p_bh adjust over")]
            notes.append(
                f"p_holm and p_bh adjust over a family of {m} comparison{'s' if m != 1 else ''}"
            )
        fields, vreasons = verdict_fields(out)
        out.update(fields)
        reasons.update(vreasons)
        result.append(_sanitize(out))
    return result
