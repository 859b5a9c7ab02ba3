"""Activation steering: add ``coefficient * vector`` to, or project a direction out of, the
residual stream of decoder layers.

The vector comes from a safetensors file (see :class:`SteeringVector`), is extracted by the
harness from contrastive pairs (a shipped set such as ``fear`` or a JSONL path) or from
the class means of labelled texts (``classes = "labels/emotions.jsonl"``, ``positive`` and
``negative`` labels: mean-pooled hidden states, positive mean minus negative mean), or is
a named vector of the spec's ``[vectors]`` library. Extracted vectors are cached in the run
directory, so a resumed run or a second condition does not extract them again. A cached
vector's file name is the hash of everything it depends on (the model key, the pair file's
contents and the extraction settings, the layers), so a change of any of them extracts
anew; a cached file that does not read back as that vector (truncated by a kill, wrong
layers or width, non-finite values) is extracted again with a warning naming it.

``control = "random"`` replaces each layer's direction by a random direction of the same
norm (seeded by ``control_seed``), everything else equal: the honest control for an
activation condition, separating the effect of the direction from the effect of
disturbing the activations at all.

Steering points: ``layers`` are decoder blocks (0-based; a block's output), ``"embedding"``
(the embedding output, input to block 0) or depth ranges (``"30%-60%"``); ``site`` picks
the block's output (``residual``), its attention output or its MLP output (the site table
of :mod:`harness.model.sites`). ``coefficient`` is one number or one per layer;
``normalize = true`` makes each layer's vector unit-norm before it is scaled.

A vector from pairs is extracted at every layer of its site at once (the forward passes
are the same) and cached under a key without the layers, so every condition, sweep point
and search step that uses those pairs shares one extraction.

``coefficient_mode = "norm"`` makes coefficients comparable across layers and models: the
vector added is ``coefficient * typical_norm(layer) * v / |v|`` (that is, ``coefficient *
mean|h| / |v|`` times ``v``), where the typical norm is the mean hidden-state norm at that
layer over neutral prompts (``norm_prompts``), first position excluded. Both the typical
norm and the effective coefficient are recorded in the manifest.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, model_validator

from harness.config.paths import resolve_data_path
from harness.config.prompts import load_prompts
from harness.config.spec import PromptSource
from harness.config.vectors import EMBEDDING, Layers, VectorSource, layer_label
from harness.core.errors import PromptSetError, VectorFileError
from harness.core.ids import content_id
from harness.model.loading import LoadedModel, ModelInfo, model_key
from harness.model.sites import WITHOUT_SUBLAYERS, Component, site_modules
from harness.steering.base import (
    BaseMethod,
    BatchInfo,
    MethodContext,
    MethodParams,
    SteeringPoint,
)
from harness.steering.hooks import EditFn, Positions, ablate_direction, add_vector, edit_residual
from harness.steering.vectors import (
    SteeringVector,
    extract_class_means,
    extract_mean_difference,
    load_pairs,
    typical_norms,
)
from prompts import data_path

log = logging.getLogger(__name__)

CoefficientMode = Literal["raw", "norm"]
DEFAULT_NORM_PROMPTS = "sets/calibration.jsonl"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def shipped_pair_sets() -> list[str]:
    return sorted(f.stem for f in data_path("pairs").glob("*.jsonl"))


def resolve_pairs(value: str, base_dir: Path) -> Path | None:
    """A shipped pair set by name (``fear``) or a JSONL path."""
    if "/" not in value and not value.endswith(".jsonl"):
        return resolve_data_path(f"pairs/{value}.jsonl", base_dir)
    return resolve_data_path(value, base_dir)


def resolve_source(vector: VectorSource | str, context: MethodContext) -> VectorSource:
    """A source given inline, or by name from the spec's vector library."""
    if isinstance(vector, VectorSource):
        return vector
    if vector not in context.library:
        known = ", ".join(sorted(context.library)) or "none defined"
        raise VectorFileError(f"no vector named '{vector}' in the spec's [vectors] ({known})")
    return context.library[vector]


