"""The tiny random Llama the vLLM tests generate with, saved to a folder.

vLLM's CPU attention needs a real head size (64), so the model is wider than
tests/tiny.py's; the weights are large (``initializer_range = 0.5``) so that texts differ
between prompts, seeds and conditions.
"""

from __future__ import annotations

from pathlib import Path

HIDDEN = 128


def save_tiny_vllm(path: Path) -> Path:
    """Build the model (seed 0) with tests/tiny.py's word-level tokenizer; save both."""
    import torch
    import transformers as tf

    from tests.tiny import build_tokenizer

    tok = build_tokenizer(True)
    torch.manual_seed(0)
    cfg = tf.LlamaConfig(
        hidden_size=HIDDEN,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        vocab_size=len(tok),
        initializer_range=0.5,
    )
    model = tf.LlamaForCausalLM(cfg)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
