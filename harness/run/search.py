"""Adaptive coefficient search per layer, on prompts that are never reported.

For each candidate layer the search starts at ``start`` (in the condition's coefficient
mode: with ``coefficient_mode = "norm"`` a fraction of the layer's typical norm) and
evaluates ``steps`` coefficients on the selection split of the prompts: while a point
passes every guard (a coherence bound, from a judge or the offline fluency scorer) the
coefficient is multiplied by ``factor``, otherwise divided by it; once a passing and a
failing coefficient bracket the boundary, the next one is their geometric mean. The
chosen point is the passing one with the largest trait change against the baseline on
the same selection texts (the smallest, for ``direction = "decrease"``). The condition is
then generated and reported on the held-out prompts only, so the choice is not judged on
the data it was tuned on (the same split holds for every condition of the spec).

Each evaluated point is a small plan of its own under ``runs/<name>/search/<condition>/``
(generations and scores with content ids), so an interrupted search resumes where it
stopped and repeats the same trajectory. The result is ``search/<condition>.json``,
keyed by everything it depends on (:func:`harness.run.plan.search_key`): when any of that
changes the search runs again (its points' records are reused where their ids match).
"""

from __future__ import annotations

import math
from typing import Any

from harness.analysis.table import score_table
from harness.config.spec import ConditionSpec, Guard, SearchSpec
from harness.core.artifacts import SearchPoint, SearchResult
from harness.core.errors import SearchError
from harness.core.files import write_json_atomic
from harness.core.ids import utc_now
from harness.core.manifest import Manifest
from harness.run.plan import (
    Plan,
    make_items,
    resolve_condition,
    resolve_method,
    search_key,
    search_layers,
    search_scorers,
    search_seeds,
)
from harness.run.stages import ModelHolder, current_scores, generate_stage, score_stage

__all__ = ["SearchError", "evaluate", "guard_passes", "next_coefficient", "run_search"]


def _mean(values: list[float]) -> float | None:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None


def guard_passes(guard: Guard, value: float | None, baseline: float | None) -> bool:
    if value is None:
        return False
    if guard.min is not None:
        return value >= guard.min
    if guard.max is not None:
        return value <= guard.max
    if baseline is None or baseline == 0:
        return False
    ratio = value / baseline
    return ratio >= guard.min_ratio if guard.min_ratio is not None else ratio <= guard.max_ratio  # type: ignore[operator]


def next_coefficient(
    c: float, valid: bool, lo: float | None, hi: float | None, factor: float
) -> tuple[float, float | None, float | None]:
    """Up by ``factor`` while valid, down otherwise; geometric bisection once bracketed."""
    if valid:
        lo = c
        nxt = c * factor if hi is None else math.sqrt(c * hi)
    else:
        hi = c
        nxt = c / factor if lo is None else math.sqrt(lo * c)
    return nxt, lo, hi


def evaluate(mini: Plan, baseline: str, point: str, search: SearchSpec) -> dict[str, Any]:
    """Trait delta (paired, complete pairs) and guard means of one point."""
    table = score_table(current_scores(mini))
    scorer, metric = search.trait.split("/", 1)
    if (scorer, metric) not in table:
        have = sorted(f"{s}/{m}" for s, m in table if s == scorer)
        raise SearchError(f"search trait '{search.trait}' was not scored (scorer gives: {have})")
    base = table[(scorer, metric)].get(baseline, {})
    steer = table[(scorer, metric)].get(point, {})
    diffs = [
        steer[k] - base[k]
        for k in steer.keys() & base.keys()
        if math.isfinite(steer[k]) and math.isfinite(base[k])
    ]
    delta = sum(diffs) / len(diffs) if diffs else None
    guards = {}
    valid = delta is not None
    for g in search.guards:
        gs, gm = g.metric.split("/", 1)
        if (gs, gm) not in table:
            have = sorted(f"{s}/{m}" for s, m in table if s == gs)
            raise SearchError(f"search guard '{g.metric}' was not scored (scorer gives: {have})")
        value = _mean(list(table[(gs, gm)].get(point, {}).values()))
        base_value = _mean(list(table[(gs, gm)].get(baseline, {}).values()))
        ok = guard_passes(g, value, base_value)
        guards[g.metric] = {"value": value, "baseline": base_value, "passes": ok}
        valid = valid and ok
    return {"trait_delta": delta, "n_pairs": len(diffs), "guards": guards, "valid": valid}


