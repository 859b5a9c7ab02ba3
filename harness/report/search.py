"""Report sections for issue-6 analyses: the coefficient searches and per-prompt steerability."""

from __future__ import annotations

import json

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
        guards = [g["metric"] for g in r["guards"]]
        rows = [
            [
                str(t["layer"]),
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
        bounds = "; ".join(
            f"{g['metric']} " + ", ".join(f"{k} {v}" for k, v in g.items() if k != "metric")
            for g in r["guards"]
        )
        parts += [
            "",
            f"### `{r['condition']}`: {cell(verdict)}",
            "",
            f"Trait: {r['trait']} ({r['direction']}); guards: {bounds}; "
            f"{len(r['selection_prompts'])} selection prompts, seeds {r['seeds']}.",
            "",
            table(["layer", "coefficient", "trait Δ", *guards, "passes"], rows),
        ]
    return "\n".join(parts)


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
