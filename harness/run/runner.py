"""The runner: open a spec or run directory as a plan, and chain the stages (locate, search,
generate, score, analyze, report) on it inside one manifest session, holding the run
directory's lock (:mod:`harness.core.lock`) from before its first write to after its last.

The stages themselves live in :mod:`harness.run.stages` (generate, score),
:mod:`harness.run.search` and, for ``locate:`` layers, :mod:`harness.locate.layers`;
analysis and the report are their own packages, called here.
The analysis is keyed (:func:`analysis_key`) by everything it is computed from and reused
while that key is unchanged, so a re-run with nothing new does not recompute it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from harness import __version__
from harness.analysis.analyze import analyze_run_dir
from harness.analysis.classified import analyze_classification
from harness.config.spec import Spec, load_spec, validate_spec
from harness.core.artifacts import (
    AnalysisDoc,
    ArtifactError,
    ChosenPoint,
    ConditionInfo,
    RescoredScorers,
    StoredAnalysis,
    StoredSpec,
    read_artifact,
)
from harness.core.errors import SpecError
from harness.core.files import file_sha256, write_json_atomic
from harness.core.ids import content_id, utc_now
from harness.core.lock import RunLock
from harness.core.manifest import Manifest
from harness.core.registry import closest
from harness.core.rundir import RunDir
from harness.core.store import STORED_GENERATION_CHECKS, JsonlStore
from harness.locate.layers import run_locate
from harness.report.markdown import write_report
from harness.run.overlap import OverlappedScoring, overlappable
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
    engine: str | None = None
    address: str | None = None
    workers: int | None = None
    baseline_only: bool = False
    """Drop the spec's conditions: generate, score and report the baseline alone."""


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
    execution = {
        k: v
        for k, v in (("engine", ov.engine), ("address", ov.address), ("workers", ov.workers))
        if v is not None
    }
    if execution:
        spec.execution = spec.execution.model_copy(update=execution)
    if ov.output_dir:
        run_dir = Path(ov.output_dir)
    if ov.report_path:
        spec.report.path = ov.report_path
    if ov.baseline_only:
        spec.conditions = []
    return build_plan(spec, source, run_dir), source


def condition_info(plan: Plan) -> dict[str, ConditionInfo]:
    """Per condition, what the analysis and report may need to know beyond its name; a
    condition without its own ``targets`` gets the spec's ``[analysis] primary``."""
    out = {}
    primary = list(plan.spec.analysis.primary)
    for c in plan.conditions:
        info = c.condition_info()
        if "metrics" not in info and primary and c.name != plan.spec.baseline.name:
            info["metrics"] = primary
        out[c.name] = info
    return out


def analysis_key(plan: Plan, baseline: str, n_boot: int) -> str:
    """Hash of everything :func:`analyze_plan` computes from: the score records it reads
    (the bytes of ``scores.jsonl`` and which generations and scorers it keeps), the
    baseline, the conditions and their info, the analysis options, the bootstrap settings
    and the harness version."""
    opts = plan.spec.analysis
    return content_id(
        {
            "scores": file_sha256(plan.run.scores, complete_lines=True),
            "generations": content_id([it.id for it in plan.items]),
            "scorers": [sc.key for sc in plan.scorers],
            "baseline": baseline,
            "conditions": [c.name for c in plan.conditions],
            "condition_info": condition_info(plan),
            "options": opts.model_dump(mode="json"),
            "bootstrap": {"resamples": n_boot, "seed": opts.bootstrap_seed},
            "harness": __version__,
        },
        length=32,
    )


def stored_analysis(plan: Plan, key: str) -> AnalysisDoc | None:
    """The stored analysis if it was computed from exactly these inputs; a damaged one is
    recomputed with a warning naming it."""
    path = plan.run.analysis
    if not path.exists():
        return None
    try:
        doc = read_artifact(path, StoredAnalysis, as_stored=True)
    except ArtifactError as exc:
        log.warning("%s: %s; recomputing it", path, exc.detail)
        return None
    return cast(AnalysisDoc, doc) if doc.get("key") == key else None


def shift_target(plan: Plan) -> str | None:
    """The class a classification task's shift plots follow: ``[analysis] target``, else
    the one class the conditions aim at (a class-mean vector's positive label), else
    none."""
    if plan.spec.analysis.target is not None:
        return plan.spec.analysis.target
    aimed = {t for c in plan.conditions for t in c.method.targets() if t in plan.labels}
    return aimed.pop() if len(aimed) == 1 else None


def shift_doses(plan: Plan) -> dict[str, float]:
    """Condition -> α for the points of a sweep (their coefficient), for dose-response."""
    doses = {}
    for c in plan.conditions:
        sweep = c.info.get("sweep")
        coefficient = sweep.get("coefficient") if isinstance(sweep, dict) else None
        if isinstance(coefficient, int | float) and not isinstance(coefficient, bool):
            doses[c.name] = float(coefficient)
    return doses


