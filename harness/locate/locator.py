"""One localisation: per site, probe accuracy, attribution, the causal check, and
optionally the steering delta, as one JSON-ready document.

Passes over the pairs (``batch_size`` pairs at a time): one forward pass of the positive
sides and one forward and backward pass of the negative sides give every site's
activations and gradients (:func:`harness.locate.patching.pair_activations`); the causal
check adds one forward pass per checked site; ``--steer`` one per site over the tuning
prompts. Sites are ranked by mean attribution, largest first: the site where making the
negative side's activation like the positive's raises the trait metric most.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.core.errors import LocateError
from harness.core.ids import utc_now
from harness.locate.metric import PatchAt, Rows, TraitMetric, build_rows, encode, word_ids
from harness.locate.patching import PairActivations, SiteModules, pair_activations, patch_effect
from harness.locate.probe import probe_accuracy
from harness.locate.sites import COMPONENTS, Component, Site, all_sites
from harness.locate.steer import steering_deltas
from harness.model.loading import LoadedModel, model_key
from harness.stats import finite_or_none, spearman
from harness.steering.methods.activation import DEFAULT_NORM_PROMPTS
from harness.steering.vectors import Aggregate, ContrastPair, PairTemplate, render_pair_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocateOptions:
    components: tuple[Component, ...] = COMPONENTS
    aggregate: Aggregate = "last"
    template: PairTemplate = "raw"
    folds: int = 5
    seed: int = 0
    top_k: int = 3
    check: int = 3
    """Layers per component checked by exact patching (the top ones by attribution)."""
    batch_size: int = 8
    steer: bool = False
    steer_coefficient: float = 0.5
    steer_prompts: list[str] = field(default_factory=list)
    steer_prompts_source: str = ""
    norm_prompts: str = DEFAULT_NORM_PROMPTS
    base_dir: Path = field(default_factory=Path.cwd)


def site_row(
    site: Site, probe: Any, attribution: float | None, se: float | None, reaches: bool
) -> dict[str, Any]:
    """One site's row of a localisation, before the causal check and the ranking fill in
    ``exact``, ``steer_delta`` and ``rank``: what the LM and the classifier locators share."""
    return {
        "component": site.component,
        "layer": site.layer,
        "probe_accuracy": finite_or_none(probe.accuracy),
        "probe_folds": [finite_or_none(f) for f in probe.folds],
        "attribution": attribution,
        "attribution_se": se,
        "exact": None,
        "exact_se": None,
        "steer_delta": None,
        "steer_delta_se": None,
        "rank": None,
        "reaches_metric": reaches,
    }


def mean_se(x: torch.Tensor | np.ndarray) -> tuple[float | None, float | None]:
    """The mean and its standard error SD/sqrt(n) (ddof = 1; None with n < 2)."""
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    if a.size == 0:
        return None, None
    se = float(a.std(ddof=1) / math.sqrt(a.size)) if a.size > 1 else None
    return finite_or_none(a.mean()), finite_or_none(se)


@dataclass
class _Collected:
    neg_rows: list[Rows] = field(default_factory=list)
    parts: list[PairActivations] = field(default_factory=list)

    def cat(self, pick: str, site: Site | None = None) -> torch.Tensor:
        if site is None:
            return torch.cat([getattr(p, pick) for p in self.parts])
        return torch.cat([getattr(p, pick)[site] for p in self.parts])


def ranked_sites(per_site: dict[Site, dict[str, Any]], component: Component) -> list[Site]:
    """The sites of ``component`` by mean attribution, largest first (ties: lower layer)."""

    def key(s: Site) -> tuple[float, int]:
        a = per_site[s]["attribution"]
        return (-a if a is not None else math.inf, s.layer)

    return sorted((s for s in per_site if s.component == component), key=key)


def set_ranks(per_site: dict[Site, dict[str, Any]], components: Sequence[Component]) -> None:
    """Each site's ``rank`` (1 = largest attribution) within its component."""
    for c in components:
        for rank, s in enumerate(ranked_sites(per_site, c), start=1):
            per_site[s]["rank"] = rank


def check_options(pairs: Sequence[ContrastPair], opts: LocateOptions) -> None:
    n = len(pairs)
    if opts.folds < 2:
        raise LocateError(f"--folds {opts.folds}: cross-validation needs at least 2 folds")
    if n < opts.folds:
        raise LocateError(
            f"--folds {opts.folds}: the pair set has only {n} pairs; give at most {n} folds"
        )
    for name, value in (("--top-k", opts.top_k), ("--check", opts.check)):
        if value < 0:
            raise LocateError(f"{name} {value}: give 0 or more")
    if opts.batch_size < 1:
        raise LocateError(f"--batch-size {opts.batch_size}: give 1 or more")
    if opts.steer and not opts.steer_prompts:
        raise LocateError("--steer: the tuning prompt file has no prompts")


def pair_rows(
    lm: LoadedModel,
    pairs: Sequence[ContrastPair],
    metric: TraitMetric,
    aggregate: Aggregate = "last",
    template: PairTemplate = "raw",
) -> tuple[Rows, Rows]:
    """The metric's rows for the positive and the negative sides of ``pairs``: texts
    rendered and tokenized as vector extraction does, patched where ``aggregate`` reads."""
    tok = lm.tokenizer
    prefix, trait, neutral = word_ids(tok, metric)
    special = template == "raw" or not lm.use_chat_template
    patch_at: PatchAt = "last" if aggregate == "last" else "context"
    sides = []
    for texts in ([p.positive for p in pairs], [p.negative for p in pairs]):
        ids = [encode(tok, render_pair_text(lm, t, template), special) for t in texts]
        sides.append(
            build_rows(ids, prefix, (trait, neutral), tok.pad_token_id, aggregate, patch_at)
        )
    return sides[0], sides[1]


