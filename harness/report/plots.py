"""Report figures: pure data preparation, then drawing on a matplotlib ``Figure``.

Every plot is made in two steps so that what is drawn can be tested against the analysis:

1. a ``*_rows`` / ``*_panels`` / ``*_series`` function turns analysis records (or score
   values) into small dataclasses holding exactly the numbers to draw, and a note for each
   thing left out (an undefined d, a non-finite score, a sweep point without pairs);
2. a ``draw_*`` function draws them on axes and returns the artists it made.

Figures are built with ``matplotlib.figure.Figure`` directly (the Agg canvas, never
pyplot), so nothing opens a window or touches global state. Values that are None or not
finite are never drawn and never printed as numbers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.transforms import blended_transform_factory

from harness.core.files import write_atomic
from harness.report.focus import SweepPoint, layer_label, sweep_points
from harness.stats import finite_or_none

__all__ = [
    "DistPanel",
    "DosePoint",
    "DoseSeries",
    "ForestArtists",
    "ForestRow",
    "SweepPoint",
    "distribution_figure",
    "distribution_panels",
    "dose_figure",
    "dose_series",
    "draw_distribution",
    "draw_dose",
    "draw_forest",
    "forest_figure",
    "forest_rows",
    "save_figure",
    "sweep_points",
]

# Cohen's (1988) thresholds, drawn as faint guides on the forest plot.
SIZE_GUIDES = (0.2, 0.5, 0.8)
Z95 = 1.959963984540054
_MPL = tuple(int(x) for x in re.findall(r"\d+", matplotlib.__version__)[:2])
_HORIZONTAL: dict[str, Any] = {"orientation": "horizontal"} if _MPL >= (3, 10) else {"vert": False}
MAX_POINTS_PER_BOX = 400
"""Jittered points drawn per box (a deterministic subsample beyond this); the box, the
median and the mean always use every value."""


def save_figure(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG (no timestamp or version metadata, so re-renders diff cleanly)."""
    return write_atomic(
        path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, metadata={"Software": None})
    )


# --------------------------------------------------------------------------- forest plot


@dataclass(frozen=True)
class ForestRow:
    """One comparison on the forest plot."""

    group: str
    """Heading the row is drawn under, e.g. ``lexicon/fear``."""
    label: str
    """Row label, e.g. the condition name."""
    d: float | None
    ci: tuple[float, float] | None
    seeds: tuple[tuple[int, float], ...] = ()
    """(seed, d) for every seed whose d is defined and finite."""
    significant: bool | None = None
    underpowered: bool | None = None
    n: int = 0
    note: str | None = None
    """Why the row (or part of it) is not drawn; None when everything is drawn."""


def _reason(c: Mapping[str, Any], fld: str, default: str) -> str:
    return str((c.get("reasons") or {}).get(fld) or default)


def forest_rows(
    comparisons: Iterable[Mapping[str, Any]],
    label: Callable[[Mapping[str, Any]], str] = lambda c: str(c["condition"]),
) -> list[ForestRow]:
    """One row per comparison, grouped by scorer/metric in order of first appearance."""
    groups: dict[str, list[ForestRow]] = {}
    for c in comparisons:
        group = f"{c['scorer']}/{c['metric']}"
        d = finite_or_none(c.get("cohens_d"))
        lo, hi = finite_or_none(c.get("d_ci_low")), finite_or_none(c.get("d_ci_high"))
        ci = (lo, hi) if lo is not None and hi is not None and d is not None else None
        seeds: list[tuple[int, float]] = []
        skipped: list[str] = []
        for s, sd in zip(c.get("seeds") or [], c.get("seed_d") or [], strict=False):
            v = finite_or_none(sd)
            if v is None:
                skipped.append(str(s))
            else:
                seeds.append((int(s), v))
        notes: list[str] = []
        if d is None:
            notes.append("d undefined: " + _reason(c, "cohens_d", "no value"))
        elif ci is None:
            notes.append("no CI: " + _reason(c, "d_ci_low", "no value"))
        if skipped and d is not None:
            notes.append(f"seed(s) {', '.join(skipped)} without a defined d")
        groups.setdefault(group, []).append(
            ForestRow(
                group=group,
                label=label(c),
                d=d,
                ci=ci,
                seeds=tuple(seeds),
                significant=c.get("significant_holm"),
                underpowered=c.get("underpowered"),
                n=int(c.get("n") or 0),
                note="; ".join(notes) or None,
            )
        )
    return [r for rows in groups.values() for r in rows]


