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

Methods are registered under the entry-point group ``steer_harness.methods`` or named in
a spec by dotted path (``package.module:Class``).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from harness.models import LoadedModel, ModelInfo
    from harness.steering.sources import LibraryVector

Message = dict[str, str]


class MethodParams(BaseModel):
    """Base for method parameters: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


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


class NoSteering(BaseMethod):
    """The baseline: the model as it is. Runs through the same code path as every method."""

    def additions(self) -> dict[int, Any]:
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
