"""The markdown (and JSON) of a scorer validation (``steer-harness validate-scorer``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.core.files import write_text_atomic
from harness.report.format import fmt


def _f(value: Any) -> str:
    return fmt(value, 3)


def _ci(stat: dict[str, Any]) -> str:
    text = _f(stat.get("value"))
    if stat.get("ci_low") is not None:
        text += f" [{_f(stat['ci_low'])}, {_f(stat['ci_high'])}]"
    return text


def render_markdown(result: dict[str, Any]) -> str:
    sc = result["scorer"]
    boot = result["bootstrap"]
    lines = [
        f"# Scorer validation: {sc['name']} on {Path(result['data']).name}",
        "",
        f"Scorer `{sc['type']}` from {sc['source']}; params "
        f"`{json.dumps(sc['params'], sort_keys=True)}`. {result['n_scored']} of "
        f"{result['n_texts']} texts scored"
        + (
            " (left out: "
            + "; ".join(f"{k}: {v}" for k, v in result["unscored_reasons"].items())
            + ")"
            if result["n_unscored"]
            else ""
        )
        + f". Intervals: {int(boot['level'] * 100)}% percentile bootstrap over texts, "
        f"{boot['resamples']} resamples, seed {boot['seed']}. Definitions: "
        "`harness/validate/`.",
        "",
    ]
    if result["mode"] == "labels":
        none = result.get("none_label")
        lines += [
            "| accuracy [95% CI] | macro-F1 [95% CI] |",
            "|---|---|",
            f"| {_ci(result['accuracy'])} | {_ci(result['macro_f1'])} |",
            "",
            "| label | gold | predicted | precision | recall | F1 | AUROC [95% CI] |",
            "|---|---|---|---|---|---|---|",
        ]
        for lab, e in result["per_label"].items():
            lines.append(
                f"| {lab}{' (none label)' if lab == none else ''} | {e['n_gold']} | "
                f"{e['n_pred']} | {_f(e['precision'])} | {_f(e['recall'])} | {_f(e['f1'])} | "
                f"{_ci(e['auroc'])} |"
            )
        labels = result["confusion"]["labels"]
        lines += [
            "",
            "Confusion matrix (rows: gold, columns: predicted):",
            "",
            "| gold \\ predicted | " + " | ".join(labels) + " |",
            "|---|" + "---|" * len(labels),
        ]
        for lab, row in zip(labels, result["confusion"]["matrix"], strict=True):
            lines.append(f"| {lab} | " + " | ".join(str(v) for v in row) + " |")
        if none:
            lines += [
                "",
                f"`{none}` has no scorer metric: it is predicted when every other label "
                "scores <= 0.",
            ]
    else:
        lines += [
            f"Metric `{result['metric']}` against the gold rating:",
            "",
            "| n | Spearman ρ [95% CI] | Pearson r [95% CI] |",
            "|---|---|---|",
            f"| {result['n_scored']} | {_ci(result['spearman'])} | {_ci(result['pearson'])} |",
        ]
    return "\n".join(lines) + "\n"


def write_outputs(result: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """``out`` (a .md or .json suffix is dropped) -> out.json and out.md, parents created."""
    if out.suffix.lower() in (".md", ".json"):
        out = out.with_suffix("")
    out.parent.mkdir(parents=True, exist_ok=True)
    json_path = out.with_name(out.name + ".json")
    md_path = out.with_name(out.name + ".md")
    write_text_atomic(json_path, json.dumps(result, indent=2, allow_nan=False) + "\n")
    write_text_atomic(md_path, render_markdown(result))
    return json_path, md_path
