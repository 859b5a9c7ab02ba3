"""The steering-method protocol.

A method is a class with a ``Params`` pydantic model, constructed as ``cls(params,
context)``. The generation loop calls, for every condition and every batch, the same
three things in the same order, so the baseline (the ``none`` method) and every steered
condition share one code path:

1. ``prepare(lm)`` once per condition, with the model loaded (extract a vector, load an
   adapter). Returns metadata recorded in the run's manifest.
2. ``transform_messages(messages)`` per prompt (persona prompts, instructions).
3. ``apply(lm, batch)``: a context manager active while one batch is generated (hooks,
   weight swaps, adapters). Leaving it, also on error, must restore the model exactly;
   the harness checks that after every condition (:mod:`harness.steering.restore`).
4. ``logits_processor(lm, batch)`` (optional): a transformers logits processor that
   edits next-token scores, applied before sampling.

``fingerprint()`` says what makes this condition's texts what they are; it enters every
generation's content id (hash file contents, not paths).

A method also declares, so that generic code never digs into its params:

- ``additions()``: the vector it adds at each layer when its whole intervention is a
  plain addition (``None`` otherwise), with ``positions`` saying where; such conditions
  can share a forward pass (:mod:`harness.steering.batched`) and run in other engines;
- ``targets()``: the trait names it aims at (its pair set, its library vectors), which
  the report's Summary uses to pick the metrics to show first;
- ``control()``: the kind of control it is (``"random"``), or None;
- ``steering_point()`` and ``at(layer, coefficient)``: where and how hard it steers, and
  the same condition at another layer and coefficient. Sweeps read the first for their
  plots; a coefficient search needs the second, and a method without it cannot be
  searched (``check`` says so).

Methods are registered under the entry-point group ``steer_harness.methods`` or named in
a spec by dotted path (``package.module:Class``).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from pydantic import BaseModel

from harness.config.vectors import LibraryVector
from harness.core.params import Strict
from harness.core.registry import Registry
from harness.model.chat import Message
from harness.model.loading import LoadedModel, ModelInfo
from harness.steering.hooks import Positions


class MethodParams(Strict):
    """Base for method parameters: unknown keys are errors."""


@dataclass(frozen=True)
class SteeringPoint:
    """Where and how hard a condition steers: its layers and its coefficient."""

    layers: list[int] | None
    coefficient: float | None


@dataclass(frozen=True)
class MethodContext:
    condition: str
    base_dir: Path = field(default_factory=Path.cwd)
    """Folder that relative paths in params resolve against (the spec's folder)."""
    cache_dir: Path | None = None
    """Where a method may cache artefacts (e.g. extracted vectors) for resumed runs."""
    library: Mapping[str, LibraryVector] = field(default_factory=dict)
    """The spec's named vectors (``[vectors.<name>]``)."""


@dataclass(frozen=True)
class BatchInfo:
    """What a method may want to know about the batch it steers."""

    prompt_length: int
    """Padded prompt length: positions >= this are generated tokens."""
    prompt_ids: Sequence[str]
    seeds: Sequence[int]


@runtime_checkable
class SteeringMethod(Protocol):
    Params: ClassVar[type[MethodParams]]

    def fingerprint(self) -> dict[str, Any]: ...

    def prepare(self, lm: LoadedModel) -> dict[str, Any]: ...

    def transform_messages(self, messages: list[Message]) -> list[Message]: ...

    def apply(self, lm: LoadedModel, batch: BatchInfo) -> Any: ...

    def additions(self) -> dict[int, torch.Tensor] | None: ...

    @property
    def positions(self) -> Positions: ...

    def targets(self) -> list[str]: ...

    def control(self) -> str | None: ...

    def steering_point(self) -> SteeringPoint | None: ...

    def at(self, layer: int, coefficient: float) -> MethodParams | None: ...


LogitsProcessor = Any
"""A callable (input_ids, scores) -> scores, as in transformers' LogitsProcessor."""


class BaseMethod:
    """Convenience base: no-op defaults for every hook of the protocol."""

    Params: ClassVar[type[MethodParams]] = MethodParams

    def __init__(self, params: MethodParams, context: MethodContext):
        self.params = params
        self.context = context

    @classmethod
    def check(cls, params: MethodParams, info: ModelInfo, context: MethodContext) -> list[str]:
        """Problems with these params for this model, found before any work starts."""
        return []

    def fingerprint(self) -> dict[str, Any]:
        return self.params.model_dump(mode="json")

    def prepare(self, lm: LoadedModel) -> dict[str, Any]:
        return {}

    def transform_messages(self, messages: list[Message]) -> list[Message]:
        return messages

    @contextmanager
    def apply(self, lm: LoadedModel, batch: BatchInfo) -> Iterator[None]:
        yield

    def logits_processor(self, lm: LoadedModel, batch: BatchInfo) -> LogitsProcessor | None:
        return None

    def additions(self) -> dict[int, torch.Tensor] | None:
        """The vector added at each layer, if the intervention is a plain addition that
        neither rewrites prompts nor edits logits; None otherwise (the default)."""
        return None

    @property
    def positions(self) -> Positions:
        """The positions ``additions()`` apply to: prompt, generated or all tokens."""
        return "all"

    def targets(self) -> list[str]:
        """Trait names this condition aims at; by default a ``trait`` or ``target`` param."""
        out = []
        for key in ("trait", "target"):
            value = getattr(self.params, key, None)
            if isinstance(value, str):
                out.append(value)
        return out

    def control(self) -> str | None:
        """The kind of control this condition is (e.g. ``"random"``), None by default."""
        return None

    def steering_point(self) -> SteeringPoint | None:
        """Layers and coefficient of this condition; None for methods without them."""
        return None

    def at(self, layer: int, coefficient: float) -> MethodParams | None:
        """These params moved to one ``layer`` and ``coefficient``; None when the method
        cannot be moved (then it cannot be searched)."""
        return None


class NoSteering(BaseMethod):
    """The baseline: the model as it is. Runs through the same code path as every method."""

    def additions(self) -> dict[int, torch.Tensor]:
        """Nothing added anywhere: the baseline can share a batch with additive conditions."""
        return {}


def is_method_class(obj: object) -> bool:
    return (
        inspect.isclass(obj)
        and isinstance(getattr(obj, "Params", None), type)
        and issubclass(getattr(obj, "Params"), BaseModel)  # noqa: B009 (mypy: obj is a type)
        and all(callable(getattr(obj, a, None)) for a in ("prepare", "apply", "fingerprint"))
        and callable(getattr(obj, "transform_messages", None))
    )


METHODS: Registry[BaseMethod] = Registry(
    "steering method", "steer_harness.methods", is_method_class
)
"""Steering methods by name: entry points of ``steer_harness.methods`` (ours included),
names registered at run time, or dotted paths."""
