"""The report's frame: title, setup (model, prompts, decoding, conditions, scorers) and
the manifest (weights, packages, sessions)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.core.ids import utc_now
from harness.report.data import RunData
from harness.report.format import cell, fmt, fmt_usage, md_text, table


def section_header(run: RunData) -> str:
    spec = run.spec["spec"] if run.spec else {}
    lines = [f"# steer-harness report: {run.name}", ""]
    if spec.get("description"):
        lines += [md_text(str(spec["description"])), ""]
    lines.append(
        f"Rendered {utc_now()} from the records in `{run.run_dir}`; re-render without the "
        f"model with `steer-harness report {run.run_dir}`."
    )
    return "\n".join(lines)


def _params_summary(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={json.dumps(v, sort_keys=True)}" for k, v in params.items()) or "—"


def throughput_text(sessions: list[dict[str, Any]]) -> str:
    """Generation and scoring pace over the sessions that did work (each session's
    throughput in the manifest), e.g. ``generation 3.2 texts/s, 151 new tokens/s; judge
    41 calls/s (alongside generation)``; empty when no session recorded any."""
    texts = tokens = 0
    seconds = 0.0
    scorers: dict[str, dict[str, Any]] = {}
    for s in sessions:
        tp = s.get("throughput") or {}
        for unit in tp.get("generation", []):
            texts += unit["texts"]
            tokens += unit["new_tokens"]
            seconds += unit["seconds"]
        for name, sc in tp.get("scoring", {}).items():
            acc = scorers.setdefault(name, {"texts": 0, "seconds": 0.0, "overlapped": False})
            acc["texts"] += sc["texts"]
            acc["seconds"] += sc["seconds"]
            acc["overlapped"] |= bool(sc.get("overlapped"))
            if "calls" in sc:
                acc["calls"] = acc.get("calls", 0) + sc["calls"]
    parts = []
    if seconds > 0:
        parts.append(
            f"generation {fmt(texts / seconds, 1)} texts/s, {fmt(tokens / seconds, 1)} new tokens/s"
        )
    for name, acc in scorers.items():
        if acc["seconds"] <= 0:
            continue
        unit = "calls" if "calls" in acc else "texts"
        rate = fmt(acc.get("calls", acc["texts"]) / acc["seconds"], 1)
        alongside = " (alongside generation)" if acc["overlapped"] else ""
        parts.append(f"{name} {rate} {unit}/s{alongside}")
    return "; ".join(parts)


def _layer(i: int) -> str:
    # -1 is the embedding output (harness.config.vectors.EMBEDDING), a classifier's
    # candidate in ``locate:classes``.
    return "embedding" if i == -1 else str(i)


def located_lines(info: Mapping[str, Any]) -> list[str]:
    """Where each ``locate:`` reference landed (condition_info's ``located``), so that a
    reader of the Setup table sees the numbers the conditions steered at."""
    items = [
        f"- `{name}`: `{loc['reference']}` → layer{'s' if len(loc['layers']) > 1 else ''} "
        f"{', '.join(map(_layer, loc['layers']))} (top by {loc['ranking']} of the "
        f"{loc['component']}; localisation `{loc['localisation']}`, table beside it as .md)"
        for name, ci in info.items()
        for loc in ci.get("located", [])
    ]
    if not items:
        return []
    head = "Located layers (`steer-harness locate`'s measurements, cached in the run):"
    return ["", head, "", *items]


def section_setup(run: RunData) -> str:
    if not run.spec:
        return "## Setup\n\nNo spec.json in the run directory: scores were analysed as given."
    spec = run.spec["spec"]
    gen = spec["generation"]
    model = spec["model"]
    prompts = spec["prompts"]
    n_prompts = len(run.prompt_order[0]) or "?"
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
    pace = throughput_text((run.manifest or {}).get("sessions", []))
    if pace:
        rows.append(["throughput", pace])
    cond_rows = [
        [f"`{c['name']}`", f"`{c['method']}`", cell(_params_summary(c["params"]), 300)]
        for c in spec["conditions"]
    ]
    located = located_lines(run.analysis.get("condition_info", {}))
    scorer_rows = []
    described = (run.manifest or {}).get("scorers", {})
    for s in spec["scorers"]:
        label = s.get("name") or s["type"]
        d = described.get(label, {})
        metrics = ", ".join(d.get("metrics", [])) or "?"
        scorer_rows.append(
            [f"`{label}`", f"`{s['type']}`", metrics, cell(_params_summary(s["params"]))]
        )
    usage_rows = [
        [f"`{label}`", cell(fmt_usage(d["usage"]))]
        for label, d in described.items()
        if isinstance(d.get("usage"), Mapping)
    ]
    notices = [d["notice"] for d in described.values() if d.get("notice")]
    parts = [
        "## Setup",
        "",
        table(["", ""], rows),
        "",
        "Conditions (each compared with the baseline on the same prompts and seeds):",
        "",
        table(["condition", "method", "parameters"], cond_rows),
        *located,
        "",
        "Scorers:",
        "",
        table(["scorer", "type", "metrics", "parameters"], scorer_rows),
    ]
    if usage_rows:
        prices = sorted(
            {
                str(d["usage"]["price"]["source"])
                for d in described.values()
                if isinstance(d.get("usage"), Mapping) and d["usage"].get("price")
            }
        )
        parts += [
            "",
            "Judge calls (answered by the judge in this run directory's sessions; tokens "
            "from the responses' usage; prices per million tokens from "
            f"{', '.join(prices) or 'no table entry'}):",
            "",
            table(["judge", "calls, tokens and cost"], usage_rows),
        ]
    if notices:
        parts += ["", *[f"> **Licence notice.** {n}" for n in sorted(set(notices))]]
    return "\n".join(parts)


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
