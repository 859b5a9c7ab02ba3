"""Steering vectors: a dataclass of per-layer directions, safetensors I/O, and extraction.

Extraction is the mean difference of hidden states over contrastive pairs (positive
minus negative), as in Contrastive Activation Addition (Rimsky et al. 2024, "Steering
Llama 2 via Contrastive Activation Addition") and ActAdd (Turner et al. 2023). The hidden
state is the output of a decoder layer (the residual stream after that layer), taken at
the last token of each text (``aggregate="last"``) or averaged over its tokens
(``aggregate="mean"``), the same place where :mod:`harness.steering.hooks` adds it back.
For classifiers, :func:`extract_class_means` takes the difference of two classes' mean
hidden states over labelled texts instead of pairs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from harness.core.errors import VectorFileError
from harness.core.files import write_atomic
from harness.core.ids import utc_now
from harness.core.store import read_jsonl
from harness.model.chat import build_messages, render
from harness.model.loading import LoadedModel
from harness.model.sites import Component, site_modules
from harness.steering.hooks import Positions, add_vector, capture_residual, edit_residual

Aggregate = Literal["last", "mean"]
PairTemplate = Literal["raw", "chat"]
Extraction = Literal["mean_difference", "pca"]

# The user turn placed before each pair statement when pairs are rendered as assistant
# replies: constant across positive and negative, so it cancels in the difference.
PAIR_USER_TURN = "Tell me something about yourself."


@dataclass(frozen=True)
class ContrastPair:
    id: str
    positive: str
    negative: str


def load_pairs(path: Path) -> list[ContrastPair]:
    """Read a JSONL of {"id", "positive", "negative"}; errors name the file and line."""
    pairs = []
    for lineno, obj in read_jsonl(path, VectorFileError):
        pos, neg = obj.get("positive"), obj.get("negative")
        if not isinstance(pos, str) or not isinstance(neg, str):
            raise VectorFileError(f"{path}:{lineno}: needs string fields 'positive' and 'negative'")
        pairs.append(ContrastPair(str(obj.get("id", lineno)), pos, neg))
    if not pairs:
        raise VectorFileError(f"{path}: no contrastive pairs")
    return pairs


@dataclass
class SteeringVector:
    """One direction per decoder layer, plus how it was made."""

    directions: dict[int, torch.Tensor]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def layers(self) -> list[int]:
        return sorted(self.directions)

    def norms(self) -> dict[int, float]:
        return {i: float(v.float().norm()) for i, v in sorted(self.directions.items())}

    def save(self, path: Path) -> None:
        tensors = {
            f"layer.{i}": v.detach().float().cpu().contiguous() for i, v in self.directions.items()
        }
        meta = {"steer_harness": json.dumps(self.metadata, sort_keys=True)}
        meta["layers"] = ",".join(str(i) for i in self.layers)
        write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))

    @classmethod
    def load(cls, path: Path) -> SteeringVector:
        """Read ``layer.<i>`` tensors, or one ``[n_layers, hidden]`` tensor whose rows are the
        layers listed in the metadata's ``layers`` (a JSON list or ``"0,1,2"``), the layout
        of Steering-Memory and other tools that save all layers as one matrix."""
        try:
            with safe_open(str(path), framework="pt") as fh:
                raw_meta = fh.metadata() or {}
                keys = list(fh.keys())
                if len(keys) == 1 and not keys[0].startswith("layer."):
                    directions = _rows_by_layer(path, keys[0], fh.get_tensor(keys[0]), raw_meta)
                else:
                    directions = {}
                    for key in keys:
                        if not key.startswith("layer."):
                            raise VectorFileError(
                                f"{path}: tensor '{key}' is not named 'layer.<index>' (a file "
                                "holds layer.<i> tensors, or one [n_layers, hidden] tensor)"
                            )
                        directions[int(key.split(".", 1)[1])] = fh.get_tensor(key)
        except VectorFileError:
            raise
        except Exception as exc:  # safetensors' own error type is not an OSError
            raise VectorFileError(
                f"{path}: not a readable safetensors vector file ({exc})"
            ) from None
        bad = [i for i, v in sorted(directions.items()) if not bool(torch.isfinite(v).all())]
        if bad:
            raise VectorFileError(
                f"{path}: layers {bad} hold NaN or infinite values; re-extract the vector"
            )
        try:
            meta = json.loads(raw_meta.get("steer_harness", "{}"))
        except ValueError:
            raise VectorFileError(f"{path}: its steer_harness metadata is not JSON") from None
        return cls(directions, meta if isinstance(meta, dict) else {})

    @contextmanager
    def apply(
        self,
        lm: LoadedModel,
        coefficient: float,
        layers: Sequence[int] | None = None,
        positions: Positions = "all",
        prompt_length: int | None = None,
    ) -> Iterator[None]:
        """Add ``coefficient * direction`` to each layer's output while the context is open."""
        use = list(layers) if layers is not None else self.layers
        missing = [i for i in use if i not in self.directions]
        if missing:
            raise VectorFileError(f"vector has no direction for layers {missing}")
        edits = {i: add_vector(self.directions[i], coefficient) for i in use}
        with edit_residual(lm.layers, edits, positions, prompt_length):
            yield


