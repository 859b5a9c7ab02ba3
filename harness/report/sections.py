"""Report sections for readers: summary, verdicts, power, robustness, dose-response.

Every verdict shown here is the ``verdict`` string that :mod:`harness.stats.verdict`
stored in the comparison; these sections only choose the order and grouping (targets
first, significance, |d|) from the stored fields ``significant_holm`` and
``underpowered``. Undefined numbers print as "n/a" (see :func:`harness.report.markdown.fmt`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harness.analysis.power import PLANNING_D_Z, power_rows
from harness.report.data import RunData
from harness.report.focus import (
    condition_infos,
    control_of,
    dose_plans,
    is_coherence,
    is_target,
    priority_key,
)
from harness.report.format import by_scorer, figure_md, fmt, table
from harness.stats import finite_or_none, pairs_needed

__all__ = [
    "section_dose_response",
    "section_power",
    "section_robustness",
    "section_summary",
    "section_verdicts",
]

SUMMARY_LINES = 12
UNDERPOWERED = "⚠ underpowered"


def _where(c: Mapping[str, Any]) -> str:
    return f"`{c['condition']}` · {c['scorer']}/{c['metric']}"


def _d_ci(c: Mapping[str, Any]) -> str:
    lo, hi = finite_or_none(c.get("d_ci_low")), finite_or_none(c.get("d_ci_high"))
    return f"95% CI [{fmt(lo)}, {fmt(hi)}]" if lo is not None and hi is not None else ""


def _verdict_line(c: Mapping[str, Any], tag: str = "") -> str:
    extra = ", ".join(x for x in (_d_ci(c), f"n = {c.get('n', 0)}") if x)
    flag = "⚠ " if c.get("underpowered") else ""
    tag = f" *({tag})*" if tag else ""
    return f"- {flag}{_where(c)}{tag}: {c.get('verdict') or 'no verdict'} — {extra}"


def _target_tag(infos: Mapping[str, Any], condition: str) -> str:
    control = control_of(infos.get(condition) or {})
    return f"target; {control} control" if control else "target"


def section_summary(run: RunData) -> str:
    comps = run.comparisons
    if not comps:
        return ""
    infos = condition_infos(run)
    targets = [c for c in comps if is_target(run, c, infos)]
    coherence = [c for c in comps if is_coherence(run, str(c["scorer"]), str(c["metric"]))]
    shown: list[tuple[dict[str, Any], str]] = []
    lines = ["## Summary", ""]
    if targets:
        lines.append(
            "Each condition on the metrics it targets (its `targets`, else the spec's "
            "`[analysis] primary`, else a metric named in the condition, its sweep group or "
            "its contrastive pairs)"
            + (" and on coherence" if coherence else "")
            + ", with the verdict from the statistics:"
        )
        for cond in run.analysis.get("conditions", []):
            for c in targets:
                if c["condition"] == cond:
                    shown.append((c, _target_tag(infos, cond)))
            for c in coherence:
                if c["condition"] == cond:
                    shown.append((c, "coherence"))
    else:
        sig = sorted(
            (c for c in comps if c.get("significant_holm")),
            key=lambda c: priority_key(c, False),
        )
        if sig:
            lines.append(
                "No metric is named after a condition, so these are the largest effects "
                "that are significant after Holm:"
            )
            shown = [(c, "") for c in sig[:5]]
            shown += [(c, "coherence") for c in coherence if c not in sig[:5]]
        else:
            lines.append("No comparison is significant after Holm.")
            shown = [(c, "coherence") for c in coherence]
    lines.append("")
    for c, tag in shown[:SUMMARY_LINES]:
        lines.append(_verdict_line(c, tag))
    if len(shown) > SUMMARY_LINES:
        lines.append(f"- … {len(shown) - SUMMARY_LINES} more under Verdicts")
    if targets:
        ids = {id(c) for c, _ in shown}
        side = sorted(
            (c for c in comps if c.get("significant_holm") and id(c) not in ids),
            key=lambda c: priority_key(c, False),
        )
        if side:
            more = f" and {len(side) - 3} more under Verdicts" if len(side) > 3 else ""
            lines += [
                "",
                "Largest other significant effects (off-target): "
                + "; ".join(
                    f"{_where(c)} d = {fmt(finite_or_none(c.get('cohens_d')))}" for c in side[:3]
                )
                + more
                + ".",
            ]
    lines += ["", _counts(comps)]
    mean_rows = _mean_abs_d_rows(run, targets)
    if mean_rows:
        lines += [
            "",
            "Mean |d| over each condition's target comparisons (one per scorer and metric; "
            "n/a ones left out, and counted):",
            "",
            table(
                ["condition", "targets", "mean |d|", "d from … to", "significant after Holm"],
                mean_rows,
            ),
        ]
    return "\n".join(lines)


def _mean_abs_d_rows(run: RunData, targets: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """Per condition with target comparisons: how many, the mean |d| over those with a d,
    the smallest and largest d, and how many are significant after Holm."""
    rows = []
    for cond in run.analysis.get("conditions", []):
        own = [c for c in targets if c["condition"] == cond]
        if not own:
            continue
        ds = [d for d in (finite_or_none(c.get("cohens_d")) for c in own) if d is not None]
        missing = len(own) - len(ds)
        mean = fmt(sum(abs(d) for d in ds) / len(ds)) if ds else "n/a (no d)"
        rows.append(
            [
                f"`{cond}`",
                str(len(own)) + (f" ({missing} n/a)" if missing else ""),
                mean,
                f"{fmt(min(ds))} … {fmt(max(ds))}" if ds else "—",
                f"{sum(1 for c in own if c.get('significant_holm'))} of {len(own)}",
            ]
        )
    return rows


def _counts(comps: Sequence[Mapping[str, Any]]) -> str:
    """E.g. "Across all 14 comparisons: 6 significant after Holm, 7 not significant (7 of
    them underpowered, so inconclusive), 1 not assessable." """
    sig = [c for c in comps if c.get("significant_holm")]
    ns = [c for c in comps if c.get("significant_holm") is False]
    na = [c for c in comps if c.get("significant_holm") is None]
    parts = [f"{len(sig)} significant after Holm"]
    if ns:
        under = sum(1 for c in ns if c.get("underpowered"))
        txt = f"{len(ns)} not significant"
        if under:
            txt += f" ({under} of them underpowered, so inconclusive)"
        parts.append(txt)
    if na:
        parts.append(f"{len(na)} not assessable (see the notes on missing values)")
    return f"Across all {len(comps)} comparisons: " + ", ".join(parts) + "."


