"""Steerability per prompt: does a larger coefficient move each prompt's score, and which way?

For each swept condition (a sweep group at one layer) and each scorer metric, every prompt
gets the ordinary least-squares slope of its scores on the coefficient, over all its seeds
and sweep points, with the baseline entered as coefficient 0 (an additive intervention at
coefficient 0 is the unsteered model). The group's direction is the sign of the mean
slope; a prompt whose slope has the opposite sign is *anti-steerable*. This follows the
per-example steerability analysis of Tan et al. 2024 ("Analyzing the Generalization and
Reliability of Steering Vectors", NeurIPS), who found a sizeable share of anti-steerable
inputs for many behaviours; a mean effect can hide them.

A prompt needs finite scores at two or more distinct coefficients to have a slope; a
slope of exactly zero counts as flat, in neither share.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from harness.analysis.table import AnalysisInput


def ols_slope(x: np.ndarray, y: np.ndarray) -> float | None:
    """Least-squares slope of y on x; None with fewer than two distinct x values."""
    if len(x) < 2 or np.unique(x).size < 2:
        return None
    xc = x - x.mean()
    return float((xc * (y - y.mean())).sum() / (xc * xc).sum())


def _series(inp: AnalysisInput) -> dict[tuple[str, str], list[tuple[str, float]]]:
    """(group, layer label) -> [(condition, coefficient)] for numeric coefficient sweeps."""
    series: dict[tuple[str, str], list[tuple[str, float]]] = {}
    for cond, info in inp.condition_info.items():
        sweep = info.get("sweep")
        coefficient = sweep.get("coefficient") if sweep else None
        if not sweep or not isinstance(coefficient, int | float):
            continue
        layer = sweep.get("layer")
        series.setdefault((str(sweep["group"]), str(layer)), []).append((cond, float(coefficient)))
    return {k: v for k, v in series.items() if len({c for _, c in v}) >= 1}


def steerability(inp: AnalysisInput) -> list[dict[str, Any]]:
    out = []
    for (group, layer), points in sorted(_series(inp).items()):
        coefficients = sorted({c for _, c in points})
        for (scorer, metric), by_condition in inp.table.items():
            per_prompt: dict[str, tuple[list[float], list[float]]] = {}
            sources = [(inp.baseline, 0.0), *points]
            for cond, coef in sources:
                for (pid, _seed), value in by_condition.get(cond, {}).items():
                    if math.isfinite(value):
                        xs, ys = per_prompt.setdefault(pid, ([], []))
                        xs.append(coef)
                        ys.append(value)
            slopes = {
                pid: s
                for pid, (xs, ys) in sorted(per_prompt.items())
                if (s := ols_slope(np.array(xs), np.array(ys))) is not None
            }
            entry: dict[str, Any] = {
                "group": group,
                "layer": None if layer == "None" else layer,
                "scorer": scorer,
                "metric": metric,
                "coefficients": [0.0, *[c for c in coefficients if c != 0.0]],
                "n_prompts": len(slopes),
                "prompt_slopes": slopes,
            }
            if not slopes:
                entry |= {
                    "mean_slope": None,
                    "slope_sd": None,
                    "anti_steerable_share": None,
                    "flat_share": None,
                    "reason": "no prompt has finite scores at two distinct coefficients",
                }
                out.append(entry)
                continue
            values = np.array(list(slopes.values()))
            mean = float(values.mean())
            direction = np.sign(mean)
            entry |= {
                "mean_slope": mean,
                "slope_sd": float(values.std(ddof=1)) if len(values) > 1 else None,
                "anti_steerable_share": (
                    float((np.sign(values) == -direction).mean()) if direction != 0 else None
                ),
                "flat_share": float((values == 0).mean()),
            }
            if direction == 0:
                entry["reason"] = "mean slope is exactly zero: no direction to be against"
            out.append(entry)
    return out
