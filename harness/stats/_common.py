"""Small shared helpers: input coercion and JSON-safe scalars (internal)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


def as_float_array(values: Iterable[Any]) -> FloatArray:
    """Return ``values`` as a 1-D float64 array; ``None`` becomes NaN.

    Raises ``ValueError`` when an element is not a number (a programming error, not
    degenerate data).
    """
    if isinstance(values, np.ndarray):
        if values.dtype == object:
            values = values.tolist()
        else:
            return np.asarray(values, dtype=np.float64).reshape(-1)
    out = [math.nan if v is None else float(v) for v in values]
    return np.asarray(out, dtype=np.float64)


def finite_or_none(x: Any) -> float | None:
    """A Python float when ``x`` is a finite number, else ``None`` (None, NaN, inf, text,
    and booleans, which are flags rather than numbers)."""
    if x is None or isinstance(x, bool):
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def is_constant(x: FloatArray) -> bool:
    """True when every element equals the first (exact; robust where ``np.var`` is not).

    ``np.var`` of a constant array can come out as a tiny positive number because the
    mean is rounded (e.g. three copies of 0.1); comparing values exactly avoids that.
    """
    return bool(x.size == 0 or np.all(x == x[0]))


#: An SD at most this fraction of the data's largest magnitude is treated as zero: it can
#: only be floating-point rounding (e.g. ``(b + 0.1) - b`` is not exactly constant), and
#: dividing by it would report an absurd effect (d ~ 1e15) instead of "zero variance".
REL_ZERO_SD = 1e-10


def sd_is_zero(sd: float, scale: float) -> bool:
    """True when ``sd <= REL_ZERO_SD * scale`` (or ``sd`` is not a positive number)."""
    return not (sd > 0 and math.isfinite(sd)) or sd <= REL_ZERO_SD * abs(scale)


def max_abs(*arrays: FloatArray) -> float:
    """Largest absolute value over the arrays (0.0 when all are empty)."""
    return max((float(np.max(np.abs(a))) for a in arrays if a.size), default=0.0)
