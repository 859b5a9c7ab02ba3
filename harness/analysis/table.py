"""Score records as pairable values, and what every analysis is computed from.

:func:`score_table` is the one place where score records become values keyed by
(prompt_id, seed); :class:`AnalysisInput` carries them, with the baseline, the conditions
and their info, to the comparisons and to every further analysis (agreement, coherence,
steerability), so those modules depend on this one and not on each other.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.core.artifacts import ConditionInfo

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
    condition_info: Mapping[str, ConditionInfo] = field(default_factory=dict)
    """Per condition: method, params and, for sweep points, the sweep coordinates."""
    options: dict[str, Any] = field(default_factory=dict)
    """The spec's ``analysis`` section (defaults when analysing foreign scores)."""
    table: Table = field(default_factory=dict)
    """:func:`score_table` of the records."""


def _as_float(value: Any) -> float:
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