def source_path(src: VectorSource, base_dir: Path) -> Path | None:
    if src.file is not None:
        return resolve_data_path(src.file, base_dir)
    if src.classes is not None:
        return resolve_data_path(src.classes, base_dir)
    return resolve_pairs(src.pairs or "", base_dir)


def class_texts(src: VectorSource, path: Path) -> tuple[list[str], list[str]]:
    """The texts of the source's positive and negative labels in a labelled file."""
    try:
        rows = load_prompts(PromptSource(file=str(path)), require_label=True)
    except PromptSetError as exc:
        raise VectorFileError(str(exc)) from None
    by_label: dict[str, list[str]] = {}
    for p in rows:
        by_label.setdefault(str(p.label), []).append(p.text)
    missing = [lab for lab in (src.positive, src.negative) if lab not in by_label]
    if missing:
        raise VectorFileError(
            f"{path.name} has no texts labelled {missing} (its labels: {', '.join(by_label)})"
        )
    return by_label[str(src.positive)], by_label[str(src.negative)]


def check_source(
    src: VectorSource, where: str, layers: list[int], info: ModelInfo, base_dir: Path
) -> list[str]:
    """Problems with a vector source for these layers and this model, before any work."""
    path = source_path(src, base_dir)
    if src.file is not None:
        if path is None:
            return [f"{where}.file: '{src.file}' not found (relative to {base_dir})"]
        try:
            vec = SteeringVector.load(path)
        except VectorFileError as exc:
            return [f"{where}.file: {exc}"]
        problems = []
        missing = [i for i in layers if i not in vec.directions]
        if missing:
            problems.append(
                f"{where}.file: {path.name} has no direction for layers {missing} "
                f"(it has {vec.layers})"
            )
        sizes = {int(v.shape[-1]) for v in vec.directions.values()}
        if info.hidden_size and sizes != {info.hidden_size}:
            problems.append(
                f"{where}.file: vector size {sorted(sizes)} does not match the model's "
                f"hidden size {info.hidden_size}"
            )
        return problems
    if src.classes is not None:
        if path is None:
            return [
                f"{where}.classes: '{src.classes}' not found (relative to {base_dir} or among "
                "the shipped files, e.g. labels/emotions.jsonl)"
            ]
        try:
            class_texts(src, path)
        except VectorFileError as exc:
            return [f"{where}.classes: {exc}"]
        return []
    if path is None:
        return [
            f"{where}.pairs: '{src.pairs}' is neither a shipped pair set "
            f"({', '.join(shipped_pair_sets())}) nor a file relative to {base_dir}"
        ]
    try:
        load_pairs(path)
    except VectorFileError as exc:
        return [f"{where}.pairs: {exc}"]
    return []


def check_layers(
    layers: list[int], info: ModelInfo, where: str, site: Component = "residual"
) -> list[str]:
    n = info.num_layers
    bad = [i for i in layers if not 0 <= i < n and i != EMBEDDING]
    if bad:
        return [
            f"{where}: {bad} out of range; this model has {n} decoder layers, allowed 0..{n - 1} "
            "or 'embedding'"
        ]
    if site != "residual" and EMBEDDING in layers:
        return [
            f"{where}: 'embedding' is a point of the residual stream; site = '{site}' "
            "takes block indices"
        ]
    return []


def check_site(site: Component, info: ModelInfo, where: str) -> list[str]:
    """A site this model family is known not to have, before any weights are loaded."""
    if site != "residual" and info.model_type in WITHOUT_SUBLAYERS:
        return [
            f"{where}: site = '{site}' is not supported for '{info.model_type}' models "
            "(no self_attn/attn and mlp submodules); use site = 'residual'"
        ]
    return []


def all_layers(lm: LoadedModel, site: Component) -> list[int]:
    """Every layer of a site, the embedding output first for the residual stream."""
    blocks = list(range(lm.info.num_layers))
    return [EMBEDDING, *blocks] if site == "residual" else blocks


