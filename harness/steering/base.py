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

    def ablations(self) -> dict[int, tuple[torch.Tensor, float]] | None:
        """(direction, share removed) at each layer, if the intervention is a plain
        directional ablation of the residual stream; None otherwise (the default). Lets an
        engine that cannot run ``apply`` (vLLM) run it."""
        return None

    def token_bias(self) -> dict[int, float] | None:
        """A fixed bias per token id, if ``logits_processor`` only adds that; None
        otherwise (the default). Lets vLLM apply it with its own logits processor."""
        return None

    def lora_adapter(self) -> Path | None:
        """The PEFT LoRA adapter folder, if the intervention is that adapter and nothing
        else; None otherwise (the default). Lets vLLM apply it with its own LoRA support."""
        return None

    @classmethod
    def backend_problem(cls, params: MethodParams, backend: str) -> str | None:
        """Why this method cannot generate on ``backend`` (None: it can), before any work.

        vLLM runs its model in other processes, so ``apply`` (hooks on the HF model) and
        ``logits_processor`` (a transformers processor) cannot run there; a method runs on
        vLLM when it leaves them alone or declares what they do (``additions`` or
        ``ablations`` for the model, ``token_bias`` for the logits)."""
        if backend == "hf":
            return None
        declares_model = (
            cls.additions is not BaseMethod.additions
            or cls.ablations is not BaseMethod.ablations
            or cls.lora_adapter is not BaseMethod.lora_adapter
        )
        if cls.apply is not BaseMethod.apply and not declares_model:
            return (
                f"method '{cls.__name__}' edits the HF model in ways the {backend} backend "
                "cannot run (it declares no additions, ablations or LoRA adapter); use "
                "model.backend = 'hf'"
            )
        declares_logits = cls.token_bias is not BaseMethod.token_bias
        if cls.logits_processor is not BaseMethod.logits_processor and not declares_logits:
            return (
                f"method '{cls.__name__}' edits logits with a transformers processor the "
                f"{backend} backend cannot run (it declares no token_bias); use "
                "model.backend = 'hf'"
            )
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


def backend_problem(cls: type, params: MethodParams, backend: str) -> str | None:
    """:meth:`BaseMethod.backend_problem` for any method class (a plug-in that follows the
    protocol without the base class runs on the HF backend only)."""
    if backend == "hf":
        return None
    own = getattr(cls, "backend_problem", None)
    if callable(own):
        result = own(params, backend)
        return None if result is None else str(result)
    return (
        f"method '{cls.__name__}' does not say it can run on the {backend} backend "
        "(derive it from BaseMethod and declare its additions); use model.backend = 'hf'"
    )


METHODS: Registry[BaseMethod] = Registry(
    "steering method", "steer_harness.methods", is_method_class
)
"""Steering methods by name: entry points of ``steer_harness.methods`` (ours included),
names registered at run time, or dotted paths."""
