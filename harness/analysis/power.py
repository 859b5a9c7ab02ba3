"""Power and planning for the paired design: how many prompt × seed pairs a run needs.

Thin layer over :func:`harness.stats.achieved_power` and :func:`harness.stats.pairs_needed`
(two-sided paired t-test, statsmodels ``TTestPower``) used by ``steer-harness power`` and
the report. A comparison is *underpowered* when its achieved power at the observed |d_z|
is below the target, which is the same as ``n < pairs needed``.

Post-hoc power at the observed effect is a monotone transform of the p-value (Hoenig &
Heisey 2001); it is shown as a planning aid: the pairs a confirmatory rerun would need
to detect an effect of the observed size.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.stats import achieved_power, finite_or_none, pairs_needed

__all__ = ["PLANNING_D_Z", "PowerRow", "format_plan", "format_power_rows", "power_rows"]

PLANNING_D_Z = (0.2, 0.3, 0.5, 0.8)
"""Effects the report plans for: Cohen's small, between, medium and large."""


@dataclass(frozen=True)
class PowerRow:
    condition: str
    scorer: str
    metric: str
    n: int
    d_z: float | None
    power: float | None
    n_needed: int | None
    underpowered: bool | None
    reason: str | None = None
    """Why power or pairs needed is missing."""


def power_rows(
    comparisons: Iterable[Mapping[str, Any]], power: float = 0.8, alpha: float = 0.05
) -> list[PowerRow]:
    """Achieved power and pairs needed for every comparison, at the observed |d_z|."""
    rows = []
    for c in comparisons:
        n = int(c.get("n") or 0)
        dz = finite_or_none(c.get("d_z"))
        pw: float | None = None
        need: int | None = None
        reason: str | None = None
        if dz is None:
            reason = "d_z undefined: " + str((c.get("reasons") or {}).get("d_z", "no value"))
        elif n < 2:
            reason = f"fewer than 2 pairs (n={n})"
        else:
            pw = achieved_power(dz, n, alpha)
            try:
                need = pairs_needed(dz, power, alpha)
            except ValueError as exc:
                reason = str(exc)
        under = None if pw is None else pw < power
        rows.append(
            PowerRow(
                str(c["condition"]),
                str(c["scorer"]),
                str(c["metric"]),
                n,
                dz,
                pw,
                need,
                under,
                reason,
            )
        )
    return rows


def format_power_rows(rows: Sequence[PowerRow], power: float = 0.8) -> str:
    """A plain-text table for the terminal."""
    header = ["condition", "scorer/metric", "n", "d_z", "power", f"pairs for {power:.0%}", ""]
    body = []
    for r in rows:
        body.append(
            [
                r.condition,
                f"{r.scorer}/{r.metric}",
                str(r.n),
                "n/a" if r.d_z is None else f"{r.d_z:.3f}",
                "n/a" if r.power is None else f"{r.power:.2f}",
                "n/a" if r.n_needed is None else str(r.n_needed),
                "UNDERPOWERED" if r.underpowered else ("" if r.reason is None else r.reason),
            ]
        )
        if r.underpowered and r.reason:
            body[-1][-1] += f" ({r.reason})"
    widths = [max(len(x) for x in col) for col in zip(header, *body, strict=True)]
    lines = [
        "  ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)).rstrip()
        for line in [header, *body]
    ]
    return "\n".join(lines)


def format_plan(
    d_z: float,
    power: float = 0.8,
    alpha: float = 0.05,
    seeds: int | None = None,
    pairs: int | None = None,
) -> str:
    """What ``steer-harness power --d-z X`` prints. Raises ValueError on impossible input."""
    if seeds is not None and seeds < 1:
        raise ValueError("--seeds must be at least 1")
    need = pairs_needed(d_z, power, alpha)
    lines = [
        f"pairs needed: {need}",
        f"  a two-sided paired t-test at alpha = {alpha:g} reaches {power:.0%} power "
        f"at |d_z| = {abs(d_z):g} with {need} prompt x seed pairs",
    ]
    if seeds:
        prompts = math.ceil(need / seeds)
        lines.append(f"  with {seeds} seed(s): {prompts} prompts ({prompts * seeds} pairs)")
    if pairs is not None:
        if pairs < 2:
            raise ValueError("--pairs must be at least 2")
        lines.append(f"  with {pairs} pairs the power is {achieved_power(d_z, pairs, alpha):.2f}")
    return "\n".join(lines)