def source_fingerprint(src: VectorSource, base_dir: Path) -> dict[str, Any]:
    """What makes the vector what it is: file contents, not paths."""
    path = source_path(src, base_dir)
    if path is None:
        raise VectorFileError(f"vector source not found: {src.file or src.pairs}")
    fp: dict[str, Any] = {"sha256": _sha256(path)}
    if src.pairs is not None:
        fp |= {"method": src.method, "aggregate": src.aggregate, "template": src.template}
    if src.classes is not None:
        fp |= {
            "method": "class_means",
            "classes": [src.positive, src.negative],
            "aggregate": src.aggregate,
        }
    return fp


def obtain_vector(
    lm: LoadedModel,
    src: VectorSource,
    layers: list[int],
    context: MethodContext,
    site: Component = "residual",
) -> tuple[SteeringVector, str]:
    """Load a vector file, or extract from pairs (cached in the run directory).

    Extraction covers every layer of the site in the same forward passes, and the cache
    key leaves the layers out, so conditions that use the same pairs at other layers
    share one extraction (in memory too, for a run without a cache folder). The vector
    returned holds the requested layers."""
    path = source_path(src, context.base_dir)
    if path is None:
        raise VectorFileError(f"vector source not found: {src.file or src.pairs}")
    if src.file is not None:
        return SteeringVector.load(path), str(path)
    what: dict[str, Any] = {
        "model": model_key(lm.spec),
        "vector": source_fingerprint(src, context.base_dir),
        "extraction": "all layers",
    }
    if site != "residual":
        what["site"] = site
    key = content_id(what)
    every = all_layers(lm, site)
    memo: dict[str, SteeringVector] = lm.cache.setdefault(("extracted_vectors",), {})
    cached = context.cache_dir / f"{key}.safetensors" if context.cache_dir else None
    origin = str(cached) if cached is not None else "extracted in memory"
    vec: SteeringVector | None = None
    if cached is not None and cached.exists():
        vec = _load_cached(cached, key, every, lm.info.hidden_size)
    if vec is None and cached is None:
        vec = memo.get(key)
    if vec is None and src.classes is not None:
        positive, negative = class_texts(src, path)
        vec = extract_class_means(
            lm,
            positive,
            negative,
            every,
            src.aggregate,
            source=str(path),
            labels=(str(src.positive), str(src.negative)),
            site=site,
        )
    if vec is None:
        vec = extract_mean_difference(
            lm,
            load_pairs(path),
            every,
            src.aggregate,
            src.template,
            source=str(path),
            method=src.method,
            site=site,
        )
        vec.metadata["cache_key"] = key
        if cached is not None:
            vec.save(cached)
        else:
            memo[key] = vec
    return SteeringVector({i: vec.directions[i] for i in layers}, dict(vec.metadata)), origin


def _load_cached(path: Path, key: str, layers: list[int], hidden: int) -> SteeringVector | None:
    """The cached vector if it is whole and is the one its name says, else None (warned)."""
    problem: str | None = None
    try:
        vec = SteeringVector.load(path)
    except VectorFileError as exc:
        problem = str(exc).removeprefix(f"{path}: ")
    else:
        if vec.metadata.get("cache_key", key) != key:
            problem = f"made for key {vec.metadata.get('cache_key')}, not {key}"
        elif set(vec.layers) != set(layers):
            problem = f"has layers {vec.layers}, expected {sorted(layers)}"
        else:
            for i, v in vec.directions.items():
                if tuple(v.shape) != (hidden,):
                    problem = f"layer {i} has shape {tuple(v.shape)}, expected ({hidden},)"
                elif not bool(torch.isfinite(v).all()):
                    problem = f"layer {i} has non-finite values"
                if problem:
                    break
    if problem is None:
        return vec
    log.warning("%s: damaged vector cache (%s); extracting it again", path, problem)
    return None


