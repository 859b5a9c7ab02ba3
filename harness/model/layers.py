"""Where the blocks of each architecture family live (the residual stream).

Decoder LMs (and their sequence-classification variants, which keep the same trunk) are
found through :data:`LAYER_PATHS`; encoder classifiers (BERT, MiniLM, DistilBERT,
RoBERTa, ...) through :data:`ENCODER_LAYER_PATHS`. Either way layer ``i`` is block ``i``'s
output and :data:`~harness.config.vectors.EMBEDDING` the input of block 0, so every
steering method means the same place in both kinds of model.
"""

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

# Where encoder blocks live in a sequence classifier (``...ForSequenceClassification``)
# or a bare encoder (``BertModel``, whose blocks are at ``encoder.layer``).
ENCODER_LAYER_PATHS: tuple[tuple[str, str], ...] = (
    ("bert.encoder.layer", "BERT, MiniLM"),
    ("roberta.encoder.layer", "RoBERTa, XLM-RoBERTa"),
    ("distilbert.transformer.layer", "DistilBERT"),
    ("electra.encoder.layer", "ELECTRA"),
    ("deberta.encoder.layer", "DeBERTa, DeBERTa-v2/v3"),
    ("encoder.layer", "bare BERT-style encoders"),
    ("transformer.layer", "bare DistilBERT"),
)


def _find(model: nn.Module, paths: tuple[tuple[str, str], ...]) -> nn.ModuleList | None:
    for path, _family in paths:
        obj: Any = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, nn.ModuleList) and len(obj) > 0:
            return obj
    return None


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The ModuleList of decoder blocks, whose outputs are the residual stream."""
    found = _find(model, LAYER_PATHS)
    if found is not None:
        return found
    families = "; ".join(f"{p} ({f})" for p, f in LAYER_PATHS)
    raise ModelLoadError(
        f"cannot find the decoder layers of {type(model).__name__}: looked for {families}. "
        "Steering methods that hook layers do not support this architecture yet."
    )


def block_layers(model: nn.Module) -> nn.ModuleList:
    """The blocks of a decoder LM or of an encoder (classifier): the decoder table first,
    so a causal LM resolves exactly as :func:`decoder_layers` does."""
    found = _find(model, LAYER_PATHS) or _find(model, ENCODER_LAYER_PATHS)
    if found is not None:
        return found
    families = "; ".join(f"{p} ({f})" for p, f in LAYER_PATHS + ENCODER_LAYER_PATHS)
    raise ModelLoadError(
        f"cannot find the decoder or encoder layers of {type(model).__name__}: looked for "
        f"{families}. Steering methods that hook layers do not support this architecture yet."
    )
