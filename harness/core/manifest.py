"""The run manifest: what produced these records (packages, model weights, device, times).

One JSON document per run directory, rewritten atomically by the directory's one writer
(:mod:`harness.core.lock`). Each command that writes the run appends a session, so a
resumed run shows every session that contributed.

A session records its end; one killed before it could (``kill -9``, a crash of the
machine) still says ``running`` in the file. Read back (:func:`read_manifest`), such a
session is ``interrupted (no end recorded)`` unless it is the session of the process that
holds the run's lock right now; the next writer also stores it so. A manifest that is not
valid JSON or not of its shape is moved aside (its bytes kept) by the next writer, which
starts a fresh one with a warning; a reader warns and shows none.
"""

from __future__ import annotations

import copy
import logging
import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from harness.core.artifacts import ArtifactError, ManifestDoc, read_artifact
from harness.core.files import write_json_atomic
from harness.core.ids import utc_now
from harness.core.lock import lock_holder
from harness.core.rundir import RunDir, set_aside_path
from harness.core.secrets import scrub_data

log = logging.getLogger(__name__)

RUNNING = "running"
INTERRUPTED = "interrupted (no end recorded)"

PACKAGES = (
    "steer-harness",
    "torch",
    "transformers",
    "accelerate",
    "gguf",
    "tokenizers",
    "safetensors",
    "numpy",
    "scipy",
    "statsmodels",
    "pydantic",
    "datasets",
)


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def _load(path: Path) -> dict[str, Any]:
    """The stored manifest (validated) or an :class:`ArtifactError`."""
    fix = "it is moved aside when the run is next written"
    return dict(read_artifact(path, ManifestDoc, fix, as_stored=True))


def resolve_sessions(data: dict[str, Any], holder_token: str | None) -> dict[str, Any]:
    """A copy of ``data`` whose sessions say what they are now: a session still marked
    running is running only if it is the lock holder's (``holder_token``)."""
    out = copy.deepcopy(data)
    for s in out.get("sessions", []):
        live = holder_token is not None and s.get("id") == holder_token
        if s.get("status") == RUNNING and not s.get("finished") and not live:
            s["status"] = INTERRUPTED
    return out


def read_manifest(run: RunDir) -> dict[str, Any] | None:
    """The manifest as a reader should see it (no lock taken, nothing written): None when
    absent or damaged (with a warning naming the file)."""
    if not run.manifest.exists():
        return None
    try:
        data = _load(run.manifest)
    except ArtifactError as exc:
        log.warning("%s", exc)
        return None
    holder = lock_holder(run)
    return resolve_sessions(data, holder.get("token") if holder else None)


class Manifest:
    """The manifest as its writer edits it. Open it while holding the run's lock."""

    def __init__(self, path: Path):
        self.path = path
        self.data: dict[str, Any] = {"sessions": []}
        if path.exists():
            try:
                self.data = _load(path)
            except ArtifactError as exc:
                aside = set_aside_path(path)
                os.replace(path, aside)
                log.warning(
                    "%s: %s; kept it as %s and started a fresh manifest",
                    path,
                    exc.detail,
                    aside.name,
                )
        self.session: dict[str, Any] | None = None

    def start(self, command: str, session_id: str | None = None) -> None:
        """Open this command's session. Its writer holds the run's lock, so an earlier
        session still marked running ended without recording it."""
        self.data.setdefault("created", utc_now())
        self.data = resolve_sessions(self.data, None)
        self.session = {
            "command": command,
            "started": utc_now(),
            "finished": None,
            "status": RUNNING,
            "id": session_id,
            "pid": os.getpid(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "packages": package_versions(),
        }
        self.data["sessions"].append(self.session)
        self.save()

    def update(self, **fields: Any) -> None:
        assert self.session is not None
        self.session.update(fields)
        self.save()

    def set_model(self, fingerprint: dict[str, Any], device: str, dtype: str) -> None:
        self.data["model"] = {**fingerprint, "device": device, "dtype": dtype}
        self.update(device=device, dtype=dtype)

    def finish(self, status: str = "ok") -> None:
        if self.session is not None:
            self.session.update(finished=utc_now(), status=status)
            self.save()

    def save(self) -> None:
        """Written scrubbed of secrets: a session's status can hold an error's text."""
        write_json_atomic(self.path, scrub_data(self.data))
