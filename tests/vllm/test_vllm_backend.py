"""The vLLM backend against the HF reference on a tiny random Llama, float32 on the CPU.

One engine is started for the module (start-up takes most of the time). vLLM's CPU
attention needs a real head size (64), so the model is wider than tests/tiny.py's.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from harness.config.spec import GenerationSpec, ModelSpec
from harness.model.loading import load_model, model_key
from harness.run.generation import Row, generate_rows
from harness.run.vllm_generation import generate_rows_vllm
from harness.steering.base import BaseMethod, MethodContext, MethodParams, NoSteering
from harness.steering.methods.adapter import AdapterSteering

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

PROMPTS = ["I am happy today", "what is fear", "tell me a story about a dog", "the cat"]


class AddAt(BaseMethod):
    """A fixed addition at one layer, as a plug-in declares it."""

    def __init__(self, layer: int, vector: torch.Tensor):
        super().__init__(MethodParams(), MethodContext("add"))
        self.layer, self.vector = layer, vector

    def additions(self) -> dict[int, torch.Tensor]:
        return {self.layer: self.vector}

    def apply(self, lm, batch):  # type: ignore[no-untyped-def, override]
        from harness.steering.hooks import add_vector, edit_residual

        return edit_residual(lm.layers, {self.layer: add_vector(self.vector, 1.0)})


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from tests.vllm.tiny_vllm import save_tiny_vllm

    path = save_tiny_vllm(tmp_path_factory.mktemp("tiny-vllm"))
    common = {"id": str(path), "dtype": "float32", "device": "cpu"}
    hf = load_model(ModelSpec(**common))
    vl = load_model(ModelSpec(**common, backend="vllm", max_model_len=128))
    yield hf, vl
    vl.engine.close()  # its processes would otherwise take CPU from the next module's


ROWS = [Row(f"p{i}", p, 0) for i, p in enumerate(PROMPTS)]
GREEDY = GenerationSpec(max_new_tokens=12, sampling=False)
SAMPLED = GenerationSpec(max_new_tokens=12, sampling=True)
NONE = NoSteering(MethodParams(), MethodContext("baseline"))


def texts(outputs) -> list[str]:  # type: ignore[no-untyped-def]
    return [o.text for o in outputs]


def test_greedy_equals_hf(models) -> None:  # type: ignore[no-untyped-def]
    hf, vl = models
    a, b = generate_rows(hf, NONE, ROWS, GREEDY), generate_rows_vllm(vl, NONE, ROWS, GREEDY)
    assert texts(a) == texts(b)
    assert [o.n_prompt_tokens for o in a] == [o.n_prompt_tokens for o in b]
    assert all(o.text for o in b)


def test_steered_equals_hf_and_hooks_are_removed(models) -> None:  # type: ignore[no-untyped-def]
    hf, vl = models
    vector = torch.randn(128, generator=torch.Generator().manual_seed(1)) * 8
    method = AddAt(0, vector)
    plain = texts(generate_rows_vllm(vl, NONE, ROWS, GREEDY))
    steered_hf = texts(generate_rows(hf, method, ROWS, GREEDY))
    steered = texts(generate_rows_vllm(vl, method, ROWS, GREEDY))
    assert steered == steered_hf
    assert steered != plain  # the vector changes texts
    assert vl.engine.hooks_left() == 0
    assert texts(generate_rows_vllm(vl, NONE, ROWS, GREEDY)) == plain


def test_seeds_are_per_request(models) -> None:  # type: ignore[no-untyped-def]
    _, vl = models
    full = texts(generate_rows_vllm(vl, NONE, ROWS, SAMPLED))
    assert texts(generate_rows_vllm(vl, NONE, ROWS[::-1], SAMPLED))[::-1] == full
    assert texts(generate_rows_vllm(vl, NONE, ROWS[2:3], SAMPLED)) == full[2:3]
    other = [Row(r.prompt_id, r.prompt, 1) for r in ROWS]
    assert texts(generate_rows_vllm(vl, NONE, other, SAMPLED)) != full


def test_backend_enters_the_model_key_only_when_not_hf(models) -> None:  # type: ignore[no-untyped-def]
    hf, vl = models
    assert "backend" not in model_key(hf.spec)
    assert model_key(vl.spec)["backend"] == "vllm"


def test_ablation_equals_hf(models, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from harness.steering.methods.activation import ActivationSteering
    from harness.steering.vectors import SteeringVector

    hf, vl = models
    # The stream's own mean direction at layer 0: removing it changes what comes next.
    enc = hf.encode(PROMPTS)
    with torch.no_grad():
        hidden = hf.model(**enc, output_hidden_states=True).hidden_states[1]
    SteeringVector({0: hidden.mean(dim=(0, 1))}, {}).save(tmp_path / "u.safetensors")
    params = ActivationSteering.Params.model_validate(
        {
            "layers": [0],
            "mode": "ablate",
            "coefficient": 1.0,
            "vector": {"file": str(tmp_path / "u.safetensors")},
        }
    )
    method = ActivationSteering(params, MethodContext("ablate", base_dir=tmp_path))
    method.prepare(hf)
    assert method.ablations() is not None and method.additions() is None
    plain = texts(generate_rows_vllm(vl, NONE, ROWS, GREEDY))
    ablated = texts(generate_rows_vllm(vl, method, ROWS, GREEDY))
    assert ablated == texts(generate_rows(hf, method, ROWS, GREEDY))
    assert ablated != plain
    assert vl.engine.hooks_left() == 0


def test_logit_bias_equals_hf(models) -> None:  # type: ignore[no-untyped-def]
    from harness.steering.methods.logit_bias import LogitBias

    hf, vl = models
    params = LogitBias.Params.model_validate(
        {"words": ["afraid", "fear", "terrified"], "bias": 6.0}
    )
    method = LogitBias(params, MethodContext("bias"))
    method.prepare(hf)
    assert len(method.token_ids) == 3
    biased = texts(generate_rows_vllm(vl, method, ROWS, GREEDY))
    assert biased == texts(generate_rows(hf, method, ROWS, GREEDY))
    plain = texts(generate_rows_vllm(vl, NONE, ROWS, GREEDY))
    count = lambda ts: sum(t.split().count(w) for t in ts for w in ("afraid", "fear", "terrified"))  # noqa: E731
    assert count(biased) > count(plain)


REFUSED = {
    "attention site": (
        'method = "activation"\n[conditions.params]\nlayers = [1]\ncoefficient = 4.0\n'
        'site = "attention"\nvector = { pairs = "fear" }',
        "params.site: 'attention' is not supported on the vllm backend",
    ),
    "generated positions": (
        'method = "activation"\n[conditions.params]\nlayers = [1]\ncoefficient = 4.0\n'
        'positions = "generated"\nvector = { pairs = "fear" }',
        "params.positions: 'generated' is not supported on the vllm backend",
    ),
}


@pytest.mark.parametrize("what", sorted(REFUSED))
def test_check_refuses_what_vllm_cannot_run(what, tiny_model_dir, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from harness import cli
    from tests.conftest import write_prompts

    condition, reason = REFUSED[what]
    spec = tmp_path / "spec.toml"
    spec.write_text(
        f'name = "r"\noutput_dir = "{tmp_path / "run"}"\n'
        f'[model]\nid = "{tiny_model_dir}"\ndevice = "cpu"\nbackend = "vllm"\n'
        f'[prompts]\nfile = "{write_prompts(tmp_path / "p.jsonl")}"\n'
        "[generation]\nmax_new_tokens = 4\nseeds = [0]\n"
        f'[[conditions]]\nname = "c"\n{condition}\n'
        '[[scorers]]\ntype = "lexicon"\n'
    )
    assert cli.main(["check", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "conditions[0]" in err and reason in err, err
    assert "model.backend = 'hf'" in err and "Traceback" not in err


def test_a_run_generates_the_hf_backends_greedy_texts(models, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """``steer-harness run`` end to end on each backend: the engine's vLLM path (outputs
    handed back batch by batch) gives the HF run's records' texts, one engine call per
    condition, or with ``conditions_per_batch = 3`` one call for all three (activation,
    prompt method, baseline) with the same texts and ids."""
    import json

    from harness import cli
    from harness.model.vllm_backend import VllmEngine
    from tests.conftest import write_prompts

    hf, _ = models
    calls: list[int] = []
    generate = VllmEngine.generate

    def counted(self, prompts, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(len(prompts))
        return generate(self, prompts, *args, **kwargs)

    monkeypatch.setattr(VllmEngine, "generate", counted)
    prompts = write_prompts(tmp_path / "p.jsonl", 4)
    records, engine_calls = {}, {}
    for run, backend, per_batch in (("hf", "hf", 1), ("vllm", "vllm", 1), ("vllm3", "vllm", 3)):
        vllm_only = 'backend = "vllm"\nmax_model_len = 128\n' if backend == "vllm" else ""
        spec = tmp_path / f"{run}.toml"
        spec.write_text(
            f'name = "{run}"\noutput_dir = "{tmp_path / run}"\n'
            f'[model]\nid = "{hf.spec.id}"\ndevice = "cpu"\ndtype = "float32"\n{vllm_only}'
            f'[prompts]\nfile = "{prompts}"\n'
            "[generation]\nmax_new_tokens = 8\nsampling = false\nbatch_size = 3\nseeds = [0]\n"
            f"conditions_per_batch = {per_batch}\n"
            '[[conditions]]\nname = "act"\nmethod = "activation"\n[conditions.params]\n'
            'layers = [0]\ncoefficient = 8.0\nvector = { pairs = "fear" }\n'
            '[[conditions]]\nname = "persona"\nmethod = "prompt"\n[conditions.params]\n'
            'instruction = "you are afraid ."\n'
            '[[scorers]]\ntype = "lexicon"\n'
        )
        calls.clear()
        assert cli.main(["generate", str(spec)]) == 0
        engine_calls[run] = list(calls)
        rows = [json.loads(line) for line in (tmp_path / run / "generations.jsonl").open()]
        records[run] = {(r["condition"], r["prompt_id"], r["seed"]): r for r in rows}
    hf_rows, vl_rows, vl3_rows = records["hf"], records["vllm"], records["vllm3"]
    assert len(vl_rows) == 12 and vl_rows.keys() == hf_rows.keys()  # 3 conditions x 4 prompts
    assert {k: r["text"] for k, r in vl_rows.items()} == {k: r["text"] for k, r in hf_rows.items()}
    assert not {r["id"] for r in vl_rows.values()} & {r["id"] for r in hf_rows.values()}
    texts_of = lambda c: [r["text"] for k, r in vl_rows.items() if k[0] == c]  # noqa: E731
    assert texts_of("act") != texts_of("baseline")
    assert engine_calls["vllm"] == [4, 4, 4] and engine_calls["vllm3"] == [12]
    assert {k: (r["id"], r["text"]) for k, r in vl3_rows.items()} == {
        k: (r["id"], r["text"]) for k, r in vl_rows.items()
    }


def _counting_calls(vl, monkeypatch):  # type: ignore[no-untyped-def]
    calls: list[int] = []
    generate = vl.engine.generate

    def counted(prompts, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(len(prompts))
        return generate(prompts, *args, **kwargs)

    monkeypatch.setattr(vl.engine, "generate", counted)
    return calls


def _three_conditions() -> list[BaseMethod]:
    """The baseline and two different vectors at different layers (the embedding output
    and layer 1), each row of a condition steered with its own condition's vector."""
    gen = torch.Generator().manual_seed(3)
    return [
        NONE,
        AddAt(-1, torch.randn(128, generator=gen) * 4),
        AddAt(1, torch.randn(128, generator=gen) * 8),
    ]