@dataclass
class ForestArtists:
    """What :func:`draw_forest` drew, for tests and callers."""

    row_y: list[float]
    """y of each row, in the order of the rows passed in."""
    ci: LineCollection | None
    """One horizontal segment per row with a CI, in row order."""
    ci_rows: list[int]
    """Row index of each CI segment."""
    points: Line2D | None
    """The d markers of rows with a defined d (filled and hollow markers in one artist
    each: see ``point_rows``)."""
    point_rows: list[int]
    hollow: Line2D | None
    hollow_rows: list[int]
    seeds: PathCollection | None
    """Per-seed d's, in row order then seed order."""
    seed_rows: list[int]


def _fmt(x: float) -> str:
    text = f"{x:.2f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def draw_forest(ax: Any, rows: Sequence[ForestRow]) -> ForestArtists:
    """Forest plot: d with its 95% CI per row, per-seed d's as small dots, grouped rows."""
    ys: list[float] = []
    ticks: list[float] = []
    labels: list[str] = []
    headers: list[int] = []
    y = 0.0
    last_group: str | None = None
    for r in rows:
        if r.group != last_group:
            ticks.append(y)
            labels.append(r.group)
            headers.append(len(labels) - 1)
            y -= 1.0
            last_group = r.group
        ys.append(y)
        ticks.append(y)
        labels.append("  " + r.label)
        y -= 1.0

    ci_idx = [i for i, r in enumerate(rows) if r.ci is not None]
    ci_art = None
    if ci_idx:
        ci_art = ax.hlines(
            [ys[i] for i in ci_idx],
            [rows[i].ci[0] for i in ci_idx],  # type: ignore[index]
            [rows[i].ci[1] for i in ci_idx],  # type: ignore[index]
            color="#1f4e79",
            linewidth=1.6,
            zorder=2,
        )
    filled = [i for i, r in enumerate(rows) if r.d is not None and r.significant]
    hollow = [i for i, r in enumerate(rows) if r.d is not None and not r.significant]
    pts = hol = None
    if filled:
        (pts,) = ax.plot(
            [rows[i].d for i in filled],
            [ys[i] for i in filled],
            linestyle="none",
            marker="s",
            markersize=7,
            color="#1f4e79",
            zorder=4,
        )
    if hollow:
        (hol,) = ax.plot(
            [rows[i].d for i in hollow],
            [ys[i] for i in hollow],
            linestyle="none",
            marker="s",
            markersize=7,
            markerfacecolor="white",
            markeredgecolor="#1f4e79",
            zorder=4,
        )
    sx: list[float] = []
    sy: list[float] = []
    s_rows: list[int] = []
    for i, r in enumerate(rows):
        k = len(r.seeds)
        for j, (_, v) in enumerate(r.seeds):
            off = 0.0 if k == 1 else -0.28 + 0.56 * j / (k - 1)
            sx.append(v)
            sy.append(ys[i] + off)
            s_rows.append(i)
    seed_art = None
    if sx:
        seed_art = ax.scatter(sx, sy, s=10, color="#d95f02", alpha=0.75, zorder=3, linewidths=0)

    values = [v for r in rows for v in ((r.d,) + (r.ci or ()) + tuple(s[1] for s in r.seeds))]
    vals = [v for v in values if v is not None]
    lo = min([*vals, -0.25])
    hi = max([*vals, 0.25])
    pad = 0.06 * (hi - lo)
    ax.set_xlim(lo - pad, hi + pad)
    ax.axvline(0.0, color="0.35", linewidth=0.9, zorder=1)
    for g in SIZE_GUIDES:
        for sgn in (-1, 1):
            if lo - pad < sgn * g < hi + pad:
                ax.axvline(sgn * g, color="0.85", linewidth=0.7, linestyle=":", zorder=0)
    ax.set_yticks(ticks)
    ax.set_yticklabels(labels)
    for h in headers:
        ax.get_yticklabels()[h].set_fontweight("bold")
    ax.set_ylim(y + 0.4, 0.6)
    ax.tick_params(axis="y", length=0)
    ax.set_xlabel("Cohen's d (steered − baseline) with 95% CI; dots: per-seed d")
    text_tr = blended_transform_factory(ax.transAxes, ax.transData)
    for i, r in enumerate(rows):
        if r.d is None:
            txt = "n/a: " + (r.note or "d undefined").removeprefix("d undefined: ")
            if len(txt) > 44:
                txt = txt[:43] + "…"
        else:
            txt = f"{_fmt(r.d)}"
            if r.ci is not None:
                txt += f" [{_fmt(r.ci[0])}, {_fmt(r.ci[1])}]"
            if r.underpowered:
                txt += " †"
        ax.text(1.02, ys[i], txt, transform=text_tr, va="center", ha="left", fontsize=8)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    return ForestArtists(ys, ci_art, ci_idx, pts, filled, hol, hollow, seed_art, s_rows)


