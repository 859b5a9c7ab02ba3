"""Render the markdown report from a run directory's records alone (no model needed).

The report is a list of sections, each a function from the loaded run to markdown; a
section with nothing to say returns an empty string. Numbers that could not be computed
print as "n/a" and their reasons are listed, never as NaN.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from harness.records import JsonlStore, utc_now
from harness.report.agreement import section_agreement
from harness.report.coherence import section_coherence


@dataclass
class RunData:
    """Everything a report section may read, loaded once from the run directory."""

    run_dir: Path
    analysis: dict[str, Any]
    spec: dict[str, Any] | None = None
    manifest: dict[str, Any] | None = None
    generations: list[dict[str, Any]] = field(default_factory=list)
    report_path: Path | None = None
    scores: list[dict[str, Any]] = field(default_factory=list)
    """scores.jsonl records (one per text x metric); empty when the file is absent."""
    figures: dict[str, Any] = field(default_factory=dict)
    """Figures written next to the report (harness.report.figures.FigureRef by key:
    ``forest``, ``dist:<scorer>``, ``dose:<group>``); empty when rendering without files."""

    @property
    def name(self) -> str:
        if self.spec:
            return str(self.spec["spec"]["name"])
        return self.run_dir.name

    @property
    def comparisons(self) -> list[dict[str, Any]]:
        return list(self.analysis.get("comparisons", []))

    @cached_property
    def score_table(self) -> dict[tuple[str, str], dict[str, dict[tuple[str, int], float]]]:
        """The scores as (scorer, metric) -> condition -> (prompt_id, seed) -> value (NaN
        for null), restricted to the analysed conditions (harness.analysis.score_table)."""
        from harness.analysis import score_table

        keep = set(self.analysis.get("conditions") or [])
        return score_table(r for r in self.scores if not keep or r.get("condition") in keep)


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def load_run(run_dir: Path) -> RunData:
    analysis = _read_json(run_dir / "analysis.json")
    if analysis is None:
        raise FileNotFoundError(
            f"{run_dir}: no analysis.json; run `steer-harness analyze {run_dir}`"
        )
    gens_path = run_dir / "generations.jsonl"
    gens = JsonlStore(gens_path).read() if gens_path.exists() else []
    scores_path = run_dir / "scores.jsonl"
    return RunData(
        run_dir,
        analysis,
        _read_json(run_dir / "spec.json"),
        _read_json(run_dir / "manifest.json"),
        gens,
        scores=JsonlStore(scores_path).read() if scores_path.exists() else [],
    )


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        text = f"{value:.{digits}f}"
        return text[1:] if text.startswith("-") and float(text) == 0 else text
    return str(value)


def fmt_p(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def cell(text: str, limit: int | None = None) -> str:
    """Text made safe for one markdown table cell."""
    if limit is not None and len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return (
        text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", "").replace("\n", "<br>")
        or " "
    )


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def figure_md(ref: Any) -> str:
    """A figure linked in place (``ref``: harness.report.figures.FigureRef), with the notes on
    what it leaves out; a figure that could not be drawn is named with the reason."""
    lines = [f"![{ref.title}]({ref.path})" if ref.path else f"*{ref.title}: not drawn.*"]
    if ref.notes:
        lines += ["", "Not drawn or left out: " + "; ".join(ref.notes) + "."]
    return "\n".join(lines)


def by_scorer(
    run: RunData,
    comps: Sequence[Mapping[str, Any]],
    header: Sequence[str],
    rows: Callable[[Sequence[Mapping[str, Any]]], list[list[str]]],
    after: Callable[[str], str] | None = None,
) -> list[str]:
    """One table for a single scorer; with several, one ``### scorer`` table each (so a
    report with many metrics stays readable). ``after(scorer)`` adds text below a table."""
    scorers = list(dict.fromkeys(str(c["scorer"]) for c in comps))
    if len(scorers) <= 1:
        out = [table(header, rows(comps))]
        extra = after(scorers[0]) if after and scorers else ""
        return out + (["", extra] if extra else [])
    out = []
    for s in scorers:
        out += ["", f"### {s}", "", table(header, rows([c for c in comps if c["scorer"] == s]))]
        extra = after(s) if after else ""
        if extra:
            out += ["", extra]
    return out[1:]


def section_header(run: RunData) -> str:
    spec = run.spec["spec"] if run.spec else {}
    lines = [f"# steer-harness report: {run.name}", ""]
    if spec.get("description"):
        lines += [spec["description"], ""]
    lines.append(
        f"Rendered {utc_now()} from the records in `{run.run_dir}`; re-render without the "
        f"model with `steer-harness report {run.run_dir}`."
    )
    return "\n".join(lines)


def _params_summary(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={json.dumps(v, sort_keys=True)}" for k, v in params.items()) or "—"


def section_setup(run: RunData) -> str:
    if not run.spec:
        return "## Setup\n\nNo spec.json in the run directory: scores were analysed as given."
    spec = run.spec["spec"]
    gen = spec["generation"]
    model = spec["model"]
    prompts = spec["prompts"]
    n_prompts = len({g["prompt_id"] for g in run.generations}) or "?"
    decoding = (
        f"sampling, temperature {gen['temperature']}, top-p {gen['top_p']}, top-k {gen['top_k']}"
        if gen["sampling"]
        else "greedy"
    )
    source = prompts.get("file") or f"{prompts.get('dataset')} [{prompts.get('split')}]"
    rows = [
        ["model", f"`{model['id']}` (chat template: {model['chat_template']})"],
        ["prompts", f"{n_prompts} from `{Path(str(source)).name}`"],
        ["seeds", ", ".join(map(str, gen["seeds"]))],
        ["decoding", f"{decoding}, {gen['max_new_tokens']} new tokens at most"],
        ["baseline", f"`{spec['baseline']['name']}` (method `{spec['baseline']['method']}`)"],
    ]
    cond_rows = [
        [f"`{c['name']}`", f"`{c['method']}`", cell(_params_summary(c["params"]), 300)]
        for c in spec["conditions"]
    ]
    scorer_rows = []
    described = (run.manifest or {}).get("scorers", {})
    for s in spec["scorers"]:
        label = s.get("name") or s["type"]
        d = described.get(label, {})
        metrics = ", ".join(d.get("metrics", [])) or "?"
        scorer_rows.append(
            [f"`{label}`", f"`{s['type']}`", metrics, cell(_params_summary(s["params"]))]
        )
    notices = [d["notice"] for d in described.values() if d.get("notice")]
    parts = [
        "## Setup",
        "",
        table(["", ""], rows),
        "",
        "Conditions (each compared with the baseline on the same prompts and seeds):",
        "",
        table(["condition", "method", "parameters"], cond_rows),
        "",
        "Scorers:",
        "",
        table(["scorer", "type", "metrics", "parameters"], scorer_rows),
    ]
    if notices:
        parts += ["", *[f"> **Licence notice.** {n}" for n in sorted(set(notices))]]
    return "\n".join(parts)


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


def _pick_samples(run: RunData, condition: str, baseline: str, k: int) -> list[tuple[dict, dict]]:
    """The same (prompt, seed) keys for every condition: prompt i shown with seed i mod S."""
    by_key = {(g["condition"], g["prompt_id"], g["seed"]): g for g in run.generations}
    prompt_ids = list(dict.fromkeys(g["prompt_id"] for g in run.generations))
    seeds = sorted({g["seed"] for g in run.generations})
    out: list[tuple[dict, dict]] = []
    for i, pid in enumerate(prompt_ids):
        if len(out) >= k:
            break
        seed = seeds[i % len(seeds)]
        base = by_key.get((baseline, pid, seed))
        steered = by_key.get((condition, pid, seed))
        if base and steered:
            out.append((base, steered))
    return out


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
    for cond in conditions:
        samples = _pick_samples(run, cond, baseline, k)
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


def section_manifest(run: RunData) -> str:
    m = run.manifest
    if not m:
        return ""
    model = m.get("model", {})
    sessions = m.get("sessions", [])
    rows = [["model", f"`{model.get('id', '?')}`"]]
    for fname, digest in (model.get("files") or {}).items():
        rows.append(["weights", f"`{fname}` sha256 `{digest[:16]}…`"])
    if model.get("commit"):
        rows.append(["revision", f"`{model['commit']}`"])
    rows += [["device", str(model.get("device", "?"))], ["dtype", str(model.get("dtype", "?"))]]
    last = sessions[-1] if sessions else {}
    for name, ver in (last.get("packages") or {}).items():
        if ver:
            rows.append([name, ver])
    rows.append(["python", str(last.get("python", "?"))])
    sess_rows = [
        [s.get("command", ""), s.get("started", ""), s.get("finished") or "", s.get("status", "")]
        for s in sessions
    ]
    cond = m.get("conditions", {})
    cond_rows = [
        [
            f"`{name}`",
            cell(
                ", ".join(f"layer {k}: {v:.2f}" for k, v in info.get("vector_norms", {}).items())
                or "—"
            ),
        ]
        for name, info in cond.items()
        if info.get("vector_norms")
    ]
    parts = [
        "## Manifest",
        "",
        table(["", ""], rows),
        "",
        "Sessions:",
        "",
        table(["command", "started", "finished", "status"], sess_rows),
    ]
    if cond_rows:
        parts += [
            "",
            "Steering vectors (norm per layer):",
            "",
            table(["condition", "norms"], cond_rows),
        ]
    return "\n".join(parts)


Section = Callable[[RunData], str]

# Section modules that import RunData, fmt, table ... from this module at their top are
# imported here, after those definitions (harness/report/__init__.py imports this module
# first, so either import order works).
from harness.report.search import section_search, section_steerability  # noqa: E402
from harness.report.sections import (  # noqa: E402
    section_dose_response,
    section_power,
    section_robustness,
    section_summary,
    section_verdicts,
)

SECTIONS: list[Section] = [
    section_header,
    section_summary,
    section_setup,
    section_results,
    section_coherence,
    section_verdicts,
    section_power,
    section_robustness,
    section_dose_response,
    section_steerability,
    section_search,
    section_seeds,
    section_agreement,
    section_samples,
    section_notes,
    section_manifest,
]


def render(run: RunData, sections: Sequence[Section] = SECTIONS) -> str:
    parts = [s(run) for s in sections]
    return "\n\n".join(p for p in parts if p.strip()) + "\n"


def write_report(run_dir: Path, out_path: Path) -> Path:
    """Render the report to ``out_path`` and its figures to the folder of the same name
    next to it (``reports/demo.md`` -> ``reports/demo/forest.png``, linked relatively)."""
    from harness.report.figures import asset_dir, make_figures

    run = load_run(run_dir)
    run.report_path = out_path
    folder = asset_dir(out_path)
    run.figures = make_figures(run, folder, folder.name)
    text = render(run)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out_path)
    return out_path
