"""Generation engines: the local one (this process) and Ray (actors across GPUs and nodes).

:func:`open_engine` picks one from the spec's ``[execution]`` section, and
:func:`open_scoring` the workers of its model-using scorers; Ray is imported only when it
is chosen.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib.util import find_spec
from typing import TYPE_CHECKING

from harness.config.spec import ExecutionSpec, GenerationSpec, ModelSpec
from harness.core.errors import EngineError
from harness.model.loading import LoadedModel
from harness.run.engines.base import GenerationEngine
from harness.run.engines.local import LocalEngine
from harness.run.plan import ResolvedCondition

if TYPE_CHECKING:
    from harness.run.engines.ray_scoring import RayScoring

RAY_MISSING = (
    "execution.engine = 'ray' needs the ray package: pip install 'steer-harness[ray]' "
    "(or run with --engine local)"
)


def engine_problem(execution: ExecutionSpec) -> str | None:
    """Why this engine cannot run here (a missing package), found without importing it."""
    if execution.engine == "ray" and find_spec("ray") is None:
        return RAY_MISSING
    return None


def open_engine(
    execution: ExecutionSpec,
    model: ModelSpec,
    gen: GenerationSpec,
    conditions: Sequence[ResolvedCondition],
    get_model: Callable[[], LoadedModel],
) -> GenerationEngine:
    if execution.engine == "local":
        return LocalEngine(get_model, conditions, gen)
    problem = engine_problem(execution)
    if problem is not None:
        raise EngineError(problem)
    from harness.run.engines.ray_engine import RayEngine

    return RayEngine(execution, model, gen, conditions)


def open_scoring(execution: ExecutionSpec) -> RayScoring | None:
    """The workers model-using scorers run on: None (this process) for the local engine;
    for Ray, a pool of scoring actors that joins the cluster on first use only."""
    if execution.engine == "local":
        return None
    problem = engine_problem(execution)
    if problem is not None:
        raise EngineError(problem)
    from harness.run.engines.ray_scoring import RayScoring

    return RayScoring(execution)