def forest_figure(rows: Sequence[ForestRow], title: str = "") -> tuple[Figure, ForestArtists]:
    n_lines = len(rows) + len({r.group for r in rows})
    fig = Figure(figsize=(9.0, 1.3 + 0.26 * max(n_lines, 3)), layout="constrained")
    ax = fig.add_subplot()
    art = draw_forest(ax, rows)
    if title:
        ax.set_title(title, fontsize=10, loc="left")
    handles = [
        Line2D([], [], marker="s", color="#1f4e79", linestyle="-", label="d, 95% CI"),
        Line2D(
            [],
            [],
            marker="s",
            markerfacecolor="white",
            markeredgecolor="#1f4e79",
            linestyle="none",
            label="not significant after Holm",
        ),
        Line2D([], [], marker="o", color="#d95f02", linestyle="none", label="per-seed d"),
    ]
    if any(r.underpowered for r in rows):
        handles.append(Line2D([], [], linestyle="none", label="† underpowered (power < 0.8)"))
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncols=len(handles),
        fontsize=7.5,
        frameon=False,
    )
    return fig, art


# ------------------------------------------------------------------- score distributions


@dataclass(frozen=True)
class DistPanel:
    """One metric's finite scores per condition (baseline first)."""

    scorer: str
    metric: str
    conditions: list[str]
    values: list[np.ndarray]
    """Finite values per condition (same order as ``conditions``)."""
    n_nonfinite: list[int]
    """Values left out per condition because they are null, NaN or infinite."""

    @property
    def note(self) -> str | None:
        """E.g. "calm 3 null/non-finite left out, empty no finite values (24 null/non-finite)"."""
        parts = []
        for c, v, k in zip(self.conditions, self.values, self.n_nonfinite, strict=True):
            if v.size == 0:
                parts.append(f"{c} no finite values" + (f" ({k} null/non-finite)" if k else ""))
            elif k:
                parts.append(f"{c} {k} null/non-finite left out")
        return ", ".join(parts) or None