def layer_norms(
    lm: LoadedModel,
    layers: list[int],
    norm_prompts: str,
    base_dir: Path,
    site: Component = "residual",
) -> dict[int, float]:
    """Typical norm per layer of the site's output, measured once per model, prompt file
    and site."""
    path = resolve_data_path(norm_prompts, base_dir)
    if path is None:
        raise VectorFileError(f"norm_prompts '{norm_prompts}' not found")
    memo_key: tuple[str, ...] = ("typical_norms", str(path))
    if site != "residual":
        memo_key = (*memo_key, site)
    memo: dict[int, float] = lm.cache.setdefault(memo_key, {})
    missing = [i for i in layers if i not in memo]
    if missing:
        texts = [p.text for p in load_prompts(PromptSource(file=str(path)))]
        memo.update(typical_norms(lm, texts, missing, site=site))
    return {i: memo[i] for i in layers}


def random_like(vector: SteeringVector, seed: int) -> SteeringVector:
    """Per layer, a standard-normal direction rescaled to the vector's norm at that layer."""
    gen = torch.Generator().manual_seed(seed)
    directions = {}
    for i in vector.layers:
        v = vector.directions[i].float()
        r = torch.randn(v.shape, generator=gen)
        directions[i] = r * (v.norm() / r.norm())
    return SteeringVector(directions, {**vector.metadata, "control": "random", "seed": seed})


class NormScaling(MethodParams):
    """Params shared by methods whose coefficients may be relative to the layer's norm."""

    coefficient_mode: CoefficientMode = Field(
        "raw", description="raw: coefficient * v; norm: coefficient * typical|h| / |v| * v."
    )
    norm_prompts: str = Field(
        DEFAULT_NORM_PROMPTS, description="Neutral prompts on which typical norms are measured."
    )

    def norm_problems(self, base_dir: Path) -> list[str]:
        if (
            self.coefficient_mode == "norm"
            and resolve_data_path(self.norm_prompts, base_dir) is None
        ):
            return [f"params.norm_prompts: '{self.norm_prompts}' not found"]
        return []

    def norm_fingerprint(self, base_dir: Path) -> dict[str, Any]:
        """The norm prompts' content, when coefficients depend on it."""
        if self.coefficient_mode != "norm":
            return {}
        path = resolve_data_path(self.norm_prompts, base_dir)
        return {"norm_prompts": _sha256(path) if path else self.norm_prompts}


class ActivationParams(NormScaling):
    layers: Layers = Field(
        description=(
            "Decoder layers (0-based block outputs), 'embedding' (the embedding output) or "
            "depth ranges like '30%-60%'."
        )
    )
    coefficient: float | list[float] = Field(
        description=(
            "add: multiplier of the vector; ablate: share of the direction removed (1 = all). "
            "One number, or one per layer (aligned with layers)."
        )
    )
    site: Component = Field(
        "residual", description="Where in the block: its output, its attention or its MLP output."
    )
    normalize: bool = Field(False, description="Scale each layer's vector to unit norm first.")
    mode: Literal["add", "ablate"] = Field(
        "add", description="add the vector, or ablate its direction"
    )
    vector: VectorSource | str = Field(
        description="Inline source ({pairs = ...} or {file = ...}) or a name from [vectors]."
    )
    positions: Positions = Field(
        "all", description="Steer prompt tokens, generated tokens, or both."
    )
    control: Literal["none", "random"] = Field(
        "none", description="random: a random direction of the same norm at each layer."
    )
    control_seed: int = 0

    @model_validator(mode="after")
    def _modes(self) -> ActivationParams:
        if self.mode == "ablate" and self.coefficient_mode == "norm":
            raise ValueError("coefficient_mode = 'norm' applies to mode = 'add' only")
        if isinstance(self.coefficient, list) and len(self.coefficient) != len(self.layers):
            raise ValueError(
                f"coefficient lists {len(self.coefficient)} value(s) for {len(self.layers)} "
                f"layer(s) {[layer_label(i) for i in self.layers]}; give one per layer, or one"
            )
        if self.site != "residual" and EMBEDDING in self.layers:
            raise ValueError(
                f"'embedding' is a point of the residual stream; site = '{self.site}' "
                "takes block indices"
            )
        return self

    def coefficients(self) -> dict[int, float]:
        """The coefficient of each layer."""
        c = self.coefficient
        values = c if isinstance(c, list) else [c] * len(self.layers)
        return dict(zip(self.layers, values, strict=True))


