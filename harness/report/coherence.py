"""Report section: coherence per condition and the trait delta among coherent pairs.

Reads the ``coherence`` entry of analysis.json (:mod:`harness.analysis.coherence`); says nothing
when no scorer reported a ``coherence`` metric (the lexicon-only demo).
"""

from __future__ import annotations

from typing import Any

from harness.report.data import RunData
from harness.report.format import fmt, table


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{100.0 * float(value):.0f}%"


def section_coherence(run: RunData) -> str:
    data = run.analysis.get("coherence")
    if not isinstance(data, dict) or not data.get("sources"):
        return ""
    thr = fmt(data.get("threshold"), 0)
    several = len(data["sources"]) > 1
    cond_header = ["condition", *(["coherence from"] if several else []), "mean coherence"]
    cond_header += [f"share < {thr}", "scored"]
    cond_rows = []
    for r in data.get("by_condition", []):
        row = [f"`{r['condition']}`"] + ([r["coherence_scorer"]] if several else [])
        mean = fmt(r.get("mean"))
        if r.get("sd") is not None:
            mean += f" (SD {fmt(r['sd'])})"
        row += [mean, _pct(r.get("share_below")), f"{r.get('n_scored', 0)}/{r.get('n_texts', 0)}"]
        cond_rows.append(row)
    res_header = ["scorer", "metric", "condition", *(["coherence from"] if several else [])]
    res_header += ["Δ all pairs (n)", "Δ coherent pairs [95% CI]", "pairs kept"]
    res_rows = []
    for r in data.get("restricted", []):
        kept = fmt(r.get("delta_kept"))
        if r.get("ci_low") is not None and r.get("ci_high") is not None:
            kept += f" [{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]"
        elif r.get("reason"):
            kept += f" ({r['reason']})"
        share = f"{r.get('n_kept', 0)} ({_pct(r.get('share_kept'))})"
        if r.get("n_unknown"):
            share += f"; {r['n_unknown']} without coherence"
        res_rows.append(
            [str(r["scorer"]), str(r["metric"]), f"`{r['condition']}`"]
            + ([str(r["coherence_scorer"])] if several else [])
            + [f"{fmt(r.get('delta'))} ({r.get('n_pairs', 0)})", kept, share]
        )
    parts = [
        "## Coherence",
        "",
        f"Mean coherence (0–100) per condition and the share of texts below {thr} "
        "(`analysis.coherence_threshold`). Steering that raises a trait only by breaking "
        "the text shows here as falling coherence.",
        "",
        table(cond_header, cond_rows),
    ]
    if res_rows:
        parts += [
            "",
            f"Trait effects among coherent texts: a (prompt, seed) pair is kept when both "
            f"its baseline and its steered text score ≥ {thr} on coherence. Δ: mean paired "
            "difference steered − baseline, with a paired-t 95% interval. The kept pairs are "
            "selected on an outcome of the steering, so Δ among them describes that subset; "
            "read it with the share kept. Definitions: `harness/analysis/coherence.py`.",
            "",
            table(res_header, res_rows),
        ]
    return "\n".join(parts)
