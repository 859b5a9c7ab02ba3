"""The benchmark spec: pydantic models, TOML/YAML loading, and errors a user can act on.

Validation happens in two passes, both before any work starts:

1. :func:`load_spec` parses the file and checks structure, types and files on disk.
2. :func:`harness.run.plan.build_plan` (needs plug-ins and the model's config, not its
   weights) checks method and scorer names and parameters, and layer indices.

Every problem is reported at once, each naming the file, the field path (e.g.
``conditions[1].params.layers``), what is allowed, and the closest valid name.
"""

from __future__ import annotations

import json
import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from harness.config.paths import climbs_out, is_absolute, resolve_data_path
from harness.config.vectors import LibraryVector, depth_range, is_locate, parse_locate
from harness.core.errors import SpecError
from harness.core.params import Seed, Strict
from harness.core.registry import closest

DType = Literal["auto", "float32", "float16", "bfloat16"]
"""A model's dtype in a spec (the generator's and an hf judge's)."""
ChatTemplate = Literal["auto", "on", "off"]
"""Whether prompts go through the tokenizer's chat template (auto: when it has one)."""


class ModelSpec(Strict):
    id: str = Field(
        "smollm2-135m",
        description=(
            "HF hub id, local path, embedded alias (smollm2-135m), or a built-in classifier "
            "(builtin:minilm-emotions)."
        ),
    )
    task: Literal["auto", "generate", "classify"] = Field(
        "auto",
        description=(
            "generate: a causal LM writes a text per prompt; classify: a sequence classifier "
            "labels each text; auto: classify when the config's architectures name a "
            "...ForSequenceClassification class (or the id is a built-in classifier)."
        ),
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit).")
    gguf_file: str | None = Field(None, description="GGUF file inside the model folder or repo.")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps.")
    dtype: DType = "auto"
    chat_template: ChatTemplate = Field(
        "auto", description="auto: use the tokenizer's chat template when it has one."
    )
    system_prompt: str | None = Field(
        None, description="System message for every condition (methods may replace it)."
    )
    trust_remote_code: bool = False
    backend: Literal["hf", "vllm"] = Field(
        "hf",
        description=(
            "hf: transformers generate (the reference); vllm: generation inside vLLM "
            "(its own virtualenv: scripts/install-vllm.sh). Part of every content id."
        ),
    )
    tensor_parallel_size: int = Field(1, gt=0, description="vllm: GPUs one model is split over.")
    gpu_memory_utilization: float = Field(
        0.9, gt=0, le=1, description="vllm: share of each GPU's memory vLLM may take."
    )
    max_model_len: int | None = Field(
        None, gt=0, description="vllm: longest prompt + new tokens; default the model's."
    )

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", v):
            raise ValueError("device must be one of auto, cpu, cuda, cuda:N, mps")
        return v

    @model_validator(mode="after")
    def _vllm_only(self) -> ModelSpec:
        """vLLM's settings with the hf backend would be silently ignored: refuse them."""
        if self.backend == "hf":
            set_here = [
                name for name, default in VLLM_SETTINGS.items() if getattr(self, name) != default
            ]
            if set_here:
                raise ValueError(
                    f"{', '.join(set_here)} apply to backend = 'vllm' only; set "
                    "model.backend = 'vllm' or remove them"
                )
        return self


VLLM_SETTINGS: dict[str, Any] = {
    "tensor_parallel_size": 1,
    "gpu_memory_utilization": 0.9,
    "max_model_len": None,
}
"""The model settings only the vLLM backend reads, with their defaults."""


class PromptSource(Strict):
    file: str | None = Field(None, description="JSONL or CSV file with a text and an id column.")
    dataset: str | None = Field(None, description="A `datasets` hub id or local path.")
    subset: str | None = Field(None, description="Dataset configuration name.")
    split: str = "train"
    text_field: str = "text"
    id_field: str | None = Field(None, description="Column of stable ids; default: hash of text.")
    label_field: str = Field(
        "label", description="Column of gold labels (classification tasks need one per text)."
    )
    limit: int | None = Field(None, gt=0, description="Use only the first N prompts.")

    @model_validator(mode="after")
    def _one_source(self) -> PromptSource:
        if (self.file is None) == (self.dataset is None):
            raise ValueError("give exactly one of prompts.file or prompts.dataset")
        return self