def _rows_by_layer(
    path: Path, name: str, matrix: torch.Tensor, meta: dict[str, str]
) -> dict[int, torch.Tensor]:
    """The rows of one ``[n_layers, hidden]`` tensor, keyed by the metadata's layer list."""
    if matrix.dim() != 2:
        raise VectorFileError(
            f"{path}: tensor '{name}' has shape {tuple(matrix.shape)}; a single-tensor vector "
            "file holds one [n_layers, hidden] matrix"
        )
    raw = meta.get("layers")
    if raw is None:
        raise VectorFileError(
            f"{path}: tensor '{name}' is a [n_layers, hidden] matrix but the metadata has no "
            "'layers' list naming the layer of each row (e.g. layers = \"[0, 1, 2]\")"
        )
    try:
        parsed = json.loads(raw) if raw.strip().startswith("[") else raw.split(",")
        layers = [int(v) for v in parsed]
    except (ValueError, TypeError):
        raise VectorFileError(
            f"{path}: metadata 'layers' = {raw!r} is not a list of layer indices"
        ) from None
    if len(layers) != matrix.shape[0] or len(set(layers)) != len(layers):
        raise VectorFileError(
            f"{path}: metadata 'layers' lists {len(layers)} layer(s) for the {matrix.shape[0]} "
            f"row(s) of tensor '{name}'; give one distinct layer index per row"
        )
    return {i: matrix[row].clone() for row, i in enumerate(layers)}


def render_pair_text(lm: LoadedModel, text: str, template: PairTemplate) -> str:
    if template == "raw" or not lm.use_chat_template:
        return text
    messages = [{"role": "user", "content": PAIR_USER_TURN}]
    prefix = lm.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return str(prefix) + text


@torch.no_grad()
def hidden_states(
    lm: LoadedModel,
    texts: Sequence[str],
    layers: Sequence[int],
    aggregate: Aggregate = "last",
    batch_size: int = 16,
    add_special_tokens: bool = True,
    site: Component = "residual",
) -> dict[int, torch.Tensor]:
    """Per layer, a (len(texts), hidden) float32 matrix of aggregated outputs of the
    layer's ``site`` (the block output by default; ``EMBEDDING`` is the embedding output)."""
    modules = site_modules(lm.layers, site)
    out: dict[int, list[torch.Tensor]] = {i: [] for i in layers}
    for start in range(0, len(texts), batch_size):
        chunk = list(texts[start : start + batch_size])
        enc = lm.encode(chunk, add_special_tokens=add_special_tokens)
        mask = enc["attention_mask"].float()
        with capture_residual(modules, list(layers)) as captured:
            lm.model(**enc, **lm.forward_kwargs)
        for i in layers:
            h = captured[i].float()
            if aggregate == "last":
                # Each text's last real token: the last position under left padding (causal
                # LMs), the last unmasked one under right padding (encoders).
                positions = torch.arange(mask.shape[1], device=mask.device)
                last = (mask * positions).argmax(dim=1)
                agg = h[torch.arange(h.shape[0], device=h.device), last, :]
            else:
                agg = (h * mask[:, :, None]).sum(1) / mask.sum(1, keepdim=True)
            out[i].append(agg.cpu())
    return {i: torch.cat(v) for i, v in out.items()}


def first_principal_direction(diffs: torch.Tensor) -> torch.Tensor:
    """First principal direction of pair differences, scaled like a mean difference.

    The direction is the first right singular vector of the uncentred difference matrix,
    which is what PCA finds when the pairs' order is randomly flipped before centring (the
    recipe of Zou et al. 2023, "Representation Engineering"): flipping signs does not
    change sum((d.u)^2). Its sign is set to agree with the mean difference, and its length
    to the mean projection of the differences on it, so that coefficients are comparable
    with a mean-difference vector's."""
    d = diffs.double()
    _, _, vh = torch.linalg.svd(d, full_matrices=False)
    u = vh[0]
    proj = d @ u
    if float(proj.mean()) < 0:
        u, proj = -u, -proj
    return (u * proj.mean()).float()


