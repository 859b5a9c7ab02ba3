"""Which scorer to validate: a small spec file with a ``[scorer]`` table, or a registered
name with default params, resolved exactly as a run resolves its scorers."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.config.scorers import resolve_scorer
from harness.core.errors import ValidationError
from harness.core.scoring import ScorerContext


@dataclass
class ScorerSetup:
    type: str
    name: str
    params: dict[str, Any]
    base_dir: Path
    source: str


def load_scorer_setup(target: str) -> ScorerSetup:
    """A scorer spec file (TOML/YAML with a ``[scorer]`` table) or a registered name."""
    path = Path(target).expanduser()
    if path.is_file():
        text = path.read_text(encoding="utf-8")
        try:
            if path.suffix.lower() == ".toml":
                data = tomllib.loads(text)
            elif path.suffix.lower() in (".yaml", ".yml"):
                data = yaml.safe_load(text)
            else:
                raise ValidationError(f"{path}: use a .toml or .yaml scorer spec")
        except (tomllib.TOMLDecodeError, ValueError) as exc:
            if isinstance(exc, ValidationError):
                raise
            raise ValidationError(f"{path}: cannot parse ({exc})") from None
        except Exception as exc:  # yaml.YAMLError
            raise ValidationError(f"{path}: cannot parse ({exc})") from None
        if not isinstance(data, dict) or not isinstance(data.get("scorer"), dict):
            raise ValidationError(f"{path}: needs a [scorer] table with `type` (and `params`)")
        extra_top = sorted(set(data) - {"scorer"})
        if extra_top:
            raise ValidationError(f"{path}: unknown top-level keys {extra_top}; only [scorer]")
        sc = data["scorer"]
        unknown = sorted(set(sc) - {"type", "name", "params"})
        if unknown:
            raise ValidationError(
                f"{path}: scorer: unknown keys {unknown}; allowed: type, name, params"
            )
        if not isinstance(sc.get("type"), str):
            raise ValidationError(f'{path}: scorer.type is required (e.g. type = "embedding")')
        params = sc.get("params") or {}
        if not isinstance(params, dict):
            raise ValidationError(f"{path}: scorer.params must be a table")
        return ScorerSetup(
            sc["type"], str(sc.get("name") or sc["type"]), params, path.resolve().parent, str(path)
        )
    if path.suffix.lower() in (".toml", ".yaml", ".yml") or "/" in target:
        raise ValidationError(f"scorer spec '{target}' not found")
    return ScorerSetup(target, target, {}, Path.cwd(), f"scorer '{target}' (default params)")


def build_scorer(setup: ScorerSetup) -> Any:
    """Resolve, validate (as the spec check does) and construct the scorer."""
    resolved, problems = resolve_scorer(
        setup.type, setup.name, setup.params, setup.base_dir, ("scorer",)
    )
    if problems or resolved is None:
        raise ValidationError(f"{setup.source}: " + "; ".join(problems))
    try:
        return resolved.build(ScorerContext(base_dir=setup.base_dir))
    except (ValueError, OSError) as exc:
        raise ValidationError(f"{setup.source}: cannot construct the scorer: {exc}") from None
