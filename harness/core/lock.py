"""One writer per run directory: an OS file lock, and who holds it.

Why: two commands appending to the same stores duplicate records and lose manifest
updates without any error. Every command that writes a run directory (``run``,
``generate``, ``score``, and the coefficient search inside ``run``) holds
:class:`RunLock` for as long as it writes; a second writer is refused at once, before it
writes anything, with one line naming the holder. Readers (``analyze`` of a finished run,
``report``, ``compare``, ``power``) take no lock.

The lock is ``filelock``'s OS lock on ``RunDir.lock``: the kernel drops it when its
process dies, however it dies, so a killed run's lock is simply taken by the next writer.
Who holds it (PID, since when, which command) is written beside it in
``RunDir.lock_owner`` after the lock is taken; that file is only a description. A dead
writer leaves it behind, so it is overwritten by the next holder and never trusted on its
own: :func:`lock_holder` believes it only while its process is alive and the lock is held.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from filelock import FileLock, Timeout

from harness.core.errors import UserError
from harness.core.files import pid_alive, remove_stale_temps, write_json_atomic
from harness.core.ids import utc_now
from harness.core.rundir import RunDir

log = logging.getLogger(__name__)


class RunInUseError(UserError, RuntimeError):
    """Another process is writing this run directory."""


class NotARunDirError(UserError, NotADirectoryError):
    """The run directory's path names something that is not a directory."""


def _read_owner(run: RunDir) -> dict[str, Any] | None:
    try:
        data = json.loads(run.lock_owner.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("pid"), int) else None


def _lock_is_held(run: RunDir) -> bool:
    """Whether some process holds the lock now (a non-blocking try, released at once)."""
    if not run.lock.exists():
        return False
    probe = FileLock(str(run.lock))
    try:
        probe.acquire(timeout=0)
    except Timeout:
        return True
    probe.release()
    return False


def lock_holder(run: RunDir) -> dict[str, Any] | None:
    """The live writer of ``run`` (``pid``, ``since``, ``command``, ``token``), or None.

    The owner file is believed only while its process is alive and the lock is held, so a
    killed writer's leftover never counts; the lock itself is only probed when the file
    names a live process (a probe is a brief take, which could refuse a writer starting at
    that very moment)."""
    owner = _read_owner(run)
    if owner is None or not pid_alive(int(owner["pid"])):
        return None
    return owner if _lock_is_held(run) else None


def in_use_message(run: RunDir, wait: float = 1.0) -> str:
    """The refusal, naming the holder. A holder writes its owner file just after taking
    the lock, so a live owner is waited for briefly (``wait`` seconds) before the refusal
    falls back to "another process"."""
    deadline = time.monotonic() + wait
    while True:
        owner = _read_owner(run)
        if owner is not None and pid_alive(int(owner["pid"])):
            who = f"PID {owner['pid']} since {owner.get('since', '?')}"
            break
        if time.monotonic() >= deadline:
            who = "another process"
            break
        time.sleep(0.02)
    return f"{run} is in use by {who}; wait for it or use another --output-dir"


class RunLock:
    """Hold the run directory's lock while writing it (a context manager).

    ``token`` identifies this hold; the manifest session started under it records the
    same token, so a reader can tell the session that is really running."""

    def __init__(self, run: RunDir | Path, command: str):
        self.run = run if isinstance(run, RunDir) else RunDir(run)
        self.command = command
        self.token = secrets.token_hex(8)
        self._lock = FileLock(str(self.run.lock))
        self.held = False

    def acquire(self) -> RunLock:
        """Take the lock or raise :class:`RunInUseError` at once, having written nothing but
        the (empty) lock file itself."""
        if self.run.root.exists() and not self.run.root.is_dir():
            raise NotARunDirError(
                f"{self.run}: not a directory; name a run directory in --output-dir "
                "(or output_dir in the spec)"
            )
        self.run.root.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            raise RunInUseError(in_use_message(self.run)) from None
        self.held = True
        try:
            # A previous holder killed mid-way may have left its owner file and the temp
            # files of atomic writes it never finished; both are ours to replace now.
            write_json_atomic(
                self.run.lock_owner,
                {
                    "pid": os.getpid(),
                    "since": utc_now(),
                    "command": self.command,
                    "token": self.token,
                },
            )
            removed = remove_stale_temps(self.run.root)
            if removed:
                log.info("%s: removed %d unfinished temp file(s)", self.run, removed)
        except BaseException:
            self.release()
            raise
        return self

    def release(self) -> None:
        if not self.held:
            return
        # The description goes first: while it exists, the lock is held.
        with contextlib.suppress(FileNotFoundError):
            if (_read_owner(self.run) or {}).get("token") == self.token:
                self.run.lock_owner.unlink()
        self._lock.release()
        self.held = False

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
