"""A synthetic run directory as the pipeline leaves it, built through the real analysis,
for the report, plot, compare and power tests: degenerate data (all-equal values, < 3
pairs, a seed with one pair, NaN and infinity among the scores, a condition with no
pairs) and sweeps."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from harness.analysis.analyze import analyze_records

PROMPTS = [f"p{i}" for i in range(8)]
SEEDS = [0, 1, 2]


def spec_dict(
    name: str = "synth",
    conditions: list[dict[str, Any]] | None = None,
    scorers: list[dict[str, Any]] | None = None,
    **generation: Any,
) -> dict[str, Any]:
    gen = {
        "max_new_tokens": 16,
        "sampling": True,
        "temperature": 0.7,
        "top_p": 1.0,
        "top_k": 0,
        "batch_size": 4,
        "seeds": SEEDS,
        **generation,
    }
    return {
        "source": "synthetic",
        "spec": {
            "name": name,
            "description": "synthetic run for report tests",
            "model": {"id": "tiny", "chat_template": "auto", "dtype": "auto"},
            "prompts": {"file": "prompts.jsonl", "split": "train"},
            "generation": gen,
            "baseline": {"name": "baseline", "method": "none", "params": {}},
            "conditions": conditions
            or [
                {"name": "fear_act", "method": "activation", "params": {"coefficient": 4.0}},
                {"name": "calm_prompt", "method": "prompt", "params": {"instruction": "calm"}},
                {"name": "empty", "method": "prompt", "params": {"instruction": "x"}},
            ],
            "scorers": scorers
            or [
                {"type": "lexicon", "name": "lex", "params": {}},
                {"type": "llm_judge", "name": "judge", "params": {}},
            ],
            "analysis": {"bootstrap_resamples": 200, "bootstrap_seed": 0},
            "report": {"path": None, "samples": 2, "max_sample_chars": 100},
        },
    }


def degenerate_records() -> list[dict[str, Any]]:
    """Scores for baseline, fear_act, calm_prompt and empty over 8 prompts x 3 seeds.

    lex/fear: a large effect for fear_act; calm_prompt's seed 2 has one pair only.
    lex/joy: small effects. lex/flat: every value 1.0. lex/holes: fear_act has 2 complete
    pairs; calm_prompt has NaN and +-inf among its values. judge/coherence: fear_act lower.
    empty: every value null (no pairs).
    """
    rng = np.random.default_rng(7)
    out: list[dict[str, Any]] = []

    def add(cond: str, scorer: str, metric: str, value: Callable[[str, int], float | None]) -> None:
        for p in PROMPTS:
            for s in SEEDS:
                out.append(
                    {
                        "condition": cond,
                        "prompt_id": p,
                        "seed": s,
                        "scorer": scorer,
                        "metric": metric,
                        "value": value(p, s),
                    }
                )

    shift = {"baseline": 0.0, "fear_act": 1.5, "calm_prompt": 0.3}
    for cond in ("baseline", "fear_act", "calm_prompt"):
        add(
            cond,
            "lex",
            "fear",
            lambda p, s, c=cond: (
                None
                if c == "calm_prompt" and s == 2 and p != "p0"
                else float(rng.normal(shift[c], 1.0))
            ),
        )
        add(cond, "lex", "joy", lambda p, s, c=cond: float(rng.normal(-0.2 * (c != "baseline"), 1)))
        add(cond, "lex", "flat", lambda p, s: 1.0)

        def holes(p: str, s: int, c: str = cond) -> float | None:
            if c == "fear_act":
                return float(rng.normal()) if (p, s) in {("p0", 0), ("p1", 0)} else None
            if c == "calm_prompt" and p == "p1":
                return [math.nan, math.inf, -math.inf][s]
            return float(rng.normal())

        add(cond, "lex", "holes", holes)
        add(
            cond,
            "judge",
            "coherence",
            lambda p, s, c=cond: float(rng.normal(5.0 - 1.0 * (c == "fear_act"), 1.0)),
        )
    for metric in ("fear", "joy", "flat", "holes"):
        add("empty", "lex", metric, lambda p, s: None)
    add("empty", "judge", "coherence", lambda p, s: None)
    return out


def write_scores(path: Path, records: list[dict[str, Any]]) -> None:
    """As a foreign tool might: NaN and Infinity tokens allowed."""
    with path.open("w") as fh:
        for r in records:
            fh.write(json.dumps(r, allow_nan=True) + "\n")


def write_generations(path: Path, conditions: list[str], prompts: list[str] = PROMPTS) -> None:
    with path.open("w") as fh:
        for c in conditions:
            for p in prompts:
                for s in SEEDS:
                    rec = {"condition": c, "prompt_id": p, "seed": s, "prompt": f"prompt {p}"}
                    rec["text"] = f"text of {c} {p} {s}"
                    fh.write(json.dumps(rec) + "\n")


def build_run(
    run_dir: Path,
    records: list[dict[str, Any]] | None = None,
    spec: dict[str, Any] | None = None,
    condition_info: dict[str, Any] | None = None,
    generations: bool = True,
) -> dict[str, Any]:
    """A run directory as the pipeline leaves it: scores.jsonl, analysis.json (from the real
    analysis, 200 bootstrap resamples), spec.json and generations.jsonl."""
    run_dir.mkdir(parents=True, exist_ok=True)
    records = degenerate_records() if records is None else records
    spec = spec_dict() if spec is None else spec
    conditions = ["baseline"] + [c["name"] for c in spec["spec"]["conditions"]]
    analysis = analyze_records(
        records, "baseline", n_boot=200, condition_order=conditions, condition_info=condition_info
    )
    (run_dir / "analysis.json").write_text(json.dumps(analysis, allow_nan=False))
    (run_dir / "spec.json").write_text(json.dumps(spec))
    write_scores(run_dir / "scores.jsonl", records)
    if generations:
        write_generations(run_dir / "generations.jsonl", conditions)
    return analysis


def sweep_records() -> tuple[list[dict[str, Any]], dict[str, Any], list[float]]:
    """fear_sweep at coefficients 0, 2, 4, 8 (layer 3) and 4 (layer 5); fear rises and
    coherence falls with the coefficient; the point at 8 has no coherence pairs and the
    condition `fear_sweep_c16` has no pairs at all."""
    rng = np.random.default_rng(3)
    coefs = [0.0, 2.0, 4.0, 8.0]
    points = [(f"fear_sweep_c{c:g}", c, 3) for c in coefs] + [("fear_sweep_l5", 4.0, 5)]
    points.append(("fear_sweep_c16", 16.0, 3))
    info: dict[str, Any] = {
        name: {
            "method": "activation",
            "sweep": {"group": "fear_sweep", "coefficient": c, "layer": la},
        }
        for name, c, la in points
    }
    out: list[dict[str, Any]] = []
    for cond, coef in [("baseline", 0.0), *[(n, c) for n, c, _ in points]]:
        for p in PROMPTS:
            for s in SEEDS:
                fear = None if cond == "fear_sweep_c16" else float(rng.normal(0.2 * coef, 1))
                coh = (
                    None
                    if cond in ("fear_sweep_c8", "fear_sweep_c16")
                    else float(rng.normal(5 - 0.3 * coef, 1))
                )
                base = {"condition": cond, "prompt_id": p, "seed": s}
                out.append({**base, "scorer": "lex", "metric": "fear", "value": fear})
                out.append({**base, "scorer": "judge", "metric": "coherence", "value": coh})
    return out, info, coefs


NON_NUMBER = re.compile(r"(?<![A-Za-z/])(nan|-?inf|NaN|-?Infinity)(?![A-Za-z])")
"""A NaN or infinity printed as a number, as Python (nan, inf) or JSON (NaN, Infinity)
writes it; the statistics' own notes say "missing/NaN" in words, which is fine."""


def non_numbers(text: str) -> list[str]:
    return NON_NUMBER.findall(text)


def section(text: str, heading: str) -> str:
    start = text.index(f"## {heading}\n")
    nxt = text.find("\n## ", start + 3)
    return text[start : nxt if nxt >= 0 else len(text)]


def comp(analysis: dict[str, Any], cond: str, metric: str) -> dict[str, Any]:
    return next(
        c for c in analysis["comparisons"] if c["condition"] == cond and c["metric"] == metric
    )


# --------------------------------------------------------------------------------- tests
