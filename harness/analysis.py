"""scores.jsonl -> comparisons against the baseline -> analysis.json.

A folder holding only a ``scores.jsonl`` is enough: each record needs ``condition``,
``prompt_id``, ``seed``, ``scorer``, ``metric`` and ``value`` (a number or null), so
scores made by other tools can be analysed too. Pairs are matched on (prompt_id, seed);
every statistic uses complete pairs only (see :mod:`harness.stats` for the definitions).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.agreement import agreement
from harness.coherence import coherence_summary
from harness.records import JsonlStore, utc_now, write_json_atomic
from harness.registry import closest
from harness.stats import compare_paired, finalize
from harness.steerability import steerability

REQUIRED = ("condition", "prompt_id", "seed", "scorer", "metric", "value")


class AnalysisError(ValueError):
    pass


Table = dict[tuple[str, str], dict[str, dict[tuple[str, int], float]]]


def score_table(records: Iterable[Mapping[str, Any]]) -> Table:
    """(scorer, metric) -> condition -> (prompt_id, seed) -> value (NaN for null).

    The one place where records become pairable values; the last record of a key wins."""
    table: Table = {}
    for r in records:
        cell = table.setdefault((str(r["scorer"]), str(r["metric"])), {}).setdefault(
            str(r["condition"]), {}
        )
        cell[(str(r["prompt_id"]), int(r["seed"]))] = _as_float(r["value"])
    return table


@dataclass(frozen=True)
class AnalysisInput:
    """What every analysis (the comparisons and each extra) is computed from."""

    records: Sequence[Mapping[str, Any]]
    baseline: str
    conditions: list[str]
    condition_info: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per condition: method, params and, for sweep points, the sweep coordinates."""
    options: dict[str, Any] = field(default_factory=dict)
    """The spec's ``analysis`` section (defaults when analysing foreign scores)."""
    table: Table = field(default_factory=dict)
    """:func:`score_table` of the records."""


# Further analyses, each adding one top-level key to analysis.json: (key, function).
# A function returns a JSON-ready value (no NaN) and must not raise on degenerate data.
EXTRAS: list[tuple[str, Callable[[AnalysisInput], Any]]] = [
    ("agreement", agreement),
    ("steerability", steerability),
    ("coherence", coherence_summary),
]


def _ordered_unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _as_float(value: Any) -> float:
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


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
    condition_info: dict[str, dict[str, Any]] | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
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
        "condition_info": condition_info or {},
        "comparisons": finalize(comparisons),
    }
    inp = AnalysisInput(records, baseline, conditions, condition_info or {}, options or {}, table)
    for name, fn in EXTRAS:
        result[name] = fn(inp)
    return result


def analyze_run_dir(
    run_dir: Path,
    baseline: str = "baseline",
    records: Sequence[Mapping[str, Any]] | None = None,
    *,
    n_boot: int = 2000,
    boot_seed: int = 0,
    condition_order: list[str] | None = None,
    condition_info: dict[str, dict[str, Any]] | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Analyse a run directory's scores and store ``analysis.json`` next to them."""
    path = run_dir / "scores.jsonl"
    if records is None:
        if not path.exists():
            raise AnalysisError(f"{run_dir}: no scores.jsonl; run the score stage first")
        records = JsonlStore(path).read()
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
    write_json_atomic(run_dir / "analysis.json", result)
    return result
