"""The reference steering methods, and the guarantee that each restores the model."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from harness.config.spec import GenerationSpec
from harness.config.vectors import LibraryVector
from harness.core.errors import ModelNotRestoredError
from harness.model.loading import LoadedModel
from harness.run.generation import Row, generate_rows
from harness.steering import METHODS, MethodContext, MethodParams, NoSteering
from harness.steering.base import BaseMethod, BatchInfo
from harness.steering.hooks import capture_residual
from harness.steering.methods.activation import ActivationSteering
from harness.steering.methods.adapter import AdapterSteering
from harness.steering.methods.composite import CompositeSteering
from harness.steering.methods.logit_bias import LogitBias
from harness.steering.restore import snapshot, verify
from harness.steering.vectors import (
    ContrastPair,
    SteeringVector,
    extract_mean_difference,
    first_principal_direction,
    hidden_states,
    typical_norms,
)

ROWS = [Row("p0", "describe your walk to the bakery .", 0), Row("p1", "what will you do ?", 1)]
GREEDY = GenerationSpec(max_new_tokens=8, sampling=False)
SAMPLED = GenerationSpec(max_new_tokens=8, temperature=1.0)


def make(cls, params: dict, tmp_path: Path, library: dict | None = None):
    lib = {k: LibraryVector.model_validate(v) for k, v in (library or {}).items()}
    ctx = MethodContext("c", base_dir=tmp_path, cache_dir=tmp_path / "cache", library=lib)
    return cls(cls.Params.model_validate(params), ctx)


@pytest.fixture
def adapter_dir(tiny_model_dir: Path, tmp_path: Path) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    torch.manual_seed(1)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # lora_B starts at zero; make the adapter do something
    out = tmp_path / "adapter"
    model.save_pretrained(out)
    return out


def all_builtin_methods(tmp_path: Path, adapter: Path) -> dict[str, BaseMethod]:
    lib = {"fear": {"pairs": "fear", "layers": [1]}, "joy": {"pairs": "joy", "layers": [0, 1]}}
    return {
        "none": NoSteering(MethodParams(), MethodContext("b")),
        "prompt": make(METHODS.get("prompt"), {"instruction": "you are afraid ."}, tmp_path),
        "activation": make(
            ActivationSteering,
            {"layers": [0, 1], "coefficient": 4, "vector": {"pairs": "fear"}},
            tmp_path,
        ),
        "activation-norm": make(
            ActivationSteering,
            {
                "layers": [1],
                "coefficient": 0.5,
                "coefficient_mode": "norm",
                "vector": {"pairs": "fear", "method": "pca"},
            },
            tmp_path,
        ),
        "activation-ablate": make(
            ActivationSteering,
            {"layers": [1], "coefficient": 1, "mode": "ablate", "vector": {"pairs": "fear"}},
            tmp_path,
        ),
        "composite": make(
            CompositeSteering,
            {"weights": {"fear": 0.8, "joy": 0.5}, "coefficient": 2},
            tmp_path,
            lib,
        ),
        "adapter": make(AdapterSteering, {"path": str(adapter)}, tmp_path),
        "logit_bias": make(LogitBias, {"words": ["afraid"], "bias": 5.0}, tmp_path),
    }


def test_every_builtin_method_restores_outputs_and_parameters(
    tiny_lm: LoadedModel, tmp_path: Path, adapter_dir: Path
):
    reference = [
        o.text
        for o in generate_rows(
            tiny_lm, NoSteering(MethodParams(), MethodContext("b")), ROWS, GREEDY
        )
    ]
    for name, method in all_builtin_methods(tmp_path, adapter_dir).items():
        before = snapshot(tiny_lm.model)
        method.prepare(tiny_lm)
        steered = [o.text for o in generate_rows(tiny_lm, method, ROWS, SAMPLED)]
        verify(tiny_lm.model, before, name)  # hooks, training flag, every weight's checksum
        after = [
            o.text
            for o in generate_rows(
                tiny_lm, NoSteering(MethodParams(), MethodContext("b")), ROWS, GREEDY
            )
        ]
        assert after == reference, name
        params_equal = all(
            torch.equal(a, b)
            for a, b in zip(
                tiny_lm.model.state_dict().values(), _reload_state(tiny_lm), strict=True
            )
        )
        assert params_equal, name
        if name != "none":
            base = [
                o.text
                for o in generate_rows(
                    tiny_lm, NoSteering(MethodParams(), MethodContext("b")), ROWS, SAMPLED
                )
            ]
            assert steered != base, f"{name} changed nothing"


def _reload_state(lm: LoadedModel):
    from transformers import AutoModelForCausalLM

    fresh = AutoModelForCausalLM.from_pretrained(lm.spec.id)
    return list(fresh.state_dict().values())


class LeavesAHook(BaseMethod):
    """A buggy plug-in: registers a hook and never removes it."""

    @contextmanager
    def apply(self, lm: LoadedModel, batch: BatchInfo):
        lm.layers[0].register_forward_hook(lambda *a: None)
        yield


def test_a_method_that_does_not_restore_is_caught(tiny_lm: LoadedModel):
    before = snapshot(tiny_lm.model)
    method = LeavesAHook(MethodParams(), MethodContext("bad"))
    generate_rows(tiny_lm, method, ROWS[:1], GREEDY)
    with pytest.raises(
        ModelNotRestoredError, match=r"bad did not restore the model: hooks changed"
    ):
        verify(tiny_lm.model, before, "bad")
    tiny_lm.layers[0]._forward_hooks.clear()
    verify(tiny_lm.model, before, "cleaned")


def test_norm_mode_scales_by_typical_norm_without_the_first_position(
    tiny_lm: LoadedModel, tmp_path: Path
):
    prompts = tmp_path / "neutral.jsonl"
    prompts.write_text(
        '{"text": "what will you do ?"}\n{"text": "describe the view from your window ."}\n'
    )
    m = make(
        ActivationSteering,
        {
            "layers": [1],
            "coefficient": 0.5,
            "coefficient_mode": "norm",
            "vector": {"pairs": "fear"},
            "norm_prompts": str(prompts),
        },
        tmp_path,
    )
    meta = m.prepare(tiny_lm)
    # by hand: render as generation does, one text at a time (no padding), drop position 0
    from harness.model.chat import build_messages, render

    norms = []
    for text in ("what will you do ?", "describe the view from your window ."):
        enc = tiny_lm.tokenizer(
            [render(tiny_lm, build_messages(text, None))],
            return_tensors="pt",
            add_special_tokens=False,
        )
        with capture_residual(tiny_lm.layers, [1]) as cap:
            tiny_lm.model(**enc)
        norms += cap[1][0, 1:].norm(dim=-1).tolist()
    typical = sum(norms) / len(norms)
    assert meta["typical_norms"]["1"] == pytest.approx(typical, rel=1e-5)
    vnorm = float(m.vector.directions[1].norm())
    assert meta["effective_coefficients"]["1"] == pytest.approx(0.5 * typical / vnorm, rel=1e-5)
    # the first position is excluded: including it gives a different number
    assert typical_norms(tiny_lm, ["what will you do ?"], [1])[1] != pytest.approx(typical)


def test_ablation_removes_the_direction(tiny_lm: LoadedModel, tmp_path: Path):
    m = make(
        ActivationSteering,
        {"layers": [0], "coefficient": 1, "mode": "ablate", "vector": {"pairs": "fear"}},
        tmp_path,
    )
    m.prepare(tiny_lm)
    u = m.vector.directions[0] / m.vector.directions[0].norm()
    enc = tiny_lm.tokenizer(["what will you do ?"], return_tensors="pt")
    batch = BatchInfo(enc["input_ids"].shape[1], ["p"], [0])
    with capture_residual(tiny_lm.layers, [0]) as plain:
        tiny_lm.model(**enc)
    with m.apply(tiny_lm, batch), capture_residual(tiny_lm.layers, [0]) as cap:
        tiny_lm.model(**enc)
    assert float((plain[0] @ u).abs().max()) > 1e-2
    assert float((cap[0] @ u).abs().max()) < 1e-4
    expected = plain[0] - (plain[0] @ u)[..., None] * u
    assert torch.allclose(cap[0], expected, atol=1e-5)


def test_pca_vector_is_the_first_singular_direction(tiny_lm: LoadedModel):
    pairs = [
        ContrastPair(str(i), p, n)
        for i, (p, n) in enumerate(
            [
                ("i am afraid .", "i am here ."),
                ("the fear grows .", "the day grows ."),
                ("i shake and shiver .", "i sit and read ."),
            ]
        )
    ]
    vec = extract_mean_difference(tiny_lm, pairs, [1], "last", "raw", method="pca")
    hp = hidden_states(tiny_lm, [p.positive for p in pairs], [1])[1]
    hn = hidden_states(tiny_lm, [p.negative for p in pairs], [1])[1]
    d = (hp - hn).double()
    # power iteration on D^T D, independent of the SVD used in the code
    u = torch.ones(d.shape[1], dtype=torch.float64)
    for _ in range(500):
        u = d.T @ (d @ u)
        u = u / u.norm()
    if float((d @ u).mean()) < 0:
        u = -u
    got = vec.directions[1].double()
    assert torch.allclose(got / got.norm(), u, atol=1e-4)
    assert float(got.norm()) == pytest.approx(float((d @ u).mean()), rel=1e-4)
    assert vec.metadata["method"] == "pca"
    assert torch.allclose(first_principal_direction(-d.float()).double(), -got, atol=1e-4)


def test_logit_bias_adds_exactly_the_bias(tiny_lm: LoadedModel, tmp_path: Path):
    m = make(LogitBias, {"words": ["afraid", "fear"], "bias": 3.5, "variants": False}, tmp_path)
    meta = m.prepare(tiny_lm)
    ids = [tiny_lm.tokenizer.convert_tokens_to_ids(w) for w in ("afraid", "fear")]
    assert sorted(m.token_ids) == sorted(ids) and meta["n_tokens"] == 2
    proc = m.logits_processor(tiny_lm, BatchInfo(1, ["p"], [0]))
    scores = torch.randn(2, len(tiny_lm.tokenizer))
    out = proc(torch.zeros((2, 1), dtype=torch.long), scores)
    diff = out - scores
    assert torch.allclose(diff[:, ids], torch.full((2, 2), 3.5))
    diff[:, ids] = 0
    assert float(diff.abs().max()) == 0.0
    huge = make(LogitBias, {"words": ["afraid"], "bias": 1e4, "variants": False}, tmp_path)
    huge.prepare(tiny_lm)
    out = generate_rows(tiny_lm, huge, ROWS, GREEDY)
    assert all(o.text.split()[0] == "afraid" for o in out)


def test_adapter_equals_the_merged_peft_model(
    tiny_lm: LoadedModel, tmp_path: Path, adapter_dir: Path
):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    m = make(AdapterSteering, {"path": str(adapter_dir)}, tmp_path)
    assert m.prepare(tiny_lm)["peft_type"] == "LORA"
    enc = tiny_lm.tokenizer(["what will you do ?"], return_tensors="pt")
    with m.apply(tiny_lm, BatchInfo(enc["input_ids"].shape[1], ["p"], [0])):
        steered = tiny_lm.model(**enc).logits
    merged = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_lm.spec.id), str(adapter_dir)
    ).merge_and_unload()
    assert torch.allclose(steered, merged(**enc).logits, atol=1e-4)
    assert not torch.allclose(steered, tiny_lm.model(**enc).logits, atol=1e-3)


def test_adapter_check_names_a_bad_folder(tiny_lm: LoadedModel, tmp_path: Path):
    params = AdapterSteering.Params.model_validate({"path": "nowhere"})
    (msg,) = AdapterSteering.check(params, tiny_lm.info, MethodContext("a", base_dir=tmp_path))
    assert "not a PEFT adapter folder" in msg


def test_composite_is_the_weighted_sum_of_library_vectors(tiny_lm: LoadedModel, tmp_path: Path):
    lib = {"fear": {"pairs": "fear", "layers": [1]}, "joy": {"pairs": "joy", "layers": [0, 1]}}
    m = make(
        CompositeSteering, {"weights": {"fear": 0.8, "joy": 0.5}, "coefficient": 2}, tmp_path, lib
    )
    m.prepare(tiny_lm)
    fear = make(
        ActivationSteering, {"layers": [1], "coefficient": 1, "vector": {"pairs": "fear"}}, tmp_path
    )
    joy = make(
        ActivationSteering,
        {"layers": [0, 1], "coefficient": 1, "vector": {"pairs": "joy"}},
        tmp_path,
    )
    fear.prepare(tiny_lm)
    joy.prepare(tiny_lm)
    f, j = fear.vector.directions, joy.vector.directions
    assert torch.allclose(m.total[0], 2 * 0.5 * j[0], atol=1e-6)
    assert torch.allclose(m.total[1], 2 * (0.8 * f[1] + 0.5 * j[1]), atol=1e-6)
    # same texts as activation with the summed vector saved to a file
    path = tmp_path / "sum.safetensors"
    SteeringVector({0: m.total[0], 1: m.total[1]}, {}).save(path)
    same = make(
        ActivationSteering,
        {"layers": [0, 1], "coefficient": 1, "vector": {"file": str(path)}},
        tmp_path,
    )
    same.prepare(tiny_lm)
    assert [o.text for o in generate_rows(tiny_lm, m, ROWS, SAMPLED)] == [
        o.text for o in generate_rows(tiny_lm, same, ROWS, SAMPLED)
    ]


def test_composite_and_activation_name_unknown_library_vectors(
    tiny_lm: LoadedModel, tmp_path: Path
):
    lib = {"fear": LibraryVector.model_validate({"pairs": "fear", "layers": [1]})}
    ctx = MethodContext("c", base_dir=tmp_path, library=lib)
    params = CompositeSteering.Params.model_validate({"weights": {"feer": 1.0}})
    (msg,) = CompositeSteering.check(params, tiny_lm.info, ctx)
    assert "no vector 'feer' in [vectors]" in msg and "did you mean 'fear'?" in msg
    aparams = ActivationSteering.Params.model_validate(
        {"layers": [1], "coefficient": 1, "vector": "joy"}
    )
    problems = ActivationSteering.check(aparams, tiny_lm.info, ctx)
    assert any("no vector named 'joy'" in p for p in problems)
    ok = ActivationSteering.Params.model_validate(
        {"layers": [1], "coefficient": 1, "vector": "fear"}
    )
    assert ActivationSteering.check(ok, tiny_lm.info, ctx) == []


def test_library_vectors_in_a_spec_are_checked(make_spec):
    from harness.config.spec import SpecError, load_spec
    from harness.run.plan import build_plan

    path = make_spec()
    path.write_text(
        path.read_text().replace(
            "[model]", '[vectors.fear]\npairs = "fear"\nlayers = [5]\n\n[model]'
        )
    )
    with pytest.raises(SpecError) as info:
        build_plan(load_spec(path), str(path))
    assert any(p.startswith("vectors.fear.layers: [5] out of range") for p in info.value.problems)


def test_random_control_keeps_the_norm_and_changes_the_direction(
    tiny_lm: LoadedModel, tmp_path: Path
):
    base = {"layers": [0, 1], "coefficient": 2, "vector": {"pairs": "fear"}}
    real = make(ActivationSteering, base, tmp_path)
    ctrl = make(ActivationSteering, {**base, "control": "random", "control_seed": 3}, tmp_path)
    real.prepare(tiny_lm)
    meta = ctrl.prepare(tiny_lm)
    for i in (0, 1):
        v, r = real.vector.directions[i], ctrl.vector.directions[i]
        assert float(r.norm()) == pytest.approx(float(v.norm()), rel=1e-5)
        cos = float(v @ r / (v.norm() * r.norm()))
        assert abs(cos) < 0.6  # 32 dimensions: a random direction is far from the real one
    assert "random direction" in meta["vector"]
    assert ctrl.fingerprint() != real.fingerprint()
    again = make(ActivationSteering, {**base, "control": "random", "control_seed": 3}, tmp_path)
    again.prepare(tiny_lm)
    assert torch.equal(again.vector.directions[1], ctrl.vector.directions[1])
