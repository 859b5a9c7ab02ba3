"""Where a data file named in a spec is found: next to the spec, else shipped in ``prompts/``.

A relative path in a spec may not climb out of the folder it is relative to (the spec's
folder for data files, the current directory for ``output_dir`` and ``report.path``) with
``..``: a spec passed around should not read or write beside it unannounced. An absolute
path is allowed, and the CLI prints it before any work starts.
"""

from __future__ import annotations

import os
from pathlib import Path

from harness.core.errors import UserError
from prompts import data_path


class PathEscapeError(UserError, ValueError):
    """A relative path in a spec that climbs out of its folder with ``..``."""

    def __init__(self, field: str, value: str, base: str):
        super().__init__(
            f"{field}: '{value}' climbs out of {base} with '..'; move the file under it "
            "or give an absolute path"
        )


def cache_root() -> Path:
    """Where the harness keeps what it builds once per machine (fitted classifier heads,
    converted models): ``$STEER_HARNESS_CACHE``, else ~/.cache/steer-harness."""
    return Path(os.environ.get("STEER_HARNESS_CACHE") or Path.home() / ".cache" / "steer-harness")


def climbs_out(value: str) -> bool:
    """True for a relative path that leaves its base folder (``../x``, ``a/../../x``)."""
    p = Path(value).expanduser()
    if p.is_absolute():
        return False
    norm = os.path.normpath(value)
    return norm == ".." or norm.startswith(".." + os.sep)


def is_absolute(value: str) -> bool:
    return Path(value).expanduser().is_absolute()


def check_contained(value: str, field: str, base: str = "the spec's folder") -> None:
    """Raise :class:`PathEscapeError` when ``value`` climbs out of its base folder."""
    if climbs_out(value):
        raise PathEscapeError(field, value, base)


def resolve_data_path(value: str, base_dir: Path) -> Path | None:
    """A data file named in a spec: relative to the spec file, else shipped in ``prompts/``.
    A relative path that climbs out with ``..`` is refused (:class:`PathEscapeError`)."""
    check_contained(value, "data file")
    candidates = [Path(value).expanduser()]
    if not candidates[0].is_absolute():
        candidates = [base_dir / value, data_path(value.removeprefix("prompts/"))]
    for c in candidates:
        if c.exists():
            return c.resolve()
    return None
