"""The one atomic write: every artefact that is not an append-only store (analysis.json,
the manifest, search results, cached vectors, reports, figures) is written to a temp file
next to its target, flushed to disk and renamed over it, so a reader or a kill never sees
half a file. A kill between the two leaves only the temp file, which the next writer of
that run directory removes (:func:`remove_stale_temps`)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

_TEMP = re.compile(r"^\..+\.(\d+)\.[0-9a-f]{8}\.tmp$")


def write_atomic(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temp path beside ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        write(tmp)
        with tmp.open("rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_text_atomic(path: Path, text: str) -> Path:
    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    return write_atomic(path, write)


def write_json_atomic(path: Path, obj: Any) -> Path:
    """Replace a small JSON document atomically (no NaN: JSON has none)."""
    text = json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    return write_text_atomic(path, text)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (signal 0 checks without sending)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: alive, someone else's
        return True
    return True


def remove_stale_temps(root: Path, depth: int = 2) -> int:
    """Remove the temp files of :func:`write_atomic` calls whose process has died, in
    ``root`` and its folders down to ``depth`` levels. Returns how many went."""
    removed = 0
    patterns = [".*.tmp", *("/".join(["*"] * d + [".*.tmp"]) for d in range(1, depth + 1))]
    for pattern in patterns:
        for f in Path(root).glob(pattern):
            m = _TEMP.match(f.name)
            if m and f.is_file() and not pid_alive(int(m.group(1))):
                with contextlib.suppress(FileNotFoundError):
                    f.unlink()
                    removed += 1
    return removed


_SHA_MEMO: dict[tuple[str, int, int, int], str] = {}


def file_sha256(path: Path, complete_lines: bool = False) -> str | None:
    """SHA-256 of a file's bytes, streamed (None when it does not exist); with
    ``complete_lines``, of the bytes up to its last newline (an append-only store's torn
    tail is not part of it). Memoised per (path, size, mtime, inode) within a process, so
    the stages of one command that key on the same store read it once."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    memo = (f"{path.resolve()}|{complete_lines}", st.st_size, st.st_mtime_ns, st.st_ino)
    if memo in _SHA_MEMO:
        return _SHA_MEMO[memo]
    h = hashlib.sha256()
    pending = b""
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            if complete_lines:
                chunk = pending + chunk
                cut = chunk.rfind(b"\n") + 1
                h.update(chunk[:cut])
                pending = chunk[cut:]
            else:
                h.update(chunk)
    digest = h.hexdigest()
    _SHA_MEMO[memo] = digest
    return digest


def sha256_of(path: Path) -> str:
    """:func:`file_sha256` of a file that must exist (FileNotFoundError otherwise): the
    digest that keys a cache or a fingerprint by a file's exact bytes."""
    digest = file_sha256(path)
    if digest is None:
        raise FileNotFoundError(path)
    return digest
