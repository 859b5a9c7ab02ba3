"""Generation: one code path and one random stream per (prompt, seed) for every condition."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from harness.config.spec import GenerationSpec, ModelSpec
from harness.core.errors import PromptTooLongError
from harness.model.loading import load_model
from harness.run.generation import Row, generate_rows, stream_seed
from harness.run.sampler import CounterGumbelSampler, gumbel_noise, step_keys
from harness.steering import MethodContext, MethodParams, NoSteering
from harness.steering.methods.activation import ActivationParams, ActivationSteering
from harness.steering.methods.prompt import PromptParams, PromptSteering

ROWS = [
    Row("p0", "describe your walk to the bakery this morning .", 0),
    Row("p0", "describe your walk to the bakery this morning .", 1),
    Row("p1", "what will you do ?", 0),
    Row("p2", "tell me about the room you are sitting in .", 3),
]
GEN = GenerationSpec(max_new_tokens=10, temperature=1.0)


def baseline() -> NoSteering:
    return NoSteering(MethodParams(), MethodContext("baseline"))


def activation(lm, coefficient: float) -> ActivationSteering:
    params = ActivationParams.model_validate(
        {"layers": [0, 1], "coefficient": coefficient, "vector": {"pairs": "fear"}}
    )
    method = ActivationSteering(params, MethodContext("act"))
    method.prepare(lm)
    return method


def texts(outputs) -> list[str]:
    return [o.text for o in outputs]


def test_zero_coefficient_condition_equals_its_baseline_twin(tiny_lm):
    base = generate_rows(tiny_lm, baseline(), ROWS, GEN)
    noop = generate_rows(tiny_lm, activation(tiny_lm, 0.0), ROWS, GEN)
    assert texts(noop) == texts(base)
    steered = generate_rows(tiny_lm, activation(tiny_lm, 8.0), ROWS, GEN)
    assert texts(steered) != texts(base)


def test_rerun_reproduces_the_same_texts(tiny_lm):
    first = generate_rows(tiny_lm, baseline(), ROWS, GEN)
    second = generate_rows(tiny_lm, baseline(), ROWS, GEN)
    assert texts(first) == texts(second)
    # sampling is really on: different seeds of one prompt give different texts
    assert first[0].text != first[1].text


def test_row_text_does_not_depend_on_batch_composition(tiny_lm):
    together = generate_rows(tiny_lm, baseline(), ROWS, GEN)
    for i, row in enumerate(ROWS):
        alone = generate_rows(tiny_lm, baseline(), [row], GEN)
        assert alone[0].text == together[i].text
    reordered = generate_rows(tiny_lm, baseline(), ROWS[::-1], GEN)
    assert texts(reordered)[::-1] == texts(together)


def test_stream_seed_depends_on_prompt_and_seed_only():
    assert stream_seed("p0", 0) == stream_seed("p0", 0)
    assert len({stream_seed("p0", 0), stream_seed("p0", 1), stream_seed("p1", 0)}) == 3


M32, M64 = (1 << 32) - 1, (1 << 64) - 1


def _ref_splitmix64(seed: int, step: int) -> int:
    """SplitMix64 (Steele et al. 2014) in plain unsigned Python integers."""
    z = (seed + (step + 1) * 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def _ref_fmix32(h: int) -> int:
    h = ((h ^ (h >> 16)) * 0x85EBCA6B) & M32
    h = ((h ^ (h >> 13)) * 0xC2B2AE35) & M32
    return h ^ (h >> 16)


def _ref_gumbel(seed: int, step: int, v: int) -> float:
    key = _ref_splitmix64(seed, step)
    h = _ref_fmix32(_ref_fmix32((v * 0x9E3779B9 + (key & M32)) & M32) ^ (key >> 32))
    w = ((h >> 8) + 0.5) * 2.0**-24
    return -math.log(-math.log(w))


def test_splitmix64_keys_match_the_reference_stream():
    # The first output of SplitMix64 seeded with 0 (Vigna's splitmix64.c).
    lo, hi = step_keys(torch.tensor([0], dtype=torch.int64), 0)
    assert ((int(hi) & M32) << 32 | (int(lo) & M32)) == 0xE220A8397B1DCDAF
    seeds = [0, 1, 12345, (1 << 63) - 1, stream_seed("p0", 3)]
    for step in (0, 1, 17, 1000):
        lo, hi = step_keys(torch.tensor(seeds, dtype=torch.int64), step)
        got = [(int(h) & M32) << 32 | (int(low) & M32) for low, h in zip(lo, hi, strict=True)]
        assert got == [_ref_splitmix64(s, step) for s in seeds]


def test_noise_is_the_reference_hash_of_seed_step_and_token():
    seeds = [7, stream_seed("p1", 0), (1 << 63) - 1]
    noise = gumbel_noise(torch.tensor(seeds, dtype=torch.int64), 5, 300)
    assert noise.dtype == torch.float32 and noise.shape == (3, 300)
    for r, seed in enumerate(seeds):
        for v in (0, 1, 2, 150, 299):
            assert float(noise[r, v]) == pytest.approx(_ref_gumbel(seed, 5, v), abs=1e-5)


def test_noise_of_a_row_is_independent_of_its_neighbours_and_of_its_position():
    a = gumbel_noise(torch.tensor([11, 22, 33]), 4, 5000)
    b = gumbel_noise(torch.tensor([33, 11]), 4, 5000)
    c = gumbel_noise(torch.tensor([22]), 4, 5000)
    assert torch.equal(a[0], b[1]) and torch.equal(a[2], b[0]) and torch.equal(a[1], c[0])
    # and it moves on with the step, and differs between rows
    assert not torch.equal(a, gumbel_noise(torch.tensor([11, 22, 33]), 5, 5000))
    assert not torch.equal(a[0], a[1])


def test_sampler_counts_steps_from_its_first_call():
    sampler = CounterGumbelSampler([3, 4], 1.0, 1.0, 0)
    scores = torch.zeros((2, 64))
    first = sampler(torch.zeros((2, 9), dtype=torch.long), scores)
    second = sampler(torch.zeros((2, 10), dtype=torch.long), scores)
    seeds = torch.tensor([3, 4])
    assert torch.equal(first, gumbel_noise(seeds, 0, 64))
    assert torch.equal(second, gumbel_noise(seeds, 1, 64))
    assert first.dtype == torch.float32


def _frequencies(
    logits: list[float], temperature: float, top_p: float, top_k: int, n: int
) -> torch.Tensor:
    sampler = CounterGumbelSampler(list(range(n)), temperature, top_p, top_k)
    scores = torch.tensor([logits] * n, dtype=torch.float32)
    picks = sampler(torch.zeros((n, 1), dtype=torch.long), scores).argmax(-1)
    return torch.bincount(picks, minlength=len(logits)).double() / n


def test_token_frequencies_pass_a_chi_square_test_against_the_softmax():
    from scipy.stats import chisquare

    logits = torch.tensor([1.5, 0.2, -0.3, 0.9, -2.0, 0.0, 0.4, -1.1])
    expected = torch.softmax(logits.double() / 0.8, -1)
    n = 50000
    # Across rows (stream seeds) at one step ...
    sampler = CounterGumbelSampler([stream_seed("chi", s) for s in range(n)], 0.8, 1.0, 0)
    picks = sampler.perturb(logits.expand(n, -1), 0).argmax(-1)
    counts = torch.bincount(picks, minlength=8).double()
    assert chisquare(counts.numpy(), (expected * n).numpy()).pvalue > 1e-3
    # ... and along one row's stream, step after step.
    one = CounterGumbelSampler([stream_seed("chi", 0)], 0.8, 1.0, 0)
    steps = torch.stack([one.perturb(logits[None], t)[0] for t in range(5000)]).argmax(-1)
    counts = torch.bincount(steps, minlength=8).double()
    assert chisquare(counts.numpy(), (expected * 5000).numpy()).pvalue > 1e-3
    # The test can fail: the untempered softmax is rejected.
    wrong = torch.softmax(logits.double(), -1) * n
    counts = torch.bincount(picks, minlength=8).double()
    assert chisquare(counts.numpy(), wrong.numpy()).pvalue < 1e-6


def _assert_close(freq: torch.Tensor, probs: list[float], n: int) -> None:
    for f, p in zip(freq.tolist(), probs, strict=True):
        se = math.sqrt(max(p * (1 - p), 1e-12) / n)
        assert abs(f - p) < 5 * se + 1e-12, (freq, probs)


def test_gumbel_max_samples_the_tempered_softmax():
    logits = [2.0, 1.0, 0.5, -1.0, 0.0]
    n = 40000
    freq = _frequencies(logits, 0.7, 1.0, 0, n)
    expected = torch.softmax(torch.tensor(logits, dtype=torch.float64) / 0.7, -1).tolist()
    _assert_close(freq, expected, n)


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = [0.4, 0.3, 0.2, 0.1]
    logits = [math.log(p) for p in probs]
    n = 40000
    freq = _frequencies(logits, 1.0, 0.5, 0, n)
    # 0.4 < 0.5, so the second token is needed too; renormalised over {0, 1}.
    _assert_close(freq, [0.4 / 0.7, 0.3 / 0.7, 0.0, 0.0], n)


def test_top_k_keeps_k_tokens():
    probs = [0.1, 0.4, 0.3, 0.2]
    n = 40000
    freq = _frequencies([math.log(p) for p in probs], 1.0, 1.0, 2, n)
    _assert_close(freq, [0.0, 0.4 / 0.7, 0.3 / 0.7, 0.0], n)


def test_greedy_ignores_seed(tiny_lm):
    greedy = GenerationSpec(max_new_tokens=8, sampling=False)
    out = generate_rows(tiny_lm, baseline(), ROWS[:2], greedy)
    assert out[0].text == out[1].text


def test_left_padding_and_chat_template(tiny_lm):
    assert tiny_lm.tokenizer.padding_side == "left"
    out = generate_rows(tiny_lm, baseline(), ROWS, GEN)
    assert out[0].rendered_prompt.startswith("<|im_start|> user describe your walk")
    assert out[0].rendered_prompt.endswith("<|im_start|> assistant ")
    lengths = {o.n_prompt_tokens for o in out}
    assert len(lengths) > 1  # prompts of different lengths share one padded batch
    assert all(o.n_new_tokens == 10 and o.finish == "length" for o in out if o.finish != "eos")


def test_chat_template_off_feeds_the_raw_prompt(tiny_model_dir: Path):
    lm = load_model(ModelSpec(id=str(tiny_model_dir), device="cpu", chat_template="off"))
    out = generate_rows(lm, baseline(), ROWS[:1], GEN)
    assert out[0].rendered_prompt == ROWS[0].prompt


def test_chat_template_on_without_template_is_an_error(tmp_path: Path):
    from tiny import save_tiny

    from harness.model.loading import ModelLoadError

    path = save_tiny(tmp_path / "notemplate", chat_template=False)
    with pytest.raises(ModelLoadError, match="has no chat template"):
        load_model(ModelSpec(id=str(path), device="cpu", chat_template="on"))
    lm = load_model(ModelSpec(id=str(path), device="cpu"))
    assert lm.use_chat_template is False


def test_prompt_method_goes_through_the_template(tiny_lm):
    method = PromptSteering(PromptParams(instruction="you are afraid ."), MethodContext("persona"))
    out = generate_rows(tiny_lm, method, ROWS[:1], GEN)
    assert out[0].rendered_prompt.startswith("<|im_start|> system you are afraid . <|im_end|>")
    prefix = PromptSteering(
        PromptParams(instruction="you are afraid .", placement="user_prefix"), MethodContext("p")
    )
    msgs = prefix.transform_messages([{"role": "user", "content": "hello"}])
    assert msgs == [{"role": "user", "content": "you are afraid .\n\nhello"}]


def test_dtype_and_device_are_chosen_and_overridable(tiny_model_dir: Path):
    lm = load_model(ModelSpec(id=str(tiny_model_dir)))
    assert lm.device in ("cpu", "cuda", "mps")
    expected = torch.float32 if lm.device == "cpu" else lm.dtype
    assert lm.dtype == expected
    assert next(lm.model.parameters()).dtype == expected
    lm16 = load_model(ModelSpec(id=str(tiny_model_dir), device="cpu", dtype="bfloat16"))
    assert next(lm16.model.parameters()).dtype == torch.bfloat16
    assert (
        generate_rows(lm16, baseline(), ROWS[:1], GenerationSpec(max_new_tokens=3))[0].n_new_tokens
        > 0
    )


def test_a_prompt_that_does_not_fit_the_models_positions_is_refused(tiny_lm):
    """Prompt tokens + max_new_tokens past max_position_embeddings (512 for the tiny
    llama): a clear error naming the prompt before any token is generated."""
    assert tiny_lm.info.max_positions == 512
    long_row = Row("long", " ".join(["walk"] * 40), 0)
    with pytest.raises(PromptTooLongError, match=r"prompt 'long' is \d+ tokens .* model's 512"):
        generate_rows(tiny_lm, baseline(), [ROWS[0], long_row], GenerationSpec(max_new_tokens=490))
    # the same rows fit with fewer new tokens
    out = generate_rows(tiny_lm, baseline(), [ROWS[0], long_row], GenerationSpec(max_new_tokens=2))
    assert [o.n_new_tokens <= 2 for o in out] == [True, True]
