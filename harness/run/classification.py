"""Batched classification: the generate stage of a classification task.

A classification task (``[model] task = "classify"``, or a classifier detected from its
config) classifies each labelled text under each condition instead of generating from
it. The steering methods are the same objects as for generation: ``method.apply`` is
active around the classifier's forward pass, so an activation, composite or plug-in
condition edits the encoder's blocks exactly as it edits a decoder's, and leaving the
context restores the model (checked after every task, as for generation).

A classifier is deterministic: each text is classified once, under the spec's first seed
(see :func:`harness.run.plan.classify_seeds`). The probabilities are the softmax of the
logits (sigmoid for a multi-label config), in float32 on the CPU, recorded per class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from harness.config.spec import GenerationSpec
from harness.model.loading import LoadedModel, class_names
from harness.run.generation import Row
from harness.steering.base import BatchInfo, SteeringMethod


@dataclass(frozen=True)
class Classified:
    """What classifying one row gives."""

    predicted: str
    probs: dict[str, float]
    n_tokens: int
    truncated: bool


def probabilities(lm: LoadedModel, logits: torch.Tensor) -> torch.Tensor:
    """Softmax over classes, or per-class sigmoid for a multi-label config (HF's rule)."""
    logits = logits.float()
    if getattr(lm.model.config, "problem_type", None) == "multi_label_classification":
        return torch.sigmoid(logits)
    return torch.softmax(logits, dim=-1)


@torch.no_grad()
def classify_rows(
    lm: LoadedModel,
    method: SteeringMethod,
    rows: Sequence[Row],
    gen: GenerationSpec | None = None,
) -> list[Classified]:
    """Classify one batch of rows under one steering method (``none`` for the baseline).
    Every position of a text is a prompt position (``positions = "prompt"`` and ``"all"``
    both steer all of them)."""
    texts = [r.prompt for r in rows]
    enc = lm.encode(texts)
    seq = int(enc["input_ids"].shape[1])
    batch = BatchInfo(seq, [r.prompt_id for r in rows], [r.seed for r in rows])
    with method.apply(lm, batch):
        logits = lm.model(**enc).logits
    probs = probabilities(lm, logits).cpu()
    names = class_names(lm)
    lengths = enc["attention_mask"].sum(dim=1).tolist()
    limit = lm.info.max_positions
    out = []
    for i, text in enumerate(texts):
        row = probs[i].tolist()
        top = max(range(len(row)), key=lambda j: row[j])
        n = int(lengths[i])
        truncated = (
            bool(limit) and n >= int(limit or 0) and len(lm.tokenizer(text)["input_ids"]) > n
        )
        out.append(Classified(names[top], dict(zip(names, row, strict=True)), n, truncated))
    return out
