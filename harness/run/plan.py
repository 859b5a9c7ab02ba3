"""The plan: a validated spec resolved into plug-ins and work items with content ids.

A *work item* is one (condition, prompt, seed) to generate; its id is a hash of the
model, the condition's fingerprint, the prompt, the seed and the decoding settings.
:func:`build_plan` is the second validation pass (see :mod:`harness.config.spec`): it
resolves method and scorer names through the registries, validates their parameters, and
checks them against the model's config (layer indices), all before any weights load.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harness.config.prompts import Prompt, load_prompts
from harness.config.scorers import ResolvedScorer, resolve_scorer
from harness.config.spec import ConditionSpec, Spec, describe_errors, validate_spec
from harness.config.sweeps import expand
from harness.config.vectors import depth_range
from harness.core.artifacts import (
    ArtifactError,
    ConditionInfo,
    SearchResult,
    SweepInfo,
    read_artifact,
    stored_spec,
)
from harness.core.errors import ModelLoadError, PromptSetError, SpecError
from harness.core.files import write_json_atomic
from harness.core.ids import content_id
from harness.core.registry import RegistryError, closest
from harness.core.rundir import RunDir
from harness.core.scoring import ModelWorkers, ScorerContext
from harness.locate.layers import (
    AnyRequest,
    Located,
    SpecLocator,
    located_refs,
    with_located,
)
from harness.locate.probe import sklearn_problem
from harness.model.loading import (
    ModelInfo,
    Task,
    has_chat_template,
    load_config,
    model_info,
    model_key,
    resolve_task,
)
from harness.steering.base import (
    METHODS,
    BaseMethod,
    MethodContext,
    MethodParams,
    SteeringMethod,
    backend_problem,
)
from harness.steering.methods.activation import check_layers, check_source

log = logging.getLogger(__name__)


@dataclass
class ResolvedCondition:
    spec: ConditionSpec
    method_cls: type
    params: MethodParams
    """The method's typed params: what the method, the report and a search work from."""
    method: SteeringMethod
    key: str
    """Content id of the condition: its name, method and fingerprint."""
    info: dict[str, Any] = field(default_factory=dict)
    """Extra facts for analysis and report (``sweep`` coordinates, ``search`` outcome)."""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def method_name(self) -> str:
        return self.spec.method

    def condition_info(self) -> ConditionInfo:
        """What analysis.json records of this condition (see :class:`ConditionInfo`)."""
        out: ConditionInfo = {
            "method": self.spec.method,
            "params": self.params.model_dump(mode="json"),
            "targets": list(self.method.targets()),
            "control": self.method.control(),
        }
        if self.spec.targets:
            out["metrics"] = list(self.spec.targets)
        if "sweep" in self.info:
            out["sweep"] = self.info["sweep"]
        if "search" in self.info:
            out["search"] = self.info["search"]
        if "located" in self.info:
            out["located"] = self.info["located"]
        return out


@dataclass(frozen=True)
class WorkItem:
    id: str
    condition: str
    prompt: Prompt
    seed: int


@dataclass
class Plan:
    spec: Spec
    run: RunDir
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
    n_layers: int | None = None
    """The model's number of blocks (from its config), for depth ranges."""
    pending_locates: list[AnyRequest] = field(default_factory=list)
    """Localisations ``locate:`` layers need that are not cached yet: the conditions
    using them have no work items until the runner has located them."""
    located: list[Located] = field(default_factory=list)
    """Every ``locate:`` reference of the spec, with its layers once located."""
    task: Task = "generate"
    """``generate`` (texts from a causal LM) or ``classify`` (labels from a classifier)."""
    labels: list[str] = field(default_factory=list)
    """A classification task's classes, in the classifier's output order."""

    @property
    def run_dir(self) -> Path:
        return self.run.root

    def condition(self, name: str) -> ResolvedCondition:
        return next(c for c in self.conditions if c.name == name)

    @property
    def report_path(self) -> Path:
        return Path(self.spec.report.path or f"reports/{self.spec.name}.md")


