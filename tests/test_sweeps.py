"""Coefficient/layer grids as conditions, and per-prompt steerability."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.analysis.analyze import analyze_records
from harness.config.spec import SpecError, load_spec
from harness.run.plan import build_plan
from harness.run.runner import open_plan, run_stages

SWEEP = """
[conditions.sweep]
coefficient = [1.0, 4.0]
layers = [0, 1]
"""


def _with_sweep(path: Path, sweep: str = SWEEP) -> Path:
    text = path.read_text()
    marker = '[[conditions]]\nname = "persona"'
    path.write_text(text.replace(marker, sweep.strip() + "\n\n" + marker))
    return path


def test_sweep_expands_to_one_condition_per_grid_point(make_spec):
    path = _with_sweep(make_spec(n_prompts=2, seeds="[0]"))
    plan = build_plan(load_spec(path), str(path))
    names = [c.name for c in plan.conditions]
    assert names == [
        "baseline",
        "act@coefficient=1,layers=0",
        "act@coefficient=1,layers=1",
        "act@coefficient=4,layers=0",
        "act@coefficient=4,layers=1",
        "persona",
    ]
    point = plan.condition("act@coefficient=4,layers=1")
    assert point.params.coefficient == 4.0 and point.params.layers == [1]
    assert point.info["sweep"] == {
        "group": "act",
        "point": {"coefficient": 4.0, "layers": 1},
        "coefficient": 4.0,
        "layer": 1,
    }
    assert len({c.key for c in plan.conditions}) == 6
    assert len(plan.items) == 6 * 2


def test_a_bad_sweep_value_names_its_point(make_spec):
    path = _with_sweep(make_spec(), SWEEP.replace("layers = [0, 1]", "layers = [0, 7]"))
    with pytest.raises(SpecError) as info:
        build_plan(load_spec(path), str(path))
    (msg,) = info.value.problems
    assert msg.startswith("conditions[0].params.layers: [7] out of range")
    assert msg.endswith("(sweep point act@coefficient=1,layers=7, act@coefficient=4,layers=7)")


def test_empty_sweep_is_rejected(make_spec):
    path = _with_sweep(make_spec(), "[conditions.sweep]\ncoefficient = []\n")
    with pytest.raises(SpecError, match="at least one value"):
        load_spec(path)


def test_sweep_run_records_points_in_analysis(make_spec, tmp_path: Path):
    path = _with_sweep(make_spec(n_prompts=3, seeds="[0, 1]"))
    plan, source = open_plan(path)
    plan.spec.report.path = str(tmp_path / "r.md")
    run_stages(plan, source)
    analysis = json.loads(plan.run.analysis.read_text())
    info = analysis["condition_info"]
    assert info["act@coefficient=1,layers=0"]["sweep"]["layer"] == 0
    assert "sweep" not in info["persona"]
    steer = [s for s in analysis["steerability"] if s["metric"] == "fear"]
    assert {(s["group"], s["layer"]) for s in steer} == {("act", "0"), ("act", "1")}
    assert all(s["coefficients"] == [0.0, 1.0, 4.0] for s in steer)
    report = (tmp_path / "r.md").read_text()
    assert "## Steerability per prompt" in report
    row = next(s for s in steer if s["layer"] == "0")
    assert f"| `act` | 0 | lexicon/fear | {row['n_prompts']} |" in report


def _records(values: dict[tuple[str, str, int], float]) -> list[dict]:
    return [
        {"condition": c, "prompt_id": p, "seed": s, "scorer": "x", "metric": "m", "value": v}
        for (c, p, s), v in values.items()
    ]


def test_per_prompt_slopes_and_anti_steerable_share():
    info = {
        "g@c=1": {"sweep": {"group": "g", "coefficient": 1.0, "layer": 3}},
        "g@c=2": {"sweep": {"group": "g", "coefficient": 2.0, "layer": 3}},
    }
    rng = np.random.default_rng(0)
    truth = {"a": 2.0, "b": 1.0, "c": -0.5, "d": 0.0}
    values = {}
    for pid, slope in truth.items():
        for seed in (0, 1, 2):
            for cond, coef in (("baseline", 0.0), ("g@c=1", 1.0), ("g@c=2", 2.0)):
                noise = 0.0 if pid == "d" else float(rng.normal(0, 0.1))
                values[(cond, pid, seed)] = 5 + slope * coef + noise
    values[("g@c=2", "b", 2)] = float("nan")  # a null score is left out, not zero
    result = analyze_records(_records(values), condition_info=info, n_boot=0)
    (entry,) = result["steerability"]
    assert entry["group"] == "g" and entry["layer"] == "3" and entry["n_prompts"] == 4
    for pid in truth:
        pts = [
            (coef, values[(cond, pid, s)])
            for s in (0, 1, 2)
            for cond, coef in (("baseline", 0.0), ("g@c=1", 1.0), ("g@c=2", 2.0))
            if np.isfinite(values[(cond, pid, s)])
        ]
        x, y = np.array(pts).T
        assert entry["prompt_slopes"][pid] == pytest.approx(np.polyfit(x, y, 1)[0], abs=1e-9)
    slopes = np.array([entry["prompt_slopes"][p] for p in "abcd"])
    assert entry["mean_slope"] == pytest.approx(slopes.mean())
    assert entry["slope_sd"] == pytest.approx(slopes.std(ddof=1))
    assert entry["anti_steerable_share"] == pytest.approx(1 / 4)  # prompt c goes the other way
    assert entry["flat_share"] == pytest.approx(1 / 4)  # prompt d does not move at all


def test_steerability_is_empty_without_sweeps_and_null_without_slopes():
    recs = _records({("baseline", "a", 0): 1.0, ("x", "a", 0): 2.0})
    assert analyze_records(recs, n_boot=0)["steerability"] == []
    info = {"g@c=1": {"sweep": {"group": "g", "coefficient": 1.0, "layer": None}}}
    recs = _records({("baseline", "a", 0): float("nan"), ("g@c=1", "a", 0): 2.0})
    (entry,) = analyze_records(recs, condition_info=info, n_boot=0)["steerability"]
    assert entry["mean_slope"] is None and "two distinct coefficients" in entry["reason"]
    json.dumps(entry, allow_nan=False)
