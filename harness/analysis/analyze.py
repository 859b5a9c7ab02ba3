"""scores.jsonl -> comparisons against the baseline -> analysis.json.

A folder holding only a ``scores.jsonl`` is enough: each record needs ``condition``,
``prompt_id``, ``seed``, ``scorer``, ``metric`` and ``value`` (a number or null), so
scores made by other tools can be analysed too. Pairs are matched on (prompt_id, seed);
every statistic uses complete pairs only (see :mod:`harness.stats` for the definitions).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from harness.analysis.agreement import agreement
from harness.analysis.coherence import coherence_summary
from harness.analysis.steerability import steerability
from harness.analysis.table import AnalysisInput, score_table
from harness.core.artifacts import AnalysisDoc, ConditionInfo
from harness.core.errors import AnalysisError
from harness.core.files import write_json_atomic
from harness.core.ids import utc_now
from harness.core.registry import closest
from harness.core.rundir import RunDir
from harness.core.store import FOREIGN_SCORE_CHECKS, JsonlStore
from harness.stats import compare_paired, finalize

__all__ = ["EXTRAS", "AnalysisError", "analyze_records", "analyze_run_dir"]

REQUIRED = ("condition", "prompt_id", "seed", "scorer", "metric", "value")


# Further analyses, each adding one top-level key to analysis.json: (key, function).
# A function returns a JSON-ready value (no NaN) and must not raise on degenerate data.
EXTRAS: list[tuple[str, Callable[[AnalysisInput], Any]]] = [
    ("agreement", agreement),
    ("steerability", steerability),
    ("coherence", coherence_summary),
]


def _ordered_unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def validate_records(records: Sequence[Mapping[str, Any]], source: str) -> None:
    for i, rec in enumerate(records, start=1):
        missing = [k for k in REQUIRED if k not in rec]
        if missing:
            raise AnalysisError(
                f"{source}: record {i} lacks fields {missing}; each score record "
                f"needs {', '.join(REQUIRED)}"
            )


def analyze_records(
    records: Sequence[Mapping[str, Any]],
    baseline: str = "baseline",
    *,
    n_boot: int = 2000,
    boot_seed: int = 0,
    condition_order: list[str] | None = None,
    source: str = "scores",
    condition_info: Mapping[str, ConditionInfo] | None = None,
    options: dict[str, Any] | None = None,
) -> AnalysisDoc:
    """One comparison per (condition, scorer, metric) against ``baseline``, plus EXTRAS."""
    validate_records(records, source)
    conditions = condition_order or _ordered_unique(str(r["condition"]) for r in records)
    if baseline not in conditions:
        hint = closest(baseline, conditions)
        raise AnalysisError(
            f"{source}: no baseline condition '{baseline}' among {conditions}"
            + (f"; did you mean '{hint}'?" if hint else "")
            + " (set --baseline NAME)"
        )
    table = score_table(records)
    comparisons = []
    for (scorer, metric), by_condition in table.items():
        base = by_condition.get(baseline, {})
        for cond in conditions:
            if cond == baseline or cond not in by_condition:
                continue
            steered = by_condition[cond]
            keys = sorted(set(base) | set(steered))
            comparisons.append(
                compare_paired(
                    np.array([base.get(k, math.nan) for k in keys], dtype=float),
                    np.array([steered.get(k, math.nan) for k in keys], dtype=float),
                    [k[0] for k in keys],
                    [k[1] for k in keys],
                    condition=cond,
                    baseline_name=baseline,
                    scorer=scorer,
                    metric=metric,
                    n_boot=n_boot,
                    boot_seed=boot_seed,
                )
            )
    result: dict[str, Any] = {
        "created": utc_now(),
        "baseline": baseline,
        "conditions": conditions,
        "condition_info": dict(condition_info or {}),
        "comparisons": finalize(comparisons),
    }
    inp = AnalysisInput(records, baseline, conditions, condition_info or {}, options or {}, table)
    for name, fn in EXTRAS:
        result[name] = fn(inp)
    return result  # type: ignore[return-value]


def analyze_run_dir(
    run: RunDir,
    baseline: str = "baseline",
    records: Sequence[Mapping[str, Any]] | None = None,
    *,
    n_boot: int = 2000,
    boot_seed: int = 0,
    condition_order: list[str] | None = None,
    condition_info: Mapping[str, ConditionInfo] | None = None,
    options: dict[str, Any] | None = None,
    key: str | None = None,
) -> AnalysisDoc:
    """Analyse a run directory's scores and store ``analysis.json`` next to them (with
    ``key``, the hash of its inputs, when the caller keys it: harness.run.runner)."""
    path = run.scores
    if records is None:
        if not path.exists():
            raise AnalysisError(f"{run}: no {path.name}; run the score stage first")
        records = JsonlStore(path, FOREIGN_SCORE_CHECKS, finite=True).read()
    result = analyze_records(
        records,
        baseline,
        n_boot=n_boot,
        boot_seed=boot_seed,
        condition_order=condition_order,
        source=str(path),
        condition_info=condition_info,
        options=options,
    )
    if key is not None:
        result["key"] = key
    write_json_atomic(run.analysis, result)
    return result
