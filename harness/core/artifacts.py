"""Typed run artefacts: what one stage writes and a later stage (or another tool) reads.

They are JSON documents, so they are declared as ``TypedDict``s: code keeps plain dict
access, mypy checks the keys, and :func:`read_artifact` validates a stored file against
the declaration before any stage trusts it.

- :class:`AnalysisDoc` — ``analysis.json``: the comparisons (one per condition x scorer x
  metric, fields defined in :mod:`harness.stats`), the conditions and their
  :class:`ConditionInfo`, and one key per further analysis (agreement, coherence, ...).
- :class:`ConditionInfo` — what the analysis and the report know about a condition beyond
  its name: method, typed params (as JSON), the metrics it targets, its control kind,
  its sweep coordinates or its search outcome.
- :class:`SearchResult` — ``search/<condition>.json``: a coefficient search's trajectory
  and chosen point.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NotRequired, TypeVar

from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticError
from typing_extensions import TypedDict

from harness.core.errors import UserError


class SweepInfo(TypedDict):
    group: str
    """The swept condition's name."""
    point: dict[str, Any]
    """The swept values of this grid point."""
    coefficient: float | None
    layer: int | list[int] | None
    """An int when one layer is steered, else the list (None when the method has none)."""


class ChosenPoint(TypedDict):
    layer: int
    coefficient: float
    trait_delta: float | None


class SearchInfo(TypedDict):
    chosen: ChosenPoint
    trait: str


class ConditionInfo(TypedDict):
    method: str
    params: dict[str, Any]
    targets: NotRequired[list[str]]
    """Trait names the method says it aims at (pair set, library vectors, ...)."""
    control: NotRequired[str | None]
    """The kind of control this condition is (``"random"``), None for an ordinary one."""
    sweep: NotRequired[SweepInfo]
    search: NotRequired[SearchInfo]


Comparison = dict[str, Any]
"""One comparison record: the keys of :data:`harness.stats.FIELDS`, in that order."""


class AnalysisDoc(TypedDict):
    created: str
    baseline: str
    conditions: list[str]
    condition_info: dict[str, ConditionInfo]
    comparisons: list[Comparison]
    agreement: NotRequired[dict[str, Any]]
    steerability: NotRequired[list[dict[str, Any]]]
    coherence: NotRequired[dict[str, Any]]


class SearchPoint(TypedDict):
    layer: int
    coefficient: float
    step: int
    trait_delta: float | None
    n_pairs: int
    guards: dict[str, Any]
    valid: bool


class SearchResult(TypedDict):
    condition: str
    trait: str
    direction: str
    guards: list[dict[str, Any]]
    selection_prompts: list[str]
    seeds: list[int]
    trajectory: list[SearchPoint]
    chosen: ChosenPoint | None
    finished: str


class ArtifactError(UserError, ValueError):
    """A stored artefact that is not valid JSON or not of its declared shape."""


T = TypeVar("T")


def read_artifact(path: Path, kind: type[T]) -> T:
    """Read and validate a stored JSON artefact; damage is an :class:`ArtifactError` naming
    the file and the first bad field."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ArtifactError(f"{path}: not UTF-8 text; delete it to recompute it") from None
    except json.JSONDecodeError as exc:
        raise ArtifactError(
            f"{path}: damaged JSON ({exc.msg}); delete it to recompute it"
        ) from None
    try:
        return TypeAdapter(kind).validate_python(data)
    except PydanticError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise ArtifactError(
            f"{path}: {where}: {err['msg']}; delete it to recompute it"
        ) from None
