"""From a validated spec to a plan: resolved plug-ins, work items with content ids, run paths.

:func:`check_spec` is the second validation pass (see :mod:`harness.spec`): it resolves
method and scorer names through the registries, validates their parameters, and checks
them against the model's config (layer indices), all before any weights are loaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harness.models import ModelLoadError, load_config, model_info, model_key
from harness.prompt_sets import Prompt, PromptSetError, load_prompts
from harness.records import content_id
from harness.registry import RegistryError
from harness.spec import ConditionSpec, ScorerSpec, Spec, SpecError, describe_errors
from harness.steering import METHODS, MethodContext
from harness.steering.base import MethodParams, SteeringMethod
from judges import SCORERS
from judges.base import ScorerContext, ScorerParams

RUN_FILES = {
    "spec": "spec.json",
    "manifest": "manifest.json",
    "generations": "generations.jsonl",
    "scores": "scores.jsonl",
    "analysis": "analysis.json",
}


@dataclass
class ResolvedCondition:
    spec: ConditionSpec
    method_cls: type
    params: MethodParams
    method: SteeringMethod
    key: str
    """Content id of the condition: its name, method and fingerprint."""
    info: dict[str, Any] = field(default_factory=dict)
    """Extra facts for analysis and report (e.g. ``sweep`` coordinates of a sweep point)."""

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass
class ResolvedScorer:
    spec: ScorerSpec
    scorer_cls: type
    params: ScorerParams
    key: str

    @property
    def name(self) -> str:
        return self.spec.label


@dataclass(frozen=True)
class WorkItem:
    id: str
    condition: str
    prompt: Prompt
    seed: int


@dataclass
class Plan:
    spec: Spec
    run_dir: Path
    conditions: list[ResolvedCondition]
    scorers: list[ResolvedScorer]
    prompts: list[Prompt]
    items: list[WorkItem]
    model_key: dict[str, Any]

    def path(self, what: str) -> Path:
        return self.run_dir / RUN_FILES[what]

    def condition(self, name: str) -> ResolvedCondition:
        return next(c for c in self.conditions if c.name == name)

    @property
    def report_path(self) -> Path:
        return Path(self.spec.report.path or f"reports/{self.spec.name}.md")


def default_run_dir(spec: Spec) -> Path:
    return Path(spec.output_dir or f"runs/{spec.name}")


def _resolve_conditions(
    spec: Spec, run_dir: Path | None, problems: list[str], info: Any
) -> list[ResolvedCondition]:
    resolved = []
    cache = run_dir / "vectors" if run_dir else None
    for index, cond in enumerate(spec.all_conditions):
        where = "baseline" if index == 0 else f"conditions[{index - 1}]"
        try:
            cls = METHODS.get(cond.method)
        except RegistryError as exc:
            problems.append(f"{where}.method: {exc}")
            continue
        try:
            params = cls.Params.model_validate(cond.params)
        except ValidationError as exc:
            prefix = ("conditions", index - 1, "params") if index else ("baseline", "params")
            problems += describe_errors(exc, cls.Params, prefix)
            continue
        check = getattr(cls, "check", None)
        if check is not None and info is not None:
            problems += [f"{where}.{p}" for p in check(params, info, spec._base_dir)]
        if any(p.startswith(where + ".") for p in problems):
            continue
        ctx = MethodContext(condition=cond.name, base_dir=spec._base_dir, cache_dir=cache)
        method = cls(params, ctx)
        try:
            fp = method.fingerprint()
        except Exception as exc:  # a plug-in's own error, reported against its condition
            problems.append(f"{where}: cannot fingerprint the condition ({exc})")
            continue
        key = content_id({"name": cond.name, "method": cond.method, "fingerprint": fp})
        resolved.append(ResolvedCondition(cond, cls, params, method, key))
    return resolved


def _resolve_scorers(spec: Spec, problems: list[str]) -> list[ResolvedScorer]:
    resolved = []
    for index, sc in enumerate(spec.scorers):
        where = f"scorers[{index}]"
        try:
            cls = SCORERS.get(sc.type)
        except RegistryError as exc:
            problems.append(f"{where}.type: {exc}")
            continue
        try:
            params = cls.Params.model_validate(sc.params)
        except ValidationError as exc:
            problems += describe_errors(exc, cls.Params, ("scorers", index, "params"))
            continue
        check = getattr(cls, "check", None)
        if check is not None:
            problems += [f"{where}.{p}" for p in check(params, spec._base_dir)]
        key = content_id({"type": sc.type, "params": params.model_dump(mode="json")})
        resolved.append(ResolvedScorer(sc, cls, params, key))
    return resolved


def scorer_context(plan: Plan, device: str | None = None) -> ScorerContext:
    return ScorerContext(
        run_dir=plan.run_dir,
        base_dir=plan.spec._base_dir,
        generator_model=plan.spec.model.model_dump(mode="json"),
        device=device,
    )


def build_plan(spec: Spec, source: str, run_dir: Path | None = None) -> Plan:
    """Check everything that can be checked without weights; raise SpecError listing it all."""
    run_dir = run_dir or default_run_dir(spec)
    problems: list[str] = []
    info = None
    try:
        info = model_info(load_config(spec.model))
    except ModelLoadError as exc:
        problems.append(f"model.id: {exc}")
    conditions = _resolve_conditions(spec, run_dir, problems, info)
    scorers = _resolve_scorers(spec, problems)
    prompts: list[Prompt] = []
    try:
        prompts = load_prompts(spec.prompts)
    except PromptSetError as exc:
        problems.append(f"prompts: {exc}")
    if problems:
        raise SpecError(source, problems)
    mkey = model_key(spec.model)
    decoding = spec.generation.decoding()
    items = [
        WorkItem(
            content_id(
                {
                    "model": mkey,
                    "condition": cond.key,
                    "prompt": {"id": p.id, "text": p.text},
                    "seed": seed,
                    "decoding": decoding,
                }
            ),
            cond.name,
            p,
            seed,
        )
        for cond in conditions
        for p in prompts
        for seed in spec.generation.seeds
    ]
    return Plan(spec, run_dir, conditions, scorers, prompts, items, mkey)


def save_spec(plan: Plan, source: str) -> None:
    """Store the resolved spec in the run directory, so later stages need only the folder."""
    from harness.records import write_json_atomic

    write_json_atomic(
        plan.path("spec"),
        {
            "source": source,
            "base_dir": str(plan.spec._base_dir),
            "spec": plan.spec.model_dump(mode="json"),
        },
    )


def load_run_spec(run_dir: Path) -> Spec:
    """The spec stored in a run directory, validated again."""
    from harness.spec import validate_spec

    path = run_dir / RUN_FILES["spec"]
    if not path.exists():
        raise SpecError(str(run_dir), [f"no {RUN_FILES['spec']} here; is this a run directory?"])
    stored = json.loads(path.read_text(encoding="utf-8"))
    return validate_spec(stored["spec"], str(path), Path(stored["base_dir"]))
