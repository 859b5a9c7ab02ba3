"""Content-addressed ids and timestamps.

A record's id is a hash of the canonical JSON of everything that determines its content,
so a re-run finds finished work by id and does only what is missing.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def content_id(obj: Any, length: int = 20) -> str:
    """Hex digest of the canonical JSON of ``obj`` (sorted keys, no whitespace)."""
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()[:length]


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
