"""Attribution patching and exact activation patching of the trait metric, per site.

Activation patching (Meng et al. 2022, "Locating and Editing Factual Associations in
GPT"; Heimersheim & Nanda 2024, "How to use and interpret activation patching") runs
the negative side of a pair with one site's activation set to the positive side's and
measures the change of a metric. Pair texts differ in length, so what is patched is the
*aggregated* activation, the one steering vectors are made of
(:func:`harness.steering.vectors.hidden_states`):

- ``aggregate = "last"``: the activation at the text's last token is replaced by the
  positive text's, ``a_T <- a_T + delta`` with ``delta = a_pos,T - a_neg,T``;
- ``aggregate = "mean"``: ``delta = mean_t a_pos,t - mean_t a_neg,t`` is added at every
  token of the text, which moves the text's mean activation onto the positive's.

The exact effect at site ``s`` is ``M(neg; a_s + delta_s) - M(neg)``, one forward pass
per site. Attribution patching (Nanda 2023, "Attribution Patching: Activation Patching At
Industrial Scale"; Syed, Rager & Conmy 2023, "Attribution Patching Outperforms Automated
Circuit Discovery") replaces it by its first-order Taylor term, for every site from one
forward and one backward pass of the negative side::

    attribution_s = sum_{t in P} (dM/da_s,t)(neg) . delta_s

summed over the patched positions ``P`` and the hidden dimensions, then averaged over
pairs. The gradient is taken with respect to a zero offset added at the site (so the
model and its outputs are unchanged), which is the total derivative of M through every
later layer. It is an approximation, exact only for a metric linear in the activation:
large patches, saturated softmaxes and attention-sink positions make it misrank sites,
which is why the locator checks the top ones with :func:`patch_effect`.

Hooks come from :func:`harness.steering.hooks.edit_residual` on the site modules of
:mod:`harness.locate.sites`, so they are removed when each pass ends, also on error.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass

import torch
from torch import nn

from harness.locate.metric import Rows, metric_per_group
from harness.locate.sites import Component, Site, site_modules
from harness.model.loading import LoadedModel
from harness.steering.hooks import EditFn, edit_residual


@dataclass
class SiteModules:
    """The hookable module lists of a model, one per component, built once."""

    lists: dict[Component, nn.ModuleList]

    @classmethod
    def of(cls, lm: LoadedModel, components: Iterable[Component]) -> SiteModules:
        layers = lm.layers
        return cls({c: site_modules(layers, c) for c in components})


def forward_metric(
    lm: LoadedModel,
    rows: Rows,
    modules: SiteModules,
    offsets: Mapping[Site, torch.Tensor] | None = None,
    capture: Iterable[Site] = (),
) -> tuple[torch.Tensor, dict[Site, torch.Tensor]]:
    """One forward pass: M per context, and the aggregated activation at each captured site.

    ``offsets[s]`` is a (contexts, hidden) tensor added at site ``s`` at the rows' patch
    positions (both rows of a context get the context's offset); captured activations are
    read before the offset, aggregated with the rows' weights, float32, detached."""
    offsets = offsets or {}
    capture = set(capture)
    rows = rows.to(lm.device)
    g = rows.n_groups
    captured: dict[Site, torch.Tensor] = {}
    edits: dict[Component, dict[int, EditFn]] = {}

    def make_edit(site: Site) -> EditFn:
        off = offsets.get(site)

        def fn(hidden: torch.Tensor, _mask: torch.Tensor) -> torch.Tensor:
            if site in capture:
                agg = torch.einsum("rs,rsh->rh", rows.weights, hidden.detach().float())
                captured[site] = agg[:g]  # the trait rows; the neutral rows hold the same
            if off is None:
                return hidden
            add = off.to(device=hidden.device, dtype=hidden.dtype)[rows.row_group]
            return hidden + rows.patch.to(hidden.dtype)[:, :, None] * add[:, None, :]

        return fn

    for site in set(offsets) | capture:
        edits.setdefault(site.component, {})[site.layer] = make_edit(site)
    with ExitStack() as stack:
        for component, fns in edits.items():
            stack.enter_context(edit_residual(modules.lists[component], fns))
        out = lm.model(
            input_ids=rows.input_ids, attention_mask=rows.attention_mask, use_cache=False
        )
    return metric_per_group(out.logits, rows), captured


@dataclass
class PairActivations:
    """Per site, for a chunk of pairs: aggregated activations of both sides and dM/da."""

    metric_pos: torch.Tensor  # (pairs,)
    metric_neg: torch.Tensor  # (pairs,)
    pos: dict[Site, torch.Tensor]  # (pairs, hidden)
    neg: dict[Site, torch.Tensor]
    grad: dict[Site, torch.Tensor]  # sum over patched positions of dM/da at the negative side

    def delta(self, site: Site) -> torch.Tensor:
        return self.pos[site] - self.neg[site]

    def attribution(self, site: Site) -> torch.Tensor:
        """Per pair: grad . delta, the first-order estimate of the exact effect."""
        return (self.grad[site] * self.delta(site)).sum(-1)


def pair_activations(
    lm: LoadedModel,
    pos_rows: Rows,
    neg_rows: Rows,
    modules: SiteModules,
    sites: Sequence[Site],
) -> PairActivations:
    """Two forward passes and one backward pass for every site at once."""
    with torch.no_grad():
        m_pos, a_pos = forward_metric(lm, pos_rows, modules, capture=sites)
    hidden = lm.info.hidden_size
    zero = {
        s: torch.zeros(
            neg_rows.n_groups, hidden, device=lm.device, dtype=torch.float32, requires_grad=True
        )
        for s in sites
    }
    with torch.enable_grad():
        m_neg, a_neg = forward_metric(lm, neg_rows, modules, offsets=zero, capture=sites)
        grads = torch.autograd.grad(m_neg.sum(), [zero[s] for s in sites], allow_unused=True)
    grad = {
        s: (g if g is not None else torch.zeros_like(zero[s])).detach().float().cpu()
        for s, g in zip(sites, grads, strict=True)
    }
    return PairActivations(
        metric_pos=m_pos.detach().float().cpu(),
        metric_neg=m_neg.detach().float().cpu(),
        pos={s: a_pos[s].cpu() for s in sites},
        neg={s: a_neg[s].cpu() for s in sites},
        grad=grad,
    )


@torch.no_grad()
def patch_effect(
    lm: LoadedModel,
    neg_rows: Rows,
    modules: SiteModules,
    site: Site,
    offset: torch.Tensor,
    baseline: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per context: M with ``offset`` added at ``site`` minus M without (exact patching
    when ``offset`` is the pair's delta; a finite difference when it is eps * delta)."""
    if baseline is None:
        baseline, _ = forward_metric(lm, neg_rows, modules)
    patched, _ = forward_metric(lm, neg_rows, modules, offsets={site: offset})
    return (patched - baseline.to(patched.device)).float().cpu()
