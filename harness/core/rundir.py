"""Every file name and path of a run directory, in one place.

A run directory holds the stored spec, the manifest, the two append-only stores, the
analysis, cached vectors, localisations and search results. Code elsewhere asks a
:class:`RunDir` for a path instead of writing a file name, so the layout is defined once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

SPEC = "spec.json"
RESCORE = "spec.rescore.json"
MANIFEST = "manifest.json"
GENERATIONS = "generations.jsonl"
SCORES = "scores.jsonl"
ANALYSIS = "analysis.json"
LOCK = ".lock"
LOCK_OWNER = ".lock-owner.json"
JUDGE_BATCHES = "judge-batches.json"


@dataclass(frozen=True)
class RunDir:
    """A run directory (it need not exist yet)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def spec(self) -> Path:
        return self.root / SPEC

    @property
    def rescore(self) -> Path:
        """The scorer settings of the latest ``rescore``, kept beside the stored spec."""
        return self.root / RESCORE

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST

    @property
    def generations(self) -> Path:
        return self.root / GENERATIONS

    @property
    def scores(self) -> Path:
        return self.root / SCORES

    @property
    def analysis(self) -> Path:
        return self.root / ANALYSIS

    @property
    def lock(self) -> Path:
        """The OS lock file held by the one writer (:mod:`harness.core.lock`)."""
        return self.root / LOCK

    @property
    def lock_owner(self) -> Path:
        """Who holds the lock (PID, since, command), written by the holder beside it."""
        return self.root / LOCK_OWNER

    @property
    def judge_batches(self) -> Path:
        """Judge batches submitted to a provider's batch API and not yet collected, so a
        run killed while waiting polls them again instead of paying for new ones."""
        return self.root / JUDGE_BATCHES

    @property
    def vectors(self) -> Path:
        """Cached extracted steering vectors (``<content id>.safetensors``)."""
        return self.root / "vectors"

    def located(self, key: str) -> Path:
        """A localisation for ``layers = "locate:<pairs>"`` (``<content id>.json``, with its
        ``.md`` table and ``.png`` figure beside it)."""
        return self.root / "locate" / f"{key}.json"

    def search_result(self, condition: str) -> Path:
        """The outcome of a condition's coefficient search."""
        return self.root / "search" / f"{condition}.json"

    def search_points(self, condition: str) -> RunDir:
        """The run directory of a search's evaluated points (a small run of its own)."""
        return RunDir(self.root / "search" / condition)

    def __str__(self) -> str:
        return str(self.root)


def set_aside_path(path: Path) -> Path:
    """Where a damaged artefact is moved so that nothing is lost when a fresh one is
    started: ``manifest.json`` -> ``manifest.json.damaged-20250101T120000Z``."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return path.with_name(f"{path.name}.damaged-{stamp}")
