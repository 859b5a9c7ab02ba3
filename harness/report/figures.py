"""Write a report's PNG figures next to it and tell the sections where they are.

For a report ``reports/demo.md`` the figures go to ``reports/demo/`` and are linked as
``demo/forest.png``, so the report renders on GitHub and moves with its folder:

- ``forest.png``: d with 95% CI for every condition × scorer × metric, per-seed d's as
  dots (``forest-<scorer>.png``, one per scorer, when there are more than
  :data:`MAX_FOREST_ROWS` comparisons);
- ``dist-<scorer>.png``: score distributions per condition, one small panel per metric
  (at most :data:`MAX_PANELS`; targets and coherence first, then by |d|);
- ``dose-<group>.png``: for each sweep group, the trait deltas and coherence delta
  against the coefficient.

Figures this module wrote before and no longer makes are removed; other files in the
folder are left alone. A figure that fails to draw becomes a note in the report, never an
exception (its error is logged).

Drawing is the slowest part of a report, and a re-run that changed nothing must not pay
for it: ``figures.json`` in the folder records the figures drawn and the key of what they
were drawn from (the analysis, the stored spec, the scores' bytes, the link, the drawing
code and matplotlib's version). While that key is unchanged and the files are there, the
figures are reused as they are.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

from harness.core.files import file_sha256, write_json_atomic
from harness.core.ids import content_id
from harness.report import focus, plots
from harness.report.data import RunData, StoredRecords
from harness.report.focus import (
    condition_infos,
    dose_plans,
    is_coherence,
    is_target,
    metric_order,
)
from harness.stats import finite_or_none

log = logging.getLogger(__name__)

__all__ = ["MAX_FOREST_ROWS", "MAX_PANELS", "FigureRef", "asset_dir", "make_figures", "slug"]

MAX_FOREST_ROWS = 48
MAX_PANELS = 12
OWN_PATTERNS = ("forest.png", "forest-*.png", "dist-*.png", "dose-*.png")
CACHE = "figures.json"


@dataclass
class FigureRef:
    """A figure as the report links it."""

    path: str | None
    """Link relative to the report (posix), None when it could not be drawn."""
    title: str
    notes: list[str] = field(default_factory=list)
    """What the figure leaves out and why."""


def asset_dir(report_path: Path) -> Path:
    """``reports/demo.md`` -> ``reports/demo``."""
    return report_path.with_name(report_path.stem)


def slug(name: str) -> str:
    """A file-name-safe version of a scorer or group name (a hash suffix when altered)."""
    clean = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "x"
    if clean != name:
        clean += "-" + hashlib.sha1(name.encode()).hexdigest()[:6]
    return clean


def _draw(
    out: dict[str, FigureRef],
    key: str,
    folder: Path,
    link: str,
    filename: str,
    title: str,
    notes: list[str],
    make: Any,
) -> None:
    try:
        fig, _ = make()
        plots.save_figure(fig, folder / filename)
        out[key] = FigureRef(f"{link}/{filename}", title, notes)
    except Exception as exc:  # a broken figure must not cost the whole report
        log.warning("figure %s could not be drawn: %s", filename, exc, exc_info=True)
        out[key] = FigureRef(None, title, [*notes, f"figure not drawn: {exc}"])


def figures_key(run: RunData, link: str) -> str:
    """Hash of everything the figures are drawn from (see the module docstring)."""
    if isinstance(run.scores, StoredRecords):
        scores = file_sha256(run.scores.path, complete_lines=True)
    else:
        scores = content_id(list(run.scores))
    code = hashlib.sha256()
    for module in (plots, focus):
        code.update(Path(str(module.__file__)).read_bytes())
    code.update(Path(__file__).read_bytes())
    return content_id(
        {
            "analysis": run.analysis,
            "spec": run.spec,
            "scores": scores,
            "name": run.name,
            "link": link,
            "code": code.hexdigest(),
            "matplotlib": matplotlib.__version__,
        },
        length=32,
    )


def _reusable(folder: Path, key: str) -> dict[str, FigureRef] | None:
    """The figures recorded in ``folder`` if they were drawn from ``key`` and are all there."""
    try:
        stored = json.loads((folder / CACHE).read_text(encoding="utf-8"))
        if stored.get("key") != key:
            return None
        refs = {k: FigureRef(**v) for k, v in stored["figures"].items()}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    for ref in refs.values():
        if ref.path is not None and not (folder / Path(ref.path).name).is_file():
            return None
    return refs


def make_figures(run: RunData, folder: Path, link: str) -> dict[str, FigureRef]:
    """Draw every figure of ``run`` into ``folder`` (or reuse them, when drawn from the same
    inputs); ``link`` is the folder as seen from the report. Keys: ``forest`` or
    ``forest:<scorer>``, ``dist:<scorer>``, ``dose:<group>``."""
    key = figures_key(run, link)
    reused = _reusable(folder, key)
    if reused is not None:
        log.info("%s: figures reused (inputs unchanged)", folder)
        return reused
    out: dict[str, FigureRef] = {}
    comps = run.comparisons
    scorers = list(dict.fromkeys(str(c["scorer"]) for c in comps))
    written: set[str] = set()

    def draw(key: str, filename: str, title: str, notes: list[str], make: Any) -> None:
        written.add(filename)
        _draw(out, key, folder, link, filename, title, notes, make)

    # forest
    if comps:
        if len(comps) <= MAX_FOREST_ROWS:
            rows = plots.forest_rows(comps)
            draw(
                "forest",
                "forest.png",
                "Effect sizes (Cohen's d, 95% CI) with per-seed d's",
                _forest_notes(rows),
                lambda rows=rows: plots.forest_figure(rows, f"{run.name}: d vs. baseline"),
            )
        else:
            for s in scorers:
                rows = plots.forest_rows(c for c in comps if c["scorer"] == s)
                draw(
                    f"forest:{s}",
                    f"forest-{slug(s)}.png",
                    f"Effect sizes for {s} (Cohen's d, 95% CI) with per-seed d's",
                    _forest_notes(rows),
                    lambda rows=rows, s=s: plots.forest_figure(rows, f"{run.name}: {s}"),
                )

    # distributions, one figure per scorer
    baseline = str(run.analysis.get("baseline", "baseline"))
    compared = {str(c["condition"]) for c in comps}
    conditions = [baseline] + [
        c for c in run.analysis.get("conditions", []) if c != baseline and c in compared
    ]
    table = run.score_table
    infos = condition_infos(run)
    for s in scorers:
        metrics = metric_order(comps, s)
        if not any((s, m) in table for m in metrics):
            continue
        notes: list[str] = []
        if len(metrics) > MAX_PANELS:
            metrics, dropped = _pick_metrics(run, comps, s, metrics, infos)
            notes.append(
                f"{len(dropped)} metric(s) not shown (smallest effects): " + ", ".join(dropped)
            )
        panels = plots.distribution_panels(table, s, metrics, conditions)
        notes += [f"{p.metric}: {p.note}" for p in panels if p.note]
        draw(
            f"dist:{s}",
            f"dist-{slug(s)}.png",
            f"Score distributions, {s}",
            notes,
            lambda panels=panels, s=s: plots.distribution_figure(panels, f"{run.name}: {s}"),
        )

    # dose-response per sweep group
    for plan in dose_plans(run):
        if not plan.points:
            continue
        traits = [plots.dose_series(comps, plan.points, sc, m) for sc, m in plan.traits]
        coh = plots.dose_series(comps, plan.points, *plan.coherence) if plan.coherence else None
        notes = list(plan.notes)
        for series in [*traits, *([coh] if coh else [])]:
            for sr in series:
                notes += [f"{sr.label}: {why}" for why in sr.skipped]
        if not plan.coherence:
            notes.append("no coherence metric (a `coherence` metric or a fluency scorer)")
        draw(
            f"dose:{plan.group}",
            f"dose-{slug(plan.group)}.png",
            f"Dose–response, {plan.group}",
            notes,
            lambda plan=plan, traits=traits, coh=coh: plots.dose_figure(plan.group, traits, coh),
        )

    _remove_stale(folder, written)
    if out and all(ref.path is not None for ref in out.values()):  # a failure is retried
        write_json_atomic(
            folder / CACHE, {"key": key, "figures": {k: asdict(v) for k, v in out.items()}}
        )
    return out


def _forest_notes(rows: list[plots.ForestRow]) -> list[str]:
    return [f"`{r.label}` · {r.group}: {r.note}" for r in rows if r.note]


def _pick_metrics(
    run: RunData, comps: list[dict[str, Any]], scorer: str, metrics: list[str], infos: Any
) -> tuple[list[str], list[str]]:
    """At most MAX_PANELS metrics: targets and coherence first, then by largest |d|."""
    score: dict[str, tuple[int, float]] = {m: (1, 0.0) for m in metrics}
    for c in comps:
        if c["scorer"] != scorer:
            continue
        m = str(c["metric"])
        first = 0 if is_target(run, c, infos) or is_coherence(run, scorer, m) else 1
        d = finite_or_none(c.get("cohens_d"))
        old = score[m]
        score[m] = (min(old[0], first), max(old[1], abs(d) if d is not None else 0.0))
    ranked = sorted(metrics, key=lambda m: (score[m][0], -score[m][1]))
    keep = set(ranked[:MAX_PANELS])
    return [m for m in metrics if m in keep], [m for m in metrics if m not in keep]


def _remove_stale(folder: Path, written: set[str]) -> None:
    if not folder.is_dir():
        return
    for pattern in OWN_PATTERNS:
        for f in folder.glob(pattern):
            if f.name not in written and f.is_file():
                f.unlink()
