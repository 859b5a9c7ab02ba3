"""The one strict-parameters base: every spec section, method and scorer ``Params`` model
derives from it, so an unknown key is an error everywhere and never silently ignored."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """Unknown keys are errors: a typo must never be silently ignored."""

    model_config = ConfigDict(extra="forbid")
