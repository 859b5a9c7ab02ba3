"""What a run will take before it starts: judge calls and their cost, and generation time.

Why: the judge is the largest bill of a benchmark and generation its longest wait; both
are cheap to estimate from the plan, and ``steer-harness check`` shows them before any
work is done. Judge figures come from each scorer's ``estimate`` (the LLM judge's: calls x
typical tokens x the price table); the generation time uses the throughput this run
directory measured (from its records' timestamps) once it has generated anything, and is
left out before that: a guess from the model size would be worth less than no figure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from harness.core.manifest import read_manifest
from harness.core.store import JsonlStore
from harness.run.plan import Plan

MIN_RECORDS = 2


@dataclass(frozen=True)
class Throughput:
    """Generations per second measured over a span of the run's own records."""

    per_second: float
    records: int
    seconds: float


def measured_throughput(plan: Plan) -> Throughput | None:
    """Generations per second in the last session that generated: its generate stage's
    timing from the manifest, else the span from its first record to its last (record
    stamps have whole-second precision, so a short session may give none). Model loading
    is outside both. None before there are enough records."""
    path = plan.run.generations
    if not path.exists():
        return None
    manifest = read_manifest(plan.run) or {}
    for session in reversed(manifest.get("sessions", [])):
        # the generate stage's own timing (harness.run.throughput), when the session has it
        units = (session.get("throughput") or {}).get("generation") or []
        texts = sum(int(u.get("texts", 0)) for u in units)
        seconds = sum(float(u.get("seconds", 0.0)) for u in units)
        if texts >= MIN_RECORDS and seconds > 0:
            return Throughput(texts / seconds, texts, seconds)
    stamps: list[datetime] = []
    for rec in JsonlStore(path).iter_dicts():
        try:
            stamps.append(datetime.fromisoformat(str(rec.get("created"))))
        except ValueError:
            continue
    starts = []
    for s in manifest.get("sessions", []):
        try:
            starts.append(datetime.fromisoformat(str(s.get("started"))))
        except ValueError:
            continue
    for start in sorted(starts, reverse=True):  # the latest session with records
        mine = sorted(t for t in stamps if t >= start)
        if len(mine) >= MIN_RECORDS and mine[-1] > mine[0]:
            seconds = (mine[-1] - mine[0]).total_seconds()
            # The first record's batch was generated before its stamp: n-1 records in the span.
            return Throughput((len(mine) - 1) / seconds, len(mine), seconds)
    return None


def pending_generations(plan: Plan) -> int:
    if not plan.run.generations.exists():
        return len(plan.items)
    present = JsonlStore(plan.run.generations).ids()
    return sum(it.id not in present for it in plan.items)


def judge_estimates(plan: Plan) -> list[dict[str, Any]]:
    """Per scorer that can estimate its cost (the LLM judge), its figures for every planned
    generation (earlier sessions' measured tokens per call where the manifest has them)."""
    described = (read_manifest(plan.run) or {}).get("scorers", {})
    out = []
    for sc in plan.scorers:
        estimate = getattr(sc.scorer_cls, "estimate", None)
        if estimate is None:
            continue
        before = described.get(sc.name) or {}
        measured = before.get("usage") if before.get("key") == sc.key else None
        est = estimate(
            sc.params,
            plan.spec._base_dir,
            len(plan.items),
            plan.spec.generation.max_new_tokens,
            measured,
        )
        out.append({"scorer": sc.name, **est})
    return out
