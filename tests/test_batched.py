"""Many additive conditions in one forward pass give the texts of one condition at a time."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config.spec import load_spec
from harness.core.store import JsonlStore
from harness.run.plan import build_plan
from harness.run.runner import open_plan, run_stages
from harness.run.stages import generation_units

EXTRA = """
[vectors.fear]
pairs = "fear"
layers = [1]

[vectors.joy]
pairs = "joy"
layers = [0]
"""

CONDITIONS = """
[[conditions]]
name = "mix"
method = "composite"
[conditions.params]
weights = {fear = 1.0, joy = -0.5}
coefficient = 2.0

[[conditions]]
name = "late"
method = "activation"
[conditions.params]
layers = [1]
coefficient = 3.0
positions = "generated"
vector = "fear"

[[conditions]]
name = "ablate"
method = "activation"
[conditions.params]
layers = [1]
coefficient = 1.0
mode = "ablate"
vector = "fear"
"""


def _spec(make_spec, tmp_path: Path, name: str, per_batch: int, sampling: bool) -> Path:
    path = make_spec(n_prompts=5, seeds="[0, 1]", batch_size=3, max_new_tokens=8)
    text = path.read_text().replace("[model]", EXTRA.strip() + "\n\n[model]") + CONDITIONS
    text = text.replace('name = "t"', f'name = "{name}"')
    text = text.replace(str(tmp_path / "run"), str(tmp_path / name))
    text = text.replace(
        "batch_size = 3",
        f"batch_size = 3\nconditions_per_batch = {per_batch}\nsampling = {str(sampling).lower()}",
    )
    # the fixture's activation condition steers both layers
    text = text.replace("layers = [1]\ncoefficient = 4.0", "layers = [0, 1]\ncoefficient = 4.0")
    out = tmp_path / f"{name}.toml"
    out.write_text(text)
    return out


def _texts(path: Path, tmp_path: Path) -> dict[str, str]:
    plan, source = open_plan(path)
    plan.spec.report.path = str(tmp_path / f"{plan.spec.name}.md")
    run_stages(plan, source, ("generate",))
    return {r["id"]: r["text"] for r in JsonlStore(plan.run.generations).read()}


@pytest.mark.parametrize("sampling", [False, True])
def test_stacked_conditions_equal_one_at_a_time(make_spec, tmp_path: Path, sampling: bool):
    alone = _texts(_spec(make_spec, tmp_path, "alone", 1, sampling), tmp_path)
    stacked = _texts(_spec(make_spec, tmp_path, "stacked", 8, sampling), tmp_path)
    assert len(alone) == 6 * 5 * 2
    assert stacked == alone  # same ids (same plan), bitwise the same texts


def test_units_stack_additive_conditions_only(make_spec, tmp_path: Path, tiny_lm):
    plan = build_plan(load_spec(_spec(make_spec, tmp_path, "u", 3, True)), "spec")
    for c in plan.conditions:
        c.method.prepare(tiny_lm)
    units = [[c.name for c in u] for u in generation_units(plan.conditions, 3)]
    # baseline + act (all positions) + mix stack; 'late' steers generated tokens only, so
    # it cannot share their hooks; persona rewrites the prompt, ablate is not an addition.
    assert units == [["baseline", "act", "mix"], ["persona"], ["late"], ["ablate"]]
    assert [[c.name for c in u] for u in generation_units(plan.conditions, 2)][:2] == [
        ["baseline", "act"],
        ["persona"],
    ]
    assert all(len(u) == 1 for u in generation_units(plan.conditions, 1))
