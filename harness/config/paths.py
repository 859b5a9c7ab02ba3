"""Where a data file named in a spec is found: next to the spec, else shipped in ``prompts/``."""

from __future__ import annotations

from pathlib import Path

from prompts import data_path


def resolve_data_path(value: str, base_dir: Path) -> Path | None:
    """A data file named in a spec: relative to the spec file, else shipped in ``prompts/``."""
    candidates = [Path(value).expanduser()]
    if not candidates[0].is_absolute():
        candidates = [base_dir / value, data_path(value.removeprefix("prompts/"))]
    for c in candidates:
        if c.exists():
            return c.resolve()
    return None