def default_run_dir(spec: Spec) -> Path:
    return Path(spec.output_dir or f"runs/{spec.name}")


def _where(index: int) -> str:
    return "baseline" if index == 0 else f"conditions[{index - 1}]"


def _layer_count(spec: Spec, info: ModelInfo | None) -> Callable[[], int]:
    """The model's number of decoder layers, read from its config only when a depth range
    (``layers = "30%-60%"``) needs it."""
    if info is not None:
        return lambda: info.num_layers
    return lambda: model_info(load_config(spec.model)).num_layers


def resolve_method(
    spec: Spec,
    index: int,
    cond: ConditionSpec,
    cache: Path | None,
    info: ModelInfo | None = None,
) -> tuple[type | None, MethodParams | None, MethodContext, list[str]]:
    """The method class and typed params of a condition as written in the spec (depth
    ranges in its layers resolved against the model's layer count)."""
    where = _where(index)
    ctx = MethodContext(
        condition=cond.name, base_dir=spec._base_dir, cache_dir=cache, library=spec.vectors
    )
    try:
        cls = METHODS.get(cond.method)
    except RegistryError as exc:
        return None, None, ctx, [f"{where}.method: {exc}"]
    try:
        params = cls.Params.model_validate(
            cond.params, context={"num_layers": _layer_count(spec, info)}
        )
    except ValidationError as exc:
        prefix = ("conditions", index - 1, "params") if index else ("baseline", "params")
        return cls, None, ctx, describe_errors(exc, cls.Params, prefix)
    return cls, params, ctx, []


def resolve_condition(
    spec: Spec,
    index: int,
    cond: ConditionSpec,
    params: MethodParams,
    cls: type,
    extra: dict[str, Any],
    cache: Path | None,
    info: ModelInfo | None,
) -> tuple[ResolvedCondition | None, list[str]]:
    """One condition (a sweep or search point too) from typed params: model checks, the
    method instance and the content id."""
    where = _where(index)
    ctx = MethodContext(
        condition=cond.name, base_dir=spec._base_dir, cache_dir=cache, library=spec.vectors
    )
    check = getattr(cls, "check", None)
    if check is not None and info is not None:
        problems = [f"{where}.{p}" for p in check(params, info, ctx)]
        if problems:
            return None, problems
    if (reason := backend_problem(cls, params, spec.model.backend)) is not None:
        return None, [f"{where}: {reason}"]
    method = cls(params, ctx)
    try:
        fp = method.fingerprint()
    except Exception as exc:  # a plug-in's own error, reported against its condition
        return None, [f"{where}: cannot fingerprint the condition ({exc})"]
    key = content_id({"name": cond.name, "method": cond.method, "fingerprint": fp})
    return ResolvedCondition(cond, cls, params, method, key, extra), []


def search_seeds(spec: Spec, cond: ConditionSpec) -> list[int]:
    """The seeds a condition's search generates with: its own, else the spec's first."""
    assert cond.search is not None
    return list(cond.search.seeds or spec.generation.seeds[:1])


def search_scorers(cond: ConditionSpec, scorers: list[ResolvedScorer]) -> list[ResolvedScorer]:
    """The scorers a search reads: those of its trait and its guards."""
    assert cond.search is not None
    needed = {ref.split("/", 1)[0] for ref in cond.search.metrics()}
    return [s for s in scorers if s.name in needed]


