"""Where a steering vector comes from: a file, or contrastive pairs to extract it from.

These models appear both inside a condition's params (``vector = {pairs = "fear"}``) and in
the spec's library of named vectors (``[vectors.fear]``), which conditions reference by
name (``vector = "fear"``, or ``weights = {fear = 0.8}`` in a composite).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainSerializer,
    ValidationInfo,
    model_validator,
)

from harness.core.params import Strict


class VectorSource(Strict):
    file: str | None = Field(
        None,
        description=(
            "A safetensors vector file: layer.<i> tensors, or one [n_layers, hidden] tensor "
            "with a 'layers' list in its metadata."
        ),
    )
    pairs: str | None = Field(
        None, description="Contrastive pairs: a shipped set name (fear, joy, ...) or a JSONL path."
    )
    classes: str | None = Field(
        None,
        description=(
            "Labelled texts (JSONL or CSV with text and label columns, e.g. the shipped "
            "labels/emotions.jsonl): the vector is mean(h | positive) - mean(h | negative)."
        ),
    )
    positive: str | None = Field(None, description="classes: the label the vector points to.")
    negative: str | None = Field(None, description="classes: the label it points away from.")
    method: Literal["mean_difference", "pca"] = Field(
        "mean_difference",
        description="mean of the pair differences, or their first principal direction.",
    )
    aggregate: Literal["last", "mean"] = Field(
        "last",
        description=(
            "Hidden state of the last token, or the mean over tokens (attention-masked); "
            "class means default to the mean."
        ),
    )
    template: Literal["raw", "chat"] = Field(
        "raw",
        description=(
            "raw: pair texts as they are; chat: each is an assistant reply after a fixed user turn."
        ),
    )

    @model_validator(mode="after")
    def _one(self) -> VectorSource:
        given = [k for k in ("file", "pairs", "classes") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of vector.file, vector.pairs or vector.classes")
        if self.classes is None:
            if self.positive is not None or self.negative is not None:
                raise ValueError("positive and negative belong to vector.classes")
            return self
        if not self.positive or not self.negative or self.positive == self.negative:
            raise ValueError(
                "vector.classes needs positive and negative: two different labels of the file"
            )
        if self.method != "mean_difference":
            raise ValueError("vector.classes is a difference of class means (no method = 'pca')")
        if "aggregate" not in self.model_fields_set:
            # Mean pooling over each text's tokens, as the class means are defined.
            self.aggregate = "mean"
        return self


EMBEDDING = -1
"""The layer index of the embedding output (the input to the first decoder block), written
``"embedding"`` in a spec; decoder blocks are 0, 1, ... (a block's output)."""

DEPTH_RANGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*-\s*(\d+(?:\.\d+)?)\s*%\s*$")


def depth_range(text: str, num_layers: int) -> list[int]:
    """``"30%-60%"`` -> the blocks ``i`` with ``30% <= i / num_layers < 60%`` (half open, so
    ``"0%-100%"`` is every block and adjacent ranges do not overlap)."""
    m = DEPTH_RANGE.match(text)
    if m is None:
        raise ValueError(f"'{text}' is not a depth range like '30%-60%'")
    lo, hi = float(m.group(1)), float(m.group(2))
    if not 0 <= lo < hi <= 100:
        raise ValueError(f"depth range '{text}': need 0% <= start < end <= 100%")
    first = math.ceil(lo / 100 * num_layers - 1e-9)
    layers = [i for i in range(first, num_layers) if i < hi / 100 * num_layers - 1e-9]
    if not layers:
        raise ValueError(f"depth range '{text}' holds no layer of a {num_layers}-layer model")
    return layers


LOCATE = "locate:"
"""The prefix of a located layer reference: ``"locate:<pairs>"`` or ``"locate:<pairs>:<k>"``."""


@dataclass(frozen=True)
class LocateRef:
    """``layers = "locate:joy:2"``: the top ``k`` layers for the pair set ``pairs`` by the
    spec's ``[locate]`` ranking. Resolved against the model by the plan
    (:mod:`harness.locate.layers`), which writes the numbers in before anything else reads
    the condition."""

    text: str
    pairs: str
    k: int = 1


def is_locate(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower().startswith(LOCATE)


def parse_locate(text: str) -> LocateRef:
    """``"locate:joy"`` -> LocateRef(pairs="joy", k=1); ValueError naming the fix."""
    body = text.strip()[len(LOCATE) :]
    parts = [p.strip() for p in body.split(":")]
    example = "e.g. 'locate:joy' (the top layer) or 'locate:joy:3' (the top 3)"
    if not parts[0] or len(parts) > 2:
        raise ValueError(f"'{text}' is not a located layer reference: give a pair set, {example}")
    if len(parts) == 1:
        return LocateRef(text, parts[0])
    try:
        k = int(parts[1])
    except ValueError:
        raise ValueError(
            f"'{text}': the number of layers k must be an integer, got '{parts[1]}'; {example}"
        ) from None
    if k < 1:
        raise ValueError(f"'{text}': the number of layers k must be 1 or more, got {k}")
    return LocateRef(text, parts[0], k)


def _layer_count(info: ValidationInfo) -> int | None:
    context = info.context if isinstance(info.context, dict) else {}
    count = context.get("num_layers")
    return int(count()) if callable(count) else count


def _as_layer_list(v: Any, info: ValidationInfo) -> Any:
    """Ints stay; ``"embedding"`` becomes :data:`EMBEDDING`; a depth range becomes its
    blocks, which needs the model's layer count (the validation context's ``num_layers``,
    given where conditions are resolved against the model)."""
    items = v if isinstance(v, list) else [v]
    out: list[Any] = []
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool) and item < 0:
            raise ValueError(
                "layer indices start at 0 (the first block's output); write 'embedding' "
                "for the embedding output"
            )
        if isinstance(item, str) and item.strip().lower() == "embedding":
            out.append(EMBEDDING)
        elif isinstance(item, str) and DEPTH_RANGE.match(item):
            count = _layer_count(info)
            if count is None:
                raise ValueError(
                    f"depth range '{item}' needs the model's layer count: give it in a "
                    "condition's params, not here"
                )
            out += depth_range(item, count)
        elif is_locate(item):
            parse_locate(item)  # a malformed reference is reported as such
            raise ValueError(
                f"'{item}' is located when the run is planned: use it in a condition's "
                "params.layers, sweep or search.layers, not here"
            )
        elif isinstance(item, str):
            raise ValueError(
                f"'{item}' is not a layer: give block indices (0-based), 'embedding', a "
                "depth range like '30%-60%', or 'locate:<pairs>[:<k>]'"
            )
        else:
            out.append(item)
    return out


def _check_layers(v: list[int]) -> list[int]:
    if not v:
        raise ValueError("give at least one layer")
    if len(set(v)) != len(v):
        raise ValueError("layers must be unique")
    return v


def layer_label(i: int) -> str | int:
    return "embedding" if i == EMBEDDING else i


Layers = Annotated[
    list[int],
    BeforeValidator(_as_layer_list),
    AfterValidator(_check_layers),
    PlainSerializer(lambda v: [layer_label(i) for i in v]),
]
"""Decoder layer indices (0-based), ``"embedding"`` (:data:`EMBEDDING`), or a depth range
``"30%-60%"``: a list, or one of these. (``"locate:<pairs>[:<k>]"`` is written into a
condition's numbers by the plan before its params are validated.)"""


class LibraryVector(VectorSource):
    """A named vector in the spec's ``[vectors]`` table."""

    layers: Layers = Field(description="Decoder layers this vector is extracted for and added at.")
