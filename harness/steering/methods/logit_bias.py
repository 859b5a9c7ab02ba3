"""Logit bias: add a constant to the next-token scores of a word list's tokens.

Each word is tokenised as written, with a leading space, and capitalised (``variants``),
and the bias goes to the first token of each variant: a word that splits into several
tokens is nudged at its start only, as with the OpenAI API's ``logit_bias``. The bias is
added before temperature and sampling, so it shifts log-odds by exactly ``bias``.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field, model_validator

from harness.config.paths import resolve_data_path
from harness.model.loading import LoadedModel, ModelInfo
from harness.steering.base import (
    BaseMethod,
    BatchInfo,
    LogitsProcessor,
    MethodContext,
    MethodParams,
)


class LogitBiasParams(MethodParams):
    words: list[str] = Field(default_factory=list, description="Words or phrases to bias.")
    words_file: str | None = Field(None, description="A text file, one word or phrase per line.")
    bias: float = Field(description="Added to each selected token's logit (negative to suppress).")
    variants: bool = Field(True, description="Also bias ' word', 'Word' and ' Word'.")

    @model_validator(mode="after")
    def _some_words(self) -> LogitBiasParams:
        if not self.words and self.words_file is None:
            raise ValueError("give words or words_file")
        return self


def word_variants(word: str, variants: bool) -> list[str]:
    if not variants:
        return [word]
    cap = word[:1].upper() + word[1:]
    return list(dict.fromkeys([word, " " + word, cap, " " + cap]))


class LogitBias(BaseMethod):
    """Add a bias to the logits of the first token of each listed word."""

    Params = LogitBiasParams
    params: LogitBiasParams

    def __init__(self, params: LogitBiasParams, context: MethodContext):
        super().__init__(params, context)
        self.token_ids: list[int] = []

    @classmethod
    def check(  # type: ignore[override]
        cls, params: LogitBiasParams, info: ModelInfo, context: MethodContext
    ) -> list[str]:
        if params.words_file and resolve_data_path(params.words_file, context.base_dir) is None:
            return [
                f"params.words_file: '{params.words_file}' not found "
                f"(relative to {context.base_dir})"
            ]
        return []

    def words(self) -> list[str]:
        words = list(self.params.words)
        if self.params.words_file:
            path = resolve_data_path(self.params.words_file, self.context.base_dir)
            assert path is not None
            words += [w.strip() for w in path.read_text(encoding="utf-8").splitlines() if w.strip()]
        return sorted(set(words))

    def fingerprint(self) -> dict[str, Any]:
        return {"words": self.words(), "bias": self.params.bias, "variants": self.params.variants}

    def prepare(self, lm: LoadedModel) -> dict[str, Any]:
        ids: set[int] = set()
        for word in self.words():
            for text in word_variants(word, self.params.variants):
                tokens = lm.tokenizer.encode(text, add_special_tokens=False)
                if tokens:
                    ids.add(int(tokens[0]))
        self.token_ids = sorted(ids)
        return {"n_words": len(self.words()), "n_tokens": len(self.token_ids)}

    def token_bias(self) -> dict[int, float]:
        """The same edit as :meth:`logits_processor`, as data (for vLLM's logit bias)."""
        return dict.fromkeys(self.token_ids, self.params.bias)

    def logits_processor(self, lm: LoadedModel, batch: BatchInfo) -> LogitsProcessor | None:
        ids = torch.tensor(self.token_ids, dtype=torch.long)
        bias = self.params.bias

        def process(input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
            out = scores.clone()
            out[:, ids.to(scores.device)] += bias
            return out

        return process