@pytest.mark.parametrize("gen", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
def test_conditions_in_one_call_equal_one_call_each(models, gen, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from harness.run.vllm_generation import generate_conditions_vllm

    hf, vl = models
    methods = _three_conditions()
    alone = [texts(generate_rows_vllm(vl, m, ROWS, gen)) for m in methods]
    assert alone[0] != alone[1] and alone[0] != alone[2] and alone[1] != alone[2]
    calls = _counting_calls(vl, monkeypatch)
    shared = generate_conditions_vllm(vl, [(m, ROWS) for m in methods], gen)
    assert calls == [3 * len(ROWS)]  # one engine call for all three conditions
    assert vl.engine.tagged_problem is None
    assert [texts(out) for out in shared] == alone
    assert vl.engine.hooks_left() == 0
    if not gen.sampling:
        assert alone == [texts(generate_rows(hf, m, ROWS, GREEDY)) for m in methods]


def test_conditions_share_a_call_with_interleaved_rows_and_the_prompt_method(
    models, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """Rows of different lengths and conditions mixed in vLLM's flattened batch (prompts of
    one condition reversed, one condition with a single row, a prompt-method condition):
    each row's text is its condition's, as generated alone."""
    from harness.run.vllm_generation import generate_conditions_vllm
    from harness.steering.methods.prompt import PromptSteering

    _, vl = models
    prompt = PromptSteering(
        PromptSteering.Params(instruction="you are afraid ."), MethodContext("persona")
    )
    methods = [*_three_conditions(), prompt]
    parts = [(methods[0], ROWS), (methods[1], ROWS[::-1]), (methods[2], ROWS[1:2]), (prompt, ROWS)]
    alone = [texts(generate_rows_vllm(vl, m, rows, SAMPLED)) for m, rows in parts]
    calls = _counting_calls(vl, monkeypatch)
    shared = generate_conditions_vllm(vl, parts, SAMPLED)
    assert len(calls) == 1 and [texts(out) for out in shared] == alone


def test_a_layout_the_hooks_cannot_read_falls_back_to_one_call_each(
    models, monkeypatch, caplog
) -> None:  # type: ignore[no-untyped-def]
    from harness.run.vllm_generation import generate_conditions_vllm

    _, vl = models
    methods = _three_conditions()
    alone = [texts(generate_rows_vllm(vl, m, ROWS, GREEDY)) for m in methods]
    # What the worker answers where its runner lacks what the tagged hooks read.
    monkeypatch.setattr(
        vl.engine, "install_tagged", lambda tables: "the worker's model runner has no input_batch"
    )
    calls = _counting_calls(vl, monkeypatch)
    with caplog.at_level("WARNING"):
        shared = generate_conditions_vllm(vl, [(m, ROWS) for m in methods], GREEDY)
    assert len(calls) == 3 and [texts(out) for out in shared] == alone
    assert "has no input_batch" in caplog.text and "one condition per call" in caplog.text
    vl.engine.tagged_problem = None  # the engine itself can share calls; later tests do


def adapter(path: Path) -> AdapterSteering:
    return AdapterSteering(AdapterSteering.Params(path=str(path)), MethodContext("adapter"))


def test_a_non_lora_adapter_is_refused_with_the_reason(models, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from harness.core.errors import EngineError

    _, vl = models
    (tmp_path / "adapter_config.json").write_text('{"peft_type": "IA3"}')
    with pytest.raises(EngineError, match="vLLM runs LoRA adapters only"):
        generate_rows_vllm(vl, adapter(tmp_path), ROWS, GREEDY)


def test_lora_adapter_equals_hf_peft(models, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Last in the module: the LoRA adapter restarts the engine with LoRA support."""
    from peft import LoraConfig, get_peft_model

    hf, vl = models
    base = type(hf.model).from_pretrained(hf.spec.id)  # a copy to make the adapter on
    torch.manual_seed(2)
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=["q_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        init_lora_weights=False,  # random B too: a zero-initialised LoRA changes nothing
    )
    get_peft_model(base, config).save_pretrained(tmp_path / "lora")
    method = adapter(tmp_path / "lora")
    method.prepare(hf)
    plain = texts(generate_rows_vllm(vl, NONE, ROWS, GREEDY))
    adapted = texts(generate_rows_vllm(vl, method, ROWS, GREEDY))
    assert adapted == texts(generate_rows(hf, method, ROWS, GREEDY))
    assert adapted != plain
    # The engine now has LoRA support; requests without the adapter are the base model's.
    assert texts(generate_rows_vllm(vl, NONE, ROWS, GREEDY)) == plain
    assert texts(generate_rows(hf, NONE, ROWS, GREEDY)) == plain  # peft unloaded