SAMPLER = "counter-gumbel-1"
"""The name of the sampler's random stream (harness/run/sampler.py): part of the content id
of every sampled text, so texts drawn by another stream are never mixed into a run."""


class GenerationSpec(Strict):
    max_new_tokens: int = Field(48, gt=0)
    sampling: bool = Field(True, description="false: greedy decoding.")
    temperature: float = Field(0.7, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0, description="0 disables top-k.")
    batch_size: int = Field(16, gt=0)
    conditions_per_batch: int = Field(
        1,
        gt=0,
        description=(
            "Stack up to this many additive conditions (activation add, composite, baseline) "
            "in one forward pass, each row with its own vector; on the vLLM backend, up to "
            "this many conditions that can share one (additive, baseline, prompt, logit bias) "
            "in one engine call."
        ),
    )
    seeds: list[Seed] = Field(default_factory=lambda: [0, 1, 2], min_length=1)

    @field_validator("seeds")
    @classmethod
    def _unique(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError("seeds must be unique")
        return v

    def decoding(self) -> dict[str, Any]:
        """The settings that determine a text, part of every content id."""
        d: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "sampling": self.sampling}
        if self.sampling:
            d |= {"temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k}
            d["sampler"] = SAMPLER
        return d


NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
"""Run, condition and scorer names (matched in full: a name becomes a file name)."""


def _contained_path(v: str | None) -> str | None:
    """A relative output path may not climb out of the current directory with ``..``."""
    if v is not None and climbs_out(v):
        raise ValueError(
            f"'{v}' climbs out of the current directory with '..'; "
            "use a path under it or an absolute path"
        )
    return v


class ExecutionSpec(Strict):
    """Where generation runs. Engines change where texts are made, never which texts: the
    records, ids and texts of every engine are those of the local one, so this section is
    not part of any content id."""

    engine: Literal["local", "ray"] = Field(
        "local", description="local: this process; ray: Ray actors, one model replica each."
    )
    address: str | None = Field(
        None,
        description=(
            "ray: the cluster to join ('auto', 'ray://host:10001', 'host:6379'); default "
            "RAY_ADDRESS, else a local cluster started for the run."
        ),
    )
    workers: int | None = Field(
        None, gt=0, description="ray: actors to start; default: as many as the cluster fits."
    )
    num_gpus: float | None = Field(
        None,
        ge=0,
        description="ray: GPUs per actor (fractional shares a GPU); default 1 with GPUs, else 0.",
    )
    num_cpus: float = Field(1.0, gt=0, description="ray: CPUs per actor (its torch threads).")
    max_retries: int = Field(
        3, ge=0, description="ray: times a task is retried on another actor after its actor died."
    )
    task_timeout_s: float | None = Field(
        None,
        gt=0,
        description=(
            "ray: seconds one task may run before its actor is presumed hung, killed and the "
            "task retried on another (counted like a death); default: no limit."
        ),
    )
    batches_per_task: int = Field(
        4,
        gt=0,
        description=(
            "ray: fixed batches of one unit an actor generates per call; fewer return "
            "results sooner and lose less when an actor dies."
        ),
    )


class Guard(Strict):
    """A coherence bound a search point must meet: one of min, max, min_ratio, max_ratio.

    Ratios are to the baseline's mean on the same selection texts (e.g. perplexity at most
    1.5 times the unsteered model's)."""

    metric: str = Field(
        description="scorer/metric, e.g. 'fluency/perplexity' or 'judge/coherence'."
    )
    min: float | None = None
    max: float | None = None
    min_ratio: float | None = None
    max_ratio: float | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> Guard:
        bounds = [self.min, self.max, self.min_ratio, self.max_ratio]
        if sum(b is not None for b in bounds) != 1:
            raise ValueError("give exactly one of min, max, min_ratio, max_ratio")
        if "/" not in self.metric:
            raise ValueError("metric must be 'scorer/metric'")
        return self


SEARCH_PRESETS: dict[str, dict[str, Any]] = {
    # The persona-vector trait-steering guide's search (Chen et al. 2025, "Persona vectors",
    # and its public steering guide): start at 0.7 x activation norm / vector norm
    # (``coefficient_mode = "norm"``), x1.3 while coherence >= 80 else x0.85, momentum 0.1,
    # 5 steps, layers at 30-60% of depth; a point counts only with coherence >= 77 and a
    # trait change >= 20 (the guide's 0-100 judge scale). ``coherence`` names the metric.
    "trait-guide": {
        "rule": "momentum",
        "start": 0.7,
        "up": 1.3,
        "down": 0.85,
        "momentum": 0.1,
        "steps": 5,
        "layers": "30%-60%",
        "step_min": 80.0,
        "valid_min": 77.0,
        "min_delta": 20.0,
    },
}
"""Shipped search presets: ``preset = "trait-guide"`` fills every setting the spec leaves
out (anything given explicitly wins)."""


class SearchSpec(Strict):
    """Adaptive coefficient search per layer, on the selection split of the prompts.

    Two rules: ``"bracket"`` (multiply by ``factor`` while the guards pass, divide
    otherwise, bisect geometrically once a passing and a failing point bracket the
    boundary) and ``"momentum"`` (multiply by ``up`` while the step guards pass, by
    ``down`` otherwise, with heavy-ball momentum on the log coefficient). ``guards``
    decide the step; ``valid_guards`` (default: the same) and ``min_delta`` decide which
    points may be chosen."""

    preset: Literal["trait-guide"] | None = Field(
        None, description="Fill unset settings from a shipped preset (SEARCH_PRESETS)."
    )
    coherence: str | None = Field(
        None, description="With a preset: the scorer/metric its coherence thresholds apply to."
    )
    rule: Literal["bracket", "momentum"] = "bracket"
    layers: list[int] | str | None = Field(
        None,
        description=(
            "Candidate layers, a depth range like '30%-60%', or 'locate:<pairs>[:<k>]' (the "
            "top k located layers); default the params'."
        ),
    )
    start: float = Field(gt=0, description="First coefficient (in the condition's mode).")
    factor: float = Field(
        2.0, gt=1, description="bracket: multiply up while valid, divide otherwise."
    )
    up: float | None = Field(None, gt=1, description="momentum: factor while the step guards pass.")
    down: float | None = Field(
        None, gt=0, lt=1, description="momentum: factor when a step guard fails."
    )
    momentum: float = Field(0.0, ge=0, lt=1, description="momentum: weight of the previous step.")
    steps: int = Field(5, ge=1, description="Evaluations per layer.")
    trait: str = Field(description="scorer/metric whose delta against the baseline to push.")
    direction: Literal["increase", "decrease"] = "increase"
    guards: list[Guard] = Field(min_length=1, description="Bounds that decide each step.")
    valid_guards: list[Guard] | None = Field(
        None, description="Bounds a point must meet to be chosen; default the step guards."
    )
    min_delta: float | None = Field(
        None, ge=0, description="Trait change (in the search's direction) a point needs to count."
    )
    seeds: list[Seed] | None = Field(
        None, description="Seeds used while searching; default the first."
    )

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("preset") is None:
            return data
        name = data["preset"]
        preset = SEARCH_PRESETS.get(name)
        if preset is None:
            return data  # the Literal reports the unknown name
        coherence = data.get("coherence")
        if coherence is None and ("guards" not in data or "valid_guards" not in data):
            raise ValueError(
                f"preset '{name}' needs coherence = 'scorer/metric' (e.g. 'judge/coherence') "
                "for its thresholds, or explicit guards and valid_guards"
            )
        filled = {k: v for k, v in preset.items() if k not in ("step_min", "valid_min")}
        if coherence is not None:
            filled["guards"] = [{"metric": coherence, "min": preset["step_min"]}]
            filled["valid_guards"] = [{"metric": coherence, "min": preset["valid_min"]}]
        return filled | data

    @field_validator("trait")
    @classmethod
    def _trait(cls, v: str) -> str:
        if "/" not in v:
            raise ValueError("trait must be 'scorer/metric', e.g. 'lexicon/fear'")
        return v

    @field_validator("layers")
    @classmethod
    def _layers(cls, v: list[int] | str | None) -> list[int] | str | None:
        if is_locate(v):
            parse_locate(str(v))  # raises on a malformed reference
        elif isinstance(v, str):
            depth_range(v, 100)  # raises on a malformed range
        return v

    @model_validator(mode="after")
    def _rule(self) -> SearchSpec:
        if self.rule == "momentum" and (self.up is None or self.down is None):
            raise ValueError("rule 'momentum' needs up (> 1) and down (< 1)")
        if self.rule == "bracket" and (self.up, self.down, self.momentum) != (None, None, 0.0):
            raise ValueError("up, down and momentum belong to rule = 'momentum'")
        return self

    def metrics(self) -> list[str]:
        """Every scorer/metric the search reads: its trait and its guards'."""
        refs = [self.trait, *(g.metric for g in self.guards + (self.valid_guards or []))]
        return list(dict.fromkeys(refs))

    @property
    def validity_guards(self) -> list[Guard]:
        return self.valid_guards if self.valid_guards is not None else self.guards

    def key_dump(self) -> dict[str, Any]:
        """The settings a search result depends on; new settings at their defaults are
        left out, so results stored before they existed keep their keys."""
        d = self.model_dump(mode="json")
        for k, default in (
            ("preset", None),
            ("coherence", None),
            ("rule", "bracket"),
            ("up", None),
            ("down", None),
            ("momentum", 0.0),
            ("valid_guards", None),
            ("min_delta", None),
        ):
            if d.get(k) == default:
                d.pop(k, None)
        return d


class SplitSpec(Strict):
    selection_fraction: float = Field(
        0.5,
        gt=0,
        lt=1,
        description=(
            "Share of prompts used to choose settings by search (never reported); the rest "
            "is held out, and every condition is reported on it."
        ),
    )


class ConditionSpec(Strict):
    # Sweep and search points get generated names such as "fear@coefficient=2,layers=8"
    # and "fear~layer=0,coefficient=0.5"; names a user writes match NAME_RE (checked below).
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-@=,+~]*$")
    method: str = Field(description="A registered steering method or 'package.module:Class'.")
    params: dict[str, Any] = Field(default_factory=dict)
    sweep: dict[str, list[Any]] | None = Field(
        None, description="Grid over params, e.g. {coefficient = [2, 4], layers = [8, 10]}."
    )
    search: SearchSpec | None = Field(
        None, description="Choose layer and coefficient on the selection split of the prompts."
    )
    targets: list[str] | None = Field(
        None,
        description=(
            "Metrics this condition aims at, 'scorer/metric' or 'metric' (every scorer's): "
            "shown first in the report; default: the [analysis] primary, else name matching."
        ),
    )

    @field_validator("sweep")
    @classmethod
    def _sweep(cls, v: dict[str, list[Any]] | None) -> dict[str, list[Any]] | None:
        if v is not None:
            empty = [k for k, values in v.items() if not values]
            if not v or empty:
                raise ValueError(f"a sweep needs at least one value per swept param ({empty})")
        return v

    @model_validator(mode="after")
    def _sweep_or_search(self) -> ConditionSpec:
        if self.sweep and self.search:
            raise ValueError("a condition can have a sweep or a search, not both")
        return self


