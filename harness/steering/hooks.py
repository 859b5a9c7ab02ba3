"""Forward hooks on decoder layers: read or edit the residual stream, always removed after.

Index :data:`~harness.config.vectors.EMBEDDING` (-1) is the embedding output, the input
of block 0: it is edited or read by a forward *pre*-hook on block 0 (its ``hidden_states``
argument), which is the same tensor whatever the architecture does before the first block
(GPT-2's position embeddings, Gemma's scaling).

Position bookkeeping: generation runs with a KV cache, so a layer first sees the whole
(left-padded) prompt, then one new position per step. Each hooked layer counts the
positions it has seen since the context was entered; positions below the padded prompt
length are prompt tokens, the rest are generated tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from harness.config.vectors import EMBEDDING

Positions = Literal["all", "prompt", "generated"]

# An edit takes the layer's output hidden states (batch, seq, hidden) and a boolean mask
# (seq,) of positions to edit, and returns new hidden states.
EditFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _split_output(output: Any) -> tuple[torch.Tensor, Any]:
    if isinstance(output, tuple):
        return output[0], output[1:]
    return output, None


def _join_output(hidden: torch.Tensor, rest: Any) -> Any:
    return hidden if rest is None else (hidden, *rest)


def _on_hidden(
    layers: nn.ModuleList, index: int, fn: Callable[[torch.Tensor], torch.Tensor | None]
) -> RemovableHandle:
    """Hook ``fn`` on the hidden states at ``index``: a block's output, or for
    :data:`EMBEDDING` the input of block 0. ``fn`` returns new hidden states or None."""
    if index == EMBEDDING:

        def pre_hook(_module: nn.Module, args: Any, kwargs: Any) -> Any:
            if args:
                new = fn(args[0])
                return None if new is None else ((new, *args[1:]), kwargs)
            new = fn(kwargs["hidden_states"])
            return None if new is None else (args, {**kwargs, "hidden_states": new})

        return layers[0].register_forward_pre_hook(pre_hook, with_kwargs=True)

    def hook(_module: nn.Module, _args: Any, output: Any) -> Any:
        hidden, rest = _split_output(output)
        new = fn(hidden)
        return None if new is None else _join_output(new, rest)

    return layers[index].register_forward_hook(hook)


@contextmanager
def edit_residual(
    layers: nn.ModuleList,
    edits: dict[int, EditFn],
    positions: Positions = "all",
    prompt_length: int | None = None,
) -> Iterator[None]:
    """Apply ``edits[i]`` to the output of decoder layer ``i`` (or, for :data:`EMBEDDING`,
    to the input of block 0) while the context is open. ``layers`` may also be the
    attention or MLP submodules of :func:`harness.model.sites.site_modules`."""
    if positions != "all" and prompt_length is None:
        raise ValueError(f"positions='{positions}' needs the prompt length")
    seen: dict[int, int] = dict.fromkeys(edits, 0)
    handles = []

    def make_hook(index: int, fn: EditFn) -> Callable[[torch.Tensor], torch.Tensor | None]:
        def hook(hidden: torch.Tensor) -> torch.Tensor | None:
            seq = hidden.shape[1]
            start = seen[index]
            seen[index] = start + seq
            pos = torch.arange(start, start + seq, device=hidden.device)
            if positions == "all":
                mask = torch.ones(seq, dtype=torch.bool, device=hidden.device)
            elif positions == "prompt":
                mask = pos < prompt_length  # type: ignore[operator]
            else:
                mask = pos >= prompt_length  # type: ignore[operator]
            if not bool(mask.any()):
                return None
            return fn(hidden, mask)

        return hook

    try:
        for index, fn in edits.items():
            handles.append(_on_hidden(layers, index, make_hook(index, fn)))
        yield
    finally:
        for h in handles:
            h.remove()


def add_vector(vector: torch.Tensor, coefficient: float) -> EditFn:
    """Edit: h + coefficient * vector at the masked positions."""

    def fn(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        v = vector.to(device=hidden.device, dtype=hidden.dtype) * coefficient
        return hidden + mask.to(hidden.dtype)[None, :, None] * v

    return fn


def add_rows(vectors: torch.Tensor) -> EditFn:
    """Edit: row r gets h + vectors[r] at the masked positions (one vector per batch row)."""

    def fn(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        v = vectors.to(device=hidden.device, dtype=hidden.dtype)
        return hidden + mask.to(hidden.dtype)[None, :, None] * v[:, None, :]

    return fn


def ablate_direction(direction: torch.Tensor, coefficient: float = 1.0) -> EditFn:
    """Edit: h - coefficient * (h . u) u with u = direction / |direction|.

    coefficient = 1 projects the direction out entirely (directional ablation, as in Arditi
    et al. 2024, "Refusal in Language Models Is Mediated by a Single Direction")."""
    unit = direction / direction.norm()

    def fn(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        u = unit.to(device=hidden.device, dtype=hidden.dtype)
        proj = (hidden @ u)[..., None] * u
        return hidden - coefficient * mask.to(hidden.dtype)[None, :, None] * proj

    return fn


@contextmanager
def capture_residual(
    layers: nn.ModuleList, indices: list[int]
) -> Iterator[dict[int, torch.Tensor]]:
    """Record the output hidden states of the given layers for the forward passes inside."""
    captured: dict[int, torch.Tensor] = {}
    handles = []

    def make_hook(index: int) -> Callable[[torch.Tensor], None]:
        def hook(hidden: torch.Tensor) -> None:
            captured[index] = hidden.detach()

        return hook

    try:
        for i in indices:
            handles.append(_on_hidden(layers, i, make_hook(i)))
        yield captured
    finally:
        for h in handles:
            h.remove()
