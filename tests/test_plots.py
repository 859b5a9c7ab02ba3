"""What the plots draw equals what the analysis says: CI segments, d markers, per-seed
points, box medians and means, dose-response curves; undefined values are left out with a
note and never raise."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.figure import Figure
from synthetic_run import build_run, comp, non_numbers, sweep_records

from harness.analysis.table import score_table
from harness.core.store import JsonlStore
from harness.report import plots
from harness.report.focus import sweep_points


@pytest.fixture(scope="module")
def analysis(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    run_dir = tmp_path_factory.mktemp("plots") / "run"
    return run_dir, build_run(run_dir, generations=False)


def test_forest_draws_each_ci_d_and_seed_d_of_the_analysis(analysis):
    _, a = analysis
    comps = a["comparisons"]
    rows = plots.forest_rows(comps)
    fig, art = plots.forest_figure(rows, "t")
    assert len(rows) == len(comps)
    by_label = {(r.label, r.group): i for i, r in enumerate(rows)}

    # CI segments: one per comparison with a defined interval, at its row's y
    segs = art.ci.get_segments()
    with_ci = [c for c in comps if c["d_ci_low"] is not None]
    assert len(segs) == len(with_ci) == len(art.ci_rows)
    for seg, i in zip(segs, art.ci_rows, strict=True):
        c = next(
            c for c in comps if by_label[(c["condition"], f"{c['scorer']}/{c['metric']}")] == i
        )
        assert seg[0][0] == pytest.approx(c["d_ci_low"])
        assert seg[1][0] == pytest.approx(c["d_ci_high"])
        assert seg[0][1] == seg[1][1] == art.row_y[i]

    # d markers: filled for significant after Holm, hollow otherwise, none when undefined
    drawn = {}
    for line, idx in ((art.points, art.point_rows), (art.hollow, art.hollow_rows)):
        if line is None:
            continue
        for x, y, i in zip(line.get_xdata(), line.get_ydata(), idx, strict=True):
            assert y == art.row_y[i]
            drawn[i] = x
    for c in comps:
        i = by_label[(c["condition"], f"{c['scorer']}/{c['metric']}")]
        if c["cohens_d"] is None:
            assert i not in drawn
        else:
            assert drawn[i] == pytest.approx(c["cohens_d"])
            assert (i in art.point_rows) == bool(c["significant_holm"])

    # per-seed points: every defined seed d, near its row
    offsets = art.seeds.get_offsets()
    expect = [
        (by_label[(c["condition"], f"{c['scorer']}/{c['metric']}")], d)
        for c in comps
        for d in c["seed_d"]
        if d is not None
    ]
    expect.sort(key=lambda t: t[0])
    assert len(offsets) == len(expect)
    for (x, y), (i, d), r in zip(offsets, expect, art.seed_rows, strict=True):
        assert r == i and x == pytest.approx(d) and abs(y - art.row_y[i]) <= 0.3

    # the right-hand labels never print a NaN; undefined rows say why
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert non_numbers(" ".join(texts)) == []
    assert "n/a: fewer than 3 complete pairs (n=0)" in texts


def test_forest_rows_treat_nan_and_inf_as_missing():
    c = {
        "condition": "x",
        "scorer": "s",
        "metric": "m",
        "n": 10,
        "cohens_d": math.nan,
        "d_ci_low": -math.inf,
        "d_ci_high": 1.0,
        "seeds": [0, 1, 2],
        "seed_d": [0.5, math.nan, None],
        "reasons": {"cohens_d": "hand-edited"},
    }
    ok = {**c, "condition": "y", "cohens_d": 0.4, "d_ci_low": math.inf, "d_ci_high": 0.9}
    rows = plots.forest_rows([c, ok])
    assert rows[0].d is None and rows[0].ci is None and rows[0].note == "d undefined: hand-edited"
    assert rows[1].d == 0.4 and rows[1].ci is None
    assert rows[1].note == "no CI: no value; seed(s) 1, 2 without a defined d"
    assert rows[1].seeds == ((0, 0.5),)
    fig, art = plots.forest_figure(rows)
    assert art.ci is None and art.points is None and list(art.hollow.get_xdata()) == [0.4]
    assert non_numbers(" ".join(t.get_text() for t in fig.axes[0].texts)) == []


def test_forest_with_nothing_defined_still_draws():
    c = {"condition": "x", "scorer": "s", "metric": "m", "n": 0, "cohens_d": None}
    fig, art = plots.forest_figure(plots.forest_rows([c]))
    assert art.ci is None and art.points is None and art.seeds is None
    assert fig.axes[0].get_xlim()[0] < 0 < fig.axes[0].get_xlim()[1]


def test_distribution_panels_hold_exactly_the_finite_scores(analysis):
    run_dir, _ = analysis
    records = JsonlStore(run_dir / "scores.jsonl").read()
    table = score_table(records)
    conds = ["baseline", "fear_act", "calm_prompt", "empty"]
    panels = plots.distribution_panels(table, "lex", ["fear", "holes", "flat"], conds)
    for p in panels:
        for cond, vals, bad in zip(p.conditions, p.values, p.n_nonfinite, strict=True):
            raw = [
                r["value"]
                for r in records
                if r["condition"] == cond and r["scorer"] == "lex" and r["metric"] == p.metric
            ]
            good = [v for v in raw if v is not None and math.isfinite(v)]
            assert sorted(vals.tolist()) == sorted(good)
            assert bad == len(raw) - len(good)
    holes = panels[1]
    assert holes.n_nonfinite == [0, 22, 3, 24]

    fig, arts = plots.distribution_figure(panels)
    for p, art in zip(panels, arts, strict=True):
        drawn = art["drawn"]
        assert drawn == [i for i, v in enumerate(p.values) if v.size]
        medians = [line.get_xdata()[0] for line in art["box"]["medians"]]
        assert medians == pytest.approx([float(np.median(p.values[i])) for i in drawn])
        means = art["means"].get_offsets()
        assert [m[0] for m in means] == pytest.approx([float(p.values[i].mean()) for i in drawn])
        assert [m[1] for m in means] == [art["positions"][i] for i in drawn]
    # the condition without values gets a note inside the panel, not a box
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert texts.count("no finite values") == 3
    flat = panels[2]
    assert [v.tolist() for v in flat.values[:3]] == [[1.0] * 24] * 3


def test_sweep_points_survive_bad_coordinates():
    info = {
        "a": {"sweep": {"group": "g", "coefficient": 2, "layer": 4}},
        "b": {"sweep": {"group": "g", "coefficient": "high", "layer": 4}},
        "c": {"sweep": {"group": "g", "coefficient": math.nan, "layer": None}},
        "d": {"sweep": {"group": "g", "coefficient": -1.0, "layer": 4}},
        "e": {"sweep": {"group": "g", "coefficient": 1.0, "layer": None}},
        "f": {"method": "prompt"},
        "m": {"sweep": {"group": "g", "coefficient": 1.0, "layer": [8, 10]}},
        "n": {"sweep": {"group": "h", "coefficient": None, "layer": 1}},
        "z": {"sweep": {"group": "g", "coefficient": 3.0, "layer": 4}},
    }
    groups, notes = sweep_points(info, ["a", "b", "c", "d", "e", "f", "m", "n"])
    assert [(p.condition, p.coefficient, p.layer) for p in groups["g"]] == [
        ("e", 1.0, None),
        ("d", -1.0, 4),
        ("a", 2.0, 4),
        ("m", 1.0, (8, 10)),
    ]
    assert groups["h"] == []
    assert notes == {
        "g": [
            "`b`: sweep coefficient 'high' is not a number",
            "`c`: sweep coefficient nan is not a number",
        ],
        "h": ["`n`: sweep coefficient None is not a number"],
    }
    series = plots.dose_series([], groups["g"], "s", "m")
    assert [s.label for s in series] == ["s/m", "s/m, layer 4", "s/m, layers 8+10"]
    assert all(
        not s.points and len(s.skipped) == len([p for p in groups["g"] if p.layer == s.layer])
        for s in series
    )


def test_dose_series_follow_the_comparisons(tmp_path):
    records, info, coefs = sweep_records()
    from synthetic_run import spec_dict

    conds = [{"name": n, "method": "activation", "params": {}} for n in info]
    a = build_run(tmp_path / "run", records, spec_dict("s", conds), info, generations=False)
    groups, _ = sweep_points(info)
    fear = plots.dose_series(a["comparisons"], groups["fear_sweep"], "lex", "fear")
    coh = plots.dose_series(a["comparisons"], groups["fear_sweep"], "judge", "coherence")
    assert [s.layer for s in fear] == [3, 5]
    layer3 = fear[0]
    assert [p.coefficient for p in layer3.points] == coefs  # 16 has no pairs
    assert layer3.skipped == ["coefficient 16 (`fear_sweep_c16`): no delta (0 complete pairs)"]
    for p in layer3.points:
        c = comp(a, p.condition, "fear")
        assert p.delta == c["delta"] and p.d == c["cohens_d"] and p.n == c["n"]
        half = 1.959963984540054 * c["mixed_se"]
        assert p.ci == pytest.approx((c["delta"] - half, c["delta"] + half))
    assert [p.coefficient for p in coh[0].points] == [0.0, 2.0, 4.0]
    assert len(coh[0].skipped) == 2

    fig, lines = plots.dose_figure("fear_sweep", [fear], coh)
    assert isinstance(fig, Figure) and len(lines) == 2
    l3 = lines[0][0]
    assert list(l3.get_xdata()) == coefs
    assert list(l3.get_ydata()) == [p.delta for p in layer3.points]
    assert list(lines[1][0].get_xdata()) == [0.0, 2.0, 4.0]
    # the error bars span the CIs
    bars = [c for c in fig.axes[0].collections if c.get_segments()]
    spans = sorted((s[0][0], s[0][1], s[1][1]) for b in bars for s in b.get_segments())
    expect = sorted((p.coefficient, *p.ci) for s in fear for p in s.points if p.ci)
    assert len(expect) == 5 and np.allclose(spans, expect)


def test_save_figure_writes_a_png_without_version_metadata(tmp_path):
    fig, _ = plots.forest_figure(
        plots.forest_rows(
            [
                {
                    "condition": "x",
                    "scorer": "s",
                    "metric": "m",
                    "n": 5,
                    "cohens_d": 0.5,
                    "d_ci_low": 0.1,
                    "d_ci_high": 0.9,
                    "seeds": [0],
                    "seed_d": [0.4],
                }
            ]
        )
    )
    path = plots.save_figure(fig, tmp_path / "a" / "f.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and b"Matplotlib version" not in data