def distribution_panels(
    table: Mapping[tuple[str, str], Mapping[str, Mapping[Any, float]]],
    scorer: str,
    metrics: Sequence[str],
    conditions: Sequence[str],
) -> list[DistPanel]:
    """Per metric of ``scorer``, the finite values of each condition, from a score table
    (:func:`harness.analysis.score_table`: (scorer, metric) -> condition -> key -> value)."""
    panels = []
    for metric in metrics:
        by_cond = table.get((scorer, metric), {})
        vals: list[np.ndarray] = []
        bad: list[int] = []
        for cond in conditions:
            raw = np.array(list(by_cond.get(cond, {}).values()), dtype=float)
            ok = np.isfinite(raw)
            vals.append(raw[ok])
            bad.append(int((~ok).sum()))
        panels.append(DistPanel(scorer, metric, list(conditions), vals, bad))
    return panels


def draw_distribution(ax: Any, panel: DistPanel) -> dict[str, Any]:
    """Horizontal boxes (no fliers) per condition, jittered points, the mean as a diamond.
    Conditions without finite values get no box. Returns the artists by kind."""
    positions = [-i for i in range(len(panel.conditions))]
    drawn = [i for i, v in enumerate(panel.values) if v.size]
    out: dict[str, Any] = {"positions": positions, "drawn": drawn, "box": None, "means": None}
    if drawn:
        out["box"] = ax.boxplot(
            [panel.values[i] for i in drawn],
            positions=[positions[i] for i in drawn],
            **_HORIZONTAL,
            widths=0.55,
            showfliers=False,
            patch_artist=True,
            boxprops={"facecolor": "#c6dbef", "edgecolor": "#1f4e79"},
            medianprops={"color": "#1f4e79"},
            whiskerprops={"color": "#1f4e79"},
            capprops={"color": "#1f4e79"},
        )
        rng = np.random.default_rng(0)
        for i in drawn:
            v = panel.values[i]
            if v.size > MAX_POINTS_PER_BOX:
                v = rng.choice(v, MAX_POINTS_PER_BOX, replace=False)
            jitter = rng.uniform(-0.22, 0.22, v.size)
            ax.scatter(v, positions[i] + jitter, s=4, color="0.3", alpha=0.25, linewidths=0)
        out["means"] = ax.scatter(
            [float(panel.values[i].mean()) for i in drawn],
            [positions[i] for i in drawn],
            marker="D",
            s=22,
            color="#d95f02",
            zorder=5,
        )
    for i, v in enumerate(panel.values):
        if not v.size:
            ax.text(0.02, positions[i], "no finite values", transform=_blend(ax), fontsize=7)
    ax.set_yticks(positions)
    ax.set_yticklabels(panel.conditions)
    ax.set_ylim(positions[-1] - 0.6, 0.6)
    ax.set_title(panel.metric, fontsize=9)
    ax.tick_params(labelsize=7.5)
    return out


def _blend(ax: Any) -> Any:
    return blended_transform_factory(ax.transAxes, ax.transData)


def distribution_figure(
    panels: Sequence[DistPanel], title: str = "", ncols: int = 4
) -> tuple[Figure, list[dict[str, Any]]]:
    """Small multiples: one panel per metric, conditions on a shared y axis."""
    n = max(len(panels), 1)
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    n_cond = max((len(p.conditions) for p in panels), default=1)
    fig = Figure(
        figsize=(2.6 * ncols + 1.4, 0.7 + nrows * (0.5 + 0.32 * n_cond)), layout="constrained"
    )
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharey=True, squeeze=False)).ravel()
    arts = [draw_distribution(ax, p) for ax, p in zip(axes, panels, strict=False)]
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig, arts


# ------------------------------------------------------------------------ dose-response


@dataclass(frozen=True)
class DosePoint:
    condition: str
    coefficient: float
    delta: float
    ci: tuple[float, float] | None
    """delta ± 1.96 × the mixed model's SE, when that SE exists."""
    d: float | None
    n: int


@dataclass(frozen=True)
class DoseSeries:
    scorer: str
    metric: str
    layer: int | tuple[int, ...] | None
    points: list[DosePoint]
    skipped: list[str] = field(default_factory=list)
    """Why sweep points are missing from the curve."""

    @property
    def label(self) -> str:
        base = f"{self.scorer}/{self.metric}"
        if self.layer is None:
            return base
        if isinstance(self.layer, tuple):
            return f"{base}, layers {layer_label(self.layer)}"
        return f"{base}, layer {self.layer}"


