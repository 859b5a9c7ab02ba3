"""The local HF judge on a tiny random model whose tokenizer splits numbers into digits,
checked against a brute-force computation, one unbatched forward pass per candidate."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest
import torch
from tiny import digit_tokenizer

from harness.config.spec import ModelSpec, SpecError
from harness.core.scoring import ScorerContext, ScoringItem
from harness.model.loading import load_model
from judges.llm.hf import HFJudgeModel
from judges.llm.scorer import JudgeParams, JudgeScorer


@pytest.fixture(scope="module")
def digit_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny import build_model

    path = tmp_path_factory.mktemp("tiny-digit-judge")
    tok = digit_tokenizer()
    model = build_model("llama", vocab_size=len(tok), layers=2, seed=3)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def brute_force(judge: HFJudgeModel, prompt: str) -> list[float]:
    """p(k) for k = 0..100: product of next-token probabilities, then a non-digit stop."""
    prefix, sep = judge.render(prompt)
    prompt_ids, cands = judge.candidate_ids(prefix, sep)
    digit_ids = [
        i
        for i, t in enumerate(
            judge.tokenizer.convert_ids_to_tokens(list(range(len(judge.tokenizer))))
        )
        if t[:1].isdigit()
    ]
    probs = []
    for cand in cands:
        ids = torch.tensor([prompt_ids + cand])
        with torch.inference_mode():
            logits = judge.model(input_ids=ids).logits[0].double()
        p_all = torch.softmax(logits, dim=-1)
        n = len(prompt_ids)
        p = 1.0
        for j, tok in enumerate(cand):
            p *= float(p_all[n - 1 + j, tok])
        p *= 1.0 - float(p_all[n - 1 + len(cand), digit_ids].sum())
        probs.append(p)
    return probs


@pytest.mark.parametrize("chat", [True, False])
def test_number_probabilities_match_brute_force(digit_model_dir: Path, chat: bool):
    lm = load_model(
        ModelSpec(id=str(digit_model_dir), device="cpu", chat_template="auto" if chat else "off")
    )
    judge = HFJudgeModel(lm, batch_size=16)  # 101 candidates in 7 batches, last one partial
    prompt = "rate the fear in this text . <response> i am afraid </response>"
    prefix, sep = judge.render(prompt)
    _, cands = judge.candidate_ids(prefix, sep)
    assert [len(c) for c in (cands[0], cands[7], cands[42], cands[100])] == [1, 1, 2, 3]
    assert cands[42] == judge.tokenizer.convert_tokens_to_ids(["4", "2"])
    batched = judge.number_logprobs(prompt)
    expected = brute_force(judge, prompt)
    got = [math.exp(v) if v is not None else 0.0 for v in batched]
    for k in range(101):
        assert got[k] == pytest.approx(expected[k], rel=1e-4, abs=1e-12), k
    assert sum(expected) <= 1.0 + 1e-9  # disjoint events: "1" then stop is not "10"
    # The one-pass prefix tree was checked against the batches on the first call and is
    # used from then on; each of the three paths gives the brute-force values.
    assert judge.trie_ok is True
    prompt_ids, _ = judge.candidate_ids(prefix, sep)
    for path in (judge._trie_logprobs, judge._cached_logprobs, judge._full_logprobs):
        got = [math.exp(v) if v is not None else 0.0 for v in path(prompt_ids, cands)]
        for k in range(101):
            assert got[k] == pytest.approx(expected[k], rel=1e-4, abs=1e-12), (path, k)


def test_the_hf_judge_scores_through_the_scorer_and_the_cache(digit_model_dir: Path, tmp_path):
    # Short user templates keep the brute force (101 forward passes per prompt) fast.
    (tmp_path / "trait.txt").write_text("rate {trait} : {definition} {question} {response}")
    (tmp_path / "coherence.txt").write_text("is it coherent ? {question} {response}")
    params = JudgeParams(
        provider="hf",
        model=str(digit_model_dir),
        device="cpu",
        traits=["fear"],
        definitions={"fear": "afraid"},
        trait_template="trait.txt",
        coherence_template="coherence.txt",
        min_number_mass=0.0,
        hf_batch_size=64,
        cache_path=str(tmp_path / "judge.sqlite"),
    )
    assert JudgeScorer.check(params, tmp_path) == []
    scorer = JudgeScorer(params, ScorerContext(base_dir=tmp_path))
    items = [
        ScoringItem("i am afraid of the dark .", "tell me about your room .", "a", "c"),
        ScoringItem("the room is calm and warm .", "tell me about your room .", "b", "c"),
    ]
    rows = asyncio.run(scorer.ascore(items))
    assert scorer.stats.attempts == 4
    hf = scorer._hf
    assert hf is not None
    judge = hf._judge  # type: ignore[attr-defined]
    # brute force on the first text (2 prompts x 101 forward passes); the second differs
    assert rows[1]["fear"].value != pytest.approx(rows[0]["fear"].value)
    for item, row in zip(items[:1], rows[:1], strict=True):
        for metric in ("fear", "coherence"):
            rubric = scorer.rubrics["trait" if metric == "fear" else "coherence"]
            prompt, _ = rubric.render(
                question=item.prompt,
                response=item.text,
                trait=metric,
                definition=scorer.definitions.get(metric, ""),
                max_response_chars=params.max_response_chars,
                max_question_chars=params.max_question_chars,
            )
            probs = brute_force(judge, prompt)
            mass = sum(probs)
            res = row[metric]
            assert res.value == pytest.approx(sum(k * p for k, p in enumerate(probs)) / mass)
            assert res.extra["number_mass"] == pytest.approx(mass, rel=1e-4)
            assert res.extra["judge"] == f"hf:{digit_model_dir}"
    again = asyncio.run(scorer.ascore(items))
    assert scorer.stats.attempts == 4 and scorer.stats.cache_hits == 4
    assert [r["fear"].value for r in again] == [r["fear"].value for r in rows]
    scorer.close()


def test_a_judge_that_cannot_spell_numbers_stops_with_a_clear_error(tiny_model_dir, tmp_path):
    params = JudgeParams(
        provider="hf",
        model=str(tiny_model_dir),
        device="cpu",
        traits=["fear"],
        cache_path=str(tmp_path / "judge.sqlite"),
    )
    scorer = JudgeScorer(params, ScorerContext(base_dir=tmp_path))
    with pytest.raises(SpecError, match="cannot spell every number"):
        asyncio.run(scorer.ascore([ScoringItem("i am afraid .", "hi", "a", "c")]))
    scorer.close()
