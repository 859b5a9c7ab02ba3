"""Cached artefacts are keyed by everything they depend on: reused while that is
unchanged, recomputed when any of it changes (search results, extracted vectors, the
analysis, the report's figures)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from small_run import build_finished_run, copy_run

from harness.core.rundir import RunDir
from harness.core.store import JsonlStore
from harness.report import plots
from harness.report.markdown import write_report
from harness.run import runner
from harness.run.plan import build_plan
from harness.run.runner import open_plan, run_stages
from harness.run.score_records import GENERATION_FIELDS
from harness.run.stages import load_generations
from harness.steering.base import MethodContext
from harness.steering.methods.activation import ActivationParams, ActivationSteering


@pytest.fixture(scope="module")
def finished_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_finished_run(tiny_model_dir, tmp_path_factory.mktemp("finished"))


SEARCH = """
[conditions.search]
layers = [1]
start = 0.5
steps = 2
trait = "lexicon/fear"
guards = [{ metric = "lexicon/joy", max = 100 }]
"""


def search_spec(make_spec) -> Path:
    path = make_spec(n_prompts=4, seeds="[0]")
    text = path.read_text().replace(
        '[[conditions]]\nname = "persona"', SEARCH.strip() + '\n\n[[conditions]]\nname = "persona"'
    )
    path.write_text(text)
    return path


def pending(spec: Path) -> list[str]:
    plan, _ = open_plan(spec)
    return [c.name for c in plan.pending_searches]


def test_a_search_result_is_reused_until_what_it_depends_on_changes(
    make_spec, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    spec = search_spec(make_spec)
    plan, source = open_plan(spec)
    run_stages(plan, source, ("generate",))
    stored = RunDir(tmp_path / "run").search_result("act")
    first = json.loads(stored.read_text())
    assert first["key"] and first["chosen"] is not None
    assert pending(spec) == []  # unchanged: reused

    text = spec.read_text()
    # what the search does not depend on: another condition
    spec.write_text(text.replace("you are afraid .", "you are scared ."))
    assert pending(spec) == []
    # what it depends on: its guard, its trait's scorer, its seeds, the decoding, the
    # baseline, the steered layer's vector source
    changes = [
        ("max = 100", "max = 99"),
        ('type = "lexicon"', 'type = "lexicon"\nparams = { inflect = true }'),
        ("steps = 2", "steps = 2\nseeds = [3]"),
        ("temperature = 0.7", "temperature = 0.8"),
        ("[[conditions]]", '[baseline]\nname = "base"\nmethod = "none"\n\n[[conditions]]'),
        ('pairs = "fear"', 'pairs = "joy"'),
    ]
    for old, new in changes:
        assert old in text, old
        spec.write_text(text.replace(old, new, 1))
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert pending(spec) == ["act"], new
        assert any(str(stored) in r.getMessage() for r in caplog.records), new

    # searched again with the new guard: a new key, and the new guard in the result
    spec.write_text(text.replace("max = 100", "max = 99"))
    plan, source = open_plan(spec)
    run_stages(plan, source, ("generate",))
    second = json.loads(stored.read_text())
    assert second["key"] != first["key"]
    assert second["guards"] == [{"metric": "lexicon/joy", "max": 99.0}]
    assert pending(spec) == []


def test_an_extracted_vector_is_cached_under_the_key_of_what_made_it(tiny_lm, tmp_path: Path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"positive": "i am afraid .", "negative": "i am here ."}\n')
    ctx = MethodContext("act", base_dir=tmp_path, cache_dir=tmp_path / "cache")

    def prepare(layers: list[int]) -> str:
        params = ActivationParams.model_validate(
            {"layers": layers, "coefficient": 2, "vector": {"pairs": str(pairs)}}
        )
        return str(ActivationSteering(params, ctx).prepare(tiny_lm)["vector"])

    a = prepare([1])
    assert prepare([1]) == a  # reused
    pairs.write_text('{"positive": "i am terrified .", "negative": "i am here ."}\n')
    b = prepare([1])
    c = prepare([0, 1])
    assert a != b  # new contents: a new vector
    assert c == b  # other layers: the same extraction (every layer is extracted at once)
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 2


def test_the_analysis_is_reused_until_its_inputs_change(
    finished_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    run = RunDir(copy_run(finished_run, tmp_path))
    before = run.analysis.read_bytes()
    calls: list[int] = []
    real = runner.analyze_run_dir

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "analyze_run_dir", counting)
    plan, source = open_plan(run.root)
    run_stages(plan, source, ("generate", "score", "analyze"))
    assert calls == [] and run.analysis.read_bytes() == before  # nothing changed: reused

    # another bootstrap setting: recomputed
    plan, source = open_plan(run.root)
    plan.spec.analysis.bootstrap_resamples = 100
    run_stages(plan, source, ("analyze",))
    assert calls == [1]
    key_100 = json.loads(run.analysis.read_text())["key"]
    assert key_100 != json.loads(before)["key"]

    # a score record superseded (a retried null, a repaired value): recomputed
    plan, source = open_plan(run.root)
    last = list(JsonlStore(run.scores).iter_dicts())[-1]
    JsonlStore(run.scores).append([{**last, "value": 99.0}])
    run_stages(plan, source, ("analyze",))
    assert calls == [1, 1]
    redone = json.loads(run.analysis.read_text())
    assert redone["key"] != json.loads(before)["key"]
    comp = next(
        c
        for c in redone["comparisons"]
        if c["condition"] == last["condition"] and c["metric"] == last["metric"]
    )
    old = next(
        c
        for c in json.loads(before)["comparisons"]
        if c["condition"] == last["condition"] and c["metric"] == last["metric"]
    )
    assert comp["delta"] != old["delta"]


def figure_files(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.glob("*.png")}


def test_figures_are_reused_until_their_inputs_change(
    finished_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    run = copy_run(finished_run, tmp_path)
    out = tmp_path / "rep.md"
    write_report(run, out)
    pngs = {
        p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (tmp_path / "rep").glob("*.png")
    }
    assert "forest.png" in pngs

    drawn: list[Path] = []
    real = plots.save_figure

    def counting(fig, path):  # type: ignore[no-untyped-def]
        drawn.append(Path(path))
        return real(fig, path)

    monkeypatch.setattr(plots, "save_figure", counting)
    text = write_report(run, out).read_text()
    assert drawn == []  # unchanged inputs: not drawn again
    assert "](rep/forest.png)" in text
    after = {
        p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (tmp_path / "rep").glob("*.png")
    }
    assert after == pngs

    # a figure file gone: drawn again
    (tmp_path / "rep" / "forest.png").unlink()
    write_report(run, out)
    assert {p.name for p in drawn} == set(pngs)

    # the analysis changed: drawn again
    drawn.clear()
    analysis = json.loads((run / "analysis.json").read_text())
    analysis["comparisons"] = analysis["comparisons"][:1]
    (run / "analysis.json").write_text(json.dumps(analysis))
    write_report(run, out)
    assert [p.name for p in drawn if p.name == "forest.png"] == ["forest.png"]


def test_the_score_stage_holds_only_the_fields_it_needs(finished_run: Path, tmp_path: Path):
    run = copy_run(finished_run, tmp_path)
    plan, _ = open_plan(run)
    plan = build_plan(plan.spec, str(run / "spec.json"), run)
    ids = {it.id for it in plan.items[:3]}
    got = load_generations(plan, ids)
    assert [g["id"] for g in got] == [it.id for it in plan.items[:3]]
    assert all(tuple(g) == GENERATION_FIELDS for g in got)
