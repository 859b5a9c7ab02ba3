"""Generation and score records, their content-addressed ids, and the append-only JSONL store.

A record's id is a hash of everything that determines its content (for a generation:
model, condition spec, prompt, seed, decoding settings), so a re-run finds finished work
by id and does only what is missing. Files are appended one line per record and flushed
after each line: a kill at any moment can tear at most the line being written. That torn
tail is detected on the next open and cut off; a damaged line anywhere else is an error
naming the file and line, never silently skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def content_id(obj: Any, length: int = 20) -> str:
    """Hex digest of the canonical JSON of ``obj`` (sorted keys, no whitespace)."""
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()[:length]


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Record(BaseModel):
    model_config = ConfigDict(extra="allow")


class GenerationRecord(Record):
    id: str
    condition: str
    method: str
    prompt_id: str
    seed: int
    prompt: str = Field(description="The prompt as written in the prompt set.")
    rendered_prompt: str = Field(description="What the model saw, after template and method.")
    text: str = Field(description="The generated continuation only.")
    n_prompt_tokens: int
    n_new_tokens: int
    finish: str = Field(description="'eos' or 'length'.")
    model: str
    created: str = Field(default_factory=utc_now)


class ScoreRecord(Record):
    id: str
    generation_id: str
    condition: str
    prompt_id: str
    seed: int
    scorer: str
    scorer_key: str = Field(description="Hash of the scorer's type and parameters.")
    metric: str
    value: float | None
    reason: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)
    created: str = Field(default_factory=utc_now)


class StoreError(RuntimeError):
    pass


class JsonlStore:
    """An append-only JSONL file of records."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def repair(self) -> int:
        """Cut a torn last line (no trailing newline). Returns the number of bytes dropped."""
        if not self.path.exists():
            return 0
        size = self.path.stat().st_size
        if size == 0:
            return 0
        with self.path.open("rb+") as fh:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) == b"\n":
                return 0
            # Walk back to the previous newline; everything after it is the torn record.
            pos = size - 1
            chunk = 4096
            keep = 0
            while pos > 0:
                start = max(0, pos - chunk)
                fh.seek(start)
                data = fh.read(pos - start)
                idx = data.rfind(b"\n")
                if idx >= 0:
                    keep = start + idx + 1
                    break
                pos = start
            fh.truncate(keep)
        return size - keep

    def iter_dicts(self) -> Iterator[dict[str, Any]]:
        """Every complete record; a torn last line is skipped, damage elsewhere raises."""
        if not self.path.exists():
            return
        with self.path.open("rb") as fh:
            lines = fh.read().split(b"\n")
        # After split, a file ending in "\n" has an empty last element; anything else there
        # is a record torn by a kill, which the writer will cut off on its next open.
        body, tail = lines[:-1], lines[-1]
        for lineno, raw in enumerate(body, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise StoreError(
                    f"{self.path}:{lineno}: damaged record ({exc.msg}); only a torn last "
                    "line is repaired automatically: fix or delete this line"
                ) from None
            if not isinstance(obj, dict):
                raise StoreError(f"{self.path}:{lineno}: a record must be a JSON object")
            yield obj
        del tail

    def read(self) -> list[dict[str, Any]]:
        return list(self.iter_dicts())

    def ids(self) -> set[str]:
        return {str(r["id"]) for r in self.iter_dicts() if "id" in r}

    def append(self, records: Iterable[BaseModel | dict[str, Any]]) -> int:
        """Append records, one write and flush per line; fsync once at the end."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.repair()
        n = 0
        with self.path.open("a", encoding="utf-8") as fh:
            for rec in records:
                obj = rec.model_dump(mode="json") if isinstance(rec, BaseModel) else rec
                fh.write(json.dumps(obj, ensure_ascii=False, allow_nan=False) + "\n")
                fh.flush()
                n += 1
            os.fsync(fh.fileno())
        return n


def read_jsonl(
    path: Path, error: type[Exception] = ValueError
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a data file (prompts, pairs, gold
    labels); a line that is not a JSON object raises ``error`` naming the file and line."""
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise error(f"{path}:{lineno}: invalid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise error(f"{path}:{lineno}: each line must be a JSON object")
        yield lineno, obj


def write_json_atomic(path: Path, obj: Any) -> None:
    """Replace a small JSON document atomically (write a temp file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    os.replace(tmp, path)
