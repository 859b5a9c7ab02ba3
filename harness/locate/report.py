"""Rendering a localisation: a markdown table per component, one figure with a panel per
component, and the JSON document, each written atomically."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from harness.config.vectors import EMBEDDING
from harness.core.files import write_json_atomic, write_text_atomic
from harness.report.plots import save_figure

COLUMNS = (
    "| layer | probe accuracy | attribution ± SE | exact patching ± SE | steering Δ ± SE | rank |"
)
CLASS_COLUMNS = "| layer | probe accuracy | attribution ± SE | exact effect ± SE | \\|v\\| | rank |"


def _num(x: float | None, se: float | None = None, digits: int = 3) -> str:
    if x is None:
        return "–"
    text = f"{x:.{digits}g}" if abs(x) < 1e-3 and x != 0 else f"{x:.{digits}f}"
    if se is not None:
        text += f" ± {se:.{digits}f}" if abs(se) >= 1e-3 or se == 0 else f" ± {se:.1e}"
    return text


def _or(x: float | None, default: float) -> float:
    return default if x is None else x


def _component_sites(doc: dict[str, Any], component: str) -> list[dict[str, Any]]:
    return [s for s in doc["sites"] if s["component"] == component]


def is_classes(doc: dict[str, Any]) -> bool:
    """A classifier's localisation (:mod:`harness.locate.classes`), not a pair set's."""
    return doc.get("kind") == "classes"


def _classes_header(doc: dict[str, Any]) -> list[str]:
    m, c = doc["metric"], doc["classes"]
    return [
        f"# Where to steer: {doc['model']['id']}, {c['positive']} vs {c['negative']}",
        "",
        f"- texts: `{c['source']}` ({c['n_positive']} labelled {c['positive']}, "
        f"{c['n_negative']} labelled {c['negative']}), hidden states mean-pooled over tokens",
        f"- metric M(x) = {m['definition']}; the vector at each layer: {m['vector']}",
        f"- mean M over {c['positive']} texts {_num(m['mean_positive'])}, over "
        f"{c['negative']} texts {_num(m['mean_negative'])}; difference "
        f"{_num(m['total_effect'], m['total_effect_se'])} (± SE)",
        f"- attribution: Σ_t ∇_h M · v on the {c['negative']} texts (first order); exact: "
        f"M with v added − M without, on the same texts (mean ± SE over texts)",
        f"- probe: logistic regression, {doc['folds']}-fold cross-validation stratified by "
        f"class (seed {doc['seed']})",
    ]


def _label(layer: int) -> str:
    return "embedding" if layer == EMBEDDING else str(layer)


def render_markdown(doc: dict[str, Any], figure_name: str | None = None) -> str:
    if is_classes(doc):
        return _render(doc, _classes_header(doc), figure_name)
    m = doc["metric"]
    lines = [
        f"# Where to steer: {doc['model']['id']} on {Path(doc['pairs']['source']).stem}",
        "",
        f"- pairs: `{doc['pairs']['source']}` ({doc['pairs']['n']} pairs), "
        f"aggregate `{doc['aggregate']}`, template `{doc['template']}`",
        f"- trait metric M(x) = {m['definition']}",
        f"- mean M over positive texts {_num(m['mean_positive'])}, over negative texts "
        f"{_num(m['mean_negative'])}; total effect M(pos) − M(neg) = "
        f"{_num(m['total_effect'], m['total_effect_se'])} (mean ± SE over pairs)",
        f"- probe: logistic regression, {doc['folds']}-fold stratified cross-validation "
        f"grouped by pair (seed {doc['seed']})",
    ]
    if doc["steer"]:
        st = doc["steer"]
        lines.append(
            f"- steering Δ: M steered − unsteered at coefficient {st['coefficient']:g} × "
            f"typical norm on {st['n_prompts']} prompts of `{st['prompts']}`"
        )
    return _render(doc, lines, figure_name)


def _render(doc: dict[str, Any], lines: list[str], figure_name: str | None) -> str:
    """The header's lines, then the top layers, the causal check and the tables."""
    classes = is_classes(doc)
    lines = [*lines, "", "## Top layers by attribution", ""]
    for component, top in doc["top_k"].items():
        lines.append(f"- {component}: {', '.join(_label(i) for i in top) or '–'}")
    check = doc["check"]
    pooled = check["pooled"]
    rho = pooled["spearman"]
    what = "The exact effect of adding v at" if classes else "Exact activation patching of"
    lines += [
        "",
        "## Causal check",
        "",
        (
            f"{what} {pooled['n']} site(s) (the top "
            f"{check['per_component_top']} per component by attribution, among the sites "
            "M depends on): Spearman's ρ "
            "between attribution and exact effect = "
            + (_num(rho) if rho is not None else f"– ({pooled.get('reason', '')})")
            + "."
        )
        if pooled["n"]
        else "Skipped (`--check 0`).",
        "",
    ]
    for component, r in check["per_component"].items():
        if r["n"]:
            value = _num(r["spearman"]) if r["spearman"] is not None else f"– ({r['reason']})"
            lines.append(f"- {component}: ρ = {value} over {r['n']} site(s)")
    for component in doc["components"]:
        sites = _component_sites(doc, component)
        columns = CLASS_COLUMNS if classes else COLUMNS
        lines += ["", f"## {component}", "", columns, "|---:|---:|---:|---:|---:|---:|"]
        for s in sites:
            last = (
                _num(s.get("vector_norm"))
                if classes
                else _num(s["steer_delta"], s["steer_delta_se"])
            )
            lines.append(
                f"| {_label(s['layer'])} | {_num(s['probe_accuracy'])} | "
                f"{_num(s['attribution'], s['attribution_se'])} | "
                f"{_num(s['exact'], s['exact_se'])} | {last} | {s['rank']} |"
            )
    if figure_name:
        lines += ["", f"![probe accuracy and attribution per layer]({figure_name})"]
    lines += [
        "",
        "Attribution is a first-order approximation of the exact effect (gradient × "
        "activation difference); trust its ranking as far as the causal check supports it.",
        "",
    ]
    return "\n".join(lines)