def section_verdicts(run: RunData) -> str:
    comps = run.comparisons
    if not comps:
        return ""
    infos = condition_infos(run)
    tagged = [(c, is_target(run, c, infos)) for c in comps]
    tagged.sort(key=lambda t: priority_key(t[0], t[1]))
    groups: dict[str, list[str]] = {
        "Significant after Holm": [],
        "Not significant after Holm": [],
        "Not assessable": [],
    }
    for c, target in tagged:
        sig = c.get("significant_holm")
        key = (
            "Significant after Holm"
            if sig
            else ("Not significant after Holm" if sig is False else "Not assessable")
        )
        tag = (
            _target_tag(infos, str(c["condition"]))
            if target
            else ("coherence" if is_coherence(run, c["scorer"], c["metric"]) else "")
        )
        groups[key].append(_verdict_line(c, tag))
    parts = [
        "## Verdicts",
        "",
        "One line per comparison, as computed by the statistics (`harness/stats/verdict.py`): "
        "size class by |d| (Cohen 1988), Holm-adjusted paired-t p, in how many seeds the d "
        "has the sign of the pooled estimate, I², and a power flag. Targets first, then by "
        f"|d|. {UNDERPOWERED}: power below 0.8 at the observed effect; a non-significant "
        "result there does not show the effect is absent.",
    ]
    for title, lines in groups.items():
        if lines:
            parts += ["", f"**{title}** ({len(lines)})", "", *lines]
    return "\n".join(parts)


def section_power(run: RunData) -> str:
    comps = run.comparisons
    if not comps:
        return ""
    rows = power_rows(comps)

    def render(cs: Sequence[Mapping[str, Any]]) -> list[list[str]]:
        ids = {id(c) for c in cs}
        out = []
        for c, r in zip(comps, rows, strict=True):
            if id(c) not in ids:
                continue
            flag = "n/a" if r.underpowered is None else ("⚠ yes" if r.underpowered else "no")
            out.append(
                [
                    r.scorer,
                    r.metric,
                    f"`{r.condition}`",
                    str(r.n),
                    fmt(r.d_z),
                    fmt(r.power),
                    fmt(r.n_needed),
                    flag,
                ]
            )
        return out

    header = ["scorer", "metric", "condition", "n", "d_z", "power", "pairs for 80%", "underpowered"]
    seeds = _n_seeds(run)
    plan = []
    for dz in PLANNING_D_Z:
        need = pairs_needed(dz)
        txt = f"d_z = {dz}: {need} pairs"
        if seeds:
            txt += f" ({-(-need // seeds)} prompts × {seeds} seeds)"
        plan.append(txt)
    parts = [
        "## Power and planning",
        "",
        "Power of a two-sided paired t-test (α = 0.05) with this run's n pairs at each "
        "comparison's observed |d_z|, and the pairs that would reach 80% power. Power at the "
        "observed effect restates the p-value (Hoenig & Heisey 2001): read the last columns "
        "as what a confirmatory rerun needs to detect an effect of this size.",
        "",
        *by_scorer(run, comps, header, render),
        "",
        "Planning, for an assumed effect: " + "; ".join(plan) + ". Other values: "
        "`steer-harness power --d-z 0.3 --seeds 5`; every comparison of this run: "
        f"`steer-harness power {run.run_dir}`.",
    ]
    return "\n".join(parts)


