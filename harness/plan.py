"""From a validated spec to a plan: resolved plug-ins, work items with content ids, run paths.

:func:`check_spec` is the second validation pass (see :mod:`harness.spec`): it resolves
method and scorer names through the registries, validates their parameters, and checks
them against the model's config (layer indices), all before any weights are loaded.
"""

from __future__ import annotations

import json
from collections.abc import Callable
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
    """The prompts reported on: all, or the held-out split when a condition searches."""
    items: list[WorkItem]
    model_key: dict[str, Any]
    selection_prompts: list[Prompt] = field(default_factory=list)
    """Prompts reserved for choosing settings by search; never reported."""
    pending_searches: list[ConditionSpec] = field(default_factory=list)
    """Conditions whose search has not finished: they have no work items yet."""

    def path(self, what: str) -> Path:
        return self.run_dir / RUN_FILES[what]

    def condition(self, name: str) -> ResolvedCondition:
        return next(c for c in self.conditions if c.name == name)

    @property
    def report_path(self) -> Path:
        return Path(self.spec.report.path or f"reports/{self.spec.name}.md")


def default_run_dir(spec: Spec) -> Path:
    return Path(spec.output_dir or f"runs/{spec.name}")


def _resolve_condition(
    spec: Spec,
    index: int,
    cond: ConditionSpec,
    extra: dict[str, Any],
    cache: Path | None,
    model: Any,
) -> tuple[ResolvedCondition | None, list[str]]:
    """One condition (or sweep point): its method, params, model checks and content id."""
    where = "baseline" if index == 0 else f"conditions[{index - 1}]"
    try:
        cls = METHODS.get(cond.method)
    except RegistryError as exc:
        return None, [f"{where}.method: {exc}"]
    try:
        params = cls.Params.model_validate(cond.params)
    except ValidationError as exc:
        prefix = ("conditions", index - 1, "params") if index else ("baseline", "params")
        return None, describe_errors(exc, cls.Params, prefix)
    ctx = MethodContext(
        condition=cond.name, base_dir=spec._base_dir, cache_dir=cache, library=spec.vectors
    )
    check = getattr(cls, "check", None)
    if check is not None and model is not None:
        problems = [f"{where}.{p}" for p in check(params, model, ctx)]
        if problems:
            return None, problems
    method = cls(params, ctx)
    try:
        fp = method.fingerprint()
    except Exception as exc:  # a plug-in's own error, reported against its condition
        return None, [f"{where}: cannot fingerprint the condition ({exc})"]
    key = content_id({"name": cond.name, "method": cond.method, "fingerprint": fp})
    return ResolvedCondition(cond, cls, params, method, key, extra), []


def search_result_path(run_dir: Path, condition: str) -> Path:
    return run_dir / "search" / f"{condition}.json"


def load_search_result(run_dir: Path, condition: str) -> dict[str, Any] | None:
    path = search_result_path(run_dir, condition)
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def search_candidates(cond: ConditionSpec) -> list[ConditionSpec]:
    """The search's starting point at each candidate layer, for validating its params."""
    assert cond.search is not None
    layers = cond.search.layers or cond.params.get("layers") or []
    layers = [layers] if isinstance(layers, int) else layers
    return [
        ConditionSpec(
            name=cond.name,
            method=cond.method,
            params={**cond.params, "layers": [layer], "coefficient": cond.search.start},
        )
        for layer in layers
    ] or [cond]