def locate(
    lm: LoadedModel,
    pairs: Sequence[ContrastPair],
    metric: TraitMetric,
    opts: LocateOptions,
    source: str = "",
) -> dict[str, Any]:
    """The localisation document (see :mod:`harness.locate.report` for its rendering)."""
    check_options(pairs, opts)
    prefix, trait, neutral = word_ids(lm.tokenizer, metric)
    words = (trait, neutral)
    modules = SiteModules.of(lm, opts.components)
    n_layers = len(lm.layers)
    sites = all_sites(opts.components, n_layers)
    got = _Collected()
    for start in range(0, len(pairs), opts.batch_size):
        chunk = pairs[start : start + opts.batch_size]
        pos_rows, neg_rows = pair_rows(lm, chunk, metric, opts.aggregate, opts.template)
        got.parts.append(pair_activations(lm, pos_rows, neg_rows, modules, sites))
        got.neg_rows.append(neg_rows)
        log.info("locate: pairs %d/%d", start + len(chunk), len(pairs))

    m_pos, m_neg = got.cat("metric_pos"), got.cat("metric_neg")
    per_site: dict[Site, dict[str, Any]] = {}
    for s in sites:
        pos, neg, grad = got.cat("pos", s), got.cat("neg", s), got.cat("grad", s)
        a_mean, a_se = mean_se((grad * (pos - neg)).sum(-1))
        probe = probe_accuracy(pos.numpy(), neg.numpy(), opts.folds, opts.seed)
        # reaches: False when no patched position can reach a scored one (the last
        # layer's sites, whose write at the text's tokens reaches only the text's own
        # logits): M does not depend on the site at all, and the causal check skips it
        per_site[s] = site_row(s, probe, a_mean, a_se, reaches=bool((grad != 0).any()))

    def ranked(component: Component) -> list[Site]:
        return ranked_sites(per_site, component)

    set_ranks(per_site, opts.components)
    log.info("locate: probes and attributions of %d sites done", len(sites))
    # The causal check: exact patching of the top sites by attribution (among the sites M
    # depends on at all).
    checked = []
    for c in opts.components:
        checked += [s for s in ranked(c) if per_site[s]["reaches_metric"]][: opts.check]
    for s in checked:
        effects = []
        for neg_rows, part in zip(got.neg_rows, got.parts, strict=True):
            offset = part.delta(s)
            effects.append(patch_effect(lm, neg_rows, modules, s, offset, part.metric_neg))
        per_site[s]["exact"], per_site[s]["exact_se"] = mean_se(torch.cat(effects))
        log.info("locate: exact patching %s", s.name)
    check = {"per_component_top": opts.check, **check_summary(checked, per_site, opts.components)}

    steer_doc: dict[str, Any] | None = None
    if opts.steer:
        directions = {s: (got.cat("pos", s) - got.cat("neg", s)).mean(0) for s in sites}
        deltas, typical = steering_deltas(
            lm,
            modules,
            directions,
            opts.steer_coefficient,
            opts.steer_prompts,
            prefix,
            words,
            opts.norm_prompts,
            opts.base_dir,
            opts.batch_size,
        )
        for s, d in deltas.items():
            per_site[s]["steer_delta"], per_site[s]["steer_delta_se"] = mean_se(d)
        steer_doc = {
            "coefficient": opts.steer_coefficient,
            "coefficient_mode": "norm",
            "prompts": opts.steer_prompts_source,
            "n_prompts": len(opts.steer_prompts),
            "norm_prompts": opts.norm_prompts,
            "typical_norms": {str(i): finite_or_none(v) for i, v in typical.items()},
        }

    total_mean, total_se = mean_se(m_pos - m_neg)
    return {
        "model": model_key(lm.spec),
        "num_layers": n_layers,
        "pairs": {"source": source, "n": len(pairs)},
        "metric": {
            "prefix": metric.prefix,
            "trait": metric.trait,
            "neutral": metric.neutral,
            "definition": metric.describe(),
            "mean_positive": finite_or_none(float(m_pos.mean())),
            "mean_negative": finite_or_none(float(m_neg.mean())),
            "total_effect": total_mean,
            "total_effect_se": total_se,
        },
        "aggregate": opts.aggregate,
        "template": opts.template,
        "components": list(opts.components),
        "folds": opts.folds,
        "seed": opts.seed,
        "top_k": {c: [s.layer for s in ranked(c)[: opts.top_k]] for c in opts.components},
        "check": check,
        "steer": steer_doc,
        "sites": [per_site[s] for s in sites],
        "created": utc_now(),
    }


def check_summary(
    checked: list[Site], per_site: dict[Site, dict[str, Any]], components: Sequence[Component]
) -> dict[str, Any]:
    """Spearman's rho between attribution and exact effect over the checked sites."""

    def rho(group: list[Site]) -> dict[str, Any]:
        if len(group) < 3:
            return {
                "n": len(group),
                "spearman": None,
                "reason": "fewer than 3 checked sites",
            }
        a = [per_site[s]["attribution"] for s in group]
        e = [per_site[s]["exact"] for s in group]
        if any(v is None for v in a + e):
            return {"n": len(group), "spearman": None, "reason": "a non-finite value"}
        r = spearman(a, e)
        out: dict[str, Any] = {"n": len(group), "spearman": finite_or_none(r)}
        if r is None:
            out["reason"] = "constant ranks"
        return out

    return {
        "sites": [s.name for s in checked],
        "pooled": rho(checked),
        "per_component": {c: rho([s for s in checked if s.component == c]) for c in components},
    }