class ScorerSpec(Strict):
    type: str = Field(description="A registered scorer or 'package.module:Class'.")
    name: str | None = Field(None, pattern=NAME_RE, description="Label in records; default type.")
    params: dict[str, Any] = Field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.name or self.type


class AnalysisSpec(Strict):
    bootstrap_resamples: int = Field(2000, ge=0)
    bootstrap_seed: Seed = 0
    coherence_threshold: float = Field(
        50.0,
        description="Texts scoring below it on a `coherence` metric count as incoherent "
        "(harness/analysis/coherence.py).",
    )
    primary: list[str] = Field(
        default_factory=list,
        description=(
            "The run's primary metrics, 'scorer/metric' or 'metric': the targets of every "
            "condition without its own `targets` (default: metrics named in the condition)."
        ),
    )
    target: str | None = Field(
        None,
        description=(
            "Classification tasks: the class whose probability the shift plots follow "
            "(default: the positive class of the conditions' class-mean vectors)."
        ),
    )


class MetricWords(Strict):
    """The trait metric's words for one pair set: log P(prefix + trait | text) -
    log P(prefix + neutral | text); any left out take the shipped default."""

    prefix: str | None = Field(None, description="The continuation prefix (default ' I feel').")
    trait: str | None = Field(None, description="The trait continuation.")
    neutral: str | None = Field(None, description="The neutral continuation.")


