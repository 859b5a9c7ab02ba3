"""Fluency scorer: an offline guard against "steering" that only breaks the text.

Metrics:

- ``perplexity``: exp of the mean negative log-likelihood of the response's tokens under
  the *unsteered* generator (or another causal LM, ``model``), conditioned on the prompt
  rendered as the baseline renders it. Steered text that drifts into word salad gets a
  high perplexity under the model that did not produce it.
- ``repetition``: the seq-rep-n rate of Welleck et al. 2020 ("Neural Text Generation with
  Unlikelihood Training", ICLR), ``1 - distinct n-grams / n-grams``, over lower-cased words
  (tokenised as in :mod:`judges.lexicon`); 0 for a text without repeats, near 1 for a loop.

A response without tokens (perplexity) or with fewer than n words (repetition) is null
with the reason. Embedding and classifier scores can rise on degenerate text; read them
next to these.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from pydantic import Field

from harness.config.spec import ModelSpec
from harness.core.scoring import ScorerContext, ScoreResult, ScorerParams, ScoringItem
from harness.model.chat import build_messages, render
from harness.model.loading import load_model
from judges.lexicon import tokenize


class FluencyParams(ScorerParams):
    model: dict[str, Any] | None = Field(
        None, description="A [model] table for the scoring LM; default: the run's generator."
    )
    n: int = Field(3, ge=1, description="n of the repeated-n-gram rate.")
    batch_size: int = Field(16, gt=0)


def repetition_rate(text: str, n: int) -> float | None:
    words = tokenize(text)
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return None
    return 1.0 - len(set(grams)) / len(grams)


class FluencyScorer:
    """Perplexity under the unsteered model, and the repeated-n-gram rate."""

    Params = FluencyParams
    metrics = ("perplexity", "repetition")

    @classmethod
    def metric_names(cls, params: FluencyParams, base_dir: Path) -> list[str]:
        """The metrics it gives (what ``check`` compares a search's trait with)."""
        return list(cls.metrics)

    def __init__(self, params: FluencyParams, context: ScorerContext):
        self.params = params
        self.context = context
        self.batch_size = params.batch_size
        self._lm: Any = None

    def _model(self) -> Any:
        if self._lm is None:
            if self.params.model is None and self.context.load_generator is not None:
                self._lm = self.context.load_generator()
            else:
                spec = ModelSpec.model_validate(self.params.model or self.context.generator_model)
                self._lm = load_model(spec)
        return self._lm

    @torch.no_grad()
    def perplexities(self, items: Sequence[ScoringItem]) -> list[float | None]:
        """Per item, exp(mean NLL) of the response tokens given the rendered prompt."""
        lm = self._model()
        tok = lm.tokenizer
        seqs: list[tuple[list[int], int]] = []
        for item in items:
            prompt = render(lm, build_messages(item.prompt, lm.spec.system_prompt))
            p_ids = tok.encode(prompt, add_special_tokens=not lm.use_chat_template)
            r_ids = tok.encode(item.text, add_special_tokens=False)
            seqs.append((p_ids + r_ids, len(p_ids)))
        out: list[float | None] = [None] * len(items)
        scored = [i for i, (ids, start) in enumerate(seqs) if len(ids) > start and start > 0]
        if not scored:
            return out
        width = max(len(seqs[i][0]) for i in scored)
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        # Right padding: positions start at 0 in every row, as in an unpadded forward pass.
        input_ids = torch.full((len(scored), width), pad, dtype=torch.long)
        mask = torch.zeros((len(scored), width), dtype=torch.long)
        for row, i in enumerate(scored):
            ids = seqs[i][0]
            input_ids[row, : len(ids)] = torch.tensor(ids)
            mask[row, : len(ids)] = 1
        logits = lm.model(
            input_ids=input_ids.to(lm.device), attention_mask=mask.to(lm.device)
        ).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        target_lp = logp.gather(-1, input_ids[:, 1:].to(lm.device)[..., None])[..., 0].cpu()
        for row, i in enumerate(scored):
            ids, start = seqs[i]
            nll = -target_lp[row, start - 1 : len(ids) - 1]
            out[i] = math.exp(float(nll.mean()))
        return out

    def score(self, items: Sequence[ScoringItem]) -> list[dict[str, ScoreResult]]:
        ppl = self.perplexities(items)
        results = []
        for item, p in zip(items, ppl, strict=True):
            rep = repetition_rate(item.text, self.params.n)
            results.append(
                {
                    "perplexity": ScoreResult.ok(p)
                    if p is not None and math.isfinite(p)
                    else ScoreResult.null("empty response: no tokens to score"),
                    "repetition": ScoreResult.ok(rep)
                    if rep is not None
                    else ScoreResult.null(f"fewer than {self.params.n} words"),
                }
            )
        return results
