"""The one device and dtype picker, for the generator and every model-using scorer."""

from __future__ import annotations

import torch


def pick_device(requested: str, fallback: str | None = None) -> str:
    """``requested`` unless it is ``"auto"``; then ``fallback`` (e.g. the run's generator
    device) when given, else CUDA, then Apple MPS, then the CPU."""
    if requested != "auto":
        return requested
    if fallback:
        return fallback
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(requested: str, device: str) -> torch.dtype:
    if requested != "auto":
        return getattr(torch, requested)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32