class LocateSpec(Strict):
    """How ``layers = "locate:<pairs>[:<k>]"`` finds its layers: ``steer-harness locate``'s
    measurements (:mod:`harness.locate`) on the pair set, run once when the run starts and
    cached in the run directory (``locate/<key>.json``), then the top k layers of
    ``component`` by ``ranking``."""

    ranking: Literal["attribution", "probe"] = Field(
        "attribution",
        description=(
            "attribution: the attribution-patching estimate of how much the site carries the "
            "trait metric; probe: cross-validated linear-probe accuracy (ties by attribution)."
        ),
    )
    component: Literal["residual", "attention", "mlp"] = Field(
        "residual", description="The site ranked: the block's output, its attention or MLP output."
    )
    aggregate: Literal["last", "mean"] = Field(
        "last", description="Last token or mean over tokens, as in vector extraction."
    )
    template: Literal["raw", "chat"] = Field("raw", description="Pair rendering.")
    folds: int = Field(5, ge=2, description="Probe cross-validation folds.")
    seed: Seed = Field(0, description="Seed of the probe's folds.")
    check: int = Field(3, ge=0, description="Top layers checked by exact activation patching.")
    metric: dict[str, MetricWords] = Field(
        default_factory=dict,
        description=(
            "Per pair set (its file name without .jsonl: fear, joy, my-pairs), the trait "
            "metric's words, overriding the defaults (prompts/pairs/continuations.json)."
        ),
    )
    batch_size: int = Field(8, ge=1, description="Pairs per forward pass.")


