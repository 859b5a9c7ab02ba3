"""The stages on a tiny model, in process: records, resuming, analysis, report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import pytest

from harness.core.store import JsonlStore
from harness.run.runner import open_plan, run_stages
from harness.run.stages import batch_plan


def read(path: Path) -> list[dict]:
    return JsonlStore(path).read()


@pytest.fixture
def finished_run(make_spec, tmp_path: Path):
    spec = make_spec(n_prompts=4, seeds="[0, 1, 2]")
    plan, source = open_plan(spec)
    plan.spec.report.path = str(tmp_path / "report.md")
    summary = run_stages(plan, source)
    return plan, summary


def test_generation_records_pair_every_condition_with_its_baseline(finished_run):
    plan, summary = finished_run
    gens = read(plan.run.generations)
    assert len(gens) == 3 * 4 * 3 == summary.stages["generate"].done_now
    keys = {(g["condition"], g["prompt_id"], g["seed"]) for g in gens}
    for cond in ("act", "persona"):
        for g in gens:
            if g["condition"] == "baseline":
                assert (cond, g["prompt_id"], g["seed"]) in keys
    g = gens[0]
    for field in (
        "id",
        "condition",
        "method",
        "prompt_id",
        "seed",
        "prompt",
        "rendered_prompt",
        "text",
        "n_prompt_tokens",
        "n_new_tokens",
        "finish",
        "model",
        "created",
    ):
        assert field in g
    assert {it.id for it in plan.items} == {g["id"] for g in gens}


def test_score_records_carry_the_contract_fields(finished_run):
    plan, _ = finished_run
    scores = read(plan.run.scores)
    assert len(scores) == 36 * 7  # every generation x every lexicon category
    for s in scores:
        assert {"condition", "prompt_id", "seed", "scorer", "metric", "value"} <= set(s)
        assert (s["value"] is None) == (s.get("reason") is not None)
    assert {s["scorer"] for s in scores} == {"lexicon"}


def test_run_dir_holds_spec_manifest_and_analysis(finished_run):
    plan, summary = finished_run
    stored = json.loads(plan.run.spec.read_text())
    assert stored["spec"]["name"] == "t"
    manifest = json.loads(plan.run.manifest.read_text())
    assert manifest["model"]["device"] == "cpu" and manifest["model"]["dtype"] == "float32"
    assert set(manifest["model"]["files"]) == {"model.safetensors"}
    assert len(manifest["model"]["files"]["model.safetensors"]) == 64
    session = manifest["sessions"][-1]
    assert session["status"] == "ok" and session["finished"] >= session["started"]
    assert session["packages"]["torch"] and session["packages"]["transformers"]
    assert manifest["conditions"]["act"]["vector_norms"]["1"] > 0
    analysis = json.loads(plan.run.analysis.read_text())
    comps = analysis["comparisons"]
    assert {(c["condition"], c["metric"]) for c in comps} == {
        (cond, m)
        for cond in ("act", "persona")
        for m in ("fear", "joy", "anger", "sadness", "disgust", "surprise", "hedging")
    }
    assert all(c["n"] + c["n_dropped"] == 12 for c in comps)
    assert summary.report is not None and summary.report.exists()


def test_rerun_does_no_work_and_changes_nothing(finished_run):
    plan, _ = finished_run
    gens_before = plan.run.generations.read_bytes()
    scores_before = plan.run.scores.read_bytes()
    plan2, source = open_plan(plan.run_dir)
    plan2.spec.report.path = plan.spec.report.path
    summary = run_stages(plan2, source)
    assert summary.stages["generate"].done_now == 0
    assert summary.stages["score"].done_now == 0
    assert plan.run.generations.read_bytes() == gens_before
    assert plan.run.scores.read_bytes() == scores_before
    sessions = json.loads(plan.run.manifest.read_text())["sessions"]
    assert len(sessions) == 2
    assert "device" not in sessions[1]  # nothing to generate: the model was never loaded


def test_resume_after_losing_records_redoes_only_those(finished_run):
    plan, _ = finished_run
    gpath, spath = plan.run.generations, plan.run.scores
    gens = read(gpath)
    complete = {g["id"]: g["text"] for g in gens}
    # Simulate a kill: keep the first 20 generations, with a torn 21st line.
    lines = gpath.read_text().splitlines(keepends=True)
    gpath.write_text("".join(lines[:20]) + lines[20][:30])
    spath.unlink()
    plan2, source = open_plan(plan.run_dir)
    plan2.spec.report.path = plan.spec.report.path
    summary = run_stages(plan2, source)
    assert summary.stages["generate"].done_now == 16
    after = read(gpath)
    assert len(after) == 36 and len({g["id"] for g in after}) == 36
    # resumed batches are regenerated whole, so texts equal the uninterrupted run's
    assert {g["id"]: g["text"] for g in after} == complete


def test_partially_scored_generation_is_completed_without_duplicates(finished_run):
    plan, _ = finished_run
    spath = plan.run.scores
    lines = spath.read_text().splitlines(keepends=True)
    spath.write_text("".join(lines[:-3]))  # the last generation lost 3 of its 7 metrics
    plan2, source = open_plan(plan.run_dir)
    plan2.spec.report.path = plan.spec.report.path
    run_stages(plan2, source)
    scores = read(spath)
    assert len(scores) == len({s["id"] for s in scores}) == 36 * 7


def test_adding_a_condition_generates_only_the_new_one(finished_run, tmp_path: Path):
    plan, _ = finished_run
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(
        spec_path.read_text()
        + """
