"""The run manifest: what produced these records (packages, model weights, device, times).

One JSON document per run directory, rewritten atomically. Each command that touches
the run appends a session, so a resumed run shows every session that contributed.
"""

from __future__ import annotations

import json
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from harness.core.files import write_json_atomic
from harness.core.ids import utc_now

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


class Manifest:
    def __init__(self, path: Path):
        self.path = path
        self.data: dict[str, Any] = (
            json.loads(path.read_text(encoding="utf-8")) if path.exists() else {"sessions": []}
        )
        self.session: dict[str, Any] | None = None

    def start(self, command: str) -> None:
        self.data.setdefault("created", utc_now())
        self.session = {
            "command": command,
            "started": utc_now(),
            "finished": None,
            "status": "running",
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
        write_json_atomic(self.path, self.data)
