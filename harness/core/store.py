"""The append-only JSONL store, and the reader for JSONL data files.

Files are appended one line per record and flushed after each line: a kill at any moment
can tear at most the line being written. That torn tail is detected on the next open and
cut off; a damaged line anywhere else is an error naming the file and line, never
silently skipped.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from harness.core.errors import StoreError
from harness.core.params import MAX_SEED

_IDS_MEMO: dict[str, Any] = {}


def _is_text(v: Any) -> bool:
    return isinstance(v, str)


def _is_seed(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_SEED


def _is_value(v: Any) -> bool:
    return v is None or (isinstance(v, int | float) and not isinstance(v, bool))


def _is_finite_value(v: Any) -> bool:
    return _is_value(v) and (v is None or math.isfinite(v))


def _is_prompt_id(v: Any) -> bool:
    return isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool))


Fields = dict[str, tuple[Callable[[Any], bool], str]]
"""Field name -> (check, what it must be): what a reader relies on in every record."""

TEXT = (_is_text, "a string")
SEED = (_is_seed, "an integer in 0..2^63-1")
VALUE = (_is_value, "a number or null")

GENERATION_CHECKS: Fields = {
    "condition": TEXT,
    "prompt_id": TEXT,
    "seed": SEED,
    "text": TEXT,
}
"""What every reader of ``generations.jsonl`` relies on."""

STORED_GENERATION_CHECKS: Fields = {"id": TEXT, **GENERATION_CHECKS}
"""What the stages rely on in the generations of their own run directory."""

SCORE_CHECKS: Fields = {
    "condition": TEXT,
    "prompt_id": (_is_prompt_id, "a string or an integer"),
    "seed": SEED,
    "scorer": TEXT,
    "metric": TEXT,
    "value": VALUE,
}
"""What every reader of ``scores.jsonl`` relies on."""

FOREIGN_SCORE_CHECKS: Fields = {
    **SCORE_CHECKS,
    "value": (_is_finite_value, "a finite number or null"),
}
"""What ``analyze`` accepts in a ``scores.jsonl`` made elsewhere: numbers and null as values,
integers as seeds; NaN and Infinity are refused (read with ``finite=True``)."""

STORED_SCORE_CHECKS: Fields = {
    "id": TEXT,
    "generation_id": TEXT,
    "scorer_key": TEXT,
    **SCORE_CHECKS,
}
"""What the score stage relies on in the scores of its own run directory."""


def _field_problem(obj: dict[str, Any], fields: Fields) -> str | None:
    for name, (ok, what) in fields.items():
        if name not in obj:
            return f"no '{name}' field"
        if not ok(obj[name]):
            shown = repr(obj[name])
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            return f"'{name}' must be {what} (got {shown})"
    return None


def _refuse_constant(name: str) -> Any:
    raise _NonFinite(f"{name} is not a number JSON allows")


class _NonFinite(ValueError):
    pass


class JsonlStore:
    """An append-only JSONL file of records; ``fields`` are checked in every record read
    (a record that lacks one, or has it with the wrong type, is an error naming the file
    and line, never a crash further on)."""

    def __init__(self, path: Path, fields: Fields | None = None, finite: bool = False):
        self.path = Path(path)
        self.fields = fields
        self.finite = finite
        """Refuse the NaN and Infinity tokens (not JSON) in the lines read."""

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
        """Every complete record, streamed line by line (memory does not grow with the
        file); a torn last line is skipped, damage elsewhere raises."""
        if not self.path.exists():
            return
        with self.path.open("rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                # A last line without its newline is a record torn by a kill, which the
                # writer will cut off on its next open.
                if not raw.endswith(b"\n"):
                    return
                if not raw.strip():
                    continue
                try:
                    text = raw.decode("utf-8")
                    obj = (
                        json.loads(text, parse_constant=_refuse_constant)
                        if self.finite
                        else json.loads(text)
                    )
                except (json.JSONDecodeError, UnicodeDecodeError, _NonFinite) as exc:
                    msg = (
                        exc.msg
                        if isinstance(exc, json.JSONDecodeError)
                        else (str(exc) if isinstance(exc, _NonFinite) else "not UTF-8")
                    )
                    raise StoreError(
                        f"{self.path}:{lineno}: damaged record ({msg}); only a torn last "
                        "line is repaired automatically: fix or delete this line"
                    ) from None
                if not isinstance(obj, dict):
                    raise StoreError(f"{self.path}:{lineno}: a record must be a JSON object")
                if self.fields is not None:
                    problem = _field_problem(obj, self.fields)
                    if problem is not None:
                        raise StoreError(
                            f"{self.path}:{lineno}: damaged record ({problem}); fix or "
                            "delete this line"
                        )
                yield obj

    def read(self) -> list[dict[str, Any]]:
        return list(self.iter_dicts())

    def ids(self) -> set[str]:
        """The ids of the stored records (memoised per file state within a process: the
        stages of one command ask for them in turn, and a store only changes by growing)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return set()
        memo = (str(self.path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
        if _IDS_MEMO.get("state") != memo:
            _IDS_MEMO.clear()  # one store's ids at a time: memory stays one set
            _IDS_MEMO["ids"] = frozenset(
                str(r["id"]) for r in JsonlStore(self.path).iter_dicts() if "id" in r
            )
            _IDS_MEMO["state"] = memo
        return set(_IDS_MEMO["ids"])

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
    labels); a line that is not UTF-8 or not a JSON object raises ``error`` naming the file
    and line. Numbers must be finite: ``NaN`` and ``Infinity`` are not JSON."""
    with Path(path).open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise error(f"{path}:{lineno}: not UTF-8 text; save the file as UTF-8") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line, parse_constant=_refuse_constant)
            except json.JSONDecodeError as exc:
                raise error(f"{path}:{lineno}: invalid JSON ({exc.msg})") from None
            except _NonFinite as exc:
                raise error(f"{path}:{lineno}: {exc}; write a finite number or null") from None
            if not isinstance(obj, dict):
                raise error(f"{path}:{lineno}: each line must be a JSON object")
            yield lineno, obj
