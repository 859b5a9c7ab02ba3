"""Workflows (issue 13 point 5): the baseline alone, and `rescore` of stored texts with a
spec file's current scorers, without the generator, keeping the stored spec."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.core.store import JsonlStore


def read(path: Path) -> list[dict]:
    return JsonlStore(path).read()


def without_conditions(spec: Path) -> None:
    text = spec.read_text()
    start = text.index("[[conditions]]")
    end = text.index("[[scorers]]")
    spec.write_text(text[:start] + text[end:])


def test_a_spec_without_conditions_runs_the_baseline_alone(make_spec, tmp_path: Path, capsys):
    spec = make_spec(n_prompts=3, seeds="[0, 1]")
    without_conditions(spec)
    report = tmp_path / "r.md"
    assert main(["run", str(spec), "--report", str(report)]) == 0
    gens = read(tmp_path / "run" / "generations.jsonl")
    assert len(gens) == 6 and {g["condition"] for g in gens} == {"baseline"}
    scores = read(tmp_path / "run" / "scores.jsonl")
    assert len(scores) == 6 * 7  # 7 default lexicon categories per text
    analysis = json.loads((tmp_path / "run" / "analysis.json").read_text())
    assert analysis["conditions"] == ["baseline"] and analysis["comparisons"] == []
    assert "No comparisons" in report.read_text()


def test_baseline_only_leaves_the_conditions_out(make_spec, tmp_path: Path):
    spec = make_spec(n_prompts=2, seeds="[0]")
    assert main(["run", str(spec), "--baseline-only", "--report", str(tmp_path / "r.md")]) == 0
    gens = read(tmp_path / "run" / "generations.jsonl")
    assert [g["condition"] for g in gens] == ["baseline", "baseline"]
    # the full spec afterwards adds the conditions and reuses the baseline's texts
    assert main(["run", str(spec), "--report", str(tmp_path / "r.md")]) == 0
    gens = read(tmp_path / "run" / "generations.jsonl")
    assert len(gens) == 6 and [g["condition"] for g in gens].count("baseline") == 2


def test_rescore_uses_current_scorers_without_the_generator_and_keeps_spec_json(
    make_spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    spec = make_spec(n_prompts=2, seeds="[0]")
    report = tmp_path / "r.md"
    assert main(["run", str(spec), "--report", str(report)]) == 0
    run = tmp_path / "run"
    stored = (run / "spec.json").read_bytes()
    n_before = len(read(run / "scores.jsonl"))
    # the user edits the spec file's scorer: two opt-in categories
    spec.write_text(
        spec.read_text().replace(
            'type = "lexicon"\n',
            'type = "lexicon"\nparams = { categories = ["caution", "first_person"] }\n',
        )
    )

    def no_generator(*_a, **_k):
        raise AssertionError("rescore loaded the generator")

    monkeypatch.setattr("harness.run.stages.load_model", no_generator)
    capsys.readouterr()
    assert main(["rescore", str(run)]) == 0
    out = capsys.readouterr().out
    assert "spec.rescore.json (spec.json unchanged)" in out
    assert (run / "spec.json").read_bytes() == stored  # never overwritten
    record = json.loads((run / "spec.rescore.json").read_text())
    assert record["source"] == str(spec) and record["replaced"] == ["lexicon"]
    assert record["scorers"][0]["params"] == {"categories": ["caution", "first_person"]}
    assert record["previous"][0]["params"] == {}
    scores = read(run / "scores.jsonl")
    new = scores[n_before:]
    assert len(new) == 6 * 2 and {r["metric"] for r in new} == {"caution", "first_person"}
    analysis = json.loads((run / "analysis.json").read_text())
    assert {c["metric"] for c in analysis["comparisons"]} == {"caution", "first_person"}
    text = report.read_text()
    assert "caution" in text and "first_person" in text
    # later stages read the rescored scorers too; an unknown --scorer is one line
    assert main(["analyze", str(run)]) == 0
    analysis = json.loads((run / "analysis.json").read_text())
    assert {c["metric"] for c in analysis["comparisons"]} == {"caution", "first_person"}
    assert main(["rescore", str(run), "--scorer", "lexicn"]) == 2
    err = capsys.readouterr().err
    assert "--scorer: ['lexicn'] not among the scorers" in err and "did you mean 'lexicon'" in err
    # running the spec file again stores it whole and drops the rescore record
    assert main(["score", str(spec)]) == 0
    assert not (run / "spec.rescore.json").exists()
    assert json.loads((run / "spec.json").read_text())["spec"]["scorers"][0]["params"] == {
        "categories": ["caution", "first_person"]
    }
