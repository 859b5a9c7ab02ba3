"""The fluency scorer: perplexity under the unsteered model, and the repeated-n-gram rate."""

from __future__ import annotations

import math

import pytest
import torch

from harness.core.scoring import SCORERS, ScorerContext, ScoringItem
from judges.fluency import FluencyParams, FluencyScorer, repetition_rate


def test_repetition_rate_is_seq_rep_n():
    # 6 words -> 4 trigrams: (a b c) (b c a) (c a b) (a b c): 3 distinct -> 1 - 3/4
    assert repetition_rate("a b c a b c", 3) == pytest.approx(0.25)
    assert repetition_rate("one two three four", 3) == 0.0
    assert repetition_rate("yet yet yet yet yet", 1) == pytest.approx(1 - 1 / 5)
    assert repetition_rate("too short", 3) is None


def _brute_force_ppl(lm, prompt: str, text: str) -> float:
    from harness.model.chat import build_messages, render

    p_ids = lm.tokenizer.encode(render(lm, build_messages(prompt, None)), add_special_tokens=False)
    r_ids = lm.tokenizer.encode(text, add_special_tokens=False)
    nll = 0.0
    for k in range(len(r_ids)):  # one unbatched forward per token, no padding at all
        ctx = torch.tensor([p_ids + r_ids[:k]])
        with torch.no_grad():
            logp = torch.log_softmax(lm.model(input_ids=ctx).logits[0, -1].double(), -1)
        nll -= float(logp[r_ids[k]])
    return math.exp(nll / len(r_ids))


def test_perplexity_matches_brute_force_and_uses_the_shared_model(tiny_lm):
    calls = []

    def load():
        calls.append(1)
        return tiny_lm

    scorer = FluencyScorer(FluencyParams(), ScorerContext(load_generator=load))
    items = [
        ScoringItem("i am afraid of the dark .", "what will you do ?", "g0", "c"),
        ScoringItem("the bakery is warm .", "describe your walk to the bakery .", "g1", "c"),
        ScoringItem("", "what will you do ?", "g2", "c"),
    ]
    rows = scorer.score(items)
    for item, row in zip(items[:2], rows[:2], strict=True):
        assert row["perplexity"].value == pytest.approx(
            _brute_force_ppl(tiny_lm, item.prompt, item.text), rel=1e-4
        )
    assert rows[2]["perplexity"].value is None and "no tokens" in rows[2]["perplexity"].reason
    assert rows[1]["repetition"].value == 0.0 and rows[2]["repetition"].value is None
    assert len(calls) == 1  # the generator was borrowed, not loaded again


def test_loads_its_own_model_when_none_is_shared(tiny_model_dir):
    ctx = ScorerContext(generator_model={"id": str(tiny_model_dir), "device": "cpu"})
    (row,) = FluencyScorer(FluencyParams(), ctx).score(
        [ScoringItem("i am here .", "hello", "g", "c")]
    )
    assert row["perplexity"].value is not None and row["perplexity"].value > 1


def test_registered():
    assert SCORERS.get("fluency") is FluencyScorer