def search_key(
    spec: Spec,
    cond: ConditionSpec,
    method: SteeringMethod,
    baseline_key: str,
    scorers: list[ResolvedScorer],
    selection: list[Prompt],
    mkey: dict[str, Any],
) -> str:
    """Hash of everything a condition's search result depends on: the condition (method,
    params and what they point at, via the method's fingerprint) and its search settings,
    the scorers it reads, the model, the decoding, the baseline, the selection prompts and
    the seeds. A stored result with another key is stale and is searched again."""
    assert cond.search is not None
    return content_id(
        {
            "condition": {
                "name": cond.name,
                "method": cond.method,
                "params": cond.params,
                "fingerprint": method.fingerprint(),
            },
            "search": cond.search.key_dump(),
            "scorers": {s.name: s.key for s in search_scorers(cond, scorers)},
            "model": mkey,
            "decoding": spec.generation.decoding(),
            "baseline": baseline_key,
            "selection": [[p.id, p.text] for p in selection],
            "seeds": search_seeds(spec, cond),
        },
        length=32,
    )


def load_search_result(run: RunDir, condition: str, key: str | None) -> SearchResult | None:
    """A finished search's stored result, if it was made with exactly these inputs
    (``key``); a damaged or stale one is reported and searched again."""
    path = run.search_result(condition)
    if not path.exists():
        return None
    try:
        result = read_artifact(path, SearchResult)
    except ArtifactError as exc:
        log.warning("%s: %s; searching again", path, exc.detail)
        return None
    if key is None or result.get("key") != key:
        log.warning(
            "%s was made for other settings (condition, search, scorers, model, decoding, "
            "baseline or selection prompts changed); searching again",
            path,
        )
        return None
    return result


def search_layers(method: SteeringMethod, cond: ConditionSpec, n_layers: int | None) -> list[int]:
    """The layers a search tries: its own ``layers`` (indices, or a depth range such as
    ``"30%-60%"`` of the model's ``n_layers`` blocks), else the condition's."""
    assert cond.search is not None
    if isinstance(cond.search.layers, str):
        if not n_layers:
            return []
        try:
            return depth_range(cond.search.layers, n_layers)
        except ValueError:  # holds no block of this model: build_plan reports it
            return []
    if cond.search.layers:
        return list(cond.search.layers)
    point = method.steering_point()
    return list(point.layers or []) if point is not None else []


def sweep_info(method: SteeringMethod, group: str, point: dict[str, Any]) -> SweepInfo:
    """A sweep point's coordinates, from what its method says about itself."""
    at = method.steering_point()
    layers = at.layers if at is not None else None
    layer: int | list[int] | None = layers[0] if layers and len(layers) == 1 else layers
    return {
        "group": group,
        "point": point,
        "coefficient": at.coefficient if at is not None else None,
        "layer": layer,
    }


SearchKey = Callable[[ConditionSpec, SteeringMethod, str], str]
"""(condition, its method as written, the baseline's key) -> :func:`search_key`."""


