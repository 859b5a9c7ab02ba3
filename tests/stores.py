"""Comparing run directories' stores in tests (local vs Ray engine, before vs after a kill)."""

from __future__ import annotations

import json
from pathlib import Path

from harness.core.store import JsonlStore


def records(path: Path) -> list[str]:
    """The store's records as canonical JSON without their timestamps, asserting that no
    id occurs twice."""
    recs = list(JsonlStore(path).iter_dicts())
    ids = [r["id"] for r in recs]
    assert len(ids) == len(set(ids)), f"{path}: duplicated ids"
    return sorted(
        json.dumps({k: v for k, v in r.items() if k != "created"}, sort_keys=True) for r in recs
    )