def figure(doc: dict[str, Any]) -> Figure:
    """A panel per component: probe accuracy (left axis) and attribution (bars, right
    axis) per layer, exact-patching effects of the checked layers as crosses."""
    components: Sequence[str] = doc["components"]
    fig = Figure(figsize=(7.5, 2.6 * len(components) + 0.4), layout="constrained")
    axes = fig.subplots(len(components), 1, squeeze=False)[:, 0]
    for ax, component in zip(axes, components, strict=True):
        sites = _component_sites(doc, component)
        layers = [s["layer"] for s in sites]
        acc = [_or(s["probe_accuracy"], float("nan")) for s in sites]
        attr = [_or(s["attribution"], 0.0) for s in sites]
        right = ax.twinx()
        right.bar(layers, attr, color="tab:orange", alpha=0.45, label="attribution")
        right.axhline(0.0, color="grey", lw=0.6)
        exact = [(s["layer"], s["exact"]) for s in sites if s["exact"] is not None]
        if exact:
            right.scatter(
                [e[0] for e in exact],
                [e[1] for e in exact],
                marker="x",
                color="tab:red",
                zorder=3,
                label="exact effect" if is_classes(doc) else "exact patching",
            )
        right.set_ylabel("Δ class-logit gap" if is_classes(doc) else "Δ trait metric")
        ax.plot(layers, acc, "o-", color="tab:blue", ms=3, label="probe accuracy")
        ax.set_ylim(0.0, 1.05)
        ax.set_ylabel("probe accuracy")
        ax.set_zorder(right.get_zorder() + 1)
        ax.patch.set_visible(False)
        ax.set_title(component, fontsize=10)
        handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
        ax.legend(handles=handles, fontsize=7, loc="lower right")
    layers = sorted({s["layer"] for s in doc["sites"]})
    for ax in axes:
        if EMBEDDING in layers:  # "emb" at -1, then the blocks
            ax.set_xticks(layers, ["emb" if i == EMBEDDING else str(i) for i in layers])
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if is_classes(doc):
        axes[-1].set_xlabel("layer (encoder block output index; emb: the embedding output)")
    else:
        axes[-1].set_xlabel("layer (decoder block output index)")
    return fig


def write_outputs(doc: dict[str, Any], out: Path) -> tuple[Path, Path, Path]:
    """``out`` without suffix -> out.json, out.md, out.png (each atomic). The JSON comes
    last: where it is a cache (a spec's ``locate:`` layers), its presence means all three
    were written."""
    out = Path(out)
    json_path = out.with_name(out.name + ".json")
    md_path = out.with_name(out.name + ".md")
    png_path = out.with_name(out.name + ".png")
    fig = figure(doc)
    save_figure(fig, png_path)
    write_text_atomic(md_path, render_markdown(doc, png_path.name))
    write_json_atomic(json_path, doc)
    return json_path, md_path, png_path
