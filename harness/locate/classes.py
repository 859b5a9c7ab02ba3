"""Where to steer a sequence classifier: per encoder layer (and the embedding output), how
separable two classes' texts are and how much adding their class-mean difference there
moves the classifier from one class to the other.

For a positive class P and a negative class N of labelled texts, at layer ``L`` (a
block's output; ``"embedding"`` the input of block 0), with ``h_L(x)`` the
attention-masked mean over the tokens of text ``x`` (the pooling of class-mean vectors,
:func:`harness.steering.vectors.extract_class_means`):

- probe: the cross-validated accuracy of :mod:`.probe`'s logistic probe separating
  ``h_L`` of P's texts from N's, folds stratified by class and seeded;
- the vector ``v_L = mean h_L(P) - mean h_L(N)``, what ``vector = {classes = ...,
  positive = P, negative = N}`` steers with;
- the metric, the class-logit gap ``M(x) = logit_P(x) - logit_N(x)``;
- attribution: the first-order effect on M of adding ``v_L`` at every position of layer
  L (as ``activation`` steering with coefficient 1 adds it), on N's texts,
  ``sum_t (dM/dh_L,t)(x) . v_L``, from one forward and one backward pass for every layer
  (the gradient is taken with respect to a zero offset added at each layer, as in
  :mod:`.patching`), mean ± SE over N's texts;
- exact effect: ``M(x; h_L + v_L) - M(x)``, one forward pass per checked layer (the top
  ``check`` by attribution), with Spearman's rho between the two as the LM locate's
  causal check.

The document has the shape of :func:`.locator.locate`'s (one component, ``residual``), so
:mod:`.report` writes it and :mod:`.layers` resolves ``layers = "locate:classes"`` from it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from harness.config.vectors import EMBEDDING
from harness.core.batching import chunks
from harness.core.errors import LocateError
from harness.core.ids import utc_now
from harness.locate.locator import check_summary, mean_se, ranked_sites, set_ranks, site_row
from harness.locate.probe import class_probe_accuracy
from harness.locate.sites import Site
from harness.model.loading import LoadedModel, class_names, model_key
from harness.stats import finite_or_none
from harness.steering.hooks import EditFn, edit_residual
from harness.steering.vectors import hidden_states

log = logging.getLogger(__name__)

MIN_TEXTS = 2
"""Texts per class below which neither a class mean's spread nor a probe means anything."""


@dataclass(frozen=True)
class ClassTexts:
    """The two classes' texts of a labelled set."""

    source: str
    positive: str
    negative: str
    pos: list[str]
    neg: list[str]


def select_classes(
    texts: Sequence[str],
    labels: Sequence[str],
    positive: str,
    negative: str,
    source: str,
    where: str = "--classes",
) -> ClassTexts:
    """The texts of ``positive`` and ``negative``; LocateError naming ``where`` for an
    unknown or repeated class, or a class with fewer than 2 texts."""
    known = list(dict.fromkeys(labels))
    if positive == negative:
        raise LocateError(f"{where}: give two different classes, not '{positive}' twice")
    missing = [c for c in (positive, negative) if c not in known]
    if missing:
        raise LocateError(
            f"{where}: {source} has no texts labelled {missing}; its labels: {', '.join(known)}"
        )
    pos = [t for t, lab in zip(texts, labels, strict=True) if lab == positive]
    neg = [t for t, lab in zip(texts, labels, strict=True) if lab == negative]
    for name, rows in ((positive, pos), (negative, neg)):
        if len(rows) < MIN_TEXTS:
            raise LocateError(
                f"{where}: {source} has {len(rows)} text(s) labelled '{name}'; a class needs "
                f"at least {MIN_TEXTS} (add texts)"
            )
    return ClassTexts(source, positive, negative, pos, neg)


def class_index(lm: LoadedModel, name: str, where: str = "--classes") -> int:
    """The classifier's output index of class ``name`` (one line naming its classes)."""
    names = class_names(lm)
    if name not in names:
        raise LocateError(
            f"{where}: the classifier has no class '{name}'; its classes: {', '.join(names)}"
        )
    return names.index(name)


@dataclass(frozen=True)
class ClassLocateOptions:
    folds: int = 5
    seed: int = 0
    top_k: int = 3
    check: int = 3
    """Layers checked by the exact effect (the top ones by attribution)."""
    batch_size: int = 16


def forward_gap(
    lm: LoadedModel,
    texts: Sequence[str],
    classes: tuple[int, int],
    offsets: Mapping[int, torch.Tensor] | None = None,
) -> torch.Tensor:
    """M = logit[positive] - logit[negative] per text (float32), with ``offsets[L]`` (one
    row per text, or one row for all) added at every position of layer L."""

    def add(off: torch.Tensor) -> EditFn:
        def fn(hidden: torch.Tensor, _mask: torch.Tensor) -> torch.Tensor:
            rows = off.to(device=hidden.device, dtype=hidden.dtype)
            return hidden + rows.reshape(-1, 1, hidden.shape[-1])

        return fn

    enc = lm.encode(list(texts))
    edits = {layer: add(off) for layer, off in (offsets or {}).items()}
    with edit_residual(lm.layers, edits):
        logits = lm.model(**enc).logits.float()
    return logits[:, classes[0]] - logits[:, classes[1]]


