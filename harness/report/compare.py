"""``steer-harness compare RUN_DIR...``: several runs or methods side by side.

One leaderboard per scorer/metric with a row per (run, condition), sorted by d, and one
combined forest plot. Numbers from runs that differ in model, prompts, seeds, decoding,
baseline or scorer settings are not comparable; every such difference is listed at the
top of the report. Reads stored records only (analysis.json, spec.json,
generations.jsonl); no model is loaded.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.artifacts import StoredAnalysis, StoredSpec, read_artifact
from harness.core.files import write_text_atomic
from harness.core.ids import utc_now
from harness.core.rundir import RunDir
from harness.core.store import GENERATION_CHECKS, JsonlStore
from harness.report import plots
from harness.report.figures import FigureRef, asset_dir, slug
from harness.report.format import cell, figure_md, fmt, fmt_p, table
from harness.stats import finite_or_none

__all__ = [
    "SORTS",
    "BoardRow",
    "RunEntry",
    "comparability_warnings",
    "leaderboards",
    "load_entries",
    "render_compare",
    "write_compare",
]

SORTS = ("d", "abs-d", "input")
MAX_FOREST_ROWS = 60


@dataclass
class RunEntry:
    label: str
    run_dir: Path
    analysis: dict[str, Any]
    spec: dict[str, Any] | None
    """spec.json's ``spec`` object, None when the run has no spec.json."""
    prompts: dict[str, str] | None
    """prompt_id -> prompt text from generations.jsonl, None without generations."""


def load_entries(run_dirs: Sequence[Path]) -> list[RunEntry]:
    """Load each run's stored records (a directory given twice once); labels are spec
    names, made unique by the path."""
    entries = []
    seen: set[Path] = set()
    for d in run_dirs:
        d = Path(d)
        if d.resolve() in seen:
            continue
        seen.add(d.resolve())
        run = RunDir(d)
        if not run.analysis.exists():
            raise FileNotFoundError(f"{d}: no {run.analysis.name}; run `steer-harness analyze {d}`")
        fix = f"run `steer-harness analyze {d}` to write it again"
        analysis = dict(read_artifact(run.analysis, StoredAnalysis, fix, as_stored=True))
        spec = None
        if run.spec.exists():
            fix = "run its spec file again to store it"
            spec = dict(read_artifact(run.spec, StoredSpec, fix, as_stored=True)["spec"])
        prompts = None
        if run.generations.exists():
            prompts = {
                str(g["prompt_id"]): str(g.get("prompt", ""))
                for g in JsonlStore(run.generations, GENERATION_CHECKS).iter_dicts()
            }
        label = str(spec.get("name") or d.name) if spec else d.name
        entries.append(RunEntry(label, d, analysis, spec, prompts or None))
    counts: dict[str, int] = {}
    for e in entries:
        counts[e.label] = counts.get(e.label, 0) + 1
    for e in entries:
        if counts[e.label] > 1:
            e.label = f"{e.label} ({e.run_dir})"
    return entries


# ------------------------------------------------------------------ comparability checks


def _model(spec: Mapping[str, Any]) -> dict[str, Any]:
    m = spec.get("model", {})
    keys = ("id", "revision", "gguf_file", "dtype", "chat_template", "system_prompt")
    return {k: m.get(k) for k in keys}


def _decoding(spec: Mapping[str, Any]) -> dict[str, Any]:
    g = spec.get("generation", {})
    if not g.get("sampling", True):
        return {"sampling": False, "max_new_tokens": g.get("max_new_tokens")}
    keys = ("sampling", "temperature", "top_p", "top_k", "max_new_tokens")
    return {k: g.get(k) for k in keys}


def _seeds(e: RunEntry) -> list[int]:
    if e.spec and e.spec.get("generation", {}).get("seeds") is not None:
        return sorted(int(s) for s in e.spec["generation"]["seeds"])
    return sorted({int(s) for c in e.analysis.get("comparisons", []) for s in c.get("seeds") or []})


def _differs(entries: Sequence[RunEntry], what: str, values: list[Any]) -> str | None:
    if all(v == values[0] for v in values[1:]):
        return None
    if isinstance(values[0], dict):
        keys = [k for k in values[0] if any(v.get(k) != values[0].get(k) for v in values)]
        shown = [
            f"{e.label}: " + ", ".join(f"{k}={json.dumps(v.get(k))}" for k in keys)
            for e, v in zip(entries, values, strict=True)
        ]
    else:
        shown = [f"{e.label}: {v}" for e, v in zip(entries, values, strict=True)]
    return f"**{what} differ** — " + "; ".join(shown)


