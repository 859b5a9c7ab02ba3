"""Forward hooks on decoder layers: read or edit the residual stream, always removed after.

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


@contextmanager
def edit_residual(
    layers: nn.ModuleList,
    edits: dict[int, EditFn],
    positions: Positions = "all",
    prompt_length: int | None = None,
) -> Iterator[None]:
    """Apply ``edits[i]`` to the output of decoder layer ``i`` while the context is open."""
    if positions != "all" and prompt_length is None:
        raise ValueError(f"positions='{positions}' needs the prompt length")
    seen: dict[int, int] = dict.fromkeys(edits, 0)
    handles = []

    def make_hook(index: int, fn: EditFn) -> Callable[..., Any]:
        def hook(_module: nn.Module, _args: Any, output: Any) -> Any:
            hidden, rest = _split_output(output)
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
                return output
            return _join_output(fn(hidden, mask), rest)

        return hook

    try:
        for index, fn in edits.items():
            handles.append(layers[index].register_forward_hook(make_hook(index, fn)))
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

    def make_hook(index: int) -> Callable[..., None]:
        def hook(_module: nn.Module, _args: Any, output: Any) -> None:
            hidden, _ = _split_output(output)
            captured[index] = hidden.detach()

        return hook

    try:
        for i in indices:
            handles.append(layers[i].register_forward_hook(make_hook(i)))
        yield captured
    finally:
        for h in handles:
            h.remove()
