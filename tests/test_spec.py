"""The spec fails fast, naming the field, the allowed values and the closest valid name."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config.spec import SpecError, load_spec
from harness.run.plan import build_plan


def _problems(path: Path, plan: bool = False) -> list[str]:
    with pytest.raises(SpecError) as info:
        spec = load_spec(path)
        if plan:
            build_plan(spec, str(path))
    assert str(path) in str(info.value)
    return info.value.problems


def test_valid_spec_plans_every_condition_prompt_and_seed(make_spec):
    path = make_spec(n_prompts=3, seeds="[0, 1]")
    spec = load_spec(path)
    plan = build_plan(spec, str(path))
    assert [c.name for c in plan.conditions] == ["baseline", "act", "persona"]
    assert len(plan.items) == 3 * 3 * 2
    assert len({it.id for it in plan.items}) == len(plan.items)


def test_unknown_key_names_field_allowed_keys_and_closest(make_spec):
    path = make_spec()
    path.write_text(path.read_text().replace("max_new_tokens", "max_new_tokenz"))
    (msg,) = _problems(path)
    assert msg.startswith("generation.max_new_tokenz: unknown key 'max_new_tokenz'")
    assert "allowed keys:" in msg and "seeds" in msg
    assert "did you mean 'max_new_tokens'?" in msg


def test_wrong_type_names_field(make_spec):
    path = make_spec()
    path.write_text(path.read_text().replace("batch_size = 4", 'batch_size = "four"'))
    (msg,) = _problems(path)
    assert msg.startswith("generation.batch_size:")
    assert "'four'" in msg


def test_literal_error_lists_allowed_values_and_suggests(make_spec):
    path = make_spec()
    path.write_text(path.read_text().replace('device = "cpu"', 'device = "cpu"\ndtype = "float23"'))
    (msg,) = _problems(path)
    assert msg.startswith("model.dtype:")
    assert "float32" in msg and "did you mean 'float32'?" in msg


def test_missing_prompt_file(make_spec, tmp_path):
    path = make_spec()
    path.write_text(path.read_text().replace(str(tmp_path / "prompts.jsonl"), "nowhere.jsonl"))
    (msg,) = _problems(path)
    assert msg.startswith("prompts.file: 'nowhere.jsonl' not found")


def test_layer_out_of_range_uses_model_config(make_spec):
    path = make_spec()
    path.write_text(path.read_text().replace("layers = [1]", "layers = [1, 7]"))
    (msg,) = _problems(path, plan=True)
    assert msg.startswith("conditions[0].params.layers: [7] out of range")
    assert "2 decoder layers" in msg and "0..1" in msg


def test_unknown_method_and_scorer_suggest_closest(make_spec):
    path = make_spec()
    text = path.read_text().replace('method = "activation"', 'method = "activaton"')
    path.write_text(text.replace('type = "lexicon"', 'type = "lexicn"'))
    problems = _problems(path, plan=True)
    assert any(
        p.startswith("conditions[0].method: unknown steering method 'activaton'")
        and "did you mean 'activation'?" in p
        and "prompt" in p
        for p in problems
    )
    assert any(
        p.startswith("scorers[0].type: unknown scorer 'lexicn'") and "did you mean 'lexicon'?" in p
        for p in problems
    )


def test_method_params_unknown_key_is_located(make_spec):
    path = make_spec()
    path.write_text(path.read_text().replace("coefficient = 4.0", "coeficient = 4.0"))
    problems = _problems(path, plan=True)
    assert any(
        p.startswith("conditions[0].params.coeficient: unknown key")
        and "did you mean 'coefficient'?" in p
        for p in problems
    )
    assert any(
        p.startswith("conditions[0].params.coefficient: required field is missing")
        for p in problems
    )


def test_unknown_pair_set_lists_shipped_ones(make_spec):
    path = make_spec()
    path.write_text(path.read_text().replace('pairs = "fear"', 'pairs = "feer"'))
    (msg,) = _problems(path, plan=True)
    assert msg.startswith("conditions[0].params.vector.pairs: 'feer'")
    assert "fear" in msg and "joy" in msg


def test_all_problems_reported_at_once(make_spec):
    path = make_spec()
    text = (
        path.read_text()
        .replace("max_new_tokens", "max_tokens")
        .replace("temperature = 0.7", "temperature = -1")
    )
    path.write_text(text)
    problems = _problems(path)
    assert len(problems) == 2


def test_duplicate_condition_names(make_spec):
    path = make_spec()
    path.write_text(path.read_text().replace('name = "persona"', 'name = "act"'))
    (msg,) = _problems(path)
    assert "condition names must be unique" in msg and "'act'" in msg


def test_yaml_spec_equals_toml_spec(make_spec, tmp_path):
    import tomllib

    import yaml

    path = make_spec()
    data = tomllib.loads(path.read_text())
    ypath = tmp_path / "spec.yaml"
    ypath.write_text(yaml.safe_dump(data))
    assert load_spec(ypath).model_dump() == load_spec(path).model_dump()


def test_syntax_error_names_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("name = \n")
    (msg,) = _problems(path)
    assert msg.startswith("cannot parse")
