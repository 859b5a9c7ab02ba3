"""The vLLM backend's model: a vLLM engine beside the tokenizer and config of the HF path.

``[model] backend = "vllm"`` makes :func:`harness.model.loading.load_model` return a
:class:`~harness.model.loading.LoadedModel` whose ``engine`` is a :class:`VllmEngine`.
What stays on the HF side: the tokenizer (prompts are rendered and tokenised exactly as on
the HF path, then handed to vLLM as token ids, so both backends see the same input) and,
loaded only when something asks for it, the HF model itself (:class:`DeferredModel`):
conditions are prepared (vectors extracted, norms measured) and model-using scorers run
on it, so a vector is the same whichever backend generates with it.

vLLM is imported here only when an engine starts: the main virtualenv does not have it
(vLLM 0.32 pins transformers<5.20; it lives in ``.venv-vllm``, scripts/install-vllm.sh).
A GGUF source (the embedded model) is converted once to a safetensors folder, which vLLM
loads; the conversion is cached by the GGUF file's hash.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from harness.config.paths import cache_root
from harness.config.spec import ModelSpec
from harness.core.errors import ModelLoadError
from harness.core.files import sha256_of
from harness.model import vllm_hooks

log = logging.getLogger(__name__)

VLLM_MISSING = (
    "model.backend = 'vllm' needs vLLM, which lives in its own virtualenv: run "
    "scripts/install-vllm.sh and use .venv-vllm/bin/steer-harness (or set backend = 'hf')"
)


LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""The max LoRA ranks vLLM accepts (``LoRAConfig.max_lora_rank``)."""


def vllm_problem() -> str | None:
    """Why the vLLM backend cannot run here (vLLM is not installed), without importing it."""
    return VLLM_MISSING if find_spec("vllm") is None else None


def safetensors_folder(source: str, gguf: str | None, kwargs: dict[str, Any]) -> str:
    """A folder vLLM can load: ``source`` itself, or for a GGUF file its dequantized
    float32 safetensors conversion (made once, then found by the file's hash)."""
    if not gguf:
        return source
    gguf_path = Path(source) / gguf
    if not gguf_path.is_file():
        raise ModelLoadError(f"the vLLM backend needs a local GGUF file; not found: {gguf_path}")
    target = cache_root() / "vllm-models" / sha256_of(gguf_path)[:24]
    if (target / "config.json").is_file():
        return str(target)
    log.info("converting %s to safetensors for vLLM (once) in %s", gguf_path.name, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".converting-"))
    try:
        _save_dequantized(source, kwargs, tmp)
        os.replace(tmp, target)  # atomic: a killed conversion leaves no half folder behind
    except OSError:
        if (target / "config.json").is_file():  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
            return str(target)
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


