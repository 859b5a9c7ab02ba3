"""Report section: agreement between scorers measuring the same trait
(:mod:`harness.analysis.agreement`)."""

from __future__ import annotations

from typing import Any

from harness.report.data import RunData
from harness.report.format import fmt, table


def _reading(text: str) -> str:
    """Bold where the two scorers fail to agree."""
    return f"**{text}**" if text.startswith(("no detectable", "disagreement")) else text


def _rho_cell(p: dict[str, Any]) -> str:
    text = fmt(p.get("spearman"))
    if p.get("ci_low") is not None and p.get("ci_high") is not None:
        text += f" [{fmt(p['ci_low'])}, {fmt(p['ci_high'])}]"
    return text


def _by_condition_cell(p: dict[str, Any]) -> str:
    parts = []
    for cond, r in (p.get("by_condition") or {}).items():
        parts.append(f"`{cond}` {fmt(r.get('spearman'))} (n={r.get('n', 0)})")
    return "<br>".join(parts) or "—"


def section_agreement(run: RunData) -> str:
    data = run.analysis.get("agreement")
    pairs = (data or {}).get("pairs") if isinstance(data, dict) else None
    if not pairs:
        return ""
    rows = []
    notes = []
    for p in pairs:
        where = f"{p['scorer_a']} vs {p['scorer_b']} on {p['metric']}"
        alpha = fmt(p.get("krippendorff_alpha"))
        if p.get("krippendorff_alpha") is None and p.get("same_scale"):
            alpha = "n/a"
        elif not p.get("same_scale"):
            alpha = "— (scales differ)"
        rows.append(
            [
                p["metric"],
                f"{p['scorer_a']} · {p['scorer_b']}",
                str(p["n"]),
                _rho_cell(p),
                _by_condition_cell(p),
                alpha,
                _reading(str(p.get("reading"))),
            ]
        )
        for key in ("spearman_reason", "ci_reason"):
            if p.get(key) and (key == "spearman_reason" or p.get("spearman") is not None):
                notes.append(
                    f"- {where}: ρ{' interval' if key == 'ci_reason' else ''} n/a: {p[key]}"
                )
        if p.get("same_scale") and p.get("alpha_reason"):
            notes.append(f"- {where}: α n/a: {p['alpha_reason']}")
        for cond, r in (p.get("by_condition") or {}).items():
            if r.get("reason"):
                notes.append(f"- {where}, `{cond}`: ρ n/a: {r['reason']}")
        if p.get("boot_dropped"):
            notes.append(
                f"- {where}: {p['boot_dropped']} of {p['boot_resamples']} bootstrap resamples "
                "dropped (constant scores)"
            )
    parts = [
        "## Agreement between scorers",
        "",
        "Scorers that report the same metric name measure the same trait. ρ: Spearman's rank "
        "correlation over every text (condition, prompt, seed) both scored, all conditions "
        "pooled, with a 95% prompt-cluster bootstrap interval; within condition: ρ on one "
        "condition's texts alone (pooled ρ can come from a shared condition shift only). "
        "α: Krippendorff's alpha (interval), only where both metrics declare the same scale. "
        "Reading: the sign by the interval, the strength by Cohen's conventions for a "
        "correlation (0.1 small, 0.3 medium, 0.5 large). "
        "Definitions: `harness/analysis/agreement.py`.",
        "",
        table(
            ["metric", "scorers", "n", "ρ [95% CI]", "ρ within condition", "α", "reading"],
            rows,
        ),
    ]
    if notes:
        parts += ["", *notes]
    return "\n".join(parts)
