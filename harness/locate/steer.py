"""The measured steering delta per site (``locate --steer``): steer, then measure M.

At site ``s`` (component c of layer i) the vector is the pairs' mean difference there,
``v_s = mean over pairs of delta_s`` (the CAA vector of :mod:`harness.steering.vectors`
when ``s`` is the residual stream), scaled as ``coefficient_mode = "norm"`` scales it:
``coefficient * typical|h_i| / |v_s| * v_s``, with ``typical|h_i|`` the mean norm of
block i's output on the neutral calibration prompts (first position left out;
:func:`harness.steering.methods.activation.layer_norms`). Attention and MLP outputs
write into that residual stream, so their pushes are sized by its norm too.

It is added at every position of each tuning prompt (rendered as generation renders it)
and of the metric's continuation, like ``positions = "all"``, and the delta is the
trait metric of :mod:`harness.locate.metric` steered minus unsteered, averaged over the
prompts. It measures the metric, not generated texts: a cheap, deterministic screen of
where a push of a given size moves the trait continuation, for a sweep or a search to
confirm with scorers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from harness.locate.metric import Rows, build_rows, encode
from harness.locate.patching import SiteModules, forward_metric
from harness.locate.sites import Site
from harness.model.chat import build_messages, render
from harness.model.loading import LoadedModel
from harness.steering.methods.activation import layer_norms


def prompt_rows(
    lm: LoadedModel,
    prompts: Sequence[str],
    prefix: Sequence[int],
    words: tuple[Sequence[int], Sequence[int]],
) -> Rows:
    """Tuning prompts as generation renders them, followed by the metric's continuation."""
    rendered = [render(lm, build_messages(t, lm.spec.system_prompt)) for t in prompts]
    special = not lm.use_chat_template
    contexts = [encode(lm.tokenizer, t, special) for t in rendered]
    return build_rows(contexts, prefix, words, lm.tokenizer.pad_token_id, "last", "all")


@torch.no_grad()
def steering_deltas(
    lm: LoadedModel,
    modules: SiteModules,
    directions: dict[Site, torch.Tensor],
    coefficient: float,
    prompts: Sequence[str],
    prefix: Sequence[int],
    words: tuple[Sequence[int], Sequence[int]],
    norm_prompts: str,
    base_dir: Path,
    batch_size: int = 8,
) -> tuple[dict[Site, torch.Tensor], dict[int, float]]:
    """Per site, the per-prompt metric delta of steering there; and the typical norms."""
    layers = sorted({s.layer for s in directions})
    typical = layer_norms(lm, layers, norm_prompts, base_dir)
    scaled = {}
    for site, v in directions.items():
        norm = float(v.norm())
        scale = coefficient * typical[site.layer] / norm if norm > 0 else 0.0
        scaled[site] = v.float() * scale
    deltas: dict[Site, list[torch.Tensor]] = {s: [] for s in directions}
    for start in range(0, len(prompts), batch_size):
        rows = prompt_rows(lm, prompts[start : start + batch_size], prefix, words)
        base, _ = forward_metric(lm, rows, modules)
        g = rows.n_groups
        for site, vec in scaled.items():
            offset = vec[None, :].expand(g, -1)
            steered, _ = forward_metric(lm, rows, modules, offsets={site: offset})
            deltas[site].append((steered - base).float().cpu())
    return {s: torch.cat(d) for s, d in deltas.items()}, typical
