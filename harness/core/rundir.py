"""Every file name and path of a run directory, in one place.

A run directory holds the stored spec, the manifest, the two append-only stores, the
analysis, cached vectors and search results. Code elsewhere asks a :class:`RunDir` for a
path instead of writing a file name, so the layout is defined once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SPEC = "spec.json"
MANIFEST = "manifest.json"
GENERATIONS = "generations.jsonl"
SCORES = "scores.jsonl"
ANALYSIS = "analysis.json"


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
    def vectors(self) -> Path:
        """Cached extracted steering vectors (``<content id>.safetensors``)."""
        return self.root / "vectors"

    def search_result(self, condition: str) -> Path:
        """The outcome of a condition's coefficient search."""
        return self.root / "search" / f"{condition}.json"

    def search_points(self, condition: str) -> RunDir:
        """The run directory of a search's evaluated points (a small run of its own)."""
        return RunDir(self.root / "search" / condition)

    def __str__(self) -> str:
        return str(self.root)
