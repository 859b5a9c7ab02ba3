"""Report sections for issue-6 analyses: the coefficient searches and per-prompt steerability."""

from __future__ import annotations

import json
import math
from typing import Any

from harness.report.data import RunData
from harness.report.format import cell, fmt, table


def section_search(run: RunData) -> str:
    """Each search's trajectory on the selection prompts, and what it chose."""
    folder = run.run_dir / "search"
    results = sorted(folder.glob("*.json")) if folder.exists() else []
    if not results:
        return ""
    parts = [
        "## Coefficient searches",
        "",
        "Each searched condition's layer and coefficient were chosen on the selection split "
        "of the prompts; every condition in this report is measured on the held-out prompts "
        "only, so the choice is not judged on the data it was tuned on.",
    ]
    for path in results:
        r = json.loads(path.read_text(encoding="utf-8"))
        guards = list(dict.fromkeys(k for t in r["trajectory"] for k in t["guards"]))
        rows = [
            [
                str(t["layer"]),
                str(t["step"]),
                fmt(t["coefficient"], 3),
                fmt(t["trait_delta"]),
                *[
                    fmt(t["guards"][g]["value"]) + f" (base {fmt(t['guards'][g]['baseline'])})"
                    for g in guards
                ],
                "yes" if t["valid"] else "no",
            ]
            for t in r["trajectory"]
        ]
        chosen = r.get("chosen")
        verdict = (
            f"chosen: layer {chosen['layer']}, coefficient {fmt(chosen['coefficient'], 3)}"
            if chosen
            else "no point passed the guards: the condition is left out of the results"
        )
        parts += [
            "",
            f"### `{r['condition']}`: {cell(verdict)}",
            "",
            _settings(r),
            "",
            table(["layer", "step", "coefficient", "trait Δ", *guards, "valid"], rows),
            "",
            "Best point per layer (the valid point with the largest trait change; a layer "
            "with no valid point shows its largest change, marked not valid):",
            "",
            _best_per_layer(r, guards),
        ]
    return "\n".join(parts)


def _bounds(guards: list[dict[str, Any]]) -> str:
    return "; ".join(
        f"{g['metric']} " + ", ".join(f"{k} {v}" for k, v in g.items() if k != "metric")
        for g in guards
    )


def _settings(r: dict[str, Any]) -> str:
    """One line: trait, rule, step guards, validity guards, minimum change, data."""
    rule = r.get("rule")
    how = (
        f"rule {rule['name']} (x{rule['up']:g} up, x{rule['down']:g} down, "
        f"momentum {rule['momentum']:g})"
        if rule
        else "rule bracket"
    )
    valid = f"; valid with {_bounds(r['valid_guards'])}" if r.get("valid_guards") else ""
    delta = f" and trait Δ ≥ {r['min_delta']:g}" if r.get("min_delta") is not None else ""
    return (
        f"Trait: {r['trait']} ({r['direction']}); {how}; steps on {_bounds(r['guards'])}"
        f"{valid}{delta}; {len(r['selection_prompts'])} selection prompts, seeds {r['seeds']}."
    )


def _best_per_layer(r: dict[str, Any], guards: list[str]) -> str:
    sign = 1.0 if r["direction"] == "increase" else -1.0
    layers = list(dict.fromkeys(t["layer"] for t in r["trajectory"]))
    rows = []
    for layer in layers:
        points = [t for t in r["trajectory"] if t["layer"] == layer]
        pool = [t for t in points if t["valid"]] or points

        def change(t: dict[str, Any]) -> float:
            d = t["trait_delta"]
            return sign * d if d is not None else -math.inf

        best = max(pool, key=change)
        rows.append(
            [
                str(layer),
                fmt(best["coefficient"], 3),
                fmt(best["trait_delta"]),
                *[fmt(best["guards"][g]["value"]) for g in guards],
                "yes" if best["valid"] else "no",
            ]
        )
    return table(["layer", "coefficient", "trait Δ", *guards, "valid"], rows)


def section_steerability(run: RunData) -> str:
    """Per-prompt slopes of the score against the coefficient, and anti-steerable prompts."""
    entries = [e for e in run.analysis.get("steerability") or [] if e.get("n_prompts")]
    if not entries:
        return ""
    rows = [
        [
            f"`{e['group']}`",
            str(e["layer"]),
            f"{e['scorer']}/{e['metric']}",
            str(e["n_prompts"]),
            fmt(e["mean_slope"], 3),
            fmt(e["slope_sd"], 3),
            fmt(
                e["anti_steerable_share"] * 100 if e["anti_steerable_share"] is not None else None,
                0,
            )
            + ("%" if e["anti_steerable_share"] is not None else ""),
        ]
        for e in entries
    ]
    return "\n".join(
        [
            "## Steerability per prompt",
            "",
            "For each swept condition, the least-squares slope of each prompt's score on the "
            "coefficient (baseline as coefficient 0, all seeds). Anti-steerable: prompts whose "
            "slope has the opposite sign to the mean slope (Tan et al. 2024).",
            "",
            table(
                ["sweep", "layer", "metric", "prompts", "mean slope", "SD", "anti-steerable"], rows
            ),
        ]
    )
