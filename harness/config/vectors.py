"""Where a steering vector comes from: a file, or contrastive pairs to extract it from.

These models appear both inside a condition's params (``vector = {pairs = "fear"}``) and in
the spec's library of named vectors (``[vectors.fear]``), which conditions reference by
name (``vector = "fear"``, or ``weights = {fear = 0.8}`` in a composite).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from harness.core.params import Strict


class VectorSource(Strict):
    file: str | None = Field(None, description="A safetensors vector file (layer.<i> tensors).")
    pairs: str | None = Field(
        None, description="Contrastive pairs: a shipped set name (fear, joy, ...) or a JSONL path."
    )
    method: Literal["mean_difference", "pca"] = Field(
        "mean_difference",
        description="mean of the pair differences, or their first principal direction.",
    )
    aggregate: Literal["last", "mean"] = Field(
        "last", description="Hidden state of the last token, or the mean over tokens."
    )
    template: Literal["raw", "chat"] = Field(
        "raw",
        description=(
            "raw: pair texts as they are; chat: each is an assistant reply after a fixed user turn."
        ),
    )

    @model_validator(mode="after")
    def _one(self) -> VectorSource:
        if (self.file is None) == (self.pairs is None):
            raise ValueError("give exactly one of vector.file or vector.pairs")
        return self


def _as_layer_list(v: Any) -> Any:
    return [v] if isinstance(v, int) else v


def _check_layers(v: list[int]) -> list[int]:
    if not v:
        raise ValueError("give at least one layer")
    if len(set(v)) != len(v):
        raise ValueError("layers must be unique")
    if any(i < 0 for i in v):
        raise ValueError("layer indices start at 0")
    return v


Layers = Annotated[list[int], BeforeValidator(_as_layer_list), AfterValidator(_check_layers)]
"""Decoder layer indices (0-based): a list, or one int."""


class LibraryVector(VectorSource):
    """A named vector in the spec's ``[vectors]`` table."""

    layers: Layers = Field(description="Decoder layers this vector is extracted for and added at.")