def _n_seeds(run: RunData) -> int | None:
    if run.spec:
        seeds = run.spec["spec"].get("generation", {}).get("seeds")
        if seeds:
            return len(seeds)
    most = max((len(c.get("seeds") or []) for c in run.comparisons), default=0)
    return most or None


def section_robustness(run: RunData) -> str:
    comps = run.comparisons
    if not comps:
        return ""

    def ci(c: Mapping[str, Any], lo: str, hi: str, est: str | None = None) -> str:
        a, b = finite_or_none(c.get(lo)), finite_or_none(c.get(hi))
        head = fmt(finite_or_none(c.get(est))) if est else ""
        if a is None or b is None:
            return head or "n/a"
        return f"{head} [{fmt(a)}, {fmt(b)}]".strip()

    def mixed(c: Mapping[str, Any]) -> str:
        est, se = finite_or_none(c.get("mixed_estimate")), finite_or_none(c.get("mixed_se"))
        if est is None:
            return "n/a"
        txt = f"{fmt(est)} ± {fmt(se)}" if se is not None else fmt(est)
        if c.get("mixed_converged") is False:
            txt += " (not converged)"
        return txt

    def render(cs: Sequence[Mapping[str, Any]]) -> list[list[str]]:
        return [
            [
                str(c["scorer"]),
                str(c["metric"]),
                f"`{c['condition']}`",
                ci(c, "d_ci_low", "d_ci_high", "cohens_d"),
                ci(c, "boot_ci_low", "boot_ci_high"),
                ci(c, "meta_ci_low", "meta_ci_high", "meta_estimate"),
                fmt(finite_or_none(c.get("meta_i2")), 0)
                + ("%" if finite_or_none(c.get("meta_i2")) is not None else ""),
                fmt(finite_or_none(c.get("hedges_g"))),
                fmt(finite_or_none(c.get("delta"))),
                mixed(c),
                _p(c.get("p_welch")),
                _p(c.get("p_wilcoxon")),
            ]
            for c in cs
        ]

    header = [
        "scorer",
        "metric",
        "condition",
        "d [95% CI]",
        "bootstrap CI",
        "seed meta d [95% CI]",
        "I²",
        "g",
        "Δ",
        "mixed Δ ± SE",
        "p Welch",
        "p Wilcoxon",
    ]
    return "\n".join(
        [
            "## Robustness",
            "",
            "The same effect estimated other ways; when they disagree, the widest interval is "
            "the honest one. Bootstrap CI: percentile interval of d over resampled prompts (a "
            "prompt's seeds stay together). Seed meta d: DerSimonian–Laird random-effects "
            "pooling of the per-seed d's, with I² the share of their spread beyond chance. "
            "Mixed Δ: the steered − baseline coefficient of score ~ condition + (1 | prompt), "
            "in score units (compare with Δ). p Welch ignores the pairing; p Wilcoxon is the "
            "signed-rank test on the paired differences.",
            "",
            *by_scorer(run, comps, header, render),
        ]
    )


def _p(value: Any) -> str:
    p = finite_or_none(value)
    if p is None:
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def section_dose_response(run: RunData) -> str:
    plans = dose_plans(run)
    if not plans:
        return ""
    comps = run.comparisons
    by_key = {(c["condition"], c["scorer"], c["metric"]): c for c in comps}
    parts = [
        "## Dose–response",
        "",
        "Sweep points of one condition at several coefficients. Δ: steered − baseline mean "
        "of the metric (error bars in the figure: ± 1.96 × the mixed model's SE); d: "
        "Cohen's d. A usable coefficient moves the trait without costing coherence.",
    ]
    for plan in plans:
        parts += ["", f"### `{plan.group}`", ""]
        ref = run.figures.get(f"dose:{plan.group}")
        if ref is not None:
            parts += [figure_md(ref), ""]
        cols = [*plan.traits, *([plan.coherence] if plan.coherence else [])]
        header = ["coefficient", "layer", "condition"] + [
            f"{s}/{m} Δ (d)"
            + (" (coherence)" if (s, m) == plan.coherence and m != "coherence" else "")
            for s, m in cols
        ]
        rows = []
        for p in plan.points:
            row = [f"{p.coefficient:g}", p.layer_label, f"`{p.condition}`"]
            for s, m in cols:
                c = by_key.get((p.condition, s, m))
                if c is None:
                    row.append("—")
                    continue
                delta, d = finite_or_none(c.get("delta")), finite_or_none(c.get("cohens_d"))
                row.append("n/a" if delta is None else f"{fmt(delta)} ({fmt(d)})")
            rows.append(row)
        if not plan.points:
            parts.append("No point of this sweep has a numeric coefficient: no dose–response.")
        elif cols:
            parts.append(table(header, rows))
        else:
            parts.append("No metric to plot for this group.")
        if ref is None and plan.notes:
            parts += ["", *[f"- {n}" for n in plan.notes]]
    return "\n".join(parts)