class ReportSpec(Strict):
    path: str | None = Field(None, description="Default: reports/<name>.md")

    @field_validator("path")
    @classmethod
    def _contained(cls, v: str | None) -> str | None:
        return _contained_path(v)

    samples: int = Field(3, ge=0, description="Sample generations shown per condition.")
    max_sample_chars: int = Field(400, gt=0)


class Spec(Strict):
    name: str = Field(pattern=NAME_RE)
    description: str = ""
    output_dir: str | None = Field(None, description="Run directory; default runs/<name>.")

    @field_validator("output_dir")
    @classmethod
    def _contained(cls, v: str | None) -> str | None:
        return _contained_path(v)

    model: ModelSpec = Field(default_factory=ModelSpec)
    prompts: PromptSource
    generation: GenerationSpec = Field(default_factory=GenerationSpec)
    vectors: dict[str, LibraryVector] = Field(
        default_factory=dict, description="Named steering vectors that conditions refer to."
    )
    baseline: ConditionSpec = Field(
        default_factory=lambda: ConditionSpec(name="baseline", method="none")
    )
    conditions: list[ConditionSpec] = Field(
        default_factory=list, description="Steering conditions; none: the baseline alone."
    )
    scorers: list[ScorerSpec] = Field(
        default_factory=list,
        description="Scorers of generated texts: at least one for a generation task, none "
        "for a classification task (checked where the task is known: harness.run.plan).",
    )
    split: SplitSpec = Field(default_factory=SplitSpec)
    locate: LocateSpec = Field(
        default_factory=LocateSpec, description="How 'locate:<pairs>' layers are found."
    )
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec)
    report: ReportSpec = Field(default_factory=ReportSpec)
    execution: ExecutionSpec = Field(default_factory=ExecutionSpec)

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)
    """Folder that relative paths inside method and scorer params resolve against."""
    _absolute_paths: list[tuple[str, str]] = PrivateAttr(default_factory=list)
    """(field, path) of the absolute paths the spec file names (see :func:`absolute_paths`)."""

    @model_validator(mode="after")
    def _unique_names(self) -> Spec:
        bad = [c.name for c in self.all_conditions if not re.fullmatch(NAME_RE, c.name)]
        if bad:
            raise ValueError(f"condition names may use letters, digits, '_', '.', '-': {bad}")
        names = [self.baseline.name] + [c.name for c in self.conditions]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"condition names must be unique (baseline included): {dupes}")
        labels = [s.label for s in self.scorers]
        dupes = sorted({n for n in labels if labels.count(n) > 1})
        if dupes:
            raise ValueError(f"scorer names must be unique; set `name` to tell them apart: {dupes}")
        refs = [("analysis.primary", r) for r in self.analysis.primary]
        refs += [
            (f"condition '{c.name}': targets", r) for c in self.conditions for r in c.targets or []
        ]
        for where, ref in refs:
            scorer = ref.split("/", 1)[0] if "/" in ref else None
            if not ref.strip() or ref.endswith("/"):
                raise ValueError(f"{where}: '{ref}' is not 'scorer/metric' or 'metric'")
            if scorer is not None and scorer not in labels:
                hint = closest(scorer, labels)
                raise ValueError(
                    f"{where} refers to scorer '{scorer}' ('{ref}'), which is not among the "
                    f"spec's scorers ({', '.join(labels)})"
                    + (f"; did you mean '{hint}'?" if hint else "")
                )
        for c in self.conditions:
            if c.search is None:
                continue
            for ref in c.search.metrics():
                scorer = ref.split("/", 1)[0]
                if scorer not in labels:
                    hint = closest(scorer, labels)
                    raise ValueError(
                        f"condition '{c.name}': search refers to scorer '{scorer}', which is not "
                        f"among the spec's scorers ({', '.join(labels)})"
                        + (f"; did you mean '{hint}'?" if hint else "")
                    )
        return self

    @property
    def has_search(self) -> bool:
        return any(c.search is not None for c in self.conditions)

    @property
    def all_conditions(self) -> list[ConditionSpec]:
        return [self.baseline, *self.conditions]