def _resolve_conditions(
    spec: Spec,
    run: RunDir,
    problems: list[str],
    info: ModelInfo | None,
    key_of: SearchKey | None = None,
    locator: SpecLocator | None = None,
    task: Task = "generate",
) -> tuple[list[ResolvedCondition], list[ConditionSpec]]:
    """Every condition with its sweep points expanded, and the searches still to run.

    A searched condition resolves to the point its finished search chose; until then it
    has no work items. A condition with ``locate:`` layers gets its located numbers
    written in first (:func:`harness.locate.layers.with_located`); until they are located
    it is checked with placeholder layers and has no work items either. Problems shared
    by several sweep points are reported once, those of one point name it."""
    resolved: list[ResolvedCondition] = []
    pending: list[ConditionSpec] = []
    cache = run.vectors

    def one(index: int, cond: ConditionSpec, resolved: list[ResolvedCondition]) -> None:
        if cond.search is not None:
            cls, params, _, issues = resolve_method(spec, index, cond, cache, info)
            if cls is None or params is None:
                problems.extend([p for p in issues if p not in problems])
                return
            base = cls(params, MethodContext(cond.name, spec._base_dir, cache, spec.vectors))
            key = None
            if key_of is not None and resolved and resolved[0].name == spec.baseline.name:
                try:
                    key = key_of(cond, base, resolved[0].key)
                except Exception:  # fingerprint failed: the candidates below report why
                    key = None
            result = load_search_result(run, cond.name, key)
            if result is None:
                layers = search_layers(base, cond, info.num_layers if info else None)
                if info is not None and not layers and isinstance(cond.search.layers, str):
                    problems.append(
                        f"{_where(index)}.search.layers: depth range '{cond.search.layers}' "
                        f"holds no block of this model ({info.num_layers} blocks); widen it"
                    )
                    return
                candidates = [base.at(layer, cond.search.start) for layer in layers] or [params]
                if any(c is None for c in candidates):
                    problems.append(
                        f"{_where(index)}.search: method '{cond.method}' cannot be searched: "
                        "it does not say how to steer at a given layer and coefficient "
                        "(SteeringMethod.at)"
                    )
                    return
                for candidate in candidates:
                    assert candidate is not None
                    _, found = resolve_condition(spec, index, cond, candidate, cls, {}, cache, info)
                    problems.extend([p for p in found if p not in problems])
                pending.append(cond)
                return
            chosen = result["chosen"]
            if chosen is None:  # the search found no point that passed its guards
                return
            moved = base.at(chosen["layer"], chosen["coefficient"])
            assert moved is not None
            extra = {"search": {"chosen": chosen, "trait": result["trait"]}}
            rc, found = resolve_condition(spec, index, cond, moved, cls, extra, cache, info)
            if rc is not None:
                resolved.append(rc)
            problems.extend(found)
            return
        points = expand(cond)
        found_by_problem: dict[str, list[str]] = {}
        for point, swept in points:
            cls, params, _, point_problems = resolve_method(spec, index, point, cache, info)
            rc = None
            if cls is not None and params is not None:
                rc, point_problems = resolve_condition(
                    spec, index, point, params, cls, {}, cache, info
                )
            if rc is not None:
                if swept is not None:
                    rc.info["sweep"] = sweep_info(rc.method, cond.name, swept)
                resolved.append(rc)
            for p in point_problems:
                found_by_problem.setdefault(p, []).append(point.name)
        for p, names in found_by_problem.items():
            shared = len(points) == 1 or len(names) == len(points)
            problems.append(p if shared else f"{p} (sweep point {', '.join(names)})")

    for index, cond in enumerate(spec.all_conditions):
        if locator is not None and located_refs(cond):
            where = _where(index)
            resolve, waiting = locator.resolver(cond.name, cond)
            cond, found = with_located(cond, resolve)
            if found:
                problems += [f"{where}.{p}" for p in found if f"{where}.{p}" not in problems]
                continue
            if waiting():
                # Placeholder layers: the condition is checked, but has no work items
                # until it is located (the runner locates, then plans again).
                one(index, cond, [])
                pending[:] = [c for c in pending if c.name != cond.name]
                continue
            before = len(resolved)
            one(index, cond, resolved)
            for rc in resolved[before:]:
                rc.info["located"] = locator.info(cond.name)
            continue
        one(index, cond, resolved)
    return resolved, pending


def _check_library(spec: Spec, info: ModelInfo) -> list[str]:
    problems = []
    for name, vec in spec.vectors.items():
        where = f"vectors.{name}"
        problems += check_layers(vec.layers, info, f"{where}.layers")
        problems += check_source(vec, where, vec.layers, info, spec._base_dir)
    return problems


