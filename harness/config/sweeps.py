"""Grid sweeps: one condition with a ``sweep`` table becomes one condition per grid point.

``[conditions.sweep] coefficient = [2, 4, 8]`` and ``layers = [8, 10]`` give six ordinary
conditions named ``fear@coefficient=2,layers=8`` and so on, each with its own generations
and statistics against the shared baseline. Each point carries its coordinates in
``analysis.json["condition_info"][name]["sweep"]``: ``group`` (the swept condition's name),
``point`` (the swept values), and for plotting ``coefficient`` and ``layer`` (an int when
one layer is steered, else the list).
"""

from __future__ import annotations

import itertools
from typing import Any

from harness.config.spec import ConditionSpec


def _label(value: Any) -> str:
    if isinstance(value, list):
        return "+".join(_label(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def point_name(group: str, point: dict[str, Any]) -> str:
    return f"{group}@" + ",".join(f"{k}={_label(v)}" for k, v in point.items())


def expand(cond: ConditionSpec) -> list[tuple[ConditionSpec, dict[str, Any] | None]]:
    """The grid points of a condition, each with its swept values (the condition itself
    with None when it has no sweep). The plan adds each point's coordinates from what its
    method says (:meth:`harness.steering.base.BaseMethod.steering_point`)."""
    if not cond.sweep:
        return [(cond, None)]
    keys = list(cond.sweep)
    out: list[tuple[ConditionSpec, dict[str, Any] | None]] = []
    for values in itertools.product(*(cond.sweep[k] for k in keys)):
        point = dict(zip(keys, values, strict=True))
        params = {**cond.params, **point}
        spec = ConditionSpec(
            name=point_name(cond.name, point),
            method=cond.method,
            params=params,
            targets=cond.targets,
        )
        out.append((spec, point))
    return out