def run_search(plan: Plan, cond: ConditionSpec, models: ModelHolder) -> SearchResult:
    """Search one condition; write and return ``search/<condition>.json``."""
    search = cond.search
    assert search is not None
    spec = plan.spec
    points_dir = plan.run.search_points(cond.name)
    points_dir.root.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(points_dir.manifest)
    manifest.start(f"search {cond.name}")
    index = 1 + [c.name for c in spec.conditions].index(cond.name)
    scorers = search_scorers(cond, plan.scorers)
    baseline = plan.conditions[0]
    seeds = search_seeds(spec, cond)
    cls, base_params, ctx, problems = resolve_method(spec, index, cond, plan.run.vectors)
    if cls is None or base_params is None:
        raise SearchError(f"search {cond.name}: {'; '.join(problems)}")
    base = cls(base_params, ctx)
    key = search_key(
        spec, cond, base, baseline.key, plan.scorers, plan.selection_prompts, plan.model_key
    )
    trajectory: list[SearchPoint] = []
    sign = 1.0 if search.direction == "increase" else -1.0
    for layer in search_layers(base, cond):
        c, lo, hi = search.start, None, None
        for step in range(search.steps):
            name = f"{cond.name}~layer={layer},coefficient={c:.6g}"
            params = base.at(layer, c)
            if params is None:
                raise SearchError(f"search {cond.name}: method '{cond.method}' cannot be searched")
            point_spec = ConditionSpec(
                name=name, method=cond.method, params=params.model_dump(mode="json")
            )
            point, problems = resolve_condition(
                spec, index, point_spec, params, cls, {}, plan.run.vectors, None
            )
            if point is None:
                raise SearchError(f"search point {name}: {'; '.join(problems)}")
            conditions = [baseline, point]
            items = make_items(
                conditions,
                plan.selection_prompts,
                seeds,
                plan.model_key,
                spec.generation.decoding(),
            )
            mini = Plan(
                spec, points_dir, conditions, scorers, plan.selection_prompts, items, plan.model_key
            )
            # One point at a time is too little work to hand out to an engine's workers.
            generate_stage(mini, manifest, models, local=True)
            score_stage(mini, manifest, models)
            result = evaluate(mini, baseline.name, name, search)
            trajectory.append(
                SearchPoint(
                    layer=layer,
                    coefficient=c,
                    step=step,
                    trait_delta=result["trait_delta"],
                    n_pairs=result["n_pairs"],
                    guards=result["guards"],
                    valid=result["valid"],
                )
            )
            c, lo, hi = next_coefficient(c, bool(result["valid"]), lo, hi, search.factor)
    valid = [t for t in trajectory if t["valid"]]
    best = max(valid, key=lambda t: sign * (t["trait_delta"] or 0.0)) if valid else None
    out: SearchResult = {
        "condition": cond.name,
        "trait": search.trait,
        "direction": search.direction,
        "guards": [g.model_dump(exclude_none=True) for g in search.guards],
        "selection_prompts": [p.id for p in plan.selection_prompts],
        "seeds": seeds,
        "trajectory": trajectory,
        "chosen": {
            "layer": best["layer"],
            "coefficient": best["coefficient"],
            "trait_delta": best["trait_delta"],
        }
        if best
        else None,
        "finished": utc_now(),
        "key": key,
    }
    write_json_atomic(plan.run.search_result(cond.name), out)
    manifest.finish("ok" if best else "no valid point")
    return out