def comparability_warnings(entries: Sequence[RunEntry]) -> list[str]:
    """Every way the runs differ that makes their numbers incomparable (empty when none)."""
    if len(entries) < 2:
        return []
    out: list[str] = []
    no_spec = [e.label for e in entries if e.spec is None]
    if no_spec:
        out.append(
            f"**no spec.json** for {', '.join(no_spec)}: model, decoding and baseline "
            "cannot be checked"
        )
    with_spec = [e for e in entries if e.spec is not None]
    if len(with_spec) >= 2:
        specs = [e.spec for e in with_spec if e.spec is not None]
        for what, values in (
            ("models", [_model(s) for s in specs]),
            ("decoding settings", [_decoding(s) for s in specs]),
            ("baselines", [s.get("baseline") for s in specs]),
        ):
            msg = _differs(with_spec, what, values)
            if msg:
                out.append(msg)
        scorer_cfg: dict[str, dict[str, Any]] = {}
        for e in with_spec:
            for sc in (e.spec or {}).get("scorers", []):
                label = str(sc.get("name") or sc["type"])
                scorer_cfg.setdefault(label, {})[e.label] = {
                    "type": sc["type"],
                    "params": sc.get("params"),
                }
        for label, by_run in scorer_cfg.items():
            if (
                len(by_run) > 1
                and len({json.dumps(v, sort_keys=True) for v in by_run.values()}) > 1
            ):
                out.append(
                    f"**scorer `{label}` is configured differently** — "
                    + "; ".join(f"{r}: {json.dumps(v, sort_keys=True)}" for r, v in by_run.items())
                )
    msg = _differs(entries, "seeds", [_seeds(e) for e in entries])
    if msg:
        out.append(msg)
    out += _prompt_warnings(entries)
    return out


def _prompt_warnings(entries: Sequence[RunEntry]) -> list[str]:
    known = [e for e in entries if e.prompts is not None]
    out = []
    missing = [e.label for e in entries if e.prompts is None]
    if missing:
        out.append(f"**prompts not checked** for {', '.join(missing)} (no generations.jsonl)")
    if len(known) < 2:
        return out
    ids = [set((e.prompts or {}).keys()) for e in known]
    shared = set.intersection(*ids)
    if any(i != ids[0] for i in ids[1:]):
        out.append(
            "**prompts differ** — "
            + "; ".join(f"{e.label}: {len(i)} prompts" for e, i in zip(known, ids, strict=True))
            + f"; {len(shared)} shared by all"
        )
    changed = [p for p in shared if len({(e.prompts or {})[p] for e in known}) > 1]
    if changed:
        out.append(
            f"**prompt texts differ** for {len(changed)} shared prompt id(s), e.g. "
            f"`{sorted(changed)[0]}`"
        )
    return out


# ---------------------------------------------------------------------------- leaderboard


@dataclass(frozen=True)
class BoardRow:
    run: str
    condition: str
    scorer: str
    metric: str
    n: int
    d: float | None
    ci: tuple[float, float] | None
    seed_sd: float | None
    verdict: str
    comparison: Mapping[str, Any]


def _rows(entries: Iterable[RunEntry], metrics: Sequence[str] | None) -> list[BoardRow]:
    out = []
    for e in entries:
        for c in e.analysis.get("comparisons", []):
            if metrics and str(c["metric"]) not in metrics:
                continue
            d = finite_or_none(c.get("cohens_d"))
            lo, hi = finite_or_none(c.get("d_ci_low")), finite_or_none(c.get("d_ci_high"))
            out.append(
                BoardRow(
                    e.label,
                    str(c["condition"]),
                    str(c["scorer"]),
                    str(c["metric"]),
                    int(c.get("n") or 0),
                    d,
                    (lo, hi) if lo is not None and hi is not None and d is not None else None,
                    finite_or_none(c.get("seed_sd_d")),
                    str(c.get("verdict") or "no verdict"),
                    c,
                )
            )
    return out


def sort_rows(rows: Sequence[BoardRow], by: str = "d") -> list[BoardRow]:
    """``d``: largest d first; ``abs-d``: largest |d| first; ``input``: as given. Rows with an
    undefined d always come last, in input order (the sort is stable)."""
    if by not in SORTS:
        raise ValueError(f"unknown sort {by!r}; choose from {', '.join(SORTS)}")
    if by == "input":
        return list(rows)

    def key(r: BoardRow) -> tuple[int, float]:
        if r.d is None:
            return (1, 0.0)
        return (0, -(abs(r.d) if by == "abs-d" else r.d))

    return sorted(rows, key=key)


def leaderboards(
    entries: Sequence[RunEntry], sort: str = "d", metrics: Sequence[str] | None = None
) -> dict[tuple[str, str], list[BoardRow]]:
    """(scorer, metric) -> its rows over every run and condition, sorted."""
    boards: dict[tuple[str, str], list[BoardRow]] = {}
    for r in _rows(entries, metrics):
        boards.setdefault((r.scorer, r.metric), []).append(r)
    return {k: sort_rows(v, sort) for k, v in boards.items()}


