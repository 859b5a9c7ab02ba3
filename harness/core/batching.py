"""Fixed-size batches of a sequence: the one batching helper of generation, scoring and
localisation (the last batch holds the rest)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")


def chunks(seq: Sequence[T], size: int) -> Iterator[list[T]]:
    """``seq`` in consecutive lists of ``size`` items, in order."""
    for start in range(0, len(seq), size):
        yield list(seq[start : start + size])
