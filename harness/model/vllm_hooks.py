"""Steering hooks inside vLLM's model: functions that run in vLLM's worker processes.

vLLM runs its model in other processes (the engine core, one worker per tensor-parallel
rank), so the harness cannot hold its layers. It sends functions there through
``LLM.apply_model``, which calls ``fn(model)`` on every worker and returns the results.
Functions sent that way must be importable by name in the worker (module-level, no
closures over the driver's state), so every edit travels as plain data (lists of floats)
bound with :func:`functools.partial`.

Where the vector goes. vLLM's decoder layers of the Llama family fuse the residual add
into the next RMSNorm: a layer returns ``(hidden, residual)`` and the residual stream
after it -- what an HF layer returns -- is their sum. So "add v to the layer's output"
must add v to the sum once (adding it to both would add 2v). The hook computes the edited
stream ``(residual + hidden) + v`` (ablation: the sum less its component along u) and
returns it whole as the residual with ``hidden`` zero, so the next layer's fused add
reproduces HF's float sum bit for bit instead of ``(hidden + v) + residual``. The
embedding output (index -1) is the ``hidden_states`` argument of layer 0, edited by a
forward pre-hook, as on the HF path. Every token of every request is edited (positions
"all"): the hook sees vLLM's flattened batch, not rows.

The handles live in :data:`_HANDLES` in the worker; :func:`remove_hooks` removes them and
:func:`hook_count` lets the driver check that none is left (the vLLM side of
:mod:`harness.steering.restore`). Eager mode only: a captured CUDA graph or a compiled
graph would not run Python hooks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from harness.model.layers import decoder_layers

EMBEDDING = -1
"""The embedding output, as in :data:`harness.config.vectors.EMBEDDING`."""

_HANDLES: list[RemovableHandle] = []

Edit = tuple[str, list[float], float]
"""(kind, vector, coefficient): ``("add", v, c)`` adds c*v; ``("ablate", u, c)`` removes
c times the stream's component along u (a unit vector)."""


class _Edits:
    """One layer's edits, their vectors made into tensors once per device and dtype."""

    def __init__(self, edits: Sequence[Edit]):
        self.edits = list(edits)
        self._tensors: dict[tuple[Any, Any], list[torch.Tensor]] = {}

    def apply(self, stream: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``target`` plus the change every edit makes to the residual ``stream``."""
        key = (stream.device, stream.dtype)
        if key not in self._tensors:
            self._tensors[key] = [
                torch.tensor(v, dtype=stream.dtype, device=stream.device) for _, v, _ in self.edits
            ]
        out = target
        for (kind, _, coefficient), v in zip(self.edits, self._tensors[key], strict=True):
            if kind == "add":
                out = out + coefficient * v
            else:
                out = out - coefficient * ((stream @ v)[..., None] * v)
        return out


def _post_hook(edits: Sequence[Edit]) -> Any:
    layer_edits = _Edits(edits)

    def hook(_module: nn.Module, _args: Any, output: Any) -> Any:
        if isinstance(output, tuple) and len(output) == 2 and output[1] is not None:
            hidden, residual = output
            # The whole edited stream goes into the residual and hidden becomes 0: the next
            # fused add-norm then sees exactly (residual + hidden) + delta, the same sum in
            # the same order as HF's layer output plus its hook's edit.
            stream = residual + hidden
            return torch.zeros_like(hidden), layer_edits.apply(stream, stream)
        if isinstance(output, tuple):
            return (layer_edits.apply(output[0], output[0]), *output[1:])
        return layer_edits.apply(output, output)

    return hook


def _pre_hook(edits: Sequence[Edit]) -> Any:
    """Edit layer 0's ``hidden_states`` input (the embedding output; its residual is None)."""
    layer_edits = _Edits(edits)

    def hook(_module: nn.Module, args: Any, kwargs: Any) -> Any:
        if len(args) >= 2:
            hidden = args[1]
            return (args[0], layer_edits.apply(hidden, hidden), *args[2:]), kwargs
        hidden = kwargs["hidden_states"]
        return args, {**kwargs, "hidden_states": layer_edits.apply(hidden, hidden)}

    return hook


def install_hooks(edits: dict[int, list[Edit]], model: nn.Module) -> int:
    """Hook ``edits[layer]`` on this worker's model (layer -1: the embedding output);
    returns the number of hooks this worker now holds. Called by ``apply_model``."""
    layers = decoder_layers(model)
    for index, layer_edits in sorted(edits.items()):
        if index == EMBEDDING:
            handle = layers[0].register_forward_pre_hook(_pre_hook(layer_edits), with_kwargs=True)
        else:
            handle = layers[index].register_forward_hook(_post_hook(layer_edits))
        _HANDLES.append(handle)
    return len(_HANDLES)


def remove_hooks(model: nn.Module) -> int:
    """Remove every hook :func:`install_hooks` put on this worker; the number removed."""
    n = len(_HANDLES)
    while _HANDLES:
        _HANDLES.pop().remove()
    return n


def hook_count(model: nn.Module) -> int:
    """Forward hooks and pre-hooks left on this worker's decoder layers (0 when clean)."""
    return sum(
        len(layer._forward_hooks) + len(layer._forward_pre_hooks) for layer in decoder_layers(model)
    )


def layer_count(model: nn.Module) -> int:
    """The decoder layers vLLM built (a check that the harness finds them)."""
    return len(decoder_layers(model))
