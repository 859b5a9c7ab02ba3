"""Adaptive coefficient search per layer, on prompts that are never reported.

For each candidate layer the search starts at ``start`` (in the condition's coefficient
mode: with ``coefficient_mode = "norm"`` a fraction of the layer's typical norm) and
evaluates ``steps`` coefficients on the selection split of the prompts. Two rules move the
coefficient after each point, given whether it passed the step guards (a coherence bound,
from a judge or the offline fluency scorer):

- ``"bracket"``: multiply by ``factor`` while passing, divide otherwise; once a passing and
  a failing coefficient bracket the boundary, the next one is their geometric mean.
- ``"momentum"`` (the trait-steering guide's rule, preset ``"trait-guide"``): a step of
  ``log(up)`` when passing, ``log(down)`` otherwise, with heavy-ball momentum on the log
  coefficient, ``v_t = momentum * v_{t-1} + log f_t`` and ``c_{t+1} = c_t * exp(v_t)``
  (Polyak 1964, applied to the log scale so a step is a ratio).

A point is valid when it passes the validity guards (default: the step guards; the guide
steps on coherence >= 80 but accepts >= 77) and moves the trait by at least ``min_delta``
in the search's direction. The chosen point is the valid one with the largest trait
change against the baseline on the same selection texts (the smallest, for
``direction = "decrease"``). The condition is then generated and reported on the held-out
prompts only, so the choice is not judged on the data it was tuned on (the same split
holds for every condition of the spec). All layers' points of one step are generated in
one plan, so additive methods batch them together (``conditions_per_batch``).

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

__all__ = [
    "SearchError",
    "evaluate",
    "guard_passes",
    "momentum_step",
    "next_coefficient",
    "run_search",
]


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


def momentum_step(
    c: float, passed: bool, velocity: float, up: float, down: float, momentum: float
) -> tuple[float, float]:
    """The momentum rule: ``v = momentum * v + log(up if passed else down)``, ``c * exp(v)``."""
    velocity = momentum * velocity + math.log(up if passed else down)
    return c * math.exp(velocity), velocity


def _guard_values(
    table: Any, guards: list[Guard], baseline: str, point: str
) -> tuple[dict[str, dict[str, Any]], bool]:
    out: dict[str, dict[str, Any]] = {}
    ok_all = True
    for g in guards:
        gs, gm = g.metric.split("/", 1)
        if (gs, gm) not in table:
            have = sorted(f"{s}/{m}" for s, m in table if s == gs)
            raise SearchError(f"search guard '{g.metric}' was not scored (scorer gives: {have})")
        value = _mean(list(table[(gs, gm)].get(point, {}).values()))
        base_value = _mean(list(table[(gs, gm)].get(baseline, {}).values()))
        ok = guard_passes(g, value, base_value)
        out[g.metric] = {"value": value, "baseline": base_value, "passes": ok}
        ok_all = ok_all and ok
    return out, ok_all


def evaluate(mini: Plan, baseline: str, point: str, search: SearchSpec) -> dict[str, Any]:
    """Trait delta (paired, complete pairs), guard means, whether the point steps up
    (``steps_up``: the step guards pass) and whether it may be chosen (``valid``)."""
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
    guards, steps_up = _guard_values(table, search.guards, baseline, point)
    valid = delta is not None
    if search.valid_guards is not None:
        strict, passes = _guard_values(table, search.valid_guards, baseline, point)
        for k, v in strict.items():  # a metric both guards read is one entry
            if k in guards:
                guards[k]["valid_passes"] = v["passes"]
            else:
                guards[k] = v | {"step": False}
        valid = valid and passes
    else:
        valid = valid and steps_up
    if search.min_delta is not None and delta is not None:
        sign = 1.0 if search.direction == "increase" else -1.0
        valid = valid and sign * delta >= search.min_delta
    return {
        "trait_delta": delta,
        "n_pairs": len(diffs),
        "guards": guards,
        "steps_up": delta is not None and steps_up,
        "valid": valid,
    }


class _Walk:
    """One layer's coefficient trajectory under the search's rule."""

    def __init__(self, search: SearchSpec):
        self.search = search
        self.c = search.start
        self.lo: float | None = None
        self.hi: float | None = None
        self.velocity = 0.0

    def advance(self, passed: bool) -> None:
        s = self.search
        if s.rule == "momentum":
            assert s.up is not None and s.down is not None
            self.c, self.velocity = momentum_step(
                self.c, passed, self.velocity, s.up, s.down, s.momentum
            )
        else:
            self.c, self.lo, self.hi = next_coefficient(self.c, passed, self.lo, self.hi, s.factor)


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
    layers = search_layers(base, cond, plan.n_layers)
    walks = {layer: _Walk(search) for layer in layers}
    trajectory: list[SearchPoint] = []
    for step in range(search.steps):
        # every layer's point of this step in one plan: additive methods batch together
        points = []
        for layer in layers:
            c = walks[layer].c
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
            points.append((layer, c, point))
        conditions = [baseline, *dict((p.name, p) for _, _, p in points).values()]
        items = make_items(
            conditions, plan.selection_prompts, seeds, plan.model_key, spec.generation.decoding()
        )
        mini = Plan(
            spec, points_dir, conditions, scorers, plan.selection_prompts, items, plan.model_key
        )
        # A step's points are little work to hand out to an engine's workers.
        generate_stage(mini, manifest, models, local=True)
        score_stage(mini, manifest, models)
        for layer, c, point in points:
            result = evaluate(mini, baseline.name, point.name, search)
            trajectory.append(
                SearchPoint(
                    layer=layer,
                    coefficient=c,
                    step=step,
                    trait_delta=result["trait_delta"],
                    n_pairs=result["n_pairs"],
                    guards=result["guards"],
                    valid=result["valid"],
                    steps_up=result["steps_up"],
                )
            )
            walks[layer].advance(bool(result["steps_up"]))
    trajectory.sort(key=lambda t: (layers.index(t["layer"]), t["step"]))
    sign = 1.0 if search.direction == "increase" else -1.0
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
    if search.valid_guards is not None:
        out["valid_guards"] = [g.model_dump(exclude_none=True) for g in search.valid_guards]
    if search.min_delta is not None:
        out["min_delta"] = search.min_delta
    if search.rule != "bracket":
        out["rule"] = {
            "name": search.rule,
            "up": search.up,
            "down": search.down,
            "momentum": search.momentum,
        }
    write_json_atomic(plan.run.search_result(cond.name), out)
    manifest.finish("ok" if best else "no valid point")
    return out
