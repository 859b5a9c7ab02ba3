"""Data shipped with steer-harness: prompt sets, contrastive pairs, lexicons, labelled sets,
judge templates. Everything here was written for this project and is MIT-licensed.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent


def data_path(relative: str) -> Path:
    """Path of a shipped data file, e.g. ``data_path("sets/everyday.jsonl")``."""
    return ROOT / relative
