"""The markdown report and its figures on synthetic runs built through the real analysis:
degenerate data (all-equal values, < 3 pairs, a seed with one pair, NaN and infinity among
the scores, a condition with no pairs), sweeps, and the committed demo run.

The synthetic runs are built by tests/synthetic_run.py (shared with the plot, compare and
power tests).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from synthetic_run import (
    build_run,
    comp,
    non_numbers,
    section,
    spec_dict,
    sweep_records,
)

from harness.report.data import RunData, load_run
from harness.report.format import fmt, fmt_p
from harness.report.markdown import render, write_report

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def degenerate_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    run_dir = tmp_path_factory.mktemp("degenerate") / "run"
    return run_dir, build_run(run_dir)


@pytest.fixture(scope="module")
def rendered(degenerate_run: tuple[Path, dict[str, Any]]) -> tuple[Path, str, dict[str, Any]]:
    run_dir, analysis = degenerate_run
    out = run_dir.parent / "reports" / "synth.md"
    write_report(run_dir, out)
    return out, out.read_text(), analysis


def test_the_synthetic_run_is_as_degenerate_as_intended(degenerate_run):
    _, a = degenerate_run
    assert comp(a, "fear_act", "flat")["cohens_d"] is None
    assert comp(a, "fear_act", "holes")["n"] == 2
    assert comp(a, "empty", "fear")["n"] == 0
    calm = comp(a, "calm_prompt", "fear")
    assert calm["seed_n"][2] == 1 and calm["seed_d"][2] is None
    assert comp(a, "calm_prompt", "holes")["n_dropped"] == 3
    assert comp(a, "fear_act", "fear")["significant_holm"] is True


def test_no_nan_or_inf_printed_anywhere(rendered):
    _, text, _ = rendered
    assert non_numbers(text) == []
    assert non_numbers("| 1.00 | nan | inf | -Infinity | NaN |") == [
        "nan",
        "inf",
        "-Infinity",
        "NaN",
    ]
    assert non_numbers("steered missing/NaN in 7; infinite") == []
    assert fmt(math.nan) == fmt(math.inf) == fmt(None) == "n/a"
    assert fmt_p(math.nan) == "n/a"


def test_report_has_every_section_and_links_existing_figures(rendered):
    out, text, _ = rendered
    for heading in (
        "Summary",
        "Setup",
        "Results",
        "Verdicts",
        "Power and planning",
        "Robustness",
        "Variation across seeds",
        "Notes on missing values",
    ):
        assert f"\n## {heading}\n" in text
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert set(links) == {"synth/forest.png", "synth/dist-lex.png", "synth/dist-judge.png"}
    for link in links:
        png = (out.parent / link).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
    # the figure of each scorer sits under that scorer's results table
    results = section(text, "Results")
    assert results.index("### lex") < results.index("dist-lex.png") < results.index("### judge")


def test_results_tables_are_per_scorer_and_match_the_analysis(rendered):
    _, text, a = rendered
    results = section(text, "Results")
    c = comp(a, "fear_act", "fear")
    row = (
        f"| lex | fear | `fear_act` | {c['n']} | {fmt(c['mean_baseline'])} | "
        f"{fmt(c['mean_steered'])} | {fmt(c['delta'])} | {fmt(c['cohens_d'])} "
        f"[{fmt(c['d_ci_low'])}, {fmt(c['d_ci_high'])}] |"
    )
    assert row in results
    assert (
        "| lex | flat | `fear_act` | 24 | 1.00 | 1.00 | 0.00 | n/a | n/a | n/a | n/a |" in results
    )
    assert "| lex | fear | `empty` | 0 | n/a | n/a | n/a | n/a |" in results


def test_figure_notes_say_what_was_left_out(rendered):
    _, text, _ = rendered
    results = section(text, "Results")
    assert "`empty` · lex/fear: d undefined: fewer than 3 complete pairs (n=0)" in results
    assert "`fear_act` · lex/holes: d undefined: fewer than 3 complete pairs (n=2)" in results
    assert "`calm_prompt` · lex/fear: seed(s) 2 without a defined d" in results
    assert (
        "holes: fear_act 22 null/non-finite left out, calm_prompt 3 null/non-finite left out, "
        "empty no finite values (24 null/non-finite)" in results
    )


def test_summary_leads_with_targets_and_coherence(rendered):
    _, text, a = rendered
    summary = section(text, "Summary")
    lines = [ln for ln in summary.splitlines() if ln.startswith("- ")]
    assert lines[0].startswith("- `fear_act` · lex/fear *(target)*: ")
    assert comp(a, "fear_act", "fear")["verdict"] in lines[0]
    assert any("`fear_act` · judge/coherence *(coherence)*" in ln for ln in lines)
    sig = sum(1 for c in a["comparisons"] if c["significant_holm"])
    na = sum(1 for c in a["comparisons"] if c["significant_holm"] is None)
    assert (
        f"Across all {len(a['comparisons'])} comparisons: {sig} significant after Holm" in summary
    )
    assert f"{na} not assessable" in summary


def test_a_control_condition_is_tagged_as_such(tmp_path):
    from harness.report.focus import control_of, target_metrics

    info = {"params": {"vector": {"pairs": "fear"}, "control": "random"}}
    assert control_of(info) == "random" and control_of({"params": {"control": "none"}}) is None
    assert target_metrics("fear_random", info, ["fear", "joy", "coherence"]) == ["fear"]
    assert target_metrics("ctl", info, ["fearful", "fear_rate"]) == []
    assert target_metrics("x", {"params": {"trait": "fear_rate"}}, ["fear_rate"]) == ["fear_rate"]
    # a library vector by name, a composite's weights, a search's trait
    assert target_metrics("a", {"params": {"vector": "joy"}}, ["joy", "fear"]) == ["joy"]
    mix = {"params": {"weights": {"fear": 0.8, "formal": 0.5}}}
    assert target_metrics("mix", mix, ["fear", "formal", "joy"]) == ["fear", "formal"]
    searched = {"params": {}, "search": {"trait": "lexicon/anger"}}
    assert target_metrics("s", searched, ["anger", "fear"]) == ["anger"]
    spec = spec_dict()
    spec["spec"]["conditions"][1]["params"] = {"vector": {"pairs": "fear"}, "control": "random"}
    build_run(tmp_path / "run", spec=spec, generations=False)
    text = render(load_run(tmp_path / "run"))
    assert "`calm_prompt` · lex/fear *(target; random control)*: " in section(text, "Summary")
    assert "`calm_prompt` · lex/fear *(target; random control)*: " in section(text, "Verdicts")


def test_verdicts_are_grouped_by_the_stored_fields_and_carry_the_stored_text(rendered):
    _, text, a = rendered
    verdicts = section(text, "Verdicts")
    blocks = re.split(r"\n\*\*(.+?)\*\* \(\d+\)\n", verdicts)
    groups = dict(zip(blocks[1::2], blocks[2::2], strict=True))
    expect = {
        "Significant after Holm": [c for c in a["comparisons"] if c["significant_holm"]],
        "Not significant after Holm": [
            c for c in a["comparisons"] if c["significant_holm"] is False
        ],
        "Not assessable": [c for c in a["comparisons"] if c["significant_holm"] is None],
    }
    for title, comps in expect.items():
        if not comps:
            assert title not in groups
            continue
        lines = [ln for ln in groups[title].splitlines() if ln.startswith("- ")]
        assert len(lines) == len(comps)
        for c in comps:
            where = f"`{c['condition']}` · {c['scorer']}/{c['metric']}"
            line = next(ln for ln in lines if where in ln)
            assert c["verdict"] in line
            assert line.startswith("- ⚠ ") == bool(c["underpowered"])
    # targets lead the significant group
    assert groups["Significant after Holm"].strip().startswith("- `fear_act` · lex/fear *(target)*")


def test_power_table_flags_match_n_below_pairs_needed(rendered):
    _, text, a = rendered
    power = section(text, "Power and planning")
    rows = [ln for ln in power.splitlines() if ln.startswith("| ") and "`" in ln]
    assert len(rows) == len(a["comparisons"])
    for c in a["comparisons"]:
        row = next(
            r
            for r in rows
            if r.startswith(f"| {c['scorer']} | {c['metric']} | `{c['condition']}` |")
        )
        cells = [x.strip() for x in row.strip("|").split("|")]
        n, need, flag = int(cells[3]), cells[6], cells[7]
        if c["n_needed"] is None:
            assert need == "n/a"
        else:
            assert int(need) == c["n_needed"]
            assert (flag == "⚠ yes") == (n < c["n_needed"]) == bool(c["underpowered"])
        assert cells[5] == fmt(c["power"])
    assert "d_z = 0.3: 90 pairs (30 prompts × 3 seeds)" in power


def test_robustness_rows_show_meta_mixed_and_bootstrap(rendered):
    _, text, a = rendered
    rob = section(text, "Robustness")
    c = comp(a, "fear_act", "fear")
    expect = (
        f"| lex | fear | `fear_act` | {fmt(c['cohens_d'])} [{fmt(c['d_ci_low'])}, "
        f"{fmt(c['d_ci_high'])}] | [{fmt(c['boot_ci_low'])}, {fmt(c['boot_ci_high'])}] | "
        f"{fmt(c['meta_estimate'])} [{fmt(c['meta_ci_low'])}, {fmt(c['meta_ci_high'])}] | "
        f"{fmt(c['meta_i2'], 0)}% | {fmt(c['hedges_g'])} | {fmt(c['delta'])} | "
        f"{fmt(c['mixed_estimate'])} ± {fmt(c['mixed_se'])} |"
    )
    assert expect in rob
    assert "| lex | fear | `empty` | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a |" in rob


def test_figures_are_drawn_from_the_stored_records_alone(degenerate_run, tmp_path):
    """`steer-harness report` needs only analysis.json: no scores, spec or generations."""
    run_dir, _ = degenerate_run
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "analysis.json").write_text((run_dir / "analysis.json").read_text())
    out = write_report(bare, tmp_path / "r" / "bare.md")
    text = out.read_text()
    assert "(bare/forest.png)" in text and "dist-" not in text
    assert "No spec.json" in text
    assert non_numbers(text) == []


def skip_drawing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Figures are made but not rendered to pixels (the slow part): an empty file each."""
    from harness.report import plots

    def touch(fig: Any, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
        return path

    monkeypatch.setattr(plots, "save_figure", touch)


def test_stale_figures_are_removed_and_other_files_kept(degenerate_run, tmp_path, monkeypatch):
    skip_drawing(monkeypatch)
    run_dir, _ = degenerate_run
    out = tmp_path / "rep.md"
    folder = tmp_path / "rep"
    folder.mkdir()
    (folder / "dose-old.png").write_bytes(b"x")
    (folder / "dist-gone.png").write_bytes(b"x")
    (folder / "notes.txt").write_text("mine")
    write_report(run_dir, out)
    assert sorted(p.name for p in folder.iterdir()) == [
        "dist-judge.png",
        "dist-lex.png",
        "figures.json",
        "forest.png",
        "notes.txt",
    ]


def test_a_figure_that_fails_becomes_a_note(degenerate_run, tmp_path, monkeypatch):
    from harness.report import plots

    def boom(*a: Any, **k: Any) -> Any:
        raise RuntimeError("no canvas")

    monkeypatch.setattr(plots, "forest_figure", boom)
    run_dir, _ = degenerate_run
    text = write_report(run_dir, tmp_path / "x.md").read_text()
    assert "*Effect sizes (Cohen's d, 95% CI) with per-seed d's: not drawn.*" in text
    assert "figure not drawn: no canvas" in text
    assert "(x/dist-lex.png)" in text


def test_sweep_gets_a_dose_response_section_and_figure(tmp_path):
    records, info, _ = sweep_records()
    conds = [{"name": n, "method": "activation", "params": {}} for n in info]
    spec = spec_dict(
        "sweep",
        conditions=conds,
        scorers=[
            {"type": "lexicon", "name": "lex", "params": {}},
            {"type": "j", "name": "judge", "params": {}},
        ],
    )
    a = build_run(tmp_path / "run", records, spec, condition_info=info)
    out = write_report(tmp_path / "run", tmp_path / "reports" / "sweep.md")
    text = out.read_text()
    dose = section(text, "Dose–response")
    assert "![Dose–response, fear_sweep](sweep/dose-fear_sweep.png)" in dose
    assert (out.parent / "sweep" / "dose-fear_sweep.png").stat().st_size > 1000
    rows = [ln for ln in dose.splitlines() if ln.startswith("| ") and "`" in ln]
    # layer 3 points by coefficient, then layer 5
    assert [r.split("|")[1].strip() for r in rows] == ["0", "2", "4", "8", "16", "4"]
    assert [r.split("|")[2].strip() for r in rows] == ["3"] * 5 + ["5"]
    c = comp(a, "fear_sweep_c4", "fear")
    assert f"| 4 | 3 | `fear_sweep_c4` | {fmt(c['delta'])} ({fmt(c['cohens_d'])}) |" in dose
    assert "| 16 | 3 | `fear_sweep_c16` | n/a | n/a |" in dose
    assert "coefficient 8 (`fear_sweep_c8`): no delta (0 complete pairs)" in dose
    assert "coefficient 16 (`fear_sweep_c16`): no delta (0 complete pairs)" in dose
    assert non_numbers(text) == []


def test_many_comparisons_split_the_forest_and_cap_the_panels(tmp_path, monkeypatch):
    from harness.report.figures import MAX_FOREST_ROWS, MAX_PANELS, make_figures

    skip_drawing(monkeypatch)
    base = {
        "baseline": "baseline",
        "n": 10,
        "cohens_d": 0.1,
        "d_ci_low": -0.1,
        "d_ci_high": 0.3,
        "seeds": [0],
        "seed_d": [0.1],
    }
    comps = [
        {**base, "condition": "c", "scorer": s, "metric": f"m{i}", "cohens_d": i / 100}
        for s in ("a", "b")
        for i in range(MAX_PANELS + 3)
    ]
    comps += [
        {**base, "condition": f"k{j}", "scorer": "a", "metric": "m0"}
        for j in range(MAX_FOREST_ROWS)
    ]
    scores = [
        {"condition": c, "prompt_id": "p", "seed": 0, "scorer": s, "metric": f"m{i}", "value": 1.0}
        for c in ("baseline", "c")
        for s in ("a", "b")
        for i in range(MAX_PANELS + 3)
    ]
    run = RunData(
        tmp_path, {"baseline": "baseline", "conditions": ["baseline", "c"], "comparisons": comps}
    )
    run.scores = scores
    figs = make_figures(run, tmp_path / "f", "f")
    assert set(figs) == {"forest:a", "forest:b", "dist:a", "dist:b"}
    assert (tmp_path / "f" / "forest-a.png").exists() and not (
        tmp_path / "f" / "forest.png"
    ).exists()
    # the 3 smallest |d| metrics are the ones left out
    assert figs["dist:b"].notes[0] == "3 metric(s) not shown (smallest effects): m0, m1, m2"


def test_render_without_figures_still_renders(degenerate_run):
    run_dir, _ = degenerate_run
    text = render(load_run(run_dir))
    assert "![" not in text and "## Verdicts" in text


def test_demo_report_has_forest_plot_and_verdict_lines(tmp_path):
    """On a copy of the committed demo's analysis (the demo may be re-run meanwhile)."""
    demo = tmp_path / "run"
    demo.mkdir()
    try:
        for name in ("analysis.json", "spec.json"):
            (demo / name).write_bytes((ROOT / "runs" / "demo" / name).read_bytes())
    except FileNotFoundError:
        pytest.skip("no demo run")
    out = write_report(demo, tmp_path / "demo.md")
    text = out.read_text()
    analysis = json.loads((demo / "analysis.json").read_text())
    assert "](demo/forest.png)" in text and (tmp_path / "demo" / "forest.png").exists()
    verdicts = section(text, "Verdicts")
    for c in analysis["comparisons"]:
        assert f"`{c['condition']}` · {c['scorer']}/{c['metric']}" in verdicts
        assert c["verdict"] in verdicts
    assert non_numbers(text) == []


def test_explicit_targets_and_primary_lead_the_summary_with_a_mean_abs_d_row(tmp_path):
    """`targets` (condition_info "metrics") replaces name matching; a bare metric names it
    for every scorer; the Summary ends with mean |d| over each condition's targets."""
    from harness.report.focus import target_metrics

    info = {"metrics": ["lex/joy", "holes"], "targets": ["fear"]}
    assert target_metrics("fear_act", info, ["fear", "joy", "holes"], "lex") == ["joy", "holes"]
    assert target_metrics("fear_act", info, ["joy"], "judge") == []  # lex/joy only
    assert target_metrics("fear_act", {"targets": ["fear"]}, ["fear", "joy"]) == ["fear"]
    condition_info = {
        "fear_act": {"method": "activation", "params": {}, "metrics": ["lex/joy", "lex/flat"]},
        "calm_prompt": {"method": "prompt", "params": {}, "metrics": ["joy"]},
    }
    a = build_run(tmp_path / "run", condition_info=condition_info, generations=False)
    summary = section(render(load_run(tmp_path / "run")), "Summary")
    lines = [ln.replace("⚠ ", "") for ln in summary.splitlines() if ln.startswith("- ")]
    assert lines[0].startswith("- `fear_act` · lex/joy *(target)*: ")
    assert not any("`fear_act` · lex/fear *(target)*" in ln for ln in lines)
    assert any(ln.startswith("- `calm_prompt` · lex/joy *(target)*") for ln in lines)
    rows = {ln.split("|")[1].strip(): ln for ln in summary.splitlines() if ln.startswith("| `")}
    joy_d = comp(a, "fear_act", "joy")["cohens_d"]
    flat = comp(a, "fear_act", "flat")
    assert flat["cohens_d"] is None  # all-equal values: d is n/a and left out of the mean
    cells = [c.strip() for c in rows["`fear_act`"].split("|")[1:-1]]
    assert cells[:3] == ["`fear_act`", "2 (1 n/a)", fmt(abs(joy_d))]
    sig = sum(1 for m in ("joy", "flat") if comp(a, "fear_act", m)["significant_holm"])
    assert cells[4] == f"{sig} of 2"
    calm = [c.strip() for c in rows["`calm_prompt`"].split("|")[1:-1]]
    calm_d = comp(a, "calm_prompt", "joy")["cohens_d"]
    assert calm[1:3] == ["1", fmt(abs(calm_d))]


def test_primary_reaches_condition_info_and_targets_pass_to_sweep_points(tmp_path):
    from harness.config.spec import ConditionSpec, validate_spec
    from harness.config.sweeps import expand

    cond = ConditionSpec(
        name="f",
        method="activation",
        params={"layers": [0], "coefficient": 1, "vector": {"pairs": "fear"}},
        sweep={"coefficient": [1, 2]},
        targets=["lexicon/hedging"],
    )
    assert [p.targets for p, _ in expand(cond)] == [["lexicon/hedging"]] * 2
    raw = {
        "name": "t",
        "prompts": {"file": "sets/everyday.jsonl"},
        "conditions": [{"name": "p", "method": "prompt", "params": {"instruction": "x"}}],
        "scorers": [{"type": "lexicon"}],
        "analysis": {"primary": ["lexicn/fear"]},
    }
    with pytest.raises(Exception, match="did you mean 'lexicon'"):
        validate_spec(raw, "t.toml", tmp_path)
    raw["analysis"] = {"primary": ["lexicon/fear"]}
    raw["conditions"][0]["targets"] = ["nope/x"]
    with pytest.raises(Exception, match="condition 'p': targets refers to scorer 'nope'"):
        validate_spec(raw, "t.toml", tmp_path)
