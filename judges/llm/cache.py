"""A persistent cache of judge answers in one SQLite file shared by every run.

Why: judge calls dominate a benchmark's cost and time, and the same (judge, rubric, text)
recurs across re-runs, new run directories, added conditions and interrupted runs. Each
answer is written (and committed) the moment it arrives, so a run killed while judging
resumes without asking any answered call again.

What is stored is the judge's raw answer (top logprobs, the sampled text, or the local
model's number distribution), never a derived score: changing the number-mass threshold
or the aggregation reuses the cache. Failures are never stored, so they are retried by
the next scoring of that text.

The key is the SHA-256 of the canonical JSON of (provider identity, model, template
hash, rendered prompt, decoding parameters). The provider identity includes the base URL,
because the same model name on two servers need not be the same judge.

Location: ``cache_path`` in the scorer's params, else ``$STEER_HARNESS_JUDGE_CACHE``, else
``~/.cache/steer-harness/judge.sqlite``. WAL mode and a busy timeout let several processes
share the file; ``synchronous = NORMAL`` keeps a commit per answer cheap.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

ENV_VAR = "STEER_HARNESS_JUDGE_CACHE"
DEFAULT_PATH = Path("~/.cache/steer-harness/judge.sqlite")

SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    answer TEXT NOT NULL,
    created REAL NOT NULL
)
"""


def default_cache_path() -> Path:
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else DEFAULT_PATH.expanduser()


def cache_key(
    provider: dict[str, Any],
    model: str,
    template_sha256: str,
    prompt: str,
    decoding: dict[str, Any],
) -> str:
    """The content address of one judge call."""
    payload = {
        "provider": provider,
        "model": model,
        "template": template_sha256,
        "prompt": prompt,
        "decoding": decoding,
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class JudgeCache:
    """get/put of JSON answers by key; thread-safe; each put is committed at once."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            str(path), timeout=30.0, isolation_level=None, check_same_thread=False
        )
        self._conn.execute("PRAGMA busy_timeout = 30000")
        # WAL lets readers and one writer share the file; some network file systems lack it.
        with contextlib.suppress(sqlite3.OperationalError):
            self._conn.execute("PRAGMA journal_mode = WAL")
        # In WAL mode NORMAL syncs at checkpoints, not at every commit: a commit survives a
        # killed process (what resuming needs) and costs microseconds instead of an fsync
        # on the event loop per answer; only a power cut may lose the newest answers,
        # which a re-run asks again.
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.execute(SCHEMA)

    def get(self, key: str) -> Any | None:
        with self._lock:
            row = self._conn.execute("SELECT answer FROM answers WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, key: str, provider: str, model: str, answer: Any) -> None:
        blob = json.dumps(answer, ensure_ascii=False, allow_nan=False)
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO answers (key, provider, model, answer, created) "
                "VALUES (?, ?, ?, ?, ?)",
                (key, provider, model, blob, time.time()),
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM answers").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class NullCache:
    """Stands in when caching is off (``cache = false``): nothing is kept."""

    path: Path | None = None

    def get(self, key: str) -> Any | None:
        return None

    def put(self, key: str, provider: str, model: str, answer: Any) -> None:
        return None

    def __len__(self) -> int:
        return 0

    def close(self) -> None:
        return None