def render_compare(
    entries: Sequence[RunEntry],
    boards: Mapping[tuple[str, str], list[BoardRow]],
    figures: Mapping[str, Any] | None = None,
    sort: str = "d",
) -> str:
    run_rows = []
    for e in entries:
        spec = e.spec or {}
        model = spec.get("model", {}).get("id", "?")
        conds = [c for c in e.analysis.get("conditions", []) if c != e.analysis.get("baseline")]
        run_rows.append(
            [
                e.label,
                f"`{e.run_dir}`",
                f"`{model}`",
                ", ".join(f"`{c}`" for c in conds) or "—",
                str(len(e.prompts)) if e.prompts is not None else "?",
                ", ".join(map(str, _seeds(e))) or "?",
            ]
        )
    warnings = comparability_warnings(entries)
    parts = [
        "# steer-harness comparison: " + ", ".join(e.label for e in entries),
        "",
        f"Rendered {utc_now()} from stored records; re-render with "
        f"`steer-harness compare {' '.join(str(e.run_dir) for e in entries)}`.",
        "",
        table(["run", "directory", "model", "conditions", "prompts", "seeds"], run_rows),
        "",
        "## Comparability",
        "",
    ]
    if warnings:
        parts += [
            "> ⚠ **These runs differ; their effect sizes are not directly comparable.**",
            ">",
            *[f"> - {w}" for w in warnings],
        ]
    elif len(entries) > 1:
        parts.append(
            "The runs share model, decoding settings, baseline, seeds, prompts and scorer "
            "settings: their effect sizes are comparable."
        )
    else:
        parts.append("One run only: nothing to check.")
    parts += [
        "",
        "## Leaderboards",
        "",
        {
            "d": "Sorted by d, largest first",
            "abs-d": "Sorted by |d|, largest first",
            "input": "In the order of the runs given",
        }[sort]
        + "; rows with an undefined d last. d: Cohen's d vs. each run's own baseline with "
        "its 95% CI; seed SD: SD of the per-seed d's; p paired t: the paired t-test's p; "
        "verdicts and Holm adjustments (p Holm) are each run's own (over that run's "
        "comparisons). ⚠: underpowered.",
    ]
    for k, ref in (figures or {}).items():
        if k.startswith("forest"):
            parts += ["", figure_md(ref)]
    if not boards:
        parts += ["", "No comparisons to show."]
    for (scorer, metric), rows in boards.items():
        body = []
        for i, r in enumerate(rows, start=1):
            d = fmt(r.d)
            if r.ci is not None:
                d += f" [{fmt(r.ci[0])}, {fmt(r.ci[1])}]"
            flag = "⚠ " if r.comparison.get("underpowered") else ""
            body.append(
                [
                    str(i),
                    cell(r.run),
                    f"`{r.condition}`",
                    str(r.n),
                    d,
                    fmt(r.seed_sd),
                    fmt_p(r.comparison.get("p_paired_t")),
                    fmt_p(r.comparison.get("p_holm")),
                    flag + cell(r.verdict),
                ]
            )
        header = ["#", "run", "condition", "n", "d [95% CI]", "seed SD", "p paired t", "p Holm"]
        parts += ["", f"### {scorer}/{metric}", "", table([*header, "verdict"], body)]
    return "\n".join(parts) + "\n"


def write_compare(
    run_dirs: Sequence[Path],
    out_path: Path,
    sort: str = "d",
    metrics: Sequence[str] | None = None,
) -> Path:
    """Write the comparison report and its forest plot(s) next to it."""
    entries = load_entries(run_dirs)
    boards = leaderboards(entries, sort, metrics)
    folder = asset_dir(out_path)
    rows = [r for rs in boards.values() for r in rs]
    chunks: list[tuple[str, str, list[BoardRow]]] = []
    if len(rows) <= MAX_FOREST_ROWS:
        chunks.append(("forest", "forest.png", rows))
    else:
        for s in dict.fromkeys(r.scorer for r in rows):
            chunks.append(
                (f"forest:{s}", f"forest-{slug(s)}.png", [r for r in rows if r.scorer == s])
            )
    figures: dict[str, FigureRef] = {}
    for key, filename, chunk in chunks:
        if not chunk:
            continue
        frows = plots.forest_rows([r.comparison for r in chunk], label=_labeller(chunk))
        fig, _ = plots.forest_figure(frows, "d vs. each run's baseline")
        plots.save_figure(fig, folder / filename)
        notes = [f"`{r.label}` · {r.group}: {r.note}" for r in frows if r.note and r.d is None]
        figures[key] = FigureRef(f"{folder.name}/{filename}", "Combined forest plot", notes)
    text = render_compare(entries, boards, figures, sort)
    return write_text_atomic(out_path, text)


def _labeller(rows: Sequence[BoardRow]) -> Callable[[Mapping[str, Any]], str]:
    """Forest row label "run · condition" for each row's comparison."""
    labels = {id(r.comparison): f"{r.run} · {r.condition}" for r in rows}
    return lambda c: labels[id(c)]