def _check_model(spec: Spec, info: ModelInfo) -> list[str]:
    """What generation would hit late: not a causal LM, too many new tokens for the
    model's positions, a chat template required that the tokenizer lacks."""
    problems = []
    if not info.causal_lm:
        hint = (
            "; for a sequence classifier set [model] task = 'classify'"
            if info.sequence_classifier
            else ""
        )
        problems.append(
            f"model.id: '{spec.model.id}' ({info.model_type}) is not a causal language model "
            f"(AutoModelForCausalLM has no class for it); use a decoder-only LM{hint}"
        )
    if info.max_positions is not None and spec.generation.max_new_tokens >= info.max_positions:
        problems.append(
            f"generation.max_new_tokens: {spec.generation.max_new_tokens} leaves no room for "
            f"the prompt; the model takes {info.max_positions} positions in all"
        )
    if spec.model.chat_template == "on":
        try:
            if not has_chat_template(spec.model):
                problems.append(
                    f"model.chat_template: 'on' but the tokenizer of '{spec.model.id}' has no "
                    "chat template; set it to 'auto' or 'off'"
                )
        except ModelLoadError as exc:
            problems.append(f"model.chat_template: {exc}")
    return problems


CLASSIFY_DECODING: dict[str, Any] = {"task": "classify"}
"""The "decoding" part of a classification's content id: a classifier has no decoding
settings, and this keeps its ids apart from any generation's."""


def classify_seeds(spec: Spec) -> list[int]:
    """A classifier is deterministic: each text is classified once, under the first seed;
    more seeds would repeat the same numbers and inflate n (a note says so)."""
    seeds = list(spec.generation.seeds)
    if len(seeds) > 1 and "seeds" in spec.generation.model_fields_set:
        log.warning(
            "generation.seeds: a classifier is deterministic; each text is classified once "
            "(seed %d), the other seeds are ignored",
            seeds[0],
        )
    return seeds[:1]


def _check_classifier(spec: Spec, info: ModelInfo) -> list[str]:
    """What a classification task would hit late: no classification class or head, a
    target that is not a class, an engine other than the local one, searches."""
    problems = []
    if not info.sequence_classifier:
        problems.append(
            f"model.task: 'classify' but '{spec.model.id}' ({info.model_type}) has no "
            "sequence-classification class (AutoModelForSequenceClassification); use a classifier"
        )
    elif not info.trained_classifier:
        archs = ", ".join(info.architectures) or "none"
        problems.append(
            f"model.id: '{spec.model.id}' holds no trained classification head (its config's "
            f"architectures: {archs}); use a ...ForSequenceClassification checkpoint or "
            "builtin:minilm-emotions"
        )
    target = spec.analysis.target
    if target is not None and info.labels and target not in info.labels:
        hint = closest(target, list(info.labels))
        problems.append(
            f"analysis.target: '{target}' is not a class of the classifier "
            f"({', '.join(info.labels)})" + (f"; did you mean '{hint}'?" if hint else "")
        )
    if spec.execution.engine != "local":
        problems.append(
            f"execution.engine: a classification task runs in this process; set engine = "
            f"'local' (got '{spec.execution.engine}')"
        )
    for i, cond in enumerate(spec.conditions):
        if cond.search is not None:
            problems.append(
                f"conditions[{i}].search: a classification task has no scorers to search "
                "on; sweep the coefficient instead ([conditions.sweep])"
            )
    return problems


def _check_classify_methods(conditions: list[ResolvedCondition]) -> list[str]:
    """Methods a classifier cannot take: prompt rewriting, logit edits, steering of
    generated positions only."""
    problems = []
    for c in conditions:
        cls = type(c.method)
        where = f"condition '{c.name}': method '{c.method_name}'"
        if getattr(cls, "transform_messages", None) is not BaseMethod.transform_messages:
            problems.append(
                f"{where} rewrites the prompt, and a classifier reads each text as it is; "
                "steer it with activation, composite or a hook plug-in"
            )
        elif getattr(cls, "logits_processor", None) is not BaseMethod.logits_processor:
            problems.append(f"{where} edits next-token scores, which a classifier does not produce")
        elif c.method.positions == "generated":
            problems.append(
                f"{where}: positions = 'generated' steers nothing in a classifier (it "
                "generates no tokens); use 'all'"
            )
    return problems