def dose_series(
    comparisons: Iterable[Mapping[str, Any]],
    points: Sequence[SweepPoint],
    scorer: str,
    metric: str,
) -> list[DoseSeries]:
    """One series per layer: each sweep point's delta (and CI) for ``scorer``/``metric``."""
    by_cond = {
        c["condition"]: c for c in comparisons if c["scorer"] == scorer and c["metric"] == metric
    }
    layers = list(dict.fromkeys(p.layer for p in points))
    out = []
    for layer in layers:
        pts: list[DosePoint] = []
        skipped: list[str] = []
        for p in points:
            if p.layer != layer:
                continue
            c = by_cond.get(p.condition)
            where = f"coefficient {p.coefficient:g} (`{p.condition}`)"
            if c is None:
                skipped.append(f"{where}: no {scorer}/{metric} comparison")
                continue
            delta = finite_or_none(c.get("delta"))
            if delta is None:
                skipped.append(f"{where}: no delta ({c.get('n', 0)} complete pairs)")
                continue
            se = finite_or_none(c.get("mixed_se"))
            ci = (delta - Z95 * se, delta + Z95 * se) if se is not None else None
            pts.append(
                DosePoint(
                    p.condition,
                    p.coefficient,
                    delta,
                    ci,
                    finite_or_none(c.get("cohens_d")),
                    int(c["n"]),
                )
            )
        out.append(DoseSeries(scorer, metric, layer, pts, skipped))
    return out


def draw_dose(ax: Any, series: Sequence[DoseSeries], ylabel: str) -> list[Line2D]:
    """Delta against the coefficient, one line per series, error bars where a CI exists."""
    lines: list[Line2D] = []
    for s in series:
        xs = [p.coefficient for p in s.points]
        ys = [p.delta for p in s.points]
        (line,) = ax.plot(xs, ys, marker="o", markersize=4, label=s.label)
        lines.append(line)
        with_ci = [p for p in s.points if p.ci is not None]
        if with_ci:
            ax.errorbar(
                [p.coefficient for p in with_ci],
                [p.delta for p in with_ci],
                yerr=[
                    [p.delta - p.ci[0] for p in with_ci],  # type: ignore[index]
                    [p.ci[1] - p.delta for p in with_ci],  # type: ignore[index]
                ],
                fmt="none",
                ecolor=line.get_color(),
                elinewidth=1,
                capsize=2,
            )
    ax.axhline(0.0, color="0.5", linewidth=0.8)
    ax.set_xlabel("steering coefficient")
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=8)
    if len(series) > 1:
        ax.legend(fontsize=7, frameon=False)
    return lines


def dose_figure(
    group: str,
    traits: Sequence[Sequence[DoseSeries]],
    coherence: Sequence[DoseSeries] | None = None,
) -> tuple[Figure, list[list[Line2D]]]:
    """One panel per trait metric (its series, one per layer), then one for coherence."""
    panels: list[tuple[str, Sequence[DoseSeries]]] = [
        (f"{s[0].scorer}/{s[0].metric}", s) for s in traits if s
    ]
    if coherence:
        panels.append((f"coherence: {coherence[0].scorer}/{coherence[0].metric}", coherence))
    n = max(len(panels), 1)
    fig = Figure(figsize=(3.6 * n + 0.6, 3.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, n, squeeze=False, sharex=True)).ravel()
    out = []
    for ax, (title, series) in zip(axes, panels, strict=False):
        out.append(draw_dose(ax, series, "Δ mean vs baseline (± 1.96 SE, mixed model)"))
        ax.set_title(title, fontsize=9)
    fig.suptitle(f"dose–response: {group}", fontsize=10)
    return fig, out
