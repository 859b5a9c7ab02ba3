"""Report section: the classification shift of a steered sequence classifier.

Renders a :class:`~harness.core.artifacts.ShiftDoc` (:mod:`harness.analysis.shift`) as
markdown tables — accuracy and macro F1 with McNemar's test, the target class's precision,
recall and F1 and the predictions moved to it, every label's metrics, each class's
probability shift — and draws its figures into ``figures_dir``:

- ``shift-target.png``: the target class's probability of every text, per condition
  (boxes, the mean as a diamond; the report's distribution plot);
- ``shift-dose.png``: with doses, the target's F1, precision and recall, the accuracy and
  the mean target probability, each as the change against the unsteered classifier with
  its paired bootstrap interval, against α.

The figures are linked as ``<figures_dir name>/<file>``: the report is expected next to
its figure folder (``reports/x.md`` with ``reports/x/``, as :mod:`harness.report.figures`
lays it out). A figure that cannot be drawn is named with the reason, never raised.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from harness.core.artifacts import ShiftCondition, ShiftDoc, ShiftMetric
from harness.report import plots
from harness.report.figures import FigureRef, _draw
from harness.report.format import cell, figure_md, fmt, fmt_p, md_text, table

__all__ = ["DOSE_FIGURE", "TARGET_FIGURE", "dose_series", "shift_section"]

TARGET_FIGURE = "shift-target.png"
DOSE_FIGURE = "shift-dose.png"
DIGITS = 3


def _ci(value: float | None, lo: float | None, hi: float | None) -> str:
    text = fmt(value, DIGITS)
    if value is not None and lo is not None and hi is not None:
        text += f" [{fmt(lo, DIGITS)}, {fmt(hi, DIGITS)}]"
    return text


def _metric(c: ShiftCondition, metric: str, scope: str, label: str | None = None) -> ShiftMetric:
    for m in c["metrics"]:
        if m["metric"] == metric and m["scope"] == scope and m["label"] == label:
            return m
    raise KeyError((c["condition"], metric, scope, label))


def _value(m: ShiftMetric) -> str:
    return _ci(m["value"], m["ci_low"], m["ci_high"])


def _delta(m: ShiftMetric) -> str:
    return _ci(m["delta"], m["delta_ci_low"], m["delta_ci_high"])


def _name(doc: ShiftDoc, c: ShiftCondition) -> str:
    name = f"`{c['condition']}`"
    return name + " (unsteered)" if c["condition"] == doc["baseline"] else name


def _dose(c: ShiftCondition) -> str:
    return "" if c["dose"] is None else f"{c['dose']:g}"


def _alpha(c: ShiftCondition) -> float:
    return float(c["dose"] or 0.0)


def _dosed(doc: ShiftDoc) -> list[ShiftCondition]:
    """Conditions on the dose curve (the unsteered one included), by α."""
    return sorted((c for c in doc["by_condition"] if c["dose"] is not None), key=_alpha)


def _pair(lo: float | None, hi: float | None) -> tuple[float, float] | None:
    return None if lo is None or hi is None else (lo, hi)


def _has_doses(doc: ShiftDoc) -> bool:
    return any(
        c["dose"] is not None for c in doc["by_condition"] if c["condition"] != doc["baseline"]
    )


def dose_series(doc: ShiftDoc) -> list[list[plots.DoseSeries]]:
    """The dose figure's panels: [target metrics and accuracy], [mean target probability];
    each point is the change against the unsteered classifier with its paired bootstrap
    interval, the unsteered classifier itself at its α with change 0."""
    target = doc["target"]
    dosed = _dosed(doc)
    specs: list[tuple[str, str, str | None]] = [("accuracy", "all", None)]
    if target is not None:
        specs = [
            ("f1", "label", target),
            ("precision", "label", target),
            ("recall", "label", target),
            *specs,
        ]
    panels: list[list[plots.DoseSeries]] = []
    metric_series = []
    for metric, scope, label in specs:
        pts: list[plots.DosePoint] = []
        skipped: list[str] = []
        for c in dosed:
            m = _metric(c, metric, scope, label)
            if c["condition"] == doc["baseline"]:
                if m["value"] is not None:
                    pts.append(plots.DosePoint(c["condition"], _alpha(c), 0.0, None, None, c["n"]))
                continue
            if m["delta"] is None:
                skipped.append(
                    f"α {c['dose']:g} (`{c['condition']}`): {m.get('reason', 'no value')}"
                )
                continue
            ci = _pair(m["delta_ci_low"], m["delta_ci_high"])
            pts.append(plots.DosePoint(c["condition"], _alpha(c), m["delta"], ci, None, c["n"]))
        name = {"f1": "F1"}.get(metric, metric)
        metric_series.append(plots.DoseSeries(label or "overall", name, None, pts, skipped))
    panels.append(metric_series)
    if target is not None:
        probs = {r["condition"]: r for r in doc["probability"] if r["label"] == target}
        pts = []
        skipped = []
        for c in dosed:
            if c["condition"] == doc["baseline"]:
                pts.append(plots.DosePoint(c["condition"], _alpha(c), 0.0, None, None, c["n"]))
                continue
            r = probs.get(c["condition"])
            if r is None or r["delta"] is None:
                skipped.append(f"α {c['dose']:g} (`{c['condition']}`): no probabilities")
                continue
            ci = _pair(r["ci_low"], r["ci_high"])
            pts.append(plots.DosePoint(c["condition"], _alpha(c), r["delta"], ci, r["d_z"], r["n"]))
        panels.append([plots.DoseSeries(target, "mean probability", None, pts, skipped)])
    return panels


def _dose_figure(doc: ShiftDoc, panels: Sequence[Sequence[plots.DoseSeries]]) -> tuple[Figure, Any]:
    titles = [
        "metrics" if doc["target"] is None else f"{doc['target']}: metrics",
        f"P({doc['target']})",
    ]
    fig = Figure(figsize=(3.9 * len(panels) + 0.6, 3.3), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels), squeeze=False)).ravel()
    lines = []
    for ax, series, title in zip(axes, panels, titles, strict=False):
        lines.append(plots.draw_dose(ax, series, "Δ vs unsteered (95% paired bootstrap CI)"))
        ax.set_xlabel("α")
        ax.set_title(title, fontsize=9)
        if len(series) == 1:
            ax.legend(fontsize=7, frameon=False)
    fig.suptitle("classification shift against α", fontsize=10)
    return fig, lines


def _target_panel(doc: ShiftDoc) -> plots.DistPanel:
    target = str(doc["target"])
    conds = [c["condition"] for c in doc["by_condition"]]
    values: list[np.ndarray] = []
    bad: list[int] = []
    for c in conds:
        raw = np.array(
            [np.nan if v is None else v for v in doc["target_probs"].get(c, [])], dtype=float
        )
        ok = np.isfinite(raw)
        values.append(raw[ok])
        bad.append(int((~ok).sum()))
    return plots.DistPanel("classifier", f"P({target})", conds, values, bad)


def _figures(doc: ShiftDoc, figures_dir: Path) -> dict[str, FigureRef]:
    out: dict[str, FigureRef] = {}
    link = figures_dir.name
    if doc["target"] is not None and doc["target_probs"]:
        panel = _target_panel(doc)
        figures_dir.mkdir(parents=True, exist_ok=True)
        _draw(
            out,
            "target",
            figures_dir,
            link,
            TARGET_FIGURE,
            f"Probability of {doc['target']} per text, per condition",
            [panel.note] if panel.note else [],
            lambda: plots.distribution_figure([panel], "classification shift", ncols=1),
        )
    if _has_doses(doc):
        panels = dose_series(doc)
        notes = [f"{s.label}: {why}" for p in panels for s in p for why in s.skipped]
        figures_dir.mkdir(parents=True, exist_ok=True)
        _draw(
            out,
            "dose",
            figures_dir,
            link,
            DOSE_FIGURE,
            "Dose–response: change against the unsteered classifier",
            notes,
            lambda: _dose_figure(doc, panels),
        )
    return out


def _rows(doc: ShiftDoc, row: Callable[[ShiftCondition], list[str]]) -> list[list[str]]:
    return [row(c) for c in doc["by_condition"]]


def shift_section(doc: ShiftDoc, figures_dir: Path) -> list[str]:
    """Markdown lines of the classification-shift section; draws its PNGs into
    ``figures_dir`` (see the module docstring)."""
    base = doc["baseline"]
    target = doc["target"]
    boot = doc["bootstrap"]
    dosed = _has_doses(doc)
    figs = _figures(doc, figures_dir)
    level = f"{100 * boot['level']:g}%"
    lines = [
        "## Classification shift",
        "",
        f"The classifier's predictions on the same {doc['n_texts']} labelled texts under each "
        f"condition, against the unsteered classifier (`{base}`). Intervals: {level} "
        f"percentile bootstrap over texts ({boot['n_resamples']} resamples, seed "
        f"{boot['seed']}), paired — one resample of texts for both sides of a Δ. McNemar: "
        "exact binomial test on the texts whose correctness changed (McNemar 1947), Holm "
        "over the conditions. Definitions: `harness/stats/confusion.py`, "
        "`harness/analysis/shift.py`.",
        "",
    ]
    alpha_col = ["α"] if dosed else []

    def overall(c: ShiftCondition) -> list[str]:
        acc = _metric(c, "accuracy", "all")
        f1 = _metric(c, "f1", "macro")
        mc = c["mcnemar"]
        own = c["condition"] == base
        return [
            _name(doc, c),
            *([_dose(c)] if dosed else []),
            str(c["n"]),
            _value(acc),
            "" if own else _delta(acc),
            _value(f1),
            "" if own else _delta(f1),
            "" if mc is None else str(mc["correct_to_wrong"]),
            "" if mc is None else str(mc["wrong_to_correct"]),
            "" if mc is None else fmt_p(mc["p_exact"]),
            "" if mc is None else fmt_p(mc["p_holm"]),
        ]

    lines += [
        table(
            [
                "condition",
                *alpha_col,
                "n",
                "accuracy [CI]",
                "Δ accuracy [CI]",
                "macro F1 [CI]",
                "Δ macro F1 [CI]",
                "correct → wrong",
                "wrong → correct",
                "McNemar p (exact)",
                "p Holm",
            ],
            _rows(doc, overall),
        ),
        "",
    ]
    if target is not None:
        t = cell(target)

        def tgt(c: ShiftCondition) -> list[str]:
            p, r, f = (_metric(c, m, "label", target) for m in ("precision", "recall", "f1"))
            info = c["target"]
            own = c["condition"] == base
            rate = c["predicted_counts"].get(target, 0)
            moved = (
                ""
                if info is None
                else f"{info['to_target']} ({fmt(100 * (info['to_target_share'] or 0.0), 1)}%)"
            )
            rate_txt = f"{rate}/{c['n']}"
            if info is not None:
                rate_txt += (
                    " (Δ "
                    + _ci(info["rate_delta"], info["rate_delta_ci_low"], info["rate_delta_ci_high"])
                    + ")"
                )
            return [
                _name(doc, c),
                *([_dose(c)] if dosed else []),
                _value(p),
                "" if own else _delta(p),
                _value(r),
                "" if own else _delta(r),
                _value(f),
                "" if own else _delta(f),
                rate_txt,
                moved,
                "" if info is None else str(info["from_target"]),
            ]

        lines += [
            f"### Target class: {t}",
            "",
            f"Precision, recall and F1 of {t}, the texts predicted as {t} (Δ: the change in "
            f"that share), the texts moved to {t} from another prediction (share of all "
            f"texts) and those moved away from it.",
            "",
            table(
                [
                    "condition",
                    *alpha_col,
                    "precision [CI]",
                    "Δ [CI]",
                    "recall [CI]",
                    "Δ [CI]",
                    "F1 [CI]",
                    "Δ [CI]",
                    f"predicted {t}",
                    f"moved to {t}",
                    f"moved from {t}",
                ],
                _rows(doc, tgt),
            ),
            "",
        ]
        ref = figs.get("target")
        if ref is not None:
            lines += [figure_md(ref), ""]
    if dosed:
        probs = {r["condition"]: r for r in doc["probability"] if r["label"] == target}
        dose_rows = []
        for c in _dosed(doc):
            row = [_dose(c), _name(doc, c)]
            if target is not None:
                pr = probs.get(c["condition"])
                mean = pr["mean"] if pr else _mean(doc["target_probs"].get(c["condition"], []))
                row += [fmt(mean, DIGITS)]
                row += [
                    _value(_metric(c, m, "label", target)) for m in ("precision", "recall", "f1")
                ]
            row += [_value(_metric(c, "accuracy", "all")), _value(_metric(c, "f1", "macro"))]
            dose_rows.append(row)
        header = ["α", "condition"]
        if target is not None:
            header += [f"mean P({cell(target)})", "precision [CI]", "recall [CI]", "F1 [CI]"]
        header += ["accuracy [CI]", "macro F1 [CI]"]
        lines += ["### Dose–response", "", table(header, dose_rows), ""]
        ref = figs.get("dose")
        if ref is not None:
            lines += [figure_md(ref), ""]

    label_rows = []
    for c in doc["by_condition"]:
        own = c["condition"] == base
        for lab in doc["labels"]:
            p, r, f = (_metric(c, m, "label", lab) for m in ("precision", "recall", "f1"))
            label_rows.append(
                [
                    _name(doc, c),
                    cell(lab),
                    str(sum(c["confusion"].get(lab, {}).values())),
                    str(c["predicted_counts"].get(lab, 0)),
                    _value(p),
                    _value(r),
                    _value(f),
                    "" if own else _delta(f),
                ]
            )
    lines += [
        "### Per label",
        "",
        table(
            [
                "condition",
                "label",
                "gold",
                "predicted",
                "precision [CI]",
                "recall [CI]",
                "F1 [CI]",
                "Δ F1 [CI]",
            ],
            label_rows,
        ),
        "",
    ]
    if doc["probability"]:
        prob_rows = [
            [
                f"`{r['condition']}`",
                cell(r["label"]),
                str(r["n"]),
                fmt(r["mean_baseline"], DIGITS),
                fmt(r["mean"], DIGITS),
                _ci(r["delta"], r["ci_low"], r["ci_high"]),
                fmt(r["d_z"]),
                fmt_p(r["p_paired_t"]),
                fmt_p(r["p_holm"]),
                fmt_p(r["p_wilcoxon"]),
            ]
            for r in doc["probability"]
        ]
        lines += [
            "### Class probabilities",
            "",
            "Mean probability of each class, unsteered and steered, and the mean paired shift "
            "(steered − unsteered, per text) with its bootstrap interval; d_z = mean shift / "
            "SD of the shifts (Lakens 2013); paired t and Wilcoxon signed-rank p-values, the "
            "paired-t p Holm-adjusted over the classes of each condition.",
            "",
            table(
                [
                    "condition",
                    "class",
                    "n",
                    "mean P unsteered",
                    "mean P",
                    "Δ [CI]",
                    "d_z",
                    "p (paired t)",
                    "p Holm",
                    "p Wilcoxon",
                ],
                prob_rows,
            ),
            "",
        ]
    notes = [md_text(n) for n in doc["notes"]]
    for c in doc["by_condition"]:
        for m in c["metrics"]:
            if m.get("reason"):
                what = m["metric"] + (f" of {m['label']}" if m["label"] else f" ({m['scope']})")
                notes.append(f"`{c['condition']}` · {md_text(what)}: {md_text(m['reason'])}")
        if c["mcnemar"] is not None and c["mcnemar"].get("reason"):
            notes.append(f"`{c['condition']}` · McNemar: {md_text(c['mcnemar']['reason'])}")
    for pr in doc["probability"]:
        if pr.get("reason"):
            notes.append(
                f"`{pr['condition']}` · P({md_text(pr['label'])}): {md_text(pr['reason'])}"
            )
    if notes:
        lines += ["Notes:", "", *[f"- {n}" for n in notes], ""]
    return lines[:-1] if lines and lines[-1] == "" else lines


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None
