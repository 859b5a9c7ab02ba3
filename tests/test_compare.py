"""`steer-harness compare`: leaderboard order, comparability warnings, combined forest."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from synthetic_run import build_run, degenerate_records, non_numbers, spec_dict, write_generations

from harness.cli import main
from harness.report.compare import (
    BoardRow,
    comparability_warnings,
    leaderboards,
    load_entries,
    sort_rows,
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """a and b: same setup, different data; c: other model, temperature, seeds and prompts."""
    root = tmp_path_factory.mktemp("cmp")
    recs = degenerate_records()
    build_run(root / "a", recs, spec_dict("a"))
    shifted = [
        {**r, "value": r["value"] + 0.5}
        if r["condition"] == "calm_prompt" and isinstance(r["value"], float)
        else r
        for r in recs
    ]
    build_run(root / "b", shifted, spec_dict("b"))
    spec_c = spec_dict("c", temperature=1.0, seeds=[0, 1])
    spec_c["spec"]["model"]["id"] = "other-model"
    build_run(root / "c", recs, spec_c)
    write_generations(root / "c" / "generations.jsonl", ["baseline"], ["p0", "p1", "p9"])
    return {"a": root / "a", "b": root / "b", "c": root / "c"}


def test_identical_setups_give_no_warning(runs):
    assert comparability_warnings(load_entries([runs["a"], runs["b"]])) == []


def test_every_difference_is_named(runs):
    warnings = comparability_warnings(load_entries([runs["a"], runs["c"]]))
    text = "\n".join(warnings)
    assert 'models differ** — a: id="tiny"; c: id="other-model"' in text
    assert "decoding settings differ** — a: temperature=0.7; c: temperature=1.0" in text
    assert "seeds differ** — a: [0, 1, 2]; c: [0, 1]" in text
    assert "prompts differ** — a: 8 prompts; c: 3 prompts; 2 shared by all" in text
    assert len(warnings) == 4


def test_missing_spec_and_scorer_settings_are_reported(runs, tmp_path):
    d = tmp_path / "nospec"
    d.mkdir()
    (d / "analysis.json").write_text((runs["a"] / "analysis.json").read_text())
    spec = spec_dict("e")
    spec["spec"]["scorers"][0]["params"] = {"lexicon": "custom.csv"}
    build_run(tmp_path / "e", degenerate_records(), spec)
    warnings = comparability_warnings(load_entries([runs["a"], d, tmp_path / "e"]))
    assert warnings[0].startswith("**no spec.json** for nospec")
    assert any(w.startswith("**scorer `lex` is configured differently**") for w in warnings)
    assert any("prompts not checked** for nospec" in w for w in warnings)


def row(run: str, d: float | None) -> BoardRow:
    return BoardRow(run, "c", "s", "m", 10, d, None, None, "v", {})


def test_sort_orders():
    rows = [row("w", 0.1), row("x", None), row("y", -0.9), row("z", 0.5)]
    assert [r.run for r in sort_rows(rows, "d")] == ["z", "w", "y", "x"]
    assert [r.run for r in sort_rows(rows, "abs-d")] == ["y", "z", "w", "x"]
    assert [r.run for r in sort_rows(rows, "input")] == ["w", "x", "y", "z"]
    with pytest.raises(ValueError, match="unknown sort"):
        sort_rows(rows, "p")


def test_leaderboards_have_a_row_per_run_and_condition_sorted_by_d(runs):
    entries = load_entries([runs["a"], runs["b"], runs["a"]])  # a given twice: once
    assert [e.label for e in entries] == ["a", "b"]
    boards = leaderboards(entries)
    fear = boards[("lex", "fear")]
    assert [(r.run, r.condition) for r in fear][-2:] == [("a", "empty"), ("b", "empty")]
    ds = [r.d for r in fear if r.d is not None]
    assert ds == sorted(ds, reverse=True) and len(ds) == 4
    for r in fear:
        a = json.loads((runs[r.run] / "analysis.json").read_text())
        c = next(
            c for c in a["comparisons"] if c["condition"] == r.condition and c["metric"] == "fear"
        )
        assert (r.n, r.d, r.seed_sd, r.verdict) == (
            c["n"],
            c["cohens_d"],
            c["seed_sd_d"],
            c["verdict"],
        )
    only = leaderboards(entries, metrics=["joy"])
    assert list(only) == [("lex", "joy")]


def test_compare_command_writes_report_and_combined_forest(runs, tmp_path, capsys, monkeypatch):
    from harness.report import plots

    seen: dict[str, Any] = {}
    real = plots.forest_figure

    def spy(rows: Any, title: str = "") -> Any:
        seen["rows"] = rows
        return real(rows, title)

    monkeypatch.setattr(plots, "forest_figure", spy)
    out = tmp_path / "cmp.md"
    rc = main(["compare", str(runs["a"]), str(runs["c"]), "--out", str(out), "--metric", "fear"])
    assert rc == 0 and capsys.readouterr().out.strip() == f"comparison: {out}"
    text = out.read_text()
    assert "These runs differ; their effect sizes are not directly comparable" in text
    assert "](cmp/forest.png)" in text and (tmp_path / "cmp" / "forest.png").stat().st_size > 0
    table = text[text.index("### lex/fear") :]
    body = [ln for ln in table.splitlines() if re.match(r"\| \d+ \|", ln)]
    assert [ln.split("|")[1].strip() for ln in body] == ["1", "2", "3", "4", "5", "6"]
    labels = [r.label for r in seen["rows"]]
    assert labels == [f"{ln.split('|')[2].strip()} · {ln.split('|')[3].strip(' `')}" for ln in body]
    assert non_numbers(text) == []


def test_compare_needs_analysis(tmp_path, capsys):
    assert main(["compare", str(tmp_path), "--out", str(tmp_path / "x.md")]) == 2
    assert "no analysis.json" in capsys.readouterr().err


def test_leaderboards_show_p_paired_t_and_p_holm(runs):
    from harness.report.compare import render_compare
    from harness.report.format import fmt_p

    entries = load_entries([runs["a"], runs["b"]])
    text = render_compare(entries, leaderboards(entries))
    fear = text[text.index("### lex/fear") :].split("\n### ")[0]
    header = next(ln for ln in fear.splitlines() if ln.startswith("| #"))
    assert "| p paired t | p Holm | verdict |" in header
    a = json.loads((runs["a"] / "analysis.json").read_text())
    c = next(c for c in a["comparisons"] if c["condition"] == "fear_act" and c["metric"] == "fear")
    row = next(ln for ln in fear.splitlines() if "| a | `fear_act` |" in ln)
    cells = [x.strip() for x in row.split("|")[1:-1]]
    assert cells[6:8] == [fmt_p(c["p_paired_t"]), fmt_p(c["p_holm"])]
