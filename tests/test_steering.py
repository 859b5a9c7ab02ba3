"""Activation steering: where vectors are added, that hooks go away, how vectors are made."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from harness.config.spec import ModelSpec
from harness.core.errors import VectorFileError
from harness.model.loading import ModelLoadError, decoder_layers, load_model
from harness.steering import METHODS, MethodContext
from harness.steering.hooks import add_vector, capture_residual, edit_residual
from harness.steering.methods.activation import ActivationParams, ActivationSteering
from harness.steering.vectors import (
    ContrastPair,
    SteeringVector,
    extract_mean_difference,
    hidden_states,
    load_pairs,
)


@pytest.mark.parametrize("kind", ["llama", "qwen2", "mistral", "gemma", "gpt2", "gpt_neox"])
def test_decoder_layers_found_and_steerable(kind: str, tmp_path: Path):
    from tiny import save_tiny

    path = save_tiny(tmp_path / kind, kind, layers=3)
    lm = load_model(ModelSpec(id=str(path), device="cpu"))
    layers = decoder_layers(lm.model)
    assert len(layers) == 3 == lm.info.num_layers
    ids = lm.tokenizer(["what will you do ?"], return_tensors="pt")
    v = torch.ones(lm.info.hidden_size)
    with capture_residual(layers, [1]) as plain:
        lm.model(**ids)
    with edit_residual(layers, {1: add_vector(v, 2.0)}), capture_residual(layers, [1]) as edited:
        lm.model(**ids)
    # The capture hook runs after the edit hook on the same layer: it sees h + 2v.
    assert torch.allclose(edited[1], plain[1] + 2.0, atol=1e-5)


def test_unknown_architecture_is_a_clear_error():
    class Weird(torch.nn.Module):
        pass

    with pytest.raises(ModelLoadError, match=r"cannot find the decoder layers of Weird.*GPT-NeoX"):
        decoder_layers(Weird())


def _layer0_outputs(lm, positions: str | None, steps: int = 3) -> list[torch.Tensor]:
    """Layer-0 outputs for a prompt, then `steps` fixed tokens fed one at a time with a KV
    cache, as generate() does; with the edit active when `positions` is given."""
    layers = decoder_layers(lm.model)
    enc = lm.tokenizer(["describe your walk to the bakery ."], return_tensors="pt")
    n_prompt = enc["input_ids"].shape[1]
    edits = {0: add_vector(torch.ones(lm.info.hidden_size), 1.0)} if positions else {}
    seen = []
    with (
        edit_residual(layers, edits, positions or "all", n_prompt),
        capture_residual(layers, [0]) as cap,
    ):
        out = lm.model(**enc, use_cache=True)
        seen.append(cap[0])
        mask = enc["attention_mask"]
        for step in range(steps):
            nxt = torch.tensor([[7 + step]])
            mask = torch.cat([mask, torch.ones_like(nxt)], dim=1)
            out = lm.model(
                input_ids=nxt,
                attention_mask=mask,
                past_key_values=out.past_key_values,
                use_cache=True,
            )
            seen.append(cap[0])
    return seen


@pytest.mark.parametrize("positions", ["all", "prompt", "generated"])
def test_positions_option_selects_prompt_or_generated_tokens(tiny_lm, positions: str):
    # Layer 0's output at a position depends only on the inputs up to it, which an edit of
    # layer 0's output does not change: so the shift is exactly the vector where applied.
    plain = _layer0_outputs(tiny_lm, None)
    steered = _layer0_outputs(tiny_lm, positions)
    expect_prompt = 1.0 if positions in ("all", "prompt") else 0.0
    expect_gen = 1.0 if positions in ("all", "generated") else 0.0
    shifts = [s - p for s, p in zip(steered, plain, strict=True)]
    assert torch.allclose(shifts[0], torch.full_like(shifts[0], expect_prompt), atol=1e-4)
    for shift in shifts[1:]:
        assert torch.allclose(shift, torch.full_like(shift, expect_gen), atol=1e-4)


def test_hooks_are_removed_after_the_context_and_on_error(tiny_lm):
    layers = decoder_layers(tiny_lm.model)
    before = [len(layer._forward_hooks) for layer in layers]
    v = torch.ones(tiny_lm.info.hidden_size)
    with (
        pytest.raises(RuntimeError, match="boom"),
        edit_residual(layers, {0: add_vector(v, 1.0), 1: add_vector(v, 1.0)}),
    ):
        assert [len(layer._forward_hooks) for layer in layers] == [b + 1 for b in before]
        raise RuntimeError("boom")
    assert [len(layer._forward_hooks) for layer in layers] == before


def test_mean_difference_equals_hand_computation(tiny_lm):
    pairs = [
        ContrastPair("a", "i am afraid .", "i am here ."),
        ContrastPair("b", "the fear grows .", "the day grows ."),
    ]
    vec = extract_mean_difference(tiny_lm, pairs, [0, 1], "last", "raw")
    for layer in (0, 1):
        hp = [hidden_states(tiny_lm, [p.positive], [layer], "last")[layer][0] for p in pairs]
        hn = [hidden_states(tiny_lm, [p.negative], [layer], "last")[layer][0] for p in pairs]
        manual = sum(a - b for a, b in zip(hp, hn, strict=True)) / len(pairs)
        assert torch.allclose(vec.directions[layer], manual, atol=1e-5)
    mean_vec = extract_mean_difference(tiny_lm, pairs, [1], "mean", "raw")
    assert not torch.allclose(mean_vec.directions[1], vec.directions[1])
    assert vec.metadata["n_pairs"] == 2 and vec.metadata["aggregate"] == "last"


def test_vector_file_roundtrip_keeps_metadata(tmp_path: Path):
    vec = SteeringVector(
        {3: torch.arange(4.0), 5: -torch.ones(4)}, {"model": "m", "method": "mean_difference"}
    )
    path = tmp_path / "v.safetensors"
    vec.save(path)
    loaded = SteeringVector.load(path)
    assert loaded.layers == [3, 5]
    assert torch.equal(loaded.directions[3], torch.arange(4.0))
    assert loaded.metadata == {"model": "m", "method": "mean_difference"}


def test_bad_vector_file_is_named(tmp_path: Path):
    path = tmp_path / "v.safetensors"
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(VectorFileError, match=r"v\.safetensors"):
        SteeringVector.load(path)


def test_activation_from_file_checks_layers_and_size(tiny_lm, tmp_path: Path):
    path = tmp_path / "v.safetensors"
    SteeringVector({1: torch.ones(tiny_lm.info.hidden_size)}, {}).save(path)
    ok = ActivationParams.model_validate(
        {"layers": [1], "coefficient": 1, "vector": {"file": str(path)}}
    )
    assert ActivationSteering.check(ok, tiny_lm.info, MethodContext("a", base_dir=tmp_path)) == []
    bad = ActivationParams.model_validate(
        {"layers": [0], "coefficient": 1, "vector": {"file": "v.safetensors"}}
    )
    (msg,) = ActivationSteering.check(bad, tiny_lm.info, MethodContext("a", base_dir=tmp_path))
    assert "no direction for layers [0]" in msg
    SteeringVector({0: torch.ones(7)}, {}).save(tmp_path / "w.safetensors")
    wrong = ActivationParams.model_validate(
        {"layers": [0], "coefficient": 1, "vector": {"file": "w.safetensors"}}
    )
    (msg,) = ActivationSteering.check(wrong, tiny_lm.info, MethodContext("a", base_dir=tmp_path))
    assert "does not match the model's hidden size 32" in msg


def test_activation_caches_extracted_vector_and_fingerprint_follows_content(
    tiny_lm, tmp_path: Path
):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"positive": "i am afraid .", "negative": "i am here ."}\n')
    params = ActivationParams.model_validate(
        {"layers": [1], "coefficient": 2, "vector": {"pairs": str(pairs)}}
    )
    ctx = MethodContext("act", base_dir=tmp_path, cache_dir=tmp_path / "cache")
    method = ActivationSteering(params, ctx)
    meta = method.prepare(tiny_lm)
    cached = list((tmp_path / "cache").glob("*.safetensors"))
    assert len(cached) == 1 and meta["vector"] == str(cached[0])
    assert SteeringVector.load(cached[0]).metadata["n_pairs"] == 1
    fp1 = method.fingerprint()
    pairs.write_text('{"positive": "i am terrified .", "negative": "i am here ."}\n')
    assert ActivationSteering(params, ctx).fingerprint() != fp1


def test_shipped_fear_pairs_load():
    from prompts import data_path

    pairs = load_pairs(data_path("pairs/fear.jsonl"))
    assert len(pairs) >= 40
    assert all(p.positive and p.negative and p.positive != p.negative for p in pairs)


def test_builtin_methods_come_from_entry_points():
    assert {"none", "activation", "prompt"} <= set(METHODS.names())
    assert METHODS.get("activation") is ActivationSteering
    dotted = "harness.steering.methods.activation:ActivationSteering"
    assert METHODS.get(dotted) is ActivationSteering


@pytest.mark.parametrize("name", ["curiosity", "trust"])
def test_shipped_curiosity_and_trust_pairs(name: str):
    """Same format and size as the other shipped sets, lengths within three words."""
    from prompts import data_path

    pairs = load_pairs(data_path(f"pairs/{name}.jsonl"))
    assert len(pairs) == 48
    assert [p.id for p in pairs] == [f"{name}-{i:03d}" for i in range(1, 49)]
    assert all(abs(len(p.positive.split()) - len(p.negative.split())) <= 3 for p in pairs)
    assert len({p.positive for p in pairs}) == 48


def test_vector_file_as_one_matrix_with_a_layer_list(tmp_path: Path):
    """Steering-Memory and others save every layer as one [n_layers, hidden] tensor."""
    from safetensors.torch import save_file

    matrix = torch.arange(12.0).reshape(3, 4)
    path = tmp_path / "m.safetensors"
    save_file({"vectors": matrix}, str(path), metadata={"layers": "[0, 2, 5]"})
    vec = SteeringVector.load(path)
    assert vec.layers == [0, 2, 5]
    assert torch.equal(vec.directions[2], torch.tensor([4.0, 5.0, 6.0, 7.0]))
    save_file({"vectors": matrix}, str(path), metadata={"layers": "3,4,5"})
    assert SteeringVector.load(path).layers == [3, 4, 5]
    save_file({"vectors": matrix}, str(path))
    with pytest.raises(VectorFileError, match="no 'layers' list"):
        SteeringVector.load(path)
    save_file({"vectors": matrix}, str(path), metadata={"layers": "[0, 1]"})
    with pytest.raises(VectorFileError, match=r"lists 2 layer\(s\) for the 3 row"):
        SteeringVector.load(path)
    save_file({"vectors": torch.ones(2, 3, 4)}, str(path), metadata={"layers": "[0, 1]"})
    with pytest.raises(VectorFileError, match="one \\[n_layers, hidden\\] matrix"):
        SteeringVector.load(path)
