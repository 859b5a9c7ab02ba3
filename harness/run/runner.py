"""The runner: open a spec or run directory as a plan, and chain the stages (search,
generate, score, analyze, report) on it inside one manifest session.

The stages themselves live in :mod:`harness.run.stages` (generate, score) and
:mod:`harness.run.search`; analysis and the report are their own packages, called here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.analysis.analyze import analyze_run_dir
from harness.config.spec import Spec, load_spec
from harness.core.artifacts import AnalysisDoc, ChosenPoint, ConditionInfo
from harness.core.manifest import Manifest
from harness.report.markdown import write_report
from harness.run.plan import Plan, build_plan, load_run_spec, save_spec
from harness.run.search import run_search
from harness.run.stages import (
    ModelHolder,
    StageResult,
    current_scores,
    generate_stage,
    score_stage,
)

log = logging.getLogger(__name__)

STAGES = ("generate", "score", "analyze", "report")


@dataclass
class Overrides:
    output_dir: str | None = None
    report_path: str | None = None
    device: str | None = None
    dtype: str | None = None


def open_plan(target: str | Path, overrides: Overrides | None = None) -> tuple[Plan, str]:
    """A spec file, or a run directory holding spec.json, checked and planned."""
    target = Path(target)
    ov = overrides or Overrides()
    spec: Spec
    run_dir: Path | None = None
    if target.is_dir():
        spec = load_run_spec(target)
        run_dir = target
        source = str(target / "spec.json")
    else:
        spec = load_spec(target)
        source = str(target)
    updates: dict[str, Any] = {}
    if ov.device:
        updates["device"] = ov.device
    if ov.dtype:
        updates["dtype"] = ov.dtype
    if updates:
        spec.model = spec.model.model_copy(update=updates)
    if ov.output_dir:
        run_dir = Path(ov.output_dir)
    if ov.report_path:
        spec.report.path = ov.report_path
    return build_plan(spec, source, run_dir), source


def condition_info(plan: Plan) -> dict[str, ConditionInfo]:
    """Per condition, what the analysis and report may need to know beyond its name."""
    return {c.name: c.condition_info() for c in plan.conditions}


def analyze_plan(
    plan: Plan, baseline: str | None = None, n_boot: int | None = None
) -> AnalysisDoc:
    """Analyse this plan's current scores (records of items no longer planned are left out)."""
    opts = plan.spec.analysis
    return analyze_run_dir(
        plan.run,
        baseline or plan.spec.baseline.name,
        current_scores(plan),
        n_boot=opts.bootstrap_resamples if n_boot is None else n_boot,
        boot_seed=opts.bootstrap_seed,
        condition_order=[c.name for c in plan.conditions],
        condition_info=condition_info(plan),
        options=opts.model_dump(mode="json"),
    )


@dataclass
class RunSummary:
    run_dir: Path
    report: Path | None = None
    stages: dict[str, StageResult] = field(default_factory=dict)
    searches: dict[str, ChosenPoint | None] = field(default_factory=dict)


def run_stages(plan: Plan, source: str, stages: tuple[str, ...] = STAGES) -> RunSummary:
    plan.run_dir.mkdir(parents=True, exist_ok=True)
    save_spec(plan, source)
    manifest = Manifest(plan.run.manifest)
    manifest.start(" ".join(stages))
    summary = RunSummary(plan.run_dir)
    models = ModelHolder(plan, manifest)  # loaded on first use, shared by the stages
    try:
        if "generate" in stages and plan.pending_searches:
            for cond in plan.pending_searches:
                result = run_search(plan, cond, models)
                chosen = result["chosen"]
                summary.searches[cond.name] = chosen
            # The searched conditions now resolve to their chosen points.
            plan = build_plan(plan.spec, source, plan.run_dir)
            models.plan = plan
        if "generate" in stages:
            summary.stages["generate"] = generate_stage(plan, manifest, models)
        if "score" in stages:
            summary.stages["score"] = score_stage(plan, manifest, models)
        if "analyze" in stages:
            analyze_plan(plan)
        # The session is closed before the report so the report shows it finished.
        manifest.finish("ok")
        if "report" in stages:
            summary.report = write_report(plan.run, plan.report_path)
    except BaseException as exc:
        manifest.finish("interrupted" if isinstance(exc, KeyboardInterrupt) else f"error: {exc}")
        raise
    return summary
