"""Many additive conditions in one forward pass, each row steered with its own vector.

Conditions whose whole intervention is "add a fixed vector at some layers" (activation in
add mode, composite, and the unsteered baseline, which adds nothing) can share a batch:
the rows of each condition are stacked, and one hook per layer adds each row's own vector
(zero for a row whose condition does not steer that layer). The rows keep their prompts,
seeds and random streams, so texts equal those generated one condition at a time; on the
CPU they are bitwise equal (tests/test_batched.py), while a GPU may pick other kernels for
a larger batch and differ in the last float bits.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from harness.model.loading import LoadedModel
from harness.steering.base import BaseMethod, BatchInfo, MethodContext, MethodParams
from harness.steering.hooks import Positions, add_rows, edit_residual


def row_additions(method: Any) -> dict[int, torch.Tensor] | None:
    """A method's per-layer additions if it is purely additive and otherwise inert, else None.

    Only methods that neither rewrite prompts nor edit logits qualify, since rows of
    different conditions must share everything but the added vector."""
    if type(method).transform_messages is not BaseMethod.transform_messages:
        return None
    if getattr(type(method), "logits_processor", None) is not BaseMethod.logits_processor:
        return None
    additions = getattr(method, "additions", None)
    result = additions() if callable(additions) else None
    return None if result is None else dict(result)


class RowwiseAddition(BaseMethod):
    """Row r of the batch gets ``per_row[r][layer]`` added at each layer it names."""

    def __init__(self, per_row: Sequence[dict[int, torch.Tensor]], positions: Positions):
        super().__init__(MethodParams(), MethodContext("combined"))
        self.per_row = list(per_row)
        self._positions: Positions = positions

    @property
    def positions(self) -> Positions:
        return self._positions

    @contextmanager
    def apply(self, lm: LoadedModel, batch: BatchInfo) -> Iterator[None]:
        hidden = lm.info.hidden_size
        layers = sorted({i for row in self.per_row for i in row})
        edits = {}
        for i in layers:
            zero = torch.zeros(hidden)
            stacked = torch.stack([row.get(i, zero).float().cpu() for row in self.per_row])
            edits[i] = add_rows(stacked)
        with edit_residual(lm.layers, edits, self.positions, batch.prompt_length):
            yield