class ActivationSteering(BaseMethod):
    """Add a vector, times a coefficient, to the output of decoder layers (or ablate it)."""

    Params = ActivationParams
    params: ActivationParams

    def __init__(self, params: ActivationParams, context: MethodContext):
        super().__init__(params, context)
        self.vector: SteeringVector | None = None
        self.scales: dict[int, float] = {}

    @property
    def source(self) -> VectorSource:
        return resolve_source(self.params.vector, self.context)

    @classmethod
    def check(  # type: ignore[override]
        cls, params: ActivationParams, info: ModelInfo, context: MethodContext
    ) -> list[str]:
        problems = check_layers(params.layers, info, "params.layers", params.site)
        problems += check_site(params.site, info, "params.site")
        try:
            src = resolve_source(params.vector, context)
        except VectorFileError as exc:
            return [*problems, f"params.vector: {exc}"]
        problems += check_source(src, "params.vector", params.layers, info, context.base_dir)
        return problems + params.norm_problems(context.base_dir)

    def fingerprint(self) -> dict[str, Any]:
        p = self.params
        fp: dict[str, Any] = {
            "layers": p.layers,
            "coefficient": p.coefficient,
            "coefficient_mode": p.coefficient_mode,
            "mode": p.mode,
            "positions": p.positions,
            "vector": source_fingerprint(self.source, self.context.base_dir),
        }
        if p.control != "none":
            fp["control"] = {"kind": p.control, "seed": p.control_seed}
        # New options enter only when set, so that existing conditions keep their ids.
        if p.site != "residual":
            fp["site"] = p.site
        if p.normalize:
            fp["normalize"] = True
        return fp | p.norm_fingerprint(self.context.base_dir)

    def prepare(self, lm: LoadedModel) -> dict[str, Any]:
        p = self.params
        self.vector, origin = obtain_vector(lm, self.source, p.layers, self.context, p.site)
        if p.control == "random":
            self.vector = random_like(self.vector, p.control_seed)
            origin = f"random direction of the norm of {origin} (seed {p.control_seed})"
        norms = self.vector.norms()
        self._check_embedding(norms)
        if p.normalize:
            self.vector = SteeringVector(
                {i: v.float() / norms[i] for i, v in self.vector.directions.items()},
                {**self.vector.metadata, "normalized": True},
            )
        meta: dict[str, Any] = {
            "vector": origin,
            "vector_metadata": self.vector.metadata,
            "vector_norms": {str(i): norms[i] for i in p.layers},
        }
        coefs = p.coefficients()
        if p.coefficient_mode == "norm":
            typical = layer_norms(lm, p.layers, p.norm_prompts, self.context.base_dir, p.site)
            # After normalize the vector's norm is 1.
            size = dict.fromkeys(p.layers, 1.0) if p.normalize else norms
            self.scales = {i: coefs[i] * typical[i] / size[i] for i in p.layers}
            meta["typical_norms"] = {str(i): typical[i] for i in p.layers}
        else:
            self.scales = coefs
        meta["effective_coefficients"] = {str(i): s for i, s in self.scales.items()}
        return meta

    def _check_embedding(self, norms: dict[int, float]) -> None:
        """A zero direction where the pairs' last tokens are all the same: warn, and refuse
        to divide by its norm."""
        p = self.params
        zero = [i for i in p.layers if norms[i] == 0.0]
        if EMBEDDING in zero:
            src = self.source
            log.warning(
                "%s: the vector is zero at the embedding output: a last-token difference "
                "vanishes there when every pair ends in the same token; use the mean over "
                'tokens there (vector aggregate = "mean")',
                self.context.condition,
            )
            if src.aggregate == "last" and (p.coefficient_mode == "norm" or p.normalize):
                raise VectorFileError(
                    f"{self.context.condition}: the vector is zero at the embedding output "
                    "(every pair ends in the same token), so it cannot be scaled to a norm; "
                    'set aggregate = "mean" in the vector source'
                )
        elif zero and (p.coefficient_mode == "norm" or p.normalize):
            raise VectorFileError(
                f"{self.context.condition}: the vector is zero at layers {zero}, so it cannot "
                "be scaled to a norm"
            )

    def modules(self, lm: LoadedModel) -> torch.nn.ModuleList:
        """The modules whose outputs this condition edits (its site's, per layer)."""
        return site_modules(lm.layers, self.params.site)

    def edits(self) -> dict[int, EditFn]:
        if self.vector is None:
            raise RuntimeError("ActivationSteering used before prepare()")
        if self.params.mode == "ablate":
            coefs = self.params.coefficients()
            return {
                i: ablate_direction(self.vector.directions[i], coefs[i]) for i in self.params.layers
            }
        return {
            i: add_vector(self.vector.directions[i], self.scales[i]) for i in self.params.layers
        }

    @property
    def positions(self) -> Positions:
        return self.params.positions

    def targets(self) -> list[str]:
        """The inline pair set's name or class-mean source's positive label, or the
        library vector's name."""
        vector = self.params.vector
        if isinstance(vector, str):
            return [vector]
        if vector.classes is not None:
            return [str(vector.positive)]
        return [vector.pairs] if vector.pairs else []

    def control(self) -> str | None:
        return None if self.params.control == "none" else self.params.control

    def steering_point(self) -> SteeringPoint:
        c = self.params.coefficient
        return SteeringPoint(list(self.params.layers), None if isinstance(c, list) else c)

    def at(self, layer: int, coefficient: float) -> ActivationParams:
        return self.params.model_copy(update={"layers": [layer], "coefficient": coefficient})

    def additions(self) -> dict[int, torch.Tensor] | None:
        """The vector added at each layer's block output (or the embedding output), for
        steering many conditions in one batch; None when the edit is not a plain addition
        there (ablation, or an attention or MLP site)."""
        if self.vector is None:
            raise RuntimeError("ActivationSteering used before prepare()")
        if self.params.mode != "add" or self.params.site != "residual":
            return None
        return {i: self.vector.directions[i].float() * self.scales[i] for i in self.params.layers}

    def ablations(self) -> dict[int, tuple[torch.Tensor, float]] | None:
        """The unit direction and share removed at each layer in ablate mode (as
        :func:`~harness.steering.hooks.ablate_direction` computes them); None otherwise."""
        if self.vector is None:
            raise RuntimeError("ActivationSteering used before prepare()")
        if self.params.mode != "ablate" or self.params.site != "residual":
            return None
        coefs = self.params.coefficients()
        out = {}
        for i in self.params.layers:
            direction = self.vector.directions[i]
            out[i] = (direction / direction.norm(), coefs[i])
        return out

    @classmethod
    def backend_problem(  # type: ignore[override]
        cls, params: ActivationParams, backend: str
    ) -> str | None:
        if backend == "hf":
            return None
        if params.site != "residual":
            return (
                f"params.site: '{params.site}' is not supported on the {backend} backend "
                "(the residual stream only); use site = 'residual' or model.backend = 'hf'"
            )
        if params.positions != "all":
            return (
                f"params.positions: '{params.positions}' is not supported on the {backend} "
                "backend (all positions only); use positions = 'all' or model.backend = 'hf'"
            )
        return None

    @contextmanager
    def apply(self, lm: LoadedModel, batch: BatchInfo) -> Iterator[None]:
        with edit_residual(
            self.modules(lm), self.edits(), self.params.positions, batch.prompt_length
        ):
            yield