def _check_labels(spec: Spec, prompts: list[Prompt], info: ModelInfo | None) -> list[str]:
    """Every gold label must be one of the classifier's classes."""
    if info is None or not info.labels or not prompts or not info.trained_classifier:
        return []
    unknown = sorted({str(p.label) for p in prompts} - set(info.labels))
    if not unknown:
        return []
    return [
        f"prompts: labels {unknown} are not classes of the classifier "
        f"({', '.join(info.labels)}); relabel the texts or use a classifier trained on them"
    ]


def _check_search_traits(spec: Spec, scorers: list[ResolvedScorer], base_dir: Path) -> list[str]:
    """A search's trait and guards must name metrics their scorer produces (when the
    scorer can say which without loading a model: ``metric_names``)."""
    problems = []
    by_name = {s.name: s for s in scorers}
    for i, cond in enumerate(spec.conditions):
        if cond.search is None:
            continue
        refs = [
            ("trait", cond.search.trait),
            *((f"guards[{j}].metric", g.metric) for j, g in enumerate(cond.search.guards)),
            *(
                (f"valid_guards[{j}].metric", g.metric)
                for j, g in enumerate(cond.search.valid_guards or [])
            ),
        ]
        for field_name, ref in refs:
            scorer_name, metric = ref.split("/", 1)
            sc = by_name.get(scorer_name)
            names_of = getattr(sc.scorer_cls, "metric_names", None) if sc else None
            if sc is None or names_of is None:
                continue
            names = list(names_of(sc.params, base_dir) or [])
            if names and metric not in names:
                hint = closest(metric, names)
                problems.append(
                    f"conditions[{i}].search.{field_name}: scorer '{scorer_name}' produces no "
                    f"metric '{metric}' (it has {', '.join(names)})"
                    + (f"; did you mean '{scorer_name}/{hint}'?" if hint else "")
                )
    return problems


def _resolve_scorers(spec: Spec, problems: list[str]) -> list[ResolvedScorer]:
    resolved = []
    for index, sc in enumerate(spec.scorers):
        rs, found = resolve_scorer(sc.type, sc.label, sc.params, spec._base_dir, ("scorers", index))
        problems += found
        if rs is not None:
            resolved.append(rs)
    return resolved


