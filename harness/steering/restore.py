"""The guarantee that a steering method leaves the model as it found it.

A snapshot records every module's hooks, the training flag, and a checksum of every
parameter and buffer; :func:`verify` compares the model with it after each condition
and raises, naming the method, when something was left behind (a hook not removed, an
adapter not unloaded, a weight edited in place). A checksum pass reads every weight once,
which is cheap next to generating a condition's texts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from harness.core.errors import ModelNotRestoredError

__all__ = ["ModelNotRestoredError", "ModelSnapshot", "snapshot", "verify"]


@dataclass(frozen=True)
class ModelSnapshot:
    hooks: dict[str, tuple[int, int]]
    training: bool
    tensors: dict[str, tuple[tuple[int, ...], float, float]]


def _hooks(model: nn.Module) -> dict[str, tuple[int, int]]:
    return {
        name: (len(m._forward_hooks), len(m._forward_pre_hooks))
        for name, m in model.named_modules()
        if m._forward_hooks or m._forward_pre_hooks
    }


@torch.no_grad()
def _tensors(model: nn.Module) -> dict[str, tuple[tuple[int, ...], float, float]]:
    out = {}
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        flat = t.detach().double()
        out[name] = (tuple(t.shape), float(flat.sum()), float((flat * flat).sum()))
    return out


def snapshot(model: nn.Module) -> ModelSnapshot:
    return ModelSnapshot(_hooks(model), model.training, _tensors(model))


def verify(model: nn.Module, before: ModelSnapshot, who: str) -> None:
    """Raise ModelNotRestoredError if ``model`` differs from ``before``."""
    problems = []
    hooks = _hooks(model)
    if hooks != before.hooks:
        changed = sorted(set(hooks.items()) ^ set(before.hooks.items()))
        problems.append(f"hooks changed on {[name for name, _ in changed][:5]}")
    if model.training != before.training:
        problems.append("the training flag changed")
    tensors = _tensors(model)
    if tensors.keys() != before.tensors.keys():
        added = sorted(tensors.keys() - before.tensors.keys())[:5]
        removed = sorted(before.tensors.keys() - tensors.keys())[:5]
        problems.append(f"parameters added {added} / removed {removed}")
    else:
        edited = [k for k, v in tensors.items() if v != before.tensors[k]][:5]
        if edited:
            problems.append(f"weights changed in {edited}")
    if problems:
        raise ModelNotRestoredError(
            f"{who} did not restore the model: {'; '.join(problems)}. A steering method must "
            "undo every change when its apply() context exits."
        )
