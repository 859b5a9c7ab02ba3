"""The report's results: the comparison tables and forest plot, the variation across
seeds, sample generations side by side, and the notes on missing values."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harness.report.data import RunData
from harness.report.format import by_scorer, cell, figure_md, fmt, fmt_p, table


def section_results(run: RunData) -> str:
    comps = run.comparisons
    if not comps:
        return "## Results\n\nNo comparisons: no condition has scores paired with the baseline."
    header = [
        "scorer",
        "metric",
        "condition",
        "n",
        "baseline",
        "steered",
        "Δ",
        "d [95% CI]",
        "d_z",
        "p paired t",
        "p Holm",
    ]

    def rows(cs: Sequence[Mapping[str, Any]]) -> list[list[str]]:
        out = []
        for c in cs:
            d = fmt(c.get("cohens_d"))
            if c.get("d_ci_low") is not None and c.get("d_ci_high") is not None:
                d += f" [{fmt(c['d_ci_low'])}, {fmt(c['d_ci_high'])}]"
            out.append(
                [
                    str(c["scorer"]),
                    str(c["metric"]),
                    f"`{c['condition']}`",
                    str(c["n"]),
                    fmt(c.get("mean_baseline")),
                    fmt(c.get("mean_steered")),
                    fmt(c.get("delta")),
                    d,
                    fmt(c.get("d_z")),
                    fmt_p(c.get("p_paired_t")),
                    fmt_p(c.get("p_holm")),
                ]
            )
        return out

    def dist(scorer: str) -> str:
        ref = run.figures.get(f"dist:{scorer}")
        if ref is None:
            return ""
        return (
            f"Score distributions ({scorer}): one panel per metric; box = quartiles, "
            "whiskers to 1.5 IQR, diamond = mean, dots = texts.\n\n" + figure_md(ref)
        )

    parts = [
        "## Results",
        "",
        f"Each row compares a condition with `{run.analysis.get('baseline')}` on complete "
        "(prompt, seed) pairs. d: Cohen's d with pooled SD and a noncentral-t 95% interval; "
        "d_z: mean paired difference over its SD; p Holm: paired-t p adjusted over every "
        "comparison of the run. Definitions and references: `harness/stats/__init__.py`; "
        "other estimators of the same effect under Robustness.",
    ]
    forests = [k for k in run.figures if k == "forest" or k.startswith("forest:")]
    for k in forests:
        parts += ["", figure_md(run.figures[k])]
    parts += ["", *by_scorer(run, comps, header, rows, dist)]
    return "\n".join(parts)


def section_seeds(run: RunData) -> str:
    comps = [c for c in run.comparisons if c.get("seeds")]
    if not comps:
        return ""
    seeds = sorted({s for c in comps for s in c["seeds"]})
    header = ["scorer", "metric", "condition", *[f"d seed {s}" for s in seeds], "SD of seed d"]
    rows = []
    for c in comps:
        by_seed = dict(zip(c["seeds"], c["seed_d"], strict=True))
        rows.append(
            [c["scorer"], c["metric"], f"`{c['condition']}`"]
            + [fmt(by_seed.get(s)) for s in seeds]
            + [fmt(c.get("seed_sd_d"))]
        )
    return "\n".join(
        [
            "## Variation across seeds",
            "",
            "Cohen's d computed on each seed's pairs alone. A large spread means a single run "
            "would have told a different story.",
            "",
            table(header, rows),
        ]
    )


def section_samples(run: RunData) -> str:
    if not run.generations:
        return ""
    spec = run.spec["spec"] if run.spec else {}
    report_cfg = spec.get("report", {})
    k = int(report_cfg.get("samples", 3))
    limit = int(report_cfg.get("max_sample_chars", 400))
    baseline = str(run.analysis.get("baseline", "baseline"))
    conditions = [c for c in run.analysis.get("conditions", []) if c != baseline]
    if k == 0 or not conditions:
        return ""
    parts = [
        "## Sample generations",
        "",
        "Each steered text next to its baseline twin: same prompt, same seed, same random "
        "stream; they differ only by the intervention.",
    ]
    pairs = run.sample_pairs(conditions, baseline, k)
    for cond in conditions:
        samples = pairs[cond]
        if not samples:
            continue
        rows = [
            [
                cell(b["prompt"], 120) + f" (seed {b['seed']})",
                cell(b["text"], limit),
                cell(s["text"], limit),
            ]
            for b, s in samples
        ]
        parts += ["", f"### `{cond}`", "", table(["prompt", f"`{baseline}`", f"`{cond}`"], rows)]
    return "\n".join(parts)


def section_notes(run: RunData) -> str:
    """Why values are n/a, grouped: fields sharing a reason on one line; a note shared by
    three or more comparisons said once."""
    comps = run.comparisons
    if not comps:
        return ""
    counts: dict[str, int] = {}
    for c in comps:
        for n in set(c.get("notes") or []):
            counts[n] = counts.get(n, 0) + 1
    common = {n for n, k in counts.items() if k >= 3}
    lines = [f"- {counts[n]} comparisons: {n}" for n in sorted(common)]
    for c in comps:
        where = f"`{c['condition']}` · {c['scorer']}/{c['metric']}"
        by_reason: dict[str, list[str]] = {}
        for fld, why in (c.get("reasons") or {}).items():
            by_reason.setdefault(why, []).append(f"`{fld}`")
        items = [f"{', '.join(fields)} n/a: {why}" for why, fields in by_reason.items()]
        items += [n for n in c.get("notes") or [] if n not in common]
        if items:
            lines.append(f"- {where}: " + "; ".join(items))
    if not lines:
        return ""
    return "\n".join(
        [
            "## Notes on missing values",
            "",
            "<details><summary>Why some values are n/a, and caveats per comparison</summary>",
            "",
            *lines,
            "",
            "</details>",
        ]
    )
