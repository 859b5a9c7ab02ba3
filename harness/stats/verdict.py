"""One-line verdict and structured summary fields for a comparison.

- Size class by |cohens_d| with Cohen's (1988) conventional thresholds: < 0.2 negligible,
  < 0.5 small, < 0.8 medium, else large.
- Significance: ``p_holm < alpha`` (Holm 1979), alpha = 0.05.
- Seed agreement: how many per-seed d share the sign of the DerSimonian-Laird pooled
  estimate (``meta_estimate``; ``cohens_d`` when fewer than 2 seeds have a defined d),
  and I² (Higgins & Thompson 2002).
- Power: comparisons whose achieved power at the observed |d_z| is below 0.8 are flagged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .effect_size import size_class

__all__ = ["ALPHA", "format_p", "verdict_fields"]

ALPHA = 0.05


def format_p(p: float) -> str:
    """``0.003`` style for p >= 0.001, two significant digits below (``2.1e-05``)."""
    return f"{p:.3f}" if p >= 0.001 else f"{p:.2g}"


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def verdict_fields(c: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Compute ``size_class``, ``significant_holm``, ``seeds_same_sign``, ``seeds_total``
    and ``verdict`` from a comparison's fields. Returns (fields, reasons for nulls)."""
    out: dict[str, Any] = {}
    reasons: dict[str, str] = {}
    prior: Mapping[str, str] = c.get("reasons") or {}
    n = c.get("n") or 0
    d = c.get("cohens_d")
    p_holm = c.get("p_holm")

    if d is not None:
        out["size_class"] = size_class(float(d))
    else:
        out["size_class"] = None
        reasons["size_class"] = prior.get("cohens_d", "cohens_d is undefined")

    if p_holm is not None:
        out["significant_holm"] = bool(p_holm < ALPHA)
    else:
        out["significant_holm"] = None
        reasons["significant_holm"] = prior.get("p_holm", "no Holm-adjusted p-value")

    seed_d = [float(x) for x in (c.get("seed_d") or []) if x is not None]
    out["seeds_total"] = len(seed_d)
    ref = c.get("meta_estimate")
    ref_name = "the pooled meta estimate"
    if ref is None:
        ref, ref_name = d, "cohens_d"
    if ref is not None and seed_d:
        s = _sign(float(ref))
        out["seeds_same_sign"] = sum(1 for x in seed_d if _sign(x) == s)
    else:
        out["seeds_same_sign"] = None
        reasons["seeds_same_sign"] = (
            "no seed has a defined d" if not seed_d else "no overall effect to compare signs to"
        )

    # --- the one-line text ---
    if n < 3:
        out["verdict"] = f"insufficient data: fewer than 3 complete pairs (n={n})"
        return out, reasons
    parts: list[str] = []
    if d is None:
        parts.append(f"effect size undefined ({prior.get('cohens_d', 'cohens_d is null')})")
    else:
        parts.append(f"{out['size_class']} effect (d = {float(d):.2f})")
    if p_holm is None:
        parts.append(f"no Holm-adjusted p ({prior.get('p_holm', 'p_paired_t is null')})")
    elif out["significant_holm"]:
        parts.append(f"significant after Holm (p = {format_p(float(p_holm))})")
    else:
        parts.append(f"not significant after Holm (p = {format_p(float(p_holm))})")
    total = out["seeds_total"]
    same = out["seeds_same_sign"]
    i2 = c.get("meta_i2")
    if total >= 2 and same is not None:
        txt = f"same sign in {same}/{total} seeds"
        if i2 is not None:
            txt += f" (I² = {float(i2):.0f}%)"
        if ref_name == "cohens_d":
            txt += " [vs. the overall d]"
        parts.append(txt)
    elif total == 1:
        parts.append("only 1 seed with a defined d: seed agreement not assessable")
    else:
        parts.append("no seed with a defined d")
    if c.get("underpowered"):
        pw = c.get("power")
        need = c.get("n_needed")
        txt = "underpowered"
        if pw is not None and math.isfinite(float(pw)):
            txt += f" (power = {float(pw):.2f}"
            txt += f"; ~{need} pairs needed for 80%)" if need is not None else ")"
        parts.append(txt)
    out["verdict"] = ", ".join(parts)
    return out, reasons