def current_classifications(plan: Plan) -> list[dict[str, Any]]:
    """This plan's classification records (records of items no longer planned skipped)."""
    wanted = {it.id for it in plan.items}
    return [
        rec
        for rec in JsonlStore(plan.run.generations, STORED_GENERATION_CHECKS).iter_dicts()
        if rec.get("id") in wanted
    ]


def classification_key(plan: Plan, baseline: str, n_boot: int) -> str:
    """Hash of everything a classification task's analysis is computed from: the bytes
    of ``generations.jsonl`` and which records it keeps, the baseline, the conditions,
    the classes, target and doses, the bootstrap settings and the harness version."""
    opts = plan.spec.analysis
    return content_id(
        {
            "generations": file_sha256(plan.run.generations, complete_lines=True),
            "items": content_id([it.id for it in plan.items]),
            "baseline": baseline,
            "conditions": [c.name for c in plan.conditions],
            "condition_info": condition_info(plan),
            "labels": plan.labels,
            "target": shift_target(plan),
            "doses": shift_doses(plan),
            "bootstrap": {"resamples": n_boot, "seed": opts.bootstrap_seed},
            "harness": __version__,
        },
        length=32,
    )


def analyze_plan(plan: Plan, baseline: str | None = None, n_boot: int | None = None) -> AnalysisDoc:
    """Analyse this plan's current scores (records of items no longer planned are left
    out), or return the stored analysis when its inputs are unchanged. A classification
    task is analysed from its classification records instead (no scores)."""
    opts = plan.spec.analysis
    baseline = baseline or plan.spec.baseline.name
    n_boot = opts.bootstrap_resamples if n_boot is None else n_boot
    classify = plan.task == "classify"
    key = (classification_key if classify else analysis_key)(plan, baseline, n_boot)
    stored = stored_analysis(plan, key)
    if stored is not None:
        log.info("%s: inputs unchanged, analysis reused", plan.run.analysis)
        return stored
    if classify:
        return analyze_classification(
            plan.run,
            current_classifications(plan),
            baseline=baseline,
            labels=plan.labels,
            target=shift_target(plan),
            doses=shift_doses(plan),
            n_boot=n_boot,
            boot_seed=opts.bootstrap_seed,
            condition_order=[c.name for c in plan.conditions],
            condition_info=condition_info(plan),
            key=key,
        )
    return analyze_run_dir(
        plan.run,
        baseline,
        current_scores(plan),
        n_boot=n_boot,
        boot_seed=opts.bootstrap_seed,
        condition_order=[c.name for c in plan.conditions],
        condition_info=condition_info(plan),
        options=opts.model_dump(mode="json"),
        key=key,
    )


@dataclass
class RunSummary:
    run_dir: Path
    report: Path | None = None
    stages: dict[str, StageResult] = field(default_factory=dict)
    searches: dict[str, ChosenPoint | None] = field(default_factory=dict)
    throughput: dict[str, Any] | None = None
    """This session's generation and scoring pace (as in its manifest session)."""


def run_stages(
    plan: Plan, source: str, stages: tuple[str, ...] = STAGES, overlap: bool = True
) -> RunSummary:
    """Run ``stages`` on ``plan`` as the run directory's one writer: a second writer is
    refused (:class:`harness.core.lock.RunInUseError`) before it writes anything. With
    ``overlap``, scorers that need no device score texts while they are generated
    (:mod:`harness.run.overlap`); the records are the same either way."""
    command = " ".join(stages)
    with RunLock(plan.run, command) as lock:
        if plan.pending_searches or plan.pending_locates:
            # a writer that held the lock before may have finished them
            plan = build_plan(plan.spec, source, plan.run_dir)
        return _run_locked(plan, source, stages, command, lock.token, overlap)


def merge_results(a: StageResult, b: StageResult) -> StageResult:
    """One stage's result from two parts (overlapped scorers, then the others)."""
    details = dict(b.details)
    for key, value in a.details.items():
        details[key] = details.get(key, 0) + value
    return StageResult(a.done_before + b.done_before, a.done_now + b.done_now, details)


