"""The coherence-guarded coefficient search: its rule, its split, its resumability."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from harness.config.prompts import Prompt
from harness.config.spec import Guard, SearchSpec, SpecError, load_spec
from harness.config.vectors import depth_range
from harness.core.store import JsonlStore
from harness.run.plan import build_plan, split_prompts
from harness.run.runner import open_plan, run_stages
from harness.run.search import guard_passes, momentum_step, next_coefficient

SEARCH = """
[conditions.search]
layers = [0, 1]
start = 0.5
factor = 2.0
steps = 3
trait = "lexicon/fear"
guards = [{ metric = "fluency/repetition", max = 0.5 }]
"""


def test_next_coefficient_multiplies_divides_then_bisects():
    c, lo, hi = next_coefficient(1.0, True, None, None, 2.0)
    assert (c, lo, hi) == (2.0, 1.0, None)
    c, lo, hi = next_coefficient(2.0, False, lo, hi, 2.0)
    assert (c, lo, hi) == (pytest.approx(math.sqrt(2.0)), 1.0, 2.0)
    c, lo, hi = next_coefficient(1.0, False, None, None, 2.0)
    assert (c, lo, hi) == (0.5, None, 1.0)


def test_guards_absolute_and_relative_to_baseline():
    assert guard_passes(Guard(metric="j/coherence", min=50), 60, None)
    assert not guard_passes(Guard(metric="j/coherence", min=50), 40, None)
    assert guard_passes(Guard(metric="f/perplexity", max_ratio=1.5), 14.0, 10.0)
    assert not guard_passes(Guard(metric="f/perplexity", max_ratio=1.5), 16.0, 10.0)
    assert not guard_passes(Guard(metric="f/perplexity", max_ratio=1.5), None, 10.0)
    with pytest.raises(ValueError, match="exactly one"):
        Guard(metric="f/perplexity", max=2, max_ratio=1.5)


def test_split_is_deterministic_and_disjoint():
    prompts = [Prompt(f"p{i}", f"text {i}") for i in range(10)]
    sel, held = split_prompts(prompts, 0.3)
    assert len(sel) == 3 and len(held) == 7
    assert {p.id for p in sel} | {p.id for p in held} == {p.id for p in prompts}
    assert split_prompts(prompts[::-1], 0.3)[0] == sel[::-1]


def _search_spec(make_spec) -> Path:
    path = make_spec(n_prompts=6, seeds="[0, 1]", max_new_tokens=6)
    text = path.read_text() + '\n[[scorers]]\ntype = "fluency"\n'
    text = text.replace(
        '[[conditions]]\nname = "persona"', SEARCH.strip() + '\n\n[[conditions]]\nname = "persona"'
    )
    path.write_text(text)
    return path


def test_search_refers_to_scorers_of_the_spec(make_spec):
    path = _search_spec(make_spec)
    path.write_text(path.read_text().replace('trait = "lexicon/fear"', 'trait = "lexicn/fear"'))
    with pytest.raises(SpecError, match=r"scorer 'lexicn'.*did you mean 'lexicon'"):
        load_spec(path)


def test_search_chooses_on_selection_and_reports_on_held_out(make_spec, tmp_path: Path):
    path = _search_spec(make_spec)
    plan, source = open_plan(path)
    assert [c.name for c in plan.pending_searches] == ["act"]
    assert "act" not in [c.name for c in plan.conditions]
    assert len(plan.selection_prompts) == 3 and len(plan.prompts) == 3
    plan.spec.report.path = str(tmp_path / "r.md")
    summary = run_stages(plan, source)

    result = json.loads((tmp_path / "run" / "search" / "act.json").read_text())
    traj = result["trajectory"]
    assert [(t["layer"], t["step"]) for t in traj] == [
        (0, 0),
        (0, 1),
        (0, 2),
        (1, 0),
        (1, 1),
        (1, 2),
    ]
    for layer in (0, 1):  # the coefficients follow the rule, given each point's validity
        pts = [t for t in traj if t["layer"] == layer]
        c, lo, hi = 0.5, None, None
        for t in pts:
            assert t["coefficient"] == pytest.approx(c)
            c, lo, hi = next_coefficient(c, t["valid"], lo, hi, 2.0)
    for t in traj:
        rep = t["guards"]["fluency/repetition"]
        assert t["valid"] == (
            t["trait_delta"] is not None and rep["value"] is not None and rep["value"] <= 0.5
        )
    valid = [t for t in traj if t["valid"]]
    assert valid, "the tiny model should pass a loose repetition guard somewhere"
    best = max(valid, key=lambda t: t["trait_delta"])
    assert result["chosen"] == {
        "layer": best["layer"],
        "coefficient": best["coefficient"],
        "trait_delta": best["trait_delta"],
    }
    assert summary.searches["act"] == result["chosen"]
    assert set(result["selection_prompts"]) == {p.id for p in plan.selection_prompts}

    # the chosen point is generated on held-out prompts only, as is every condition
    gens = JsonlStore(tmp_path / "run" / "generations.jsonl").read()
    held = {p.id for p in plan.prompts}
    assert {g["prompt_id"] for g in gens} == held
    assert {g["condition"] for g in gens} == {"baseline", "act", "persona"}
    analysis = json.loads((tmp_path / "run" / "analysis.json").read_text())
    assert analysis["condition_info"]["act"]["search"]["chosen"]["layer"] == best["layer"]
    fear = next(
        c for c in analysis["comparisons"] if c["condition"] == "act" and c["metric"] == "fear"
    )
    assert fear["n"] == 3 * 2
    report = (tmp_path / "r.md").read_text()
    assert "## Coefficient searches" in report
    assert f"chosen: layer {best['layer']}, coefficient" in report
    assert report.count("| yes |") + report.count("| no |") >= len(traj)

    # a rerun resumes everything: no new generation anywhere, the same choice
    search_gens = tmp_path / "run" / "search" / "act" / "generations.jsonl"
    n_search = len(JsonlStore(search_gens).read())
    plan2, source2 = open_plan(path)
    assert plan2.pending_searches == [] and plan2.condition("act").params.layers == [best["layer"]]
    plan2.spec.report.path = str(tmp_path / "r.md")
    again = run_stages(plan2, source2)
    assert again.stages["generate"].done_now == 0
    assert len(JsonlStore(search_gens).read()) == n_search


def test_search_plan_validates_candidate_layers(make_spec):
    path = _search_spec(make_spec)
    path.write_text(path.read_text().replace("layers = [0, 1]\nstart", "layers = [0, 9]\nstart"))
    with pytest.raises(SpecError) as info:
        build_plan(load_spec(path), str(path))
    assert any(
        p.startswith("conditions[0].params.layers: [9] out of range") for p in info.value.problems
    )


def test_a_composite_condition_is_searched_like_an_activation_one(make_spec):
    """Sweeps and searches ask the method for a condition at (layer, coefficient): a
    composite says how (every library vector at that layer), so it can be searched."""
    path = make_spec(n_prompts=6, seeds="[0]", max_new_tokens=4)
    text = path.read_text() + '\n[[scorers]]\ntype = "fluency"\n'
    text = text.replace(
        '[[conditions]]\nname = "act"\nmethod = "activation"\n[conditions.params]\n'
        'layers = [1]\ncoefficient = 4.0\nvector = { pairs = "fear" }\n',
        '[vectors.fear]\npairs = "fear"\nlayers = [1]\n\n'
        '[vectors.calm]\npairs = "calm"\nlayers = [0]\n\n'
        '[[conditions]]\nname = "mix"\nmethod = "composite"\n[conditions.params]\n'
        "weights = { fear = 1.0, calm = -0.5 }\n\n"
        + SEARCH.strip().replace("steps = 3", "steps = 2")
        + "\n\n",
    )
    path.write_text(text)
    plan, source = open_plan(path)
    assert [c.name for c in plan.pending_searches] == ["mix"]
    run_stages(plan, source, ("generate",))
    result = json.loads((Path(plan.run_dir) / "search" / "mix.json").read_text())
    steps = [(t["layer"], t["step"]) for t in result["trajectory"]]
    assert steps == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert result["trajectory"][0]["coefficient"] == 0.5
    chosen = result["chosen"]
    if chosen is None:  # no point passed the guard: the condition is left out
        assert "mix" not in [c.name for c in build_plan(plan.spec, source, plan.run_dir).conditions]
        return
    mix = build_plan(plan.spec, source, plan.run_dir).condition("mix")
    assert mix.params.layers == [chosen["layer"]]
    assert mix.params.coefficient == chosen["coefficient"]
    assert mix.method.steering_point().layers == [chosen["layer"]]
    # each point steered both library vectors at the searched layer, none at its own
    assert mix.params.weights == {"fear": 1.0, "calm": -0.5}
    assert mix.method.layers_of("calm") == [chosen["layer"]]


def test_a_method_that_cannot_move_is_refused_at_check(make_spec):
    path = make_spec(n_prompts=6)
    text = path.read_text().replace(
        '[[conditions]]\nname = "persona"\nmethod = "prompt"\n[conditions.params]\n'
        'instruction = "you are afraid ."\n',
        '[[conditions]]\nname = "persona"\nmethod = "prompt"\n[conditions.params]\n'
        'instruction = "you are afraid ."\n' + SEARCH,
    )
    path.write_text(text + '\n[[scorers]]\ntype = "fluency"\n')
    with pytest.raises(SpecError) as info:
        build_plan(load_spec(path), str(path))
    assert any("method 'prompt' cannot be searched" in p for p in info.value.problems)


def test_momentum_rule_steps_up_and_down_on_the_log_scale():
    c, v = momentum_step(1.0, True, 0.0, 1.3, 0.85, 0.1)
    assert (c, v) == (pytest.approx(1.3), pytest.approx(math.log(1.3)))
    c2, v2 = momentum_step(c, False, v, 1.3, 0.85, 0.1)
    assert v2 == pytest.approx(0.1 * math.log(1.3) + math.log(0.85))
    assert c2 == pytest.approx(1.3 * 1.3**0.1 * 0.85)
    # without momentum it is a plain multiplicative rule
    assert momentum_step(2.0, False, 5.0, 1.3, 0.85, 0.0)[0] == pytest.approx(1.7)


def test_trait_guide_preset_fills_the_guides_settings_and_explicit_ones_win():
    s = SearchSpec.model_validate(
        {"preset": "trait-guide", "trait": "judge/fear", "coherence": "judge/coherence"}
    )
    assert (s.rule, s.start, s.up, s.down, s.momentum, s.steps) == (
        "momentum",
        0.7,
        1.3,
        0.85,
        0.1,
        5,
    )
    assert s.layers == "30%-60%" and s.min_delta == 20.0
    assert [(g.metric, g.min) for g in s.guards] == [("judge/coherence", 80.0)]
    assert [(g.metric, g.min) for g in s.validity_guards] == [("judge/coherence", 77.0)]
    assert s.metrics() == ["judge/fear", "judge/coherence"]
    s = SearchSpec.model_validate(
        {"preset": "trait-guide", "trait": "judge/fear", "coherence": "j/c", "steps": 3}
    )
    assert s.steps == 3
    with pytest.raises(ValueError, match="needs coherence"):
        SearchSpec.model_validate({"preset": "trait-guide", "trait": "judge/fear"})
    with pytest.raises(ValueError, match="belong to rule = 'momentum'"):
        SearchSpec.model_validate(
            {"trait": "a/b", "start": 1, "up": 1.3, "guards": [{"metric": "a/c", "min": 1}]}
        )


def test_depth_ranges_pick_blocks_by_relative_depth():
    assert depth_range("30%-60%", 30) == list(range(9, 18))
    assert depth_range("0%-100%", 4) == [0, 1, 2, 3]
    assert depth_range("50%-75%", 4) == [2]
    with pytest.raises(ValueError, match="depth range"):
        depth_range("30-60", 10)


def test_bracket_key_is_unchanged_by_the_new_settings():
    """Results stored before the momentum rule existed keep their keys."""
    s = SearchSpec.model_validate(
        {"start": 0.5, "trait": "a/b", "guards": [{"metric": "a/c", "max": 1}]}
    )
    assert set(s.key_dump()) == {
        "layers",
        "start",
        "factor",
        "steps",
        "trait",
        "direction",
        "guards",
        "seeds",
    }


GUIDE = """
[conditions.search]
rule = "momentum"
layers = "0%-100%"
start = 0.5
up = 1.3
down = 0.85
momentum = 0.1
steps = 3
trait = "lexicon/fear"
guards = [{ metric = "fluency/repetition", max = 0.9 }]
valid_guards = [{ metric = "fluency/repetition", max = 0.5 }]
min_delta = 0.0
"""


def test_momentum_search_batches_layers_per_step_and_reports_best_per_layer(
    make_spec, tmp_path: Path
):
    path = _search_spec(make_spec)
    path.write_text(path.read_text().replace(SEARCH.strip(), GUIDE.strip()))
    plan, source = open_plan(path)
    assert plan.n_layers == 2
    plan.spec.report.path = str(tmp_path / "r.md")
    run_stages(plan, source)
    result = json.loads((tmp_path / "run" / "search" / "act.json").read_text())
    traj = result["trajectory"]
    assert [(t["layer"], t["step"]) for t in traj] == [(0, s) for s in range(3)] + [
        (1, s) for s in range(3)
    ]
    for layer in (0, 1):  # the coefficients follow the momentum rule on the step guard
        c, v = 0.5, 0.0
        for t in [t for t in traj if t["layer"] == layer]:
            assert t["coefficient"] == pytest.approx(c)
            rep = t["guards"]["fluency/repetition"]
            assert t["steps_up"] == (t["trait_delta"] is not None and rep["value"] <= 0.9)
            assert t["valid"] == (
                t["trait_delta"] is not None and rep["value"] <= 0.5 and t["trait_delta"] >= 0
            )
            assert rep["valid_passes"] == (rep["value"] <= 0.5)
            c, v = momentum_step(c, t["steps_up"], v, 1.3, 0.85, 0.1)
    # one plan per step holds both layers' points: the point stores' generation records
    # were written step by step, both layers within each step
    gens = JsonlStore(tmp_path / "run" / "search" / "act" / "generations.jsonl").read()
    order = [g["condition"] for g in gens if g["condition"] != "baseline"]
    first_two = list(dict.fromkeys(order))[:2]
    assert {n.split("~")[1].split(",")[0] for n in first_two} == {"layer=0", "layer=1"}
    report = (tmp_path / "r.md").read_text()
    assert "Best point per layer" in report
    assert "rule momentum (x1.3 up, x0.85 down, momentum 0.1)" in report
    assert "valid with fluency/repetition max 0.5; and trait Δ ≥ 0" not in report
    assert "valid with fluency/repetition max 0.5 and trait Δ ≥ 0" in report