[[conditions]]
name = "persona2"
method = "prompt"
[conditions.params]
instruction = "you are happy ."
"""
    )
    plan2, source = open_plan(spec_path)
    plan2.spec.report.path = plan.spec.report.path
    summary = run_stages(plan2, source)
    assert summary.stages["generate"].done_now == 12
    assert summary.stages["score"].done_now == 12


def test_batches_have_identical_composition_across_conditions(finished_run):
    plan, _ = finished_run
    shapes = {
        c.name: [[(it.prompt.id, it.seed) for it in b] for b in batch_plan(plan, c.name)]
        for c in plan.conditions
    }
    assert shapes["baseline"] == shapes["act"] == shapes["persona"]


def test_report_shows_results_seeds_samples_and_manifest(finished_run):
    plan, summary = finished_run
    text = summary.report.read_text()
    for heading in (
        "## Setup",
        "## Results",
        "## Variation across seeds",
        "## Sample generations",
        "## Manifest",
    ):
        assert heading in text
    from harness.report.data import load_run

    samples = load_run(plan.run_dir).sample_pairs(["act"], "baseline", 3)["act"]
    assert len(samples) == 3 and len({(b["prompt_id"], b["seed"]) for b, _ in samples}) == 3
    for base, act in samples:
        assert (base["prompt_id"], base["seed"]) == (act["prompt_id"], act["seed"])
        assert f"| {base['text']} | {act['text']} |" in text
    analysis = json.loads(plan.run.analysis.read_text())
    c = next(
        c for c in analysis["comparisons"] if c["condition"] == "act" and c["metric"] == "fear"
    )
    assert "nan" not in text.lower().replace("nanny", "")
    assert f"| lexicon | fear | `act` | {c['n']} |" in text


class FlakyScorer:
    """Fails transiently on its first call for every text, then answers."""

    from harness.core.scoring import ScorerParams as Params

    metrics = ("m",)
    batch_size = 64
    calls: ClassVar[dict[str, int]] = {}

    def __init__(self, params, context):
        pass

    def score(self, items):
        from harness.core.scoring import ScoreResult

        out = []
        for it in items:
            n = FlakyScorer.calls.get(it.item_id, 0)
            FlakyScorer.calls[it.item_id] = n + 1
            out.append(
                {"m": ScoreResult.failed("timeout") if n == 0 else ScoreResult.ok(len(it.text))}
            )
        return out


def test_transient_failures_are_retried_on_the_next_run(make_spec, tmp_path: Path):
    spec = make_spec(n_prompts=2, seeds="[0]")
    flaky_scorer = '\n[[scorers]]\ntype = "test_pipeline:FlakyScorer"\nname = "flaky"\n'
    report = f'\n[report]\npath = "{tmp_path / "r.md"}"\n'  # every rerun writes it there
    spec.write_text(spec.read_text() + flaky_scorer + report)
    FlakyScorer.calls.clear()
    plan, source = open_plan(spec)
    first = run_stages(plan, source)
    assert first.stages["score"].details["retryable"] == 6
    flaky = [s for s in read(plan.run.scores) if s["scorer"] == "flaky"]
    assert all(s["value"] is None and s["extra"]["retry"] for s in flaky)
    second = run_stages(*open_plan(spec))
    assert second.stages["score"].done_now == 6 and not second.stages["score"].details.get(
        "retryable"
    )
    from harness.run.stages import current_scores

    current = [s for s in current_scores(plan) if s["scorer"] == "flaky"]
    assert len(current) == 6 and all(s["value"] is not None for s in current)
    analysis = json.loads(plan.run.analysis.read_text())
    assert any(c["scorer"] == "flaky" and c["n"] == 2 for c in analysis["comparisons"])
    third = run_stages(*open_plan(spec))
    assert third.stages["score"].done_now == 0
