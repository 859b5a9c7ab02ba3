"""Everything a report section may read, loaded once from a run directory's records.

The stores are not loaded whole: :class:`StoredRecords` streams a store afresh each time
a section iterates it, and what the sections need of the generations (the prompt order,
the sample pairs) is gathered in a few passes that keep only that, so rendering a report
takes memory independent of the number of records. The small artefacts (analysis, spec,
manifest) are validated when read (:func:`harness.core.artifacts.read_artifact`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from harness.analysis.table import Table, score_table
from harness.core.artifacts import StoredAnalysis, read_artifact, stored_spec
from harness.core.manifest import read_manifest
from harness.core.rundir import RunDir
from harness.core.store import GENERATION_CHECKS, SCORE_CHECKS, Fields, JsonlStore


class StoredRecords:
    """The records of an append-only store, streamed from disk on each iteration."""

    def __init__(self, path: Path, fields: Fields | None = None):
        self.path = Path(path)
        self.fields = fields
        """The fields every record must have (checked as it is read)."""

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return JsonlStore(self.path, self.fields).iter_dicts()

    def __bool__(self) -> bool:
        return next(iter(self), None) is not None


Records = list[dict[str, Any]] | StoredRecords


@dataclass
class RunData:
    """Everything a report section may read, loaded once from the run directory."""

    run_dir: Path
    analysis: dict[str, Any]
    spec: dict[str, Any] | None = None
    manifest: dict[str, Any] | None = None
    generations: Records = field(default_factory=list)
    """generations.jsonl records (a list, or the store streamed: iterate, never index)."""
    report_path: Path | None = None
    scores: Records = field(default_factory=list)
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

    @cached_property
    def prompt_order(self) -> tuple[list[str], list[int]]:
        """(prompt ids in the order of the generations, their seeds sorted): one pass."""
        prompts: dict[str, None] = {}
        seeds: set[int] = set()
        for g in self.generations:
            prompts.setdefault(g["prompt_id"], None)
            seeds.add(g["seed"])
        return list(prompts), sorted(seeds)

    def sample_pairs(
        self, conditions: Iterable[str], baseline: str, k: int
    ) -> dict[str, list[tuple[dict[str, Any], dict[str, Any]]]]:
        """Per condition, up to ``k`` (baseline, steered) generation pairs on the same keys
        for every condition: prompt i shown with seed i mod S, in prompt order. Two passes
        over the generations beyond :attr:`prompt_order`; only the chosen records are kept."""
        conditions = list(conditions)
        prompt_ids, seeds = self.prompt_order
        if not seeds or k <= 0:
            return {c: [] for c in conditions}
        shown = {pid: seeds[i % len(seeds)] for i, pid in enumerate(prompt_ids)}
        wanted = {baseline, *conditions}
        present: set[tuple[str, str]] = set()
        for g in self.generations:
            if g["condition"] in wanted and shown.get(g["prompt_id"]) == g["seed"]:
                present.add((g["condition"], g["prompt_id"]))
        chosen: dict[str, list[str]] = {}
        for cond in conditions:
            pids = [p for p in prompt_ids if (baseline, p) in present and (cond, p) in present]
            chosen[cond] = pids[:k]
        need = {(c, p) for c, pids in chosen.items() for p in pids}
        need |= {(baseline, p) for pids in chosen.values() for p in pids}
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for g in self.generations:
            key = (g["condition"], g["prompt_id"])
            if key in need and shown.get(g["prompt_id"]) == g["seed"]:
                found[key] = g
        return {
            cond: [(found[(baseline, p)], found[(cond, p)]) for p in pids]
            for cond, pids in chosen.items()
        }


def load_run(run_dir: Path) -> RunData:
    run = RunDir(run_dir)
    if not run.analysis.exists():
        raise FileNotFoundError(
            f"{run_dir}: no {run.analysis.name}; run `steer-harness analyze {run_dir}`"
        )
    fix = f"run `steer-harness analyze {run_dir}` to write it again"
    analysis = read_artifact(run.analysis, StoredAnalysis, fix, as_stored=True)
    spec = None
    if run.spec.exists():
        fix = "run its spec file again to store it"
        spec = stored_spec(run.spec, run.rescore, fix)
    return RunData(
        run.root,
        dict(analysis),
        spec,
        read_manifest(run),
        StoredRecords(run.generations, GENERATION_CHECKS) if run.generations.exists() else [],
        scores=StoredRecords(run.scores, SCORE_CHECKS) if run.scores.exists() else [],
    )
