"""Activation steering: add ``coefficient * vector`` to the residual stream of decoder layers.

The vector comes from a safetensors file (see :class:`SteeringVector`) or is extracted by
the harness from contrastive pairs (a shipped set such as ``fear`` or a JSONL path), and
cached in the run directory so a resumed run does not extract it again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from harness.records import content_id
from harness.spec import resolve_data_path
from harness.steering.base import BaseMethod, BatchInfo, MethodParams
from harness.steering.hooks import Positions
from harness.steering.vectors import (
    SteeringVector,
    VectorFileError,
    extract_mean_difference,
    load_pairs,
)

if TYPE_CHECKING:
    from harness.models import LoadedModel, ModelInfo


class VectorSource(MethodParams):
    file: str | None = Field(None, description="A safetensors vector file (layer.<i> tensors).")
    pairs: str | None = Field(
        None, description="Contrastive pairs: a shipped set name (fear, joy, ...) or a JSONL path."
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


class ActivationParams(MethodParams):
    layers: list[int] = Field(description="Decoder layer indices (0-based) to steer.")
    coefficient: float
    vector: VectorSource
    positions: Positions = Field(
        "all", description="Steer prompt tokens, generated tokens, or both."
    )

    @field_validator("layers", mode="before")
    @classmethod
    def _as_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, int) else v

    @field_validator("layers")
    @classmethod
    def _valid(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("give at least one layer")
        if len(set(v)) != len(v):
            raise ValueError("layers must be unique")
        return v


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def resolve_pairs(value: str, base_dir: Path) -> Path | None:
    """A shipped pair set by name (``fear``) or a JSONL path."""
    if "/" not in value and not value.endswith(".jsonl"):
        return resolve_data_path(f"pairs/{value}.jsonl", base_dir)
    return resolve_data_path(value, base_dir)


class ActivationSteering(BaseMethod):
    """Add a vector, times a coefficient, to the output of one or more decoder layers."""

    Params = ActivationParams
    params: ActivationParams

    def __init__(self, params: ActivationParams, context: Any):
        super().__init__(params, context)
        self.vector: SteeringVector | None = None

    @classmethod
    def check(cls, params: ActivationParams, info: ModelInfo, base_dir: Path) -> list[str]:  # type: ignore[override]
        problems = []
        n = info.num_layers
        bad = [i for i in params.layers if not 0 <= i < n]
        if bad:
            problems.append(
                f"params.layers: {bad} out of range; this model has {n} decoder layers, "
                f"allowed 0..{n - 1}"
            )
        src = params.vector
        if src.file is not None:
            path = resolve_data_path(src.file, base_dir)
            if path is None:
                problems.append(
                    f"params.vector.file: '{src.file}' not found (relative to {base_dir})"
                )
            else:
                try:
                    vec = SteeringVector.load(path)
                except VectorFileError as exc:
                    problems.append(f"params.vector.file: {exc}")
                else:
                    missing = [i for i in params.layers if i not in vec.directions]
                    if missing:
                        problems.append(
                            f"params.vector.file: {path.name} has no direction for layers "
                            f"{missing} (it has {vec.layers})"
                        )
                    sizes = {int(v.shape[-1]) for v in vec.directions.values()}
                    if info.hidden_size and sizes != {info.hidden_size}:
                        problems.append(
                            f"params.vector.file: vector size {sorted(sizes)} does not match the "
                            f"model's hidden size {info.hidden_size}"
                        )
        if src.pairs is not None:
            path = resolve_pairs(src.pairs, base_dir)
            if path is None:
                problems.append(
                    f"params.vector.pairs: '{src.pairs}' is neither a shipped pair set "
                    f"({', '.join(shipped_pair_sets())}) nor a file relative to {base_dir}"
                )
            else:
                try:
                    load_pairs(path)
                except VectorFileError as exc:
                    problems.append(f"params.vector.pairs: {exc}")
        return problems

    def _source_path(self) -> Path:
        src = self.params.vector
        base = self.context.base_dir
        path = (
            resolve_data_path(src.file, base) if src.file else resolve_pairs(src.pairs or "", base)
        )
        if path is None:
            raise VectorFileError(f"vector source not found: {src.file or src.pairs}")
        return path

    def fingerprint(self) -> dict[str, Any]:
        p = self.params
        source = self._source_path()
        vector: dict[str, Any] = {"sha256": _sha256(source)}
        if p.vector.pairs is not None:
            vector |= {"aggregate": p.vector.aggregate, "template": p.vector.template}
        return {
            "layers": p.layers,
            "coefficient": p.coefficient,
            "positions": p.positions,
            "vector": vector,
        }

    def prepare(self, lm: LoadedModel) -> dict[str, Any]:
        from harness.models import model_key

        p = self.params
        source = self._source_path()
        if p.vector.file is not None:
            self.vector = SteeringVector.load(source)
            origin = str(source)
        else:
            key = content_id(
                {
                    "model": model_key(lm.spec),
                    "vector": self.fingerprint()["vector"],
                    "layers": p.layers,
                }
            )
            cached = (
                self.context.cache_dir / f"{key}.safetensors" if self.context.cache_dir else None
            )
            if cached is not None and cached.exists():
                self.vector = SteeringVector.load(cached)
            else:
                pairs = load_pairs(source)
                self.vector = extract_mean_difference(
                    lm, pairs, p.layers, p.vector.aggregate, p.vector.template, source=str(source)
                )
                if cached is not None:
                    self.vector.save(cached)
            origin = str(cached) if cached is not None else "extracted in memory"
        norms = self.vector.norms()
        return {
            "vector": origin,
            "vector_metadata": self.vector.metadata,
            "vector_norms": {str(i): norms[i] for i in p.layers},
        }

    @contextmanager
    def apply(self, lm: LoadedModel, batch: BatchInfo) -> Iterator[None]:
        if self.vector is None:
            raise RuntimeError("ActivationSteering.apply called before prepare")
        p = self.params
        with self.vector.apply(lm, p.coefficient, p.layers, p.positions, batch.prompt_length):
            yield


def shipped_pair_sets() -> list[str]:
    from prompts import data_path

    return sorted(f.stem for f in data_path("pairs").glob("*.jsonl"))