def extract_mean_difference(
    lm: LoadedModel,
    pairs: Sequence[ContrastPair],
    layers: Sequence[int],
    aggregate: Aggregate = "last",
    template: PairTemplate = "raw",
    batch_size: int = 16,
    source: str = "",
    method: Extraction = "mean_difference",
    site: Component = "residual",
) -> SteeringVector:
    """Per layer: mean(h(positive) - h(negative)), or its first principal direction."""
    pos = [render_pair_text(lm, p.positive, template) for p in pairs]
    neg = [render_pair_text(lm, p.negative, template) for p in pairs]
    # A rendered chat template already holds its special tokens.
    special = template == "raw" or not lm.use_chat_template
    hp = hidden_states(lm, pos, layers, aggregate, batch_size, special, site)
    hn = hidden_states(lm, neg, layers, aggregate, batch_size, special, site)
    if method == "pca":
        directions = {i: first_principal_direction(hp[i] - hn[i]) for i in layers}
    else:
        directions = {i: (hp[i] - hn[i]).mean(0) for i in layers}
    meta = {
        "model": lm.spec.id,
        "method": method,
        "aggregate": aggregate,
        "template": template,
        "pairs": source,
        "n_pairs": len(pairs),
        "layers": list(layers),
        **({"site": site} if site != "residual" else {}),
        "hidden_size": lm.info.hidden_size,
        "created": utc_now(),
    }
    return SteeringVector(directions, meta)


def extract_class_means(
    lm: LoadedModel,
    positive: Sequence[str],
    negative: Sequence[str],
    layers: Sequence[int],
    aggregate: Aggregate = "mean",
    batch_size: int = 16,
    source: str = "",
    labels: tuple[str, str] = ("positive", "negative"),
    site: Component = "residual",
) -> SteeringVector:
    """Per layer: mean(h | positive texts) - mean(h | negative texts), each text's hidden
    state pooled over its tokens (attention-masked mean by default), as in class-mean
    steering of encoder classifiers."""
    if not positive or not negative:
        raise VectorFileError(f"{source}: class means need texts of both labels {list(labels)}")
    hp = hidden_states(lm, list(positive), layers, aggregate, batch_size, True, site)
    hn = hidden_states(lm, list(negative), layers, aggregate, batch_size, True, site)
    directions = {i: hp[i].mean(0) - hn[i].mean(0) for i in layers}
    meta = {
        "model": lm.spec.id,
        "method": "class_means",
        "aggregate": aggregate,
        "classes": source,
        "positive": labels[0],
        "negative": labels[1],
        "n_positive": len(positive),
        "n_negative": len(negative),
        "layers": list(layers),
        **({"site": site} if site != "residual" else {}),
        "hidden_size": lm.info.hidden_size,
        "created": utc_now(),
    }
    return SteeringVector(directions, meta)


@torch.no_grad()
def typical_norms(
    lm: LoadedModel,
    texts: Sequence[str],
    layers: Sequence[int],
    batch_size: int = 16,
    site: Component = "residual",
) -> dict[int, float]:
    """Mean L2 norm of each layer's output over the tokens of ``texts``, rendered as user
    prompts the way generation renders them, leaving out each text's first position.

    The first position of small Llama-style models is an attention sink whose hidden state
    can be a thousand times larger than the others'; counting it would inflate the norm,
    and with it every norm-relative coefficient, several-fold."""
    rendered = [render(lm, build_messages(t, lm.spec.system_prompt)) for t in texts]
    modules = site_modules(lm.layers, site)
    total = dict.fromkeys(layers, 0.0)
    count = 0
    for start in range(0, len(rendered), batch_size):
        chunk = rendered[start : start + batch_size]
        enc = lm.encode(chunk, add_special_tokens=not lm.use_chat_template)
        keep = enc["attention_mask"].bool().clone()
        first = keep.float().argmax(dim=1)  # the first real token of each row, either padding
        keep[torch.arange(keep.shape[0]), first] = False
        with capture_residual(modules, list(layers)) as captured:
            lm.model(**enc, **lm.forward_kwargs)
        for i in layers:
            total[i] += float(captured[i].float().norm(dim=-1)[keep].sum())
        count += int(keep.sum())
    if count == 0:
        raise ValueError("no tokens to measure typical norms on (texts of one token only?)")
    return {i: total[i] / count for i in layers}