def _resolve_conditions(
    spec: Spec, run_dir: Path, problems: list[str], model: Any
) -> tuple[list[ResolvedCondition], list[ConditionSpec]]:
    """Every condition with its sweep points expanded, and the searches still to run.

    A searched condition resolves to the point its finished search chose; until then it
    has no work items. Problems shared by several sweep points are reported once, those of
    one point name it."""
    from harness.sweeps import expand

    resolved = []
    pending = []
    cache = run_dir / "vectors"
    for index, cond in enumerate(spec.all_conditions):
        extra_info: dict[str, Any] = {}
        if cond.search is not None:
            result = load_search_result(run_dir, cond.name)
            if result is None:
                for candidate in search_candidates(cond):
                    _, issues = _resolve_condition(spec, index, candidate, {}, cache, model)
                    problems += [p for p in issues if p not in problems]
                pending.append(cond)
                continue
            chosen = result.get("chosen")
            if chosen is None:  # the search found no point that passed its guards
                continue
            params = {
                **cond.params,
                "layers": [chosen["layer"]],
                "coefficient": chosen["coefficient"],
            }
            cond = ConditionSpec(name=cond.name, method=cond.method, params=params)
            extra_info = {"search": {"chosen": chosen, "trait": result["trait"]}}
        points = expand(cond) if not extra_info else [(cond, extra_info)]
        found: dict[str, list[str]] = {}
        for point, extra in points:
            rc, point_problems = _resolve_condition(spec, index, point, extra, cache, model)
            if rc is not None:
                resolved.append(rc)
            for p in point_problems:
                found.setdefault(p, []).append(point.name)
        for p, names in found.items():
            shared = len(points) == 1 or len(names) == len(points)
            problems.append(p if shared else f"{p} (sweep point {', '.join(names)})")
    return resolved, pending


def _check_library(spec: Spec, info: Any) -> list[str]:
    from harness.steering.activation import check_layers, check_source

    problems = []
    for name, vec in spec.vectors.items():
        where = f"vectors.{name}"
        problems += check_layers(vec.layers, info, f"{where}.layers")
        problems += check_source(vec, where, vec.layers, info, spec._base_dir)
    return problems


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


def scorer_context(plan: Plan, load_generator: Callable[[], Any] | None = None) -> ScorerContext:
    return ScorerContext(
        run_dir=plan.run_dir,
        base_dir=plan.spec._base_dir,
        generator_model=plan.spec.model.model_dump(mode="json"),
        load_generator=load_generator,
    )


def split_prompts(prompts: list[Prompt], fraction: float) -> tuple[list[Prompt], list[Prompt]]:
    """(selection, held out): prompts ordered by a hash of their id, the first
    round(fraction * n) for selection. Deterministic, and independent of file order."""
    ordered = sorted(prompts, key=lambda p: (content_id(p.id), p.id))
    k = min(max(1, round(fraction * len(prompts))), len(prompts) - 1)
    chosen = {p.id for p in ordered[:k]}
    return [p for p in prompts if p.id in chosen], [p for p in prompts if p.id not in chosen]


def make_items(
    conditions: list[ResolvedCondition],
    prompts: list[Prompt],
    seeds: list[int],
    mkey: dict[str, Any],
    decoding: dict[str, Any],
) -> list[WorkItem]:
    """Every (condition, prompt, seed), with its content id."""
    return [
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
        for seed in seeds
    ]


def build_plan(spec: Spec, source: str, run_dir: Path | None = None) -> Plan:
    """Check everything that can be checked without weights; raise SpecError listing it all."""
    run_dir = run_dir or default_run_dir(spec)
    problems: list[str] = []
    info = None
    try:
        info = model_info(load_config(spec.model))
    except ModelLoadError as exc:
        problems.append(f"model.id: {exc}")
    if info is not None:
        problems += _check_library(spec, info)
    conditions, pending = _resolve_conditions(spec, run_dir, problems, info)
    scorers = _resolve_scorers(spec, problems)
    prompts: list[Prompt] = []
    try:
        prompts = load_prompts(spec.prompts)
    except PromptSetError as exc:
        problems.append(f"prompts: {exc}")
    if spec.has_search and len(prompts) == 1:
        problems.append("prompts: a search needs at least 2 prompts (selection and held out)")
    if problems:
        raise SpecError(source, problems)
    selection: list[Prompt] = []
    if spec.has_search:
        selection, prompts = split_prompts(prompts, spec.split.selection_fraction)
    mkey = model_key(spec.model)
    items = make_items(conditions, prompts, spec.generation.seeds, mkey, spec.generation.decoding())
    return Plan(spec, run_dir, conditions, scorers, prompts, items, mkey, selection, pending)


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