def _save_dequantized(source: str, kwargs: dict[str, Any], folder: Path) -> None:
    """Save a GGUF model, dequantized to float32, as a plain safetensors model in ``folder``.

    transformers refuses to save a model it loaded from GGUF (its GGUF quantizer is not
    serializable, dequantized or not), so the dense weights go into a fresh model built
    from the same config without its ``quantization_config`` -- which vLLM would otherwise
    read as a GGUF checkpoint."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    loaded = AutoModelForCausalLM.from_pretrained(
        source, dtype=torch.float32, quantization_config=GgufConfig(dequantize=True), **kwargs
    )
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    dense = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    dense.load_state_dict(loaded.state_dict())
    dense.generation_config = loaded.generation_config
    del loaded
    dense.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


class DeferredModel:
    """The HF model of a vLLM-backed run, loaded on first use.

    Only preparing a condition (extracting a vector) or a model-using scorer needs it, so a
    run that generates with vLLM alone never holds two copies of the weights."""

    def __init__(self, load: Callable[[], Any]):
        self._load = load
        self._model: Any = None

    @property
    def loaded(self) -> Any:
        if self._model is None:
            self._model = self._load()
        return self._model

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.loaded, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.loaded(*args, **kwargs)


class VllmEngine:
    """One ``vllm.LLM`` in eager mode, started on first use, and the hook calls on it;
    with LoRA support once a LoRA adapter condition asks for it (:meth:`lora_request`)."""

    def __init__(self, spec: ModelSpec, folder: str, dtype: str):
        self.spec = spec
        self.folder = folder
        self.dtype = dtype
        self._llm: Any = None
        self._eos: list[int] | None = None
        self._lora_rank = 0
        """The engine's max LoRA rank; 0: started without LoRA support."""
        self._lora_ids: dict[str, int] = {}
        self.tagged_problem: str | None = None
        """Why several conditions cannot share an engine call here (None: they can, as far
        as is known); set by the first failure and kept, so it is logged once."""

    @property
    def llm(self) -> Any:
        if self._llm is None:
            problem = vllm_problem()
            if problem is not None:
                raise ModelLoadError(problem)
            # Functions sent to the workers (the hooks) are pickled; vLLM refuses that
            # unless this is set. They are ours, from an importable module.
            os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")
            from vllm import LLM

            spec = self.spec
            args: dict[str, Any] = {
                "model": self.folder,
                "dtype": self.dtype,
                "tensor_parallel_size": spec.tensor_parallel_size,
                "gpu_memory_utilization": spec.gpu_memory_utilization,
                "enforce_eager": True,  # Python hooks do not run inside captured graphs
                "seed": 0,
                "trust_remote_code": spec.trust_remote_code,
            }
            if spec.max_model_len is not None:
                args["max_model_len"] = spec.max_model_len
            if self._lora_rank:
                args |= {"enable_lora": True, "max_lora_rank": self._lora_rank, "max_loras": 1}
            if spec.revision and not Path(self.folder).exists():
                args["revision"] = spec.revision
            try:
                self._llm = LLM(**args)
            except Exception as exc:  # vLLM raises many kinds at start-up
                raise ModelLoadError(
                    f"vLLM cannot load model '{spec.id}' from '{self.folder}': {exc}"
                ) from exc
            layers = set(self._llm.apply_model(vllm_hooks.layer_count))
            log.info("vLLM engine ready: %s, %s decoder layers", self.folder, layers)
        return self._llm

    def eos_ids(self, tokenizer: Any) -> list[int]:
        """End-of-sequence ids as the HF path finds them (generation config, tokenizer),
        read from the folder vLLM loads, without loading the HF model."""
        if self._eos is None:
            from transformers import AutoConfig, GenerationConfig

            try:
                config = GenerationConfig.from_pretrained(self.folder)
            except OSError:
                config = GenerationConfig.from_model_config(AutoConfig.from_pretrained(self.folder))
            ids: set[int] = set()
            for value in (config.eos_token_id, tokenizer.eos_token_id):
                if isinstance(value, int):
                    ids.add(value)
                elif isinstance(value, list):
                    ids.update(int(v) for v in value)
            self._eos = sorted(ids)
        return list(self._eos)

    def install(self, edits: dict[int, list[vllm_hooks.Edit]]) -> None:
        if edits:
            self.llm.apply_model(functools.partial(vllm_hooks.install_hooks, edits))

    def install_tagged(self, tables: dict[int, list[list[float]]]) -> str | None:
        """Hook per-request additions (:func:`vllm_hooks.install_tagged`) on every worker;
        None, or why they cannot be (then none is left installed, and the reason is kept:
        :attr:`tagged_problem`, so later calls go one condition at a time at once)."""
        if self.tagged_problem is not None:
            return self.tagged_problem
        try:
            reasons = self.llm.collective_rpc(vllm_hooks.install_tagged, args=(tables,))
        except Exception as exc:  # an RPC this vLLM does not take
            reasons = [f"collective_rpc failed: {type(exc).__name__}: {exc}"]
        problem = next((r for r in reasons if r), None)
        if problem is not None:
            self.remove()
            self.tagged_problem = problem
        return problem

    def tagged_report(self) -> tuple[list[str], set[int]]:
        """Every worker's problems and the tags whose tokens were steered, since install."""
        problems: list[str] = []
        seen: set[int] = set()
        for worker_problems, worker_seen in self.llm.collective_rpc(vllm_hooks.tagged_report):
            problems += [p for p in worker_problems if p not in problems]
            seen.update(worker_seen)
        return problems, seen

    def reset_prefix_cache(self) -> None:
        if self._llm is not None:
            self._llm.reset_prefix_cache()

    def remove(self) -> None:
        if self._llm is not None:
            self._llm.apply_model(vllm_hooks.remove_hooks)

    def hooks_left(self) -> int:
        """Hooks on the decoder layers of every worker (0 when steering left it clean)."""
        if self._llm is None:
            return 0
        return sum(self._llm.apply_model(vllm_hooks.hook_count))

    def close(self) -> None:
        """Stop the engine's processes now (they would otherwise live until the interpreter
        exits, holding memory); the next use starts a fresh engine."""
        if self._llm is not None:
            llm, self._llm = self._llm, None
            llm.llm_engine.engine_core.shutdown()

    def lora_request(self, folder: Path) -> Any:
        """vLLM's request for a PEFT LoRA folder. An engine started without LoRA support
        (or for a smaller rank) is stopped first and the next use starts one with it: vLLM
        fixes both at start-up, and wraps every linear layer only when asked to."""
        import json

        from vllm.lora.request import LoRARequest

        rank = int(json.loads((folder / "adapter_config.json").read_text()).get("r", 8))
        needed = next((r for r in LORA_RANKS if r >= rank), None)
        if needed is None:
            raise ModelLoadError(
                f"{folder}: LoRA rank {rank} is above vLLM's largest ({LORA_RANKS[-1]})"
            )
        if needed > self._lora_rank:
            self.close()
            self._lora_rank = needed
        key = str(folder.resolve())
        lora_id = self._lora_ids.setdefault(key, len(self._lora_ids) + 1)
        return LoRARequest(f"adapter-{lora_id}", lora_id, key)

    def generate(
        self,
        prompts: list[list[int]],
        params: list[Any],
        lora: Any = None,
        salts: list[str | None] | None = None,
    ) -> list[Any]:
        """One engine call; ``lora``: a :meth:`lora_request` applied to every request;
        ``salts``: each request's prefix-cache salt (requests whose prompts are steered
        differently must not share cached blocks, which hold the steered keys and values)."""
        from vllm.inputs import TokensPrompt

        inputs = []
        for k, ids in enumerate(prompts):
            salt = salts[k] if salts is not None else None
            inputs.append(
                TokensPrompt(prompt_token_ids=ids)
                if salt is None
                else TokensPrompt(prompt_token_ids=ids, cache_salt=salt)
            )
        return list(self.llm.generate(inputs, params, use_tqdm=False, lora_request=lora))
