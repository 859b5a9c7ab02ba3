"""The trait metric and the token rows it is computed on.

For a context ``x`` (a pair's text, or a rendered tuning prompt) the trait metric is the
log-probability gap between a trait continuation and a neutral continuation of ``x``::

    M(x) = log P(prefix + trait | x) - log P(prefix + neutral | x)
         = sum_k log p(t_k | x, prefix, t_<k) - sum_k log p(n_k | x, prefix, n_<k)

where ``t`` and ``n`` are the tokens of the trait and the neutral word (teacher-forced,
summed over their tokens; the prefix's own log-probability is common to both and
cancels). For the shipped ``fear`` pairs: ``x + " I feel" + " afraid"`` against
``x + " I feel" + " fine"`` (defaults per shipped set in ``prompts/pairs/continuations.json``).
M > 0 means the model would rather continue ``x`` with the trait word.

The token ids of a row are the context's ids followed by the prefix's and the word's
(each encoded without special tokens), right-padded: every row starts at position 0, so a
context's activations are the same in each of its rows (and the same as when ``x`` is run
alone: attention is causal), whatever the batch. When both words are single tokens (the
shipped defaults are, for the usual tokenizers) one row ``x ⊕ prefix`` serves both and
the two log-probabilities are read from its last position; otherwise each word gets its
row (:class:`Rows`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from harness.core.errors import LocateError
from prompts import data_path

CONTINUATIONS = "pairs/continuations.json"
DEFAULT_PREFIX = " I feel"

# Which positions of a row an offset (a patch or a steering vector) is added to:
# "last": the context's last token; "context": every token of the context; "all": every
# real token of the row, continuation included (steering during "generation").
PatchAt = Literal["last", "context", "all"]


def _word(text: str) -> str:
    """A continuation piece starts a new word: a leading space is added when missing."""
    return text if not text or text[0].isspace() else " " + text


@dataclass(frozen=True)
class TraitMetric:
    """The continuation prefix and the two words; each begins with a space (added when
    missing), so that a BPE tokenizer encodes them as the words that follow the text."""

    prefix: str
    trait: str
    neutral: str

    def __post_init__(self) -> None:
        for name in ("prefix", "trait", "neutral"):
            object.__setattr__(self, name, _word(getattr(self, name)))

    def describe(self) -> str:
        return (
            f"log P({self.prefix + self.trait!r} | x) - log P({self.prefix + self.neutral!r} | x)"
        )


def default_metric(pair_set: str) -> TraitMetric | None:
    """The shipped continuation for a shipped pair set's name, or None."""
    table: dict[str, Any] = json.loads(data_path(CONTINUATIONS).read_text(encoding="utf-8"))
    entry = table.get(pair_set)
    if not isinstance(entry, dict):
        return None
    return TraitMetric(str(entry["prefix"]), str(entry["trait"]), str(entry["neutral"]))


def shipped_metrics() -> list[str]:
    table = json.loads(data_path(CONTINUATIONS).read_text(encoding="utf-8"))
    return sorted(k for k in table if not k.startswith("_"))


@dataclass
class Rows:
    """Token rows for G contexts, right-padded, and the log-probabilities M is made of.

    When the trait and the neutral word are one token each, a context has one row,
    ``x ⊕ prefix``, and both words are scored at its last position; otherwise two rows,
    ``x ⊕ prefix ⊕ trait`` and ``x ⊕ prefix ⊕ neutral``, teacher-forced. Either way rows
    ``0..G-1`` hold contexts ``0..G-1`` in order (the neutral rows, if any, follow), and
    ``M[g] = sum over scored entries k of context g of sign[k] * log p(token[k] | row,
    position)``."""

    input_ids: torch.Tensor  # (rows, seq) long
    attention_mask: torch.Tensor  # (rows, seq) long
    row_group: torch.Tensor  # (rows,) long: the context each row belongs to
    patch: torch.Tensor  # (rows, seq) float: 1 where an offset is added
    weights: torch.Tensor  # (rows, seq) float: aggregation weights over the context
    score_row: torch.Tensor  # (K,) long: row of each scored token
    score_pos: torch.Tensor  # (K,) long: position whose next-token distribution is read
    score_token: torch.Tensor  # (K,) long: the token whose log-probability is taken
    score_sign: torch.Tensor  # (K,) float: +1 trait, -1 neutral

    @property
    def n_groups(self) -> int:
        return int(self.row_group.max()) + 1

    def to(self, device: str | torch.device) -> Rows:
        return Rows(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))


def encode(tokenizer: Any, text: str, special: bool) -> list[int]:
    return list(tokenizer(text, add_special_tokens=special)["input_ids"])


