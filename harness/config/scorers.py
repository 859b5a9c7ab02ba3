"""Resolving a scorer named in a spec: registry lookup, typed params, the scorer's own
checks and its content key. One path for runs (``run.plan``) and ``validate-scorer``."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harness.config.spec import describe_errors, format_loc
from harness.core.ids import content_id
from harness.core.registry import RegistryError
from harness.core.scoring import SCORERS, ScorerContext, ScorerParams


@dataclass
class ResolvedScorer:
    name: str
    """The label in records (the spec's ``name``, default its type)."""
    type_name: str
    scorer_cls: type[Any]
    params: ScorerParams
    key: str
    """Content id of (type, params but their :attr:`~ScorerParams.NOT_IN_KEY` fields): a
    score record's ``scorer_key``."""

    def build(self, context: ScorerContext) -> Any:
        """Construct the scorer (it may load a model now)."""
        factory: Any = self.scorer_cls
        return factory(self.params, context)


def missing_packages(cls: type[Any]) -> list[str]:
    """The packages a scorer declares it needs (``requires``: module -> extra) that are
    not installed, each with the install command, so ``check`` says it before a run."""
    requires: dict[str, str] = getattr(cls, "requires", {}) or {}
    out = []
    for module, extra in requires.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            out.append(
                f"scorer '{getattr(cls, '__name__', cls)}' needs the '{module}' package: "
                f"pip install 'steer-harness[{extra}]'"
            )
    return out


def resolve_scorer(
    type_: str, name: str, raw_params: dict[str, Any], base_dir: Path, loc: tuple[int | str, ...]
) -> tuple[ResolvedScorer | None, list[str]]:
    """The scorer, or None and every problem, each naming its field (``loc`` is where the
    scorer's table sits, e.g. ``("scorers", 0)``)."""
    where = format_loc(loc)
    try:
        cls = SCORERS.get(type_)
    except RegistryError as exc:
        return None, [f"{where}.type: {exc}"]
    try:
        params = cls.Params.model_validate(raw_params)
    except ValidationError as exc:
        return None, describe_errors(exc, cls.Params, (*loc, "params"))
    missing = missing_packages(cls)
    if missing:
        return None, [f"{where}.type: {m}" for m in missing]
    check = getattr(cls, "check", None)
    problems = [f"{where}.{p}" for p in check(params, base_dir)] if check is not None else []
    key_data = getattr(params, "key_data", None)
    data = key_data(base_dir) if callable(key_data) else params.model_dump(mode="json")
    key = content_id({"type": type_, "params": data})
    return ResolvedScorer(name, type_, cls, params, key), problems