def scorer_context(
    plan: Plan,
    load_generator: Callable[[], Any] | None = None,
    model_workers: ModelWorkers | None = None,
) -> ScorerContext:
    return ScorerContext(
        run_dir=plan.run_dir,
        base_dir=plan.spec._base_dir,
        generator_model=plan.spec.model.model_dump(mode="json"),
        load_generator=load_generator,
        model_workers=model_workers,
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


def run_dir_problem(run_dir: Path) -> str | None:
    """Why ``run_dir`` cannot be a run directory (it or a folder above it is a file)."""
    for p in (run_dir, *run_dir.parents):
        if p.exists():
            if not p.is_dir():
                what = "is" if p == run_dir else f"is under {p}, which is"
                return (
                    f"output_dir: {run_dir} {what} a file, not a folder; give another --output-dir"
                )
            return None
    return None


def build_plan(spec: Spec, source: str, run_dir: Path | None = None) -> Plan:
    """Check everything that can be checked without weights; raise SpecError listing it all."""
    run_dir = run_dir or default_run_dir(spec)
    problems: list[str] = []
    if (bad_dir := run_dir_problem(run_dir)) is not None:
        problems.append(bad_dir)
    info = None
    try:
        info = model_info(load_config(spec.model))
    except ModelLoadError as exc:
        problems.append(f"model.id: {exc}")
    task: Task = "classify" if spec.model.task == "classify" else "generate"
    if info is not None:
        task = resolve_task(spec.model, info)
        problems += _check_library(spec, info)
        if task == "classify":
            problems += _check_classifier(spec, info)
        else:
            problems += _check_model(spec, info)
    run = RunDir(run_dir)
    # Scorers and prompts are resolved first (a search result's key depends on them);
    # their problems are listed after the conditions', in the order of the spec.
    later: list[str] = []
    if task == "generate" and not spec.scorers:
        later.append("scorers: required field is missing; give at least one [[scorers]] table")
    if task == "classify" and spec.scorers:
        later.append(
            "scorers: a classification task has no generated texts to score (its predictions "
            "are analysed directly); remove the [[scorers]] tables"
        )
    scorers = _resolve_scorers(spec, later)
    later += _check_search_traits(spec, scorers, spec._base_dir)
    prompts: list[Prompt] = []
    try:
        prompts = load_prompts(spec.prompts, require_label=task == "classify")
    except PromptSetError as exc:
        later.append(f"prompts: {exc}")
    if task == "classify":
        later += _check_labels(spec, prompts, info)
    if spec.has_search and len(prompts) == 1:
        later.append("prompts: a search needs at least 2 prompts (selection and held out)")
    selection: list[Prompt] = []
    if spec.has_search and len(prompts) > 1:
        selection, prompts = split_prompts(prompts, spec.split.selection_fraction)

    def key_of(cond: ConditionSpec, method: SteeringMethod, baseline_key: str) -> str:
        mkey = model_key(spec.model)
        return search_key(spec, cond, method, baseline_key, scorers, selection, mkey)

    locator = SpecLocator(
        spec.locate, spec._base_dir, run, model_key(spec.model), task, dict(spec.vectors)
    )
    locator.num_layers = info.num_layers if info else None
    conditions, pending = _resolve_conditions(spec, run, problems, info, key_of, locator, task)
    if locator.pending_requests():
        problem = sklearn_problem("locating the spec's 'locate:' layers")
        if problem is not None:
            problems.append(f"locate: {problem}")
    if task == "classify":
        problems += _check_classify_methods(conditions)
    problems += later
    if problems:
        raise SpecError(source, problems)
    mkey = model_key(spec.model)
    if task == "classify":
        items = make_items(conditions, prompts, classify_seeds(spec), mkey, CLASSIFY_DECODING)
    else:
        decoding = spec.generation.decoding()
        items = make_items(conditions, prompts, spec.generation.seeds, mkey, decoding)
    return Plan(
        spec,
        run,
        conditions,
        scorers,
        prompts,
        items,
        mkey,
        selection,
        pending,
        n_layers=info.num_layers if info else None,
        pending_locates=locator.pending_requests(),
        located=locator.found,
        task=task,
        labels=list(info.labels) if info and task == "classify" else [],
    )


def save_spec(plan: Plan, source: str) -> None:
    """Store the resolved spec in the run directory, so later stages need only the folder.

    A spec file run again supersedes the scorers a ``rescore`` recorded beside the stored
    spec; a run directory resumed after a rescore keeps both files as they are."""
    if plan.run.rescore.exists() and Path(source).resolve() == plan.run.spec.resolve():
        return
    write_json_atomic(
        plan.run.spec,
        {
            "source": source,
            "base_dir": str(plan.spec._base_dir),
            "spec": plan.spec.model_dump(mode="json"),
        },
    )
    plan.run.rescore.unlink(missing_ok=True)


def load_run_spec(run_dir: Path) -> Spec:
    """The spec stored in a run directory, validated again."""
    path = RunDir(run_dir).spec
    if not path.exists():
        raise SpecError(str(run_dir), [f"no {path.name} here; is this a run directory?"])
    fix = "run the spec file itself (`run SPEC`) to store it again"
    stored = stored_spec(path, RunDir(run_dir).rescore, fix)
    if "base_dir" not in stored:
        raise ArtifactError(path, "base_dir: Field required", fix)
    return validate_spec(dict(stored["spec"]), str(path), Path(stored["base_dir"]))