def format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _unwrap(annotation: Any) -> Any:
    """The BaseModel class inside list[...] / X | None / dict[..., X], if any."""
    origin = typing.get_origin(annotation)
    if origin is None:
        return annotation
    for arg in typing.get_args(annotation):
        inner = _unwrap(arg)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            return inner
    return annotation if origin not in (list, dict, types.UnionType, typing.Union) else None


def model_at(root: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The pydantic model class that owns the field at ``loc`` (skipping list indices)."""
    current: Any = root
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(part)
        if field is None:
            return None
        current = _unwrap(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def describe_errors(
    exc: ValidationError, root: type[BaseModel], prefix: tuple[int | str, ...] = ()
) -> list[str]:
    """Turn pydantic errors into lines naming the field, the allowed values and a guess."""
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        where = format_loc(prefix + loc)
        kind = err["type"]
        if kind == "extra_forbidden":
            owner = model_at(root, loc[:-1])
            allowed = sorted(owner.model_fields) if owner else []
            key = str(loc[-1])
            msg = f"{where}: unknown key '{key}'"
            if allowed:
                msg += f"; allowed keys: {', '.join(allowed)}"
                hint = closest(key, allowed)
                if hint:
                    msg += f"; did you mean '{hint}'?"
            problems.append(msg)
        elif kind == "literal_error":
            expected = re.findall(r"'([^']*)'", str(err.get("ctx", {}).get("expected", "")))
            msg = f"{where}: {err['msg']} (got {err.get('input')!r})"
            hint = closest(str(err.get("input")), expected)
            if hint:
                msg += f"; did you mean '{hint}'?"
            problems.append(msg)
        elif kind == "missing":
            problems.append(f"{where}: required field is missing")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {msg} (got {err.get('input')!r})")
    return problems


def parse_file(path: Path) -> dict[str, Any]:
    """Read TOML or YAML into a dict, with the file named in any syntax error."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(str(path), ["file not found"]) from None
    except UnicodeDecodeError as exc:
        raise SpecError(
            str(path), [f"not UTF-8 text (byte {exc.start}); save the spec as UTF-8"]
        ) from None
    except IsADirectoryError:
        raise SpecError(str(path), ["is a folder, not a spec file"]) from None
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise SpecError(str(path), [f"unknown spec format '{suffix}'; use .toml or .yaml"])
    except (tomllib.TOMLDecodeError, yaml.YAMLError, ValueError) as exc:
        if isinstance(exc, SpecError):
            raise
        raise SpecError(str(path), [f"cannot parse: {exc}"]) from exc
    if not isinstance(data, dict):
        raise SpecError(str(path), ["the spec must be a table/mapping at the top level"])
    return data


def validate_spec(data: dict[str, Any], source: str, base_dir: Path) -> Spec:
    """Structure, types and files; raises SpecError listing every problem."""
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(source, describe_errors(exc, Spec)) from None
    problems = []
    if spec.prompts.file is not None:
        if climbs_out(spec.prompts.file):
            problems.append(
                f"prompts.file: '{spec.prompts.file}' climbs out of the spec's folder with "
                "'..'; move the file under it or give an absolute path"
            )
        elif (found := resolve_data_path(spec.prompts.file, base_dir)) is None:
            problems.append(
                f"prompts.file: '{spec.prompts.file}' not found (looked next to the spec in "
                f"{base_dir} and among the shipped prompt files); fix the path"
            )
        else:
            spec.prompts.file = str(found)
    if spec.prompts.dataset is not None and not climbs_out(spec.prompts.dataset):
        local = resolve_data_path(spec.prompts.dataset, base_dir)
        if local is not None:
            spec.prompts.dataset = str(local)
    if problems:
        raise SpecError(source, problems)
    spec._base_dir = base_dir
    return spec


PATH_KEYS = ("file", "path", "pairs", "lexicon", "dir", "prompts", "rubric", "cache")
"""Keys of method and scorer params whose string values are (or may be) file paths."""


def absolute_paths(data: Any, where: str = "") -> list[tuple[str, str]]:
    """(field, path) for every absolute path a spec names: ``output_dir``, ``report.path``,
    ``prompts.file`` and path-like keys anywhere in methods' and scorers' params, so the CLI
    can say where a spec reads and writes outside its folder before any work starts."""
    found: list[tuple[str, str]] = []
    if isinstance(data, dict):
        for key, value in data.items():
            here = f"{where}.{key}" if where else str(key)
            if (
                isinstance(value, str)
                and any(k in str(key).lower() for k in (*PATH_KEYS, "output"))
                and is_absolute(value)
            ):
                found.append((here, value))
            else:
                found += absolute_paths(value, here)
    elif isinstance(data, list):
        for i, value in enumerate(data):
            found += absolute_paths(value, f"{where}[{i}]")
    return found


def load_spec(path: str | Path) -> Spec:
    """Load and validate a spec file. Relative data paths resolve against its folder."""
    p = Path(path)
    data = parse_file(p)
    spec = validate_spec(data, str(p), p.resolve().parent)
    spec._absolute_paths = absolute_paths(data)
    return spec