def gap_gradients(
    lm: LoadedModel, texts: Sequence[str], classes: tuple[int, int], layers: Sequence[int]
) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """M per text, and per layer dM/d(offset): the gradient of M with respect to a vector
    added at every position, i.e. ``sum_t dM/dh_t`` (texts, hidden), float32 on the CPU."""
    hidden = lm.info.hidden_size
    zero = {
        i: torch.zeros(
            len(texts), hidden, device=lm.device, dtype=torch.float32, requires_grad=True
        )
        for i in layers
    }
    with torch.enable_grad():
        m = forward_gap(lm, texts, classes, zero)
        grads = torch.autograd.grad(m.sum(), [zero[i] for i in layers], allow_unused=True)
    out = {
        i: (g if g is not None else torch.zeros_like(zero[i])).detach().float().cpu()
        for i, g in zip(layers, grads, strict=True)
    }
    return m.detach().float().cpu(), out


def class_features(
    lm: LoadedModel, ct: ClassTexts, layers: Sequence[int], batch_size: int = 16
) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor], dict[int, torch.Tensor]]:
    """Per layer: the mean-pooled hidden states of the positive and the negative texts,
    and the class-mean difference v (as
    :func:`harness.steering.vectors.extract_class_means` makes it)."""
    hp = hidden_states(lm, ct.pos, layers, "mean", batch_size)
    hn = hidden_states(lm, ct.neg, layers, "mean", batch_size)
    return hp, hn, {i: hp[i].mean(0) - hn[i].mean(0) for i in layers}


def locate_classes(lm: LoadedModel, ct: ClassTexts, opts: ClassLocateOptions) -> dict[str, Any]:
    """The localisation document of a classifier for ``ct``'s two classes."""
    if lm.task != "classify":
        raise LocateError("a class localisation needs a sequence classifier ([model] task)")
    smaller = min(len(ct.pos), len(ct.neg))
    if opts.folds < 2 or smaller < opts.folds:
        raise LocateError(
            f"--folds {opts.folds}: give 2 to {smaller} folds (the smaller class has "
            f"{smaller} texts)"
        )
    classes = (class_index(lm, ct.positive), class_index(lm, ct.negative))
    layers = [EMBEDDING, *range(lm.info.num_layers)]
    hp, hn, vectors = class_features(lm, ct, layers, opts.batch_size)
    with torch.no_grad():
        m_pos = torch.cat([forward_gap(lm, c, classes).cpu() for c in chunks(ct.pos, 64)])
    m_neg_parts, grad_parts = [], []
    for chunk in chunks(ct.neg, opts.batch_size):
        m, g = gap_gradients(lm, chunk, classes, layers)
        m_neg_parts.append(m)
        grad_parts.append(g)
    m_neg = torch.cat(m_neg_parts)
    grads = {i: torch.cat([g[i] for g in grad_parts]) for i in layers}
    sites = [Site("residual", i) for i in layers]
    per_site: dict[Site, dict[str, Any]] = {}
    for s in sites:
        a_mean, a_se = mean_se(grads[s.layer] @ vectors[s.layer])
        probe = class_probe_accuracy(
            hp[s.layer].numpy(), hn[s.layer].numpy(), opts.folds, opts.seed
        )
        per_site[s] = {
            **site_row(s, probe, a_mean, a_se, reaches=bool((grads[s.layer] != 0).any())),
            "vector_norm": finite_or_none(float(vectors[s.layer].norm())),
        }
    set_ranks(per_site, ("residual",))
    ranked = ranked_sites(per_site, "residual")
    checked = [s for s in ranked if per_site[s]["reaches_metric"]][: opts.check]
    for s in checked:
        with torch.no_grad():
            effects = [
                forward_gap(lm, chunk, classes, {s.layer: vectors[s.layer]}).cpu()
                for chunk in chunks(ct.neg, opts.batch_size)
            ]
        per_site[s]["exact"], per_site[s]["exact_se"] = mean_se(torch.cat(effects) - m_neg)
        log.info("locate: exact effect at %s", s.name)
    pos_mean, pos_se = mean_se(m_pos)
    neg_mean, neg_se = mean_se(m_neg)
    total = None if pos_mean is None or neg_mean is None else pos_mean - neg_mean
    total_se = None if pos_se is None or neg_se is None else (pos_se**2 + neg_se**2) ** 0.5
    return {
        "kind": "classes",
        "model": model_key(lm.spec),
        "num_layers": lm.info.num_layers,
        "classes": {
            "source": ct.source,
            "positive": ct.positive,
            "negative": ct.negative,
            "n_positive": len(ct.pos),
            "n_negative": len(ct.neg),
        },
        "metric": {
            "definition": f"logit[{ct.positive}] − logit[{ct.negative}]",
            "vector": (
                f"v = mean(h | {ct.positive}) − mean(h | {ct.negative}), mean-pooled, "
                "added at every position with coefficient 1"
            ),
            "mean_positive": pos_mean,
            "mean_negative": neg_mean,
            "total_effect": finite_or_none(total),
            "total_effect_se": finite_or_none(total_se),
        },
        "aggregate": "mean",
        "components": ["residual"],
        "folds": opts.folds,
        "seed": opts.seed,
        "top_k": {"residual": [s.layer for s in ranked[: opts.top_k]]},
        "check": {
            "per_component_top": opts.check,
            **check_summary(checked, per_site, ("residual",)),
        },
        "steer": None,
        "sites": [per_site[s] for s in sites],
        "created": utc_now(),
    }
