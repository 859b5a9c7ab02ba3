"""Adapter steering: a PEFT LoRA adapter directory as a condition.

The adapter is injected into the model's modules when a batch starts and unloaded when it
ends (``PeftModel.unload``), so the base model is exactly restored between conditions.
Needs the ``peft`` package. On the vLLM backend a LoRA adapter runs through vLLM's own LoRA
support instead (:meth:`AdapterSteering.lora_adapter`, a ``LoRARequest`` per request).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import Field

from harness.config.paths import resolve_data_path
from harness.model.loading import LoadedModel, ModelInfo
from harness.steering.base import BaseMethod, BatchInfo, MethodContext, MethodParams


class AdapterParams(MethodParams):
    path: str = Field(description="A PEFT adapter folder (adapter_config.json + weights).")


class AdapterSteering(BaseMethod):
    """Generate with a PEFT LoRA adapter active; unload it afterwards."""

    Params = AdapterParams
    params: AdapterParams

    @classmethod
    def check(  # type: ignore[override]
        cls, params: AdapterParams, info: ModelInfo, context: MethodContext
    ) -> list[str]:
        path = resolve_data_path(params.path, context.base_dir)
        if path is None or not (path / "adapter_config.json").exists():
            return [
                f"params.path: '{params.path}' is not a PEFT adapter folder "
                "(no adapter_config.json)"
            ]
        try:
            import peft  # noqa: F401
        except ImportError:
            return ["params.path: the adapter method needs the peft package: pip install peft"]
        return []

    def folder(self) -> Path:
        path = resolve_data_path(self.params.path, self.context.base_dir)
        if path is None:
            raise FileNotFoundError(self.params.path)
        return path

    def fingerprint(self) -> dict[str, Any]:
        h = hashlib.sha256()
        for f in sorted(self.folder().iterdir()):
            if f.is_file() and (
                f.name == "adapter_config.json" or f.name.startswith("adapter_model")
            ):
                h.update(f.name.encode())
                h.update(f.read_bytes())
        return {"adapter_sha256": h.hexdigest()}

    def prepare(self, lm: LoadedModel) -> dict[str, Any]:
        import json

        config = json.loads((self.folder() / "adapter_config.json").read_text())
        return {
            "adapter": str(self.folder()),
            "peft_type": config.get("peft_type"),
            "base_model": config.get("base_model_name_or_path"),
        }

    def lora_adapter(self) -> Path | None:
        """The folder, for vLLM's own LoRA support, when the adapter is a LoRA (vLLM runs no
        other PEFT type; then None, and the vLLM backend refuses the condition)."""
        import json

        config = json.loads((self.folder() / "adapter_config.json").read_text())
        return self.folder() if config.get("peft_type") == "LORA" else None

    @contextmanager
    def apply(self, lm: LoadedModel, batch: BatchInfo) -> Iterator[None]:
        from peft import PeftModel

        wrapped = PeftModel.from_pretrained(lm.model, str(self.folder()), is_trainable=False)
        try:
            yield
        finally:
            wrapped.unload()