def rescore(run_dir: Path, spec_file: Path | None = None, names: Sequence[str] = ()) -> RunSummary:
    """Score a run's stored texts with the current scorer settings of its spec file, then
    analyse and re-render, without loading the generator (unless a scorer itself needs it,
    as ``fluency`` does).

    The settings come from ``spec_file`` (default: the file the run was made from, named in
    ``spec.json``): all its scorers, or only those named in ``names``, which replace the
    stored scorers of the same name or are added. ``spec.json`` is left as it is; the run's
    scorers from now on are recorded beside it in ``spec.rescore.json`` (with the stored
    ones, and where they came from), which ``score``, ``analyze``, ``report`` and a resumed
    ``run RUN_DIR`` read. Running the spec file again stores it whole and drops that file.
    Texts already scored under a scorer's current settings (its content key) are not
    scored again."""
    run = RunDir(run_dir)
    stored = load_run_spec(run.root)
    raw = read_artifact(run.spec, StoredSpec, "run the spec file again to store it")
    path = spec_file or Path(str(raw.get("source") or ""))
    if not path.is_file() or path.resolve() == run.spec.resolve():
        raise SpecError(
            str(run.spec),
            [
                f"rescore reads the scorer settings from the run's spec file, and "
                f"'{path}' is not one; name it with --spec PATH"
            ],
        )
    current = load_spec(path)
    labels = [s.label for s in current.scorers]
    unknown = [n for n in names if n not in labels]
    if unknown:
        hint = closest(unknown[0], labels)
        raise SpecError(
            str(path),
            [
                f"--scorer: {unknown} not among the scorers of {path.name} ({', '.join(labels)})"
                + (f"; did you mean '{hint}'?" if hint else "")
            ],
        )
    chosen = [s for s in current.scorers if not names or s.label in names]
    by_label = {s.label: s for s in stored.scorers}
    for s in chosen:
        by_label[s.label] = s
    spec = stored.model_copy(update={"scorers": list(by_label.values())})
    spec._base_dir = stored._base_dir
    source = str(run.spec)
    plan = build_plan(spec, source, run.root)
    stages = ("score", "analyze", "report")
    with RunLock(plan.run, "rescore") as lock:
        record: RescoredScorers = {
            "created": utc_now(),
            "source": str(path),
            "scorers": [s.model_dump(mode="json") for s in spec.scorers],
            "replaced": [s.label for s in chosen],
            "previous": [
                s.model_dump(mode="json")
                for s in validate_spec(dict(raw["spec"]), source, stored._base_dir).scorers
            ],
        }
        write_json_atomic(run.rescore, record)
        return _run_locked(plan, source, stages, "rescore", lock.token, store_spec=False)


def _run_locked(
    plan: Plan,
    source: str,
    stages: tuple[str, ...],
    command: str,
    token: str,
    overlap_ok: bool = True,
    store_spec: bool = True,
) -> RunSummary:
    if store_spec:
        save_spec(plan, source)
    manifest = Manifest(plan.run.manifest)
    manifest.start(command, session_id=token)
    summary = RunSummary(plan.run_dir)
    models = ModelHolder(plan, manifest)  # loaded on first use, shared by the stages
    try:
        if "generate" in stages and plan.pending_locates:
            log.info("stage locate")
            for request in plan.pending_locates:
                run_locate(models.get(), request)
            # The conditions with located layers now resolve to their numbers.
            plan = build_plan(plan.spec, source, plan.run_dir)
            models.plan = plan
        if "generate" in stages and plan.pending_searches:
            log.info("stage search")
            for cond in plan.pending_searches:
                result = run_search(plan, cond, models)
                chosen = result["chosen"]
                summary.searches[cond.name] = chosen
            # The searched conditions now resolve to their chosen points.
            plan = build_plan(plan.spec, source, plan.run_dir)
            models.plan = plan
        overlap = None
        both = "generate" in stages and "score" in stages
        if overlap_ok and both and (alongside := overlappable(plan)):
            log.info("scoring with %s alongside generation", ", ".join(s.name for s in alongside))
            overlap = OverlappedScoring(plan, alongside, manifest).start()
        if "generate" in stages:
            log.info("stage generate")
            try:
                feed = overlap.feed if overlap else None
                summary.stages["generate"] = generate_stage(plan, manifest, models, feed)
            except BaseException:
                if overlap is not None:
                    overlap.abort()
                raise
        if "score" in stages:
            log.info("stage score")
            later = plan.scorers
            early = StageResult()
            if overlap is not None:
                early = overlap.finish()
                later = [sc for sc in plan.scorers if sc not in overlap.scorers]
            late = score_stage(plan, manifest, models, later)
            summary.stages["score"] = merge_results(early, late)
        if "analyze" in stages:
            log.info("stage analyze")
            analyze_plan(plan)
        # The session is closed before the report so the report shows it finished.
        summary.throughput = (manifest.session or {}).get("throughput")
        manifest.finish("ok")
        if "report" in stages:
            log.info("stage report")
            summary.report = write_report(plan.run, plan.report_path)
    except BaseException as exc:
        manifest.finish("interrupted" if isinstance(exc, KeyboardInterrupt) else f"error: {exc}")
        raise
    return summary
