"""Steering points and scales (issue 13 point 3): the embedding output, depth ranges,
attention and MLP sites, one coefficient per layer, unit-normalised vectors, one extraction
shared by every layer set, and ids unchanged when none of it is used."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from harness.config.spec import ModelSpec
from harness.config.vectors import EMBEDDING, depth_range
from harness.core.errors import ModelLoadError, VectorFileError
from harness.core.ids import content_id
from harness.model.loading import LoadedModel, ModelInfo, load_model
from harness.model.sites import site_modules
from harness.steering import MethodContext
from harness.steering.base import BatchInfo
from harness.steering.hooks import capture_residual
from harness.steering.methods.activation import ActivationParams, ActivationSteering
from harness.steering.vectors import SteeringVector

TEXT = "what will you do ?"


def method(params: dict, tmp_path: Path, cache: bool = True) -> ActivationSteering:
    ctx = MethodContext("c", base_dir=tmp_path, cache_dir=tmp_path / "cache" if cache else None)
    return ActivationSteering(ActivationParams.model_validate(params), ctx)


def vector_file(tmp_path: Path, layers: list[int], hidden: int, seed: int = 0) -> str:
    gen = torch.Generator().manual_seed(seed)
    path = tmp_path / f"v{seed}.safetensors"
    SteeringVector({i: torch.randn(hidden, generator=gen) for i in layers}, {}).save(path)
    return str(path)


def run(lm: LoadedModel, m: ActivationSteering | None, modules, index: int) -> torch.Tensor:
    enc = lm.tokenizer([TEXT], return_tensors="pt")
    batch = BatchInfo(enc["input_ids"].shape[1], ["p"], [0])
    if m is None:
        with capture_residual(modules, [index]) as cap:
            lm.model(**enc)
    else:
        with m.apply(lm, batch), capture_residual(modules, [index]) as cap:
            lm.model(**enc)
    return cap[index]


def test_layers_parse_embedding_and_depth_ranges():
    assert depth_range("30%-60%", 30) == list(range(9, 18))
    assert depth_range("0%-100%", 2) == [0, 1]
    assert depth_range("50% - 100%", 2) == [1]
    assert depth_range("0%-50%", 5) == [0, 1, 2]  # 2/5 = 40% < 50%, 3/5 = 60% is not
    with pytest.raises(ValueError, match="holds no layer"):
        depth_range("10%-20%", 2)
    base = {"coefficient": 1.0, "vector": {"pairs": "fear"}}
    p = ActivationParams.model_validate({**base, "layers": ["embedding", 1]})
    assert p.layers == [EMBEDDING, 1]
    assert p.model_dump(mode="json")["layers"] == ["embedding", 1]  # round trip
    assert ActivationParams.model_validate(p.model_dump(mode="json")).layers == [EMBEDDING, 1]
    resolved = ActivationParams.model_validate(
        {**base, "layers": "30%-60%"}, context={"num_layers": 30}
    )
    assert resolved.layers == list(range(9, 18))
    with pytest.raises(ValidationError, match="needs the model's layer count"):
        ActivationParams.model_validate({**base, "layers": "30%-60%"})
    with pytest.raises(ValidationError, match="write 'embedding'"):
        ActivationParams.model_validate({**base, "layers": [-1]})
    with pytest.raises(ValidationError, match="is not a layer"):
        ActivationParams.model_validate({**base, "layers": ["first"]})


def test_embedding_output_is_the_input_of_block_0(tiny_lm: LoadedModel, tmp_path: Path):
    hidden = tiny_lm.info.hidden_size
    path = vector_file(tmp_path, [EMBEDDING], hidden)
    v = SteeringVector.load(Path(path)).directions[EMBEDDING]
    m = method({"layers": "embedding", "coefficient": 3.0, "vector": {"file": path}}, tmp_path)
    m.prepare(tiny_lm)
    plain = run(tiny_lm, None, tiny_lm.layers, EMBEDDING)
    steered = run(tiny_lm, m, tiny_lm.layers, EMBEDDING)
    assert torch.allclose(steered - plain, (3.0 * v).expand_as(plain), atol=1e-5)
    # the input of block 0 is the token embedding in Llama: the same as reading it there
    enc = tiny_lm.tokenizer([TEXT], return_tensors="pt")
    emb = tiny_lm.model.get_input_embeddings()(enc["input_ids"])
    assert torch.allclose(plain, emb, atol=1e-6)
    # and block 0's output moves with it
    assert not torch.allclose(
        run(tiny_lm, m, tiny_lm.layers, 0), run(tiny_lm, None, tiny_lm.layers, 0)
    )
    assert m.additions() is not None and set(m.additions()) == {EMBEDDING}  # batchable


@pytest.mark.parametrize("site", ["attention", "mlp"])
def test_site_adds_at_the_sublayer_output(tiny_lm: LoadedModel, tmp_path: Path, site: str):
    hidden = tiny_lm.info.hidden_size
    path = vector_file(tmp_path, [0, 1], hidden)
    v = SteeringVector.load(Path(path)).directions[1]
    m = method(
        {"layers": [1], "coefficient": 2.0, "site": site, "vector": {"file": path}}, tmp_path
    )
    m.prepare(tiny_lm)
    modules = site_modules(tiny_lm.layers, site)  # type: ignore[arg-type]
    plain, steered = run(tiny_lm, None, modules, 1), run(tiny_lm, m, modules, 1)
    assert torch.allclose(steered - plain, (2.0 * v).expand_as(plain), atol=1e-5)
    # the MLP writes last: the block's output moves by exactly the same amount; the
    # attention's write also passes through the MLP, so the block's output moves otherwise
    r_plain, r_steered = (run(tiny_lm, x, tiny_lm.layers, 1) for x in (None, m))
    same = torch.allclose(r_steered - r_plain, (2.0 * v).expand_as(r_plain), atol=1e-5)
    assert same == (site == "mlp")
    assert m.additions() is None  # not a residual addition: not stacked with others
    assert m.fingerprint()["site"] == site


def test_site_errors_name_the_fix(tmp_path: Path):
    neox = ModelInfo("gpt_neox", 2, 32)
    p = ActivationParams.model_validate(
        {"layers": [0], "coefficient": 1.0, "site": "mlp", "vector": {"pairs": "fear"}}
    )
    problems = ActivationSteering.check(p, neox, MethodContext("c", base_dir=tmp_path))
    assert problems == [
        "params.site: site = 'mlp' is not supported for 'gpt_neox' models "
        "(no self_attn/attn and mlp submodules); use site = 'residual'"
    ]
    with pytest.raises(ValidationError, match="'embedding' is a point of the residual stream"):
        ActivationParams.model_validate(
            {
                "layers": ["embedding"],
                "coefficient": 1.0,
                "site": "attention",
                "vector": {"pairs": "fear"},
            }
        )


def test_site_on_a_block_without_sublayers_is_a_clear_error(tmp_path: Path):
    from tiny import save_tiny

    lm = load_model(ModelSpec(id=str(save_tiny(tmp_path / "neox", "gpt_neox")), device="cpu"))
    path = vector_file(tmp_path, [0], lm.info.hidden_size)
    m = method(
        {"layers": [0], "coefficient": 1.0, "site": "attention", "vector": {"file": path}}, tmp_path
    )
    m.prepare(lm)
    enc = lm.tokenizer([TEXT], return_tensors="pt")
    batch = BatchInfo(enc["input_ids"].shape[1], ["p"], [0])
    with pytest.raises(ModelLoadError, match="Use the residual site"), m.apply(lm, batch):
        pass


def test_coefficient_per_layer_and_normalize(tiny_lm: LoadedModel, tmp_path: Path):
    hidden = tiny_lm.info.hidden_size
    path = vector_file(tmp_path, [0, 1], hidden)
    vec = SteeringVector.load(Path(path))
    m = method({"layers": [0, 1], "coefficient": [4.0, 1.0], "vector": {"file": path}}, tmp_path)
    meta = m.prepare(tiny_lm)
    assert meta["effective_coefficients"] == {"0": 4.0, "1": 1.0}
    adds = m.additions()
    assert adds is not None
    assert torch.allclose(adds[0], 4.0 * vec.directions[0]) and torch.allclose(
        adds[1], vec.directions[1]
    )
    assert m.steering_point().coefficient is None  # no single number to plot
    with pytest.raises(ValidationError, match=r"coefficient lists 3 value\(s\) for 2 layer\(s\)"):
        ActivationParams.model_validate(
            {"layers": [0, 1], "coefficient": [1, 2, 3], "vector": {"file": path}}
        )
    unit = method(
        {"layers": [0, 1], "coefficient": 2.0, "normalize": True, "vector": {"file": path}},
        tmp_path,
    )
    unit.prepare(tiny_lm)
    adds = unit.additions()
    assert adds is not None
    for i in (0, 1):
        assert float(adds[i].norm()) == pytest.approx(2.0, rel=1e-6)
        cos = torch.nn.functional.cosine_similarity(adds[i], vec.directions[i], dim=0)
        assert float(cos) == pytest.approx(1.0, abs=1e-6)
    assert unit.fingerprint()["normalize"] is True


def test_one_extraction_is_shared_by_every_layer_set(tiny_lm: LoadedModel, tmp_path: Path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"positive": "i am afraid .", "negative": "i am here ."}\n')
    a = method({"layers": [1], "coefficient": 1.0, "vector": {"pairs": str(pairs)}}, tmp_path)
    b = method({"layers": [0, 1], "coefficient": 1.0, "vector": {"pairs": str(pairs)}}, tmp_path)
    meta_a, meta_b = a.prepare(tiny_lm), b.prepare(tiny_lm)
    files = list((tmp_path / "cache").glob("*.safetensors"))
    assert len(files) == 1 and meta_a["vector"] == meta_b["vector"] == str(files[0])
    stored = SteeringVector.load(files[0])
    assert stored.layers == [EMBEDDING, 0, 1]  # every layer, extracted once
    assert a.vector is not None and b.vector is not None
    assert torch.equal(a.vector.directions[1], b.vector.directions[1])
    assert b.vector.layers == [0, 1]
    # without a cache folder, the model's memo shares it within a run
    tiny_lm.cache.pop(("extracted_vectors",), None)
    c = method(
        {"layers": [0], "coefficient": 1.0, "vector": {"pairs": str(pairs)}}, tmp_path, False
    )
    c.prepare(tiny_lm)
    assert c.vector is not None and torch.equal(c.vector.directions[0], b.vector.directions[0])
    assert len(tiny_lm.cache[("extracted_vectors",)]) == 1


def test_zero_last_token_difference_at_the_embedding_warns(
    tiny_lm: LoadedModel, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        '{"positive": "i am afraid .", "negative": "i am here ."}\n'
        '{"positive": "the fear grows .", "negative": "the day grows ."}\n'
    )
    last = method(
        {"layers": ["embedding"], "coefficient": 1.0, "vector": {"pairs": str(pairs)}}, tmp_path
    )
    with caplog.at_level(logging.WARNING):
        last.prepare(tiny_lm)
    assert last.vector is not None and float(last.vector.directions[EMBEDDING].norm()) == 0.0
    assert any("zero at the embedding output" in r.getMessage() for r in caplog.records)
    with pytest.raises(VectorFileError, match='set aggregate = "mean"'):
        method(
            {
                "layers": ["embedding"],
                "coefficient": 1.0,
                "coefficient_mode": "norm",
                "vector": {"pairs": str(pairs)},
            },
            tmp_path,
        ).prepare(tiny_lm)
    caplog.clear()
    mean = method(
        {
            "layers": ["embedding"],
            "coefficient": 1.0,
            "vector": {"pairs": str(pairs), "aggregate": "mean"},
        },
        tmp_path,
    )
    with caplog.at_level(logging.WARNING):
        mean.prepare(tiny_lm)
    assert mean.vector is not None and float(mean.vector.directions[EMBEDDING].norm()) > 0
    assert not caplog.records


def test_ids_of_conditions_without_the_new_options_are_unchanged():
    """Content ids computed on main before these options existed (the fingerprint leaves
    defaults out, so the demo's generations keep their ids)."""
    cases = [
        (
            {
                "layers": [1],
                "coefficient": 2.0,
                "coefficient_mode": "norm",
                "vector": {"pairs": "fear"},
            },
            "4406507c265d3fac1139",
        ),
        (
            {
                "layers": [0, 1],
                "coefficient": 4,
                "vector": {"pairs": "joy", "aggregate": "mean"},
                "positions": "generated",
            },
            "3cd4fcefd3f6a1c19dbf",
        ),
    ]
    for raw, expected in cases:
        m = ActivationSteering(ActivationParams.model_validate(raw), MethodContext("c"))
        fp = m.fingerprint()
        assert content_id({"name": "c", "method": "activation", "fingerprint": fp}) == expected
        with_defaults = {**raw, "site": "residual", "normalize": False}
        m2 = ActivationSteering(ActivationParams.model_validate(with_defaults), MethodContext("c"))
        assert m2.fingerprint() == fp


def test_depth_range_and_targets_resolve_in_the_plan(make_spec):
    """In a spec, a depth range is resolved against the model's config (2 layers here);
    `targets` and `[analysis] primary` reach the analysis's condition_info."""
    from harness.run.runner import condition_info, open_plan

    extra = """
[[conditions]]
name = "deep"
method = "activation"
targets = ["lexicon/hedging"]
[conditions.params]
layers = "50%-100%"
coefficient = [2.0]
vector = { pairs = "fear" }

[analysis]
primary = ["fear"]
"""
    plan, _ = open_plan(make_spec(extra=extra))
    deep = plan.condition("deep")
    assert deep.params.layers == [1]  # type: ignore[attr-defined]
    info = condition_info(plan)
    assert info["deep"]["metrics"] == ["lexicon/hedging"]
    assert info["act"]["metrics"] == ["fear"] and info["persona"]["metrics"] == ["fear"]
    assert "metrics" not in info["baseline"]
