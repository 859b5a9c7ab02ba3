"""The one strict-parameters base: every spec section, method and scorer ``Params`` model
derives from it, so an unknown key is an error everywhere and never silently ignored, a
number is finite (``nan`` and ``inf`` are refused where they enter) and a value has the
type it is declared with (``true`` is not 1, ``"8"`` is not 8; an int is a valid float)."""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

MAX_SEED = 2**63 - 1

Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
"""A random seed: an integer in 0..2^63-1 (what every generator we seed accepts)."""


class Strict(BaseModel):
    """Unknown keys, non-finite numbers and loosely typed values are errors: a typo or a
    NaN must never be silently ignored or carried into a run."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


def non_finite_at(obj: Any, where: str = "") -> str | None:
    """The path of the first NaN or infinite number in a JSON-like value, if any."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return where or "(top level)"
    items = (
        obj.items()
        if isinstance(obj, dict)
        else enumerate(obj)
        if isinstance(obj, list | tuple)
        else ()
    )
    for key, value in items:
        found = non_finite_at(value, f"{where}.{key}" if where else str(key))
        if found is not None:
            return found
    return None
