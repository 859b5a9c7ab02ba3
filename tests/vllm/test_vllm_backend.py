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
    import transformers as tf

    from tests.tiny import build_tokenizer

    path: Path = tmp_path_factory.mktemp("tiny-vllm")
    tok = build_tokenizer(True)
    torch.manual_seed(0)
    cfg = tf.LlamaConfig(
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        vocab_size=len(tok),
        initializer_range=0.5,
    )
    model = tf.LlamaForCausalLM(cfg)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(path)
    tok.save_pretrained(path)
    common = {"id": str(path), "dtype": "float32", "device": "cpu"}
    hf = load_model(ModelSpec(**common))
    vl = load_model(ModelSpec(**common, backend="vllm", max_model_len=128))
    return hf, vl


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