def word_ids(
    tokenizer: Any,
    metric: TraitMetric,
    fields: tuple[str, str] = ("--trait-word", "--neutral-word"),
) -> tuple[list[int], list[int], list[int]]:
    """Token ids of the prefix, the trait word and the neutral word; checked (``fields``
    name the two words in an error: the command's flags, or a spec's fields)."""
    prefix = encode(tokenizer, metric.prefix, False)
    trait = encode(tokenizer, metric.trait, False)
    neutral = encode(tokenizer, metric.neutral, False)
    for name, ids, text in ((fields[0], trait, metric.trait), (fields[1], neutral, metric.neutral)):
        if not ids:
            raise LocateError(f"{name} {text!r} has no tokens; give a word")
    if trait == neutral:
        raise LocateError(
            f"{fields[0]} {metric.trait!r} and {fields[1]} {metric.neutral!r} are the same "
            "tokens for this tokenizer; the metric would be 0 everywhere; give other words"
        )
    return prefix, trait, neutral


def build_rows(
    contexts: Sequence[Sequence[int]],
    prefix: Sequence[int],
    words: tuple[Sequence[int], Sequence[int]],
    pad_id: int,
    aggregate: Literal["last", "mean"],
    patch_at: PatchAt,
) -> Rows:
    """Rows for contexts given as token ids; see :class:`Rows` and the module docstring."""
    if any(len(c) == 0 for c in contexts):
        raise LocateError("a text has no tokens; remove empty texts from the pair file")
    single = len(words[0]) == 1 and len(words[1]) == 1
    # (ids, context length, [(position, token, sign)])
    seqs: list[tuple[list[int], int, list[tuple[int, int, float]]]] = []
    if single:
        for ctx in contexts:
            ids = [*ctx, *prefix]
            last = len(ids) - 1
            seqs.append((ids, len(ctx), [(last, words[0][0], 1.0), (last, words[1][0], -1.0)]))
    else:
        for word, sign in ((words[0], 1.0), (words[1], -1.0)):
            for ctx in contexts:
                ids = [*ctx, *prefix, *word]
                start = len(ctx) + len(prefix)
                # position t predicts token t + 1: the word is read from start - 1 on
                scored = [(t, ids[t + 1], sign) for t in range(start - 1, len(ids) - 1)]
                seqs.append((ids, len(ctx), scored))
    n_rows, width = len(seqs), max(len(s[0]) for s in seqs)
    input_ids = torch.full((n_rows, width), pad_id, dtype=torch.long)
    mask = torch.zeros((n_rows, width), dtype=torch.long)
    patch = torch.zeros((n_rows, width))
    weights = torch.zeros((n_rows, width))
    entries: list[tuple[int, int, int, float]] = []
    for r, (ids, n_ctx, scored) in enumerate(seqs):
        input_ids[r, : len(ids)] = torch.tensor(ids)
        mask[r, : len(ids)] = 1
        if aggregate == "last":
            weights[r, n_ctx - 1] = 1.0
        else:
            weights[r, :n_ctx] = 1.0 / n_ctx
        if patch_at == "last":
            patch[r, n_ctx - 1] = 1.0
        elif patch_at == "context":
            patch[r, :n_ctx] = 1.0
        else:
            patch[r, : len(ids)] = 1.0
        entries += [(r, pos, tok, sign) for pos, tok, sign in scored]
    g = len(contexts)
    return Rows(
        input_ids=input_ids,
        attention_mask=mask,
        row_group=torch.arange(g).repeat(n_rows // g),
        patch=patch,
        weights=weights,
        score_row=torch.tensor([e[0] for e in entries], dtype=torch.long),
        score_pos=torch.tensor([e[1] for e in entries], dtype=torch.long),
        score_token=torch.tensor([e[2] for e in entries], dtype=torch.long),
        score_sign=torch.tensor([e[3] for e in entries]),
    )


def metric_per_group(logits: torch.Tensor, rows: Rows) -> torch.Tensor:
    """M per context from the model's logits (log-softmax in float32 or wider)."""
    picked = logits[rows.score_row, rows.score_pos]  # (K, vocab): only the scored positions
    picked = picked.to(torch.promote_types(picked.dtype, torch.float32))
    lp = torch.log_softmax(picked, dim=-1).gather(-1, rows.score_token[:, None])[:, 0]
    lp = lp * rows.score_sign.to(lp.dtype)
    out = torch.zeros(rows.n_groups, dtype=lp.dtype, device=lp.device)
    return out.index_add(0, rows.row_group[rows.score_row], lp)
