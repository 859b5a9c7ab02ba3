"""Where the decoder blocks of each architecture family live (the residual stream)."""

from __future__ import annotations

from typing import Any

from torch import nn

from harness.core.errors import ModelLoadError

# Where decoder layers live, by architecture family. Each entry is an attribute path
# from the CausalLM wrapper to the ModuleList of decoder blocks.
LAYER_PATHS: tuple[tuple[str, str], ...] = (
    ("model.layers", "Llama, Qwen, Mistral, Gemma, Phi-3, OLMo style"),
    ("model.language_model.layers", "Gemma 3 / multimodal wrappers"),
    ("transformer.h", "GPT-2, GPT-J, Falcon, BLOOM style"),
    ("gpt_neox.layers", "GPT-NeoX, Pythia"),
    ("model.decoder.layers", "OPT style"),
)


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The ModuleList of decoder blocks, whose outputs are the residual stream."""
    for path, _family in LAYER_PATHS:
        obj: Any = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, nn.ModuleList) and len(obj) > 0:
            return obj
    families = "; ".join(f"{p} ({f})" for p, f in LAYER_PATHS)
    raise ModelLoadError(
        f"cannot find the decoder layers of {type(model).__name__}: looked for {families}. "
        "Steering methods that hook layers do not support this architecture yet."
    )
