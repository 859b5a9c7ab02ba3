"""The report of a classification task: setup, the classification-shift section and
sample predictions.

The shift section itself (tables, prediction-shift and dose-response figures) is
:func:`harness.report.shift.shift_section`; this module finds its document in
``analysis.json`` (key ``classification_shift``, written by
:mod:`harness.analysis.classified`) and the report's figure folder. The sections of a
generation run (scores, coherence, samples of texts) have nothing to say about a
classifier, so a classification run renders :data:`CLASSIFY_SECTIONS` instead.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, cast

from harness.core.artifacts import ShiftDoc
from harness.report.data import RunData
from harness.report.figures import asset_dir
from harness.report.format import cell, fmt, md_text, table
from harness.report.overview import (
    _params_summary,
    located_lines,
    section_header,
    section_manifest,
    throughput_text,
)
from harness.report.shift import shift_section

KEY = "classification_shift"


def is_classification(run: RunData) -> bool:
    return isinstance(run.analysis.get(KEY), dict)


def section_classification(run: RunData) -> str:
    """The shift section of a classification run ('' for any other run). Rendered without
    a report path (no figure files wanted), its figures go to a temporary folder."""
    doc = run.analysis.get(KEY)
    if not isinstance(doc, dict):
        return ""
    if run.report_path is not None:
        return "\n".join(shift_section(cast(ShiftDoc, doc), asset_dir(run.report_path)))
    with tempfile.TemporaryDirectory() as tmp:
        return "\n".join(shift_section(cast(ShiftDoc, doc), Path(tmp) / "figures"))


def section_classification_setup(run: RunData) -> str:
    """Model, texts, classes, conditions: what was classified and how it was steered."""
    doc: dict[str, Any] = run.analysis.get(KEY) or {}
    spec = run.spec["spec"] if run.spec else {}
    if not spec:
        return ""
    prompts = spec["prompts"]
    source = prompts.get("file") or f"{prompts.get('dataset')} [{prompts.get('split')}]"
    seeds: list[Any] = sorted({int(g["seed"]) for g in run.generations}) or ["?"]
    gold = doc.get("gold_counts") or {}
    rows = [
        ["model", f"`{spec['model']['id']}` (sequence classifier)"],
        ["texts", f"{doc.get('n_texts', '?')} labelled texts from `{Path(str(source)).name}`"],
        ["classes", ", ".join(f"{lab} ({gold.get(lab, 0)})" for lab in doc.get("labels", []))],
        ["target class", f"`{doc['target']}`" if doc.get("target") else "none named"],
        [
            "classified",
            f"once per text and condition (a classifier is deterministic; seed {seeds[0]})",
        ],
        ["baseline", f"`{spec['baseline']['name']}` (the unsteered classifier)"],
    ]
    pace = throughput_text((run.manifest or {}).get("sessions", []))
    if pace:
        rows.append(["throughput", pace.split(",")[0].replace("generation", "classification")])
    cond_rows = [
        [f"`{c['name']}`", f"`{c['method']}`", cell(_params_summary(c["params"]), 300)]
        for c in spec["conditions"]
    ]
    return "\n".join(
        [
            "## Setup",
            "",
            table(["", ""], rows),
            "",
            "Conditions (each classifies the same texts as the baseline):",
            "",
            table(["condition", "method", "parameters"], cond_rows),
            *located_lines(run.analysis.get("condition_info", {})),
        ]
    )


def section_predictions(run: RunData) -> str:
    """Per condition, a few texts whose prediction the steering changed."""
    doc: dict[str, Any] = run.analysis.get(KEY) or {}
    if not doc or not run.spec:
        return ""
    k = int(run.spec["spec"].get("report", {}).get("samples", 3))
    if k <= 0:
        return ""
    baseline, target = doc["baseline"], doc.get("target")
    wanted = {baseline, *doc["conditions"]}
    by: dict[str, dict[str, dict[str, Any]]] = {}
    for g in run.generations:
        if g.get("kind") == "classification" and g["condition"] in wanted:
            by.setdefault(g["condition"], {})[g["prompt_id"]] = g
    base = by.get(baseline, {})
    parts = [
        "## Sample predictions",
        "",
        "Texts whose predicted class changed under a condition (first few in id order)"
        + (
            f"; P({target}): the target class's probability, unsteered → steered."
            if target
            else "."
        ),
    ]
    header = ["text", "gold", "unsteered", "steered", *([f"P({target})"] if target else [])]
    for cond in doc["conditions"]:
        recs = by.get(cond, {})
        changed = [
            p for p in sorted(recs) if p in base and recs[p]["predicted"] != base[p]["predicted"]
        ][:k]
        rows = []
        for p in changed:
            b, s = base[p], recs[p]
            row = [cell(md_text(str(s["prompt"])), 200), str(s.get("gold")), b["predicted"]]
            row.append(s["predicted"])
            if target:
                row.append(f"{fmt(b['probs'].get(target), 3)} → {fmt(s['probs'].get(target), 3)}")
            rows.append(row)
        parts += ["", f"### `{cond}`", ""]
        parts.append(table(header, rows) if rows else "No prediction changed.")
    return "\n".join(parts)


CLASSIFY_SECTIONS = [
    section_header,
    section_classification,
    section_classification_setup,
    section_predictions,
    section_manifest,
]
"""The sections of a classification run's report."""
