"""Everything a report section may read, loaded once from a run directory's records."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from harness.analysis.table import Table, score_table
from harness.core.rundir import RunDir
from harness.core.store import JsonlStore


@dataclass
class RunData:
    """Everything a report section may read, loaded once from the run directory."""

    run_dir: Path
    analysis: dict[str, Any]
    spec: dict[str, Any] | None = None
    manifest: dict[str, Any] | None = None
    generations: list[dict[str, Any]] = field(default_factory=list)
    report_path: Path | None = None
    scores: list[dict[str, Any]] = field(default_factory=list)
    """scores.jsonl records (one per text x metric); empty when the file is absent."""
    figures: dict[str, Any] = field(default_factory=dict)
    """Figures written next to the report (harness.report.figures.FigureRef by key:
    ``forest``, ``dist:<scorer>``, ``dose:<group>``); empty when rendering without files."""

    @property
    def name(self) -> str:
        if self.spec:
            return str(self.spec["spec"]["name"])
        return self.run_dir.name

    @property
    def comparisons(self) -> list[dict[str, Any]]:
        return list(self.analysis.get("comparisons", []))

    @cached_property
    def score_table(self) -> Table:
        """The scores as (scorer, metric) -> condition -> (prompt_id, seed) -> value (NaN
        for null), restricted to the analysed conditions (harness.analysis.table)."""
        keep = set(self.analysis.get("conditions") or [])
        return score_table(r for r in self.scores if not keep or r.get("condition") in keep)


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def load_run(run_dir: Path) -> RunData:
    run = RunDir(run_dir)
    analysis = _read_json(run.analysis)
    if analysis is None:
        raise FileNotFoundError(
            f"{run_dir}: no {run.analysis.name}; run `steer-harness analyze {run_dir}`"
        )
    gens = JsonlStore(run.generations).read() if run.generations.exists() else []
    return RunData(
        run.root,
        analysis,
        _read_json(run.spec),
        _read_json(run.manifest),
        gens,
        scores=JsonlStore(run.scores).read() if run.scores.exists() else [],
    )
