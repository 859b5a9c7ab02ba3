"""Composite steering: named vectors from the spec's library, combined with weights.

``weights = {fear = 0.8, formal = 0.5}`` adds ``coefficient * 0.8 * fear + coefficient *
0.5 * formal`` at each vector's own layers (with ``coefficient_mode = "norm"``, each vector
is first scaled to its layer's typical norm, so weights are comparable intensities).
Vectors are extracted once, cached in the run directory, and swapped between conditions
without reloading the model. ``layers = [..]`` steers every weighted vector at those
layers instead of its own (a coefficient search sets it, which is how a composite is
searched like an activation condition).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from pydantic import Field, field_validator

from harness.config.vectors import Layers
from harness.core.registry import closest
from harness.model.loading import LoadedModel, ModelInfo
from harness.steering.base import BaseMethod, BatchInfo, MethodContext, SteeringPoint
from harness.steering.hooks import Positions, add_vector, edit_residual
from harness.steering.methods.activation import (
    NormScaling,
    check_layers,
    layer_norms,
    obtain_vector,
    source_fingerprint,
)


class CompositeParams(NormScaling):
    weights: dict[str, float] = Field(description="Library vector name -> intensity.")
    coefficient: float = Field(1.0, description="Global multiplier of every weight.")
    positions: Positions = "all"
    layers: Layers | None = Field(
        None, description="Steer every vector at these layers instead of each vector's own."
    )

    @field_validator("weights")
    @classmethod
    def _nonempty(cls, v: dict[str, float]) -> dict[str, float]:
        if not v:
            raise ValueError("give at least one weighted vector")
        return v


class CompositeSteering(BaseMethod):
    """A weighted sum of named library vectors, each at its own layers."""

    Params = CompositeParams
    params: CompositeParams

    def __init__(self, params: CompositeParams, context: MethodContext):
        super().__init__(params, context)
        self.total: dict[int, torch.Tensor] = {}

    @classmethod
    def check(  # type: ignore[override]
        cls, params: CompositeParams, info: ModelInfo, context: MethodContext
    ) -> list[str]:
        problems = []
        names = sorted(context.library)
        for name in params.weights:
            if name not in context.library:
                hint = closest(name, names)
                problems.append(
                    f"params.weights.{name}: no vector '{name}' in [vectors] "
                    f"(defined: {', '.join(names) or 'none'})"
                    + (f"; did you mean '{hint}'?" if hint else "")
                )
        if params.layers is not None:
            problems += check_layers(params.layers, info, "params.layers")
        return problems + params.norm_problems(context.base_dir)

    def layers_of(self, name: str) -> list[int]:
        """The layers vector ``name`` is added at: the params' override, else its own."""
        return list(self.params.layers or self.context.library[name].layers)

    def fingerprint(self) -> dict[str, Any]:
        p = self.params
        parts = {
            name: {
                "weight": w,
                "layers": self.layers_of(name),
                "vector": source_fingerprint(self.context.library[name], self.context.base_dir),
            }
            for name, w in sorted(p.weights.items())
        }
        fp: dict[str, Any] = {
            "vectors": parts,
            "coefficient": p.coefficient,
            "coefficient_mode": p.coefficient_mode,
            "positions": p.positions,
        }
        return fp | p.norm_fingerprint(self.context.base_dir)

    def prepare(self, lm: LoadedModel) -> dict[str, Any]:
        p = self.params
        total: dict[int, torch.Tensor] = {}
        meta: dict[str, Any] = {"vectors": {}}
        for name, weight in p.weights.items():
            src = self.context.library[name]
            layers = self.layers_of(name)
            vec, origin = obtain_vector(lm, src, layers, self.context)
            typical = (
                layer_norms(lm, layers, p.norm_prompts, self.context.base_dir)
                if p.coefficient_mode == "norm"
                else {}
            )
            scales = {}
            for i in layers:
                v = vec.directions[i].float()
                scale = p.coefficient * weight
                if p.coefficient_mode == "norm":
                    scale *= typical[i] / float(v.norm())
                scales[str(i)] = scale
                total[i] = total.get(i, torch.zeros_like(v)) + scale * v
            meta["vectors"][name] = {"vector": origin, "weight": weight, "scales": scales}
        self.total = total
        meta["vector_norms"] = {str(i): float(v.norm()) for i, v in sorted(total.items())}
        return meta

    def additions(self) -> dict[int, torch.Tensor]:
        return dict(self.total)

    @property
    def positions(self) -> Positions:
        return self.params.positions

    def targets(self) -> list[str]:
        return [str(name) for name in self.params.weights]

    def steering_point(self) -> SteeringPoint:
        return SteeringPoint(self.params.layers, self.params.coefficient)

    def at(self, layer: int, coefficient: float) -> CompositeParams:
        return self.params.model_copy(update={"layers": [layer], "coefficient": coefficient})

    @classmethod
    def backend_problem(  # type: ignore[override]
        cls, params: CompositeParams, backend: str
    ) -> str | None:
        if backend != "hf" and params.positions != "all":
            return (
                f"params.positions: '{params.positions}' is not supported on the {backend} "
                "backend (all positions only); use positions = 'all' or model.backend = 'hf'"
            )
        return None

    @contextmanager
    def apply(self, lm: LoadedModel, batch: BatchInfo) -> Iterator[None]:
        edits = {i: add_vector(v, 1.0) for i, v in self.total.items()}
        with edit_residual(lm.layers, edits, self.params.positions, batch.prompt_length):
            yield
