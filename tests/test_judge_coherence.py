"""The coherence extra (harness.analysis.coherence) and its report section, on hand-made scores."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from harness.analysis.analyze import analyze_records
from harness.analysis.coherence import coherence_summary
from harness.report.coherence import section_coherence
from harness.report.data import RunData


def rec(cond: str, pid: str, seed: int, scorer: str, metric: str, value: float | None) -> dict:
    return {
        "condition": cond,
        "prompt_id": pid,
        "seed": seed,
        "scorer": scorer,
        "metric": metric,
        "value": value,
    }


# (prompt, baseline fear, baseline coherence, steered fear, steered coherence)
PAIRS = [
    ("p0", 10.0, 90.0, 30.0, 85.0),  # both coherent: kept, diff 20
    ("p1", 20.0, 80.0, 90.0, 20.0),  # steered broken: dropped
    ("p2", 15.0, 40.0, 25.0, 70.0),  # baseline broken: dropped
    ("p3", 5.0, 50.0, 35.0, 60.0),  # baseline exactly at the threshold: kept, diff 30
    ("p4", 10.0, 95.0, 20.0, None),  # steered coherence unknown: dropped, counted
    ("p5", 0.0, 70.0, 40.0, 75.0),  # kept, diff 40
]


def records() -> list[dict]:
    out = []
    for pid, bf, bc, sf, sc in PAIRS:
        out += [
            rec("baseline", pid, 0, "judge", "fear", bf),
            rec("baseline", pid, 0, "judge", "coherence", bc),
            rec("steer", pid, 0, "judge", "fear", sf),
            rec("steer", pid, 0, "judge", "coherence", sc),
            rec("baseline", pid, 0, "lexicon", "fear", bf / 10),
            rec("steer", pid, 0, "lexicon", "fear", sf / 10),
            rec("baseline", pid, 0, "lexicon", "joy", 1.0),
            rec("steer", pid, 0, "lexicon", "joy", 2.0),
        ]
    return out


def analyze(recs: list[dict], **options: float) -> dict:
    result = analyze_records(recs, "baseline", n_boot=0, options=dict(options))
    json.dumps(result, allow_nan=False)  # JSON-ready, no NaN anywhere
    return result


def test_coherence_per_condition():
    out = analyze(records(), coherence_threshold=50.0)["coherence"]
    assert out["sources"] == ["judge"] and out["threshold"] == 50.0
    rows = {r["condition"]: r for r in out["by_condition"]}
    base = [p[2] for p in PAIRS]
    steer = [p[4] for p in PAIRS if p[4] is not None]
    assert rows["baseline"]["mean"] == pytest.approx(np.mean(base))
    assert rows["baseline"]["sd"] == pytest.approx(np.std(base, ddof=1))
    assert rows["baseline"]["share_below"] == pytest.approx(1 / 6)  # 40; 50 is not below
    assert rows["steer"]["n_scored"] == 5 and rows["steer"]["n_texts"] == 6
    assert rows["steer"]["mean"] == pytest.approx(np.mean(steer))
    assert rows["steer"]["share_below"] == pytest.approx(1 / 5)


def test_trait_delta_restricted_to_pairs_where_both_texts_are_coherent():
    out = analyze(records())["coherence"]
    rows = {(r["scorer"], r["metric"]): r for r in out["restricted"]}
    assert set(rows) == {("judge", "fear"), ("lexicon", "fear")}  # joy is not a judged trait
    r = rows[("judge", "fear")]
    all_diffs = [p[3] - p[1] for p in PAIRS]
    kept = np.array([20.0, 30.0, 40.0])
    assert r["n_pairs"] == 6 and r["delta"] == pytest.approx(np.mean(all_diffs))
    assert r["n_kept"] == 3 and r["n_unknown"] == 1
    assert r["share_kept"] == pytest.approx(3 / 5)
    assert r["delta_kept"] == pytest.approx(30.0)
    half = stats.t.ppf(0.975, 2) * kept.std(ddof=1) / math.sqrt(3)
    assert r["ci_low"] == pytest.approx(30.0 - half) and r["ci_high"] == pytest.approx(30.0 + half)
    assert r["mean_baseline_kept"] == pytest.approx(5.0)
    lex = rows[("lexicon", "fear")]
    assert lex["delta_kept"] == pytest.approx(3.0) and lex["n_kept"] == 3


def test_the_threshold_comes_from_the_options():
    out = analyze(records(), coherence_threshold=80.0)["coherence"]
    r = next(x for x in out["restricted"] if x["scorer"] == "judge")
    assert out["threshold"] == 80.0
    assert r["n_kept"] == 1 and r["delta_kept"] == pytest.approx(20.0)
    assert r["ci_low"] is None and r["reason"] == "fewer than 2 pairs kept"


def test_no_coherence_metric_gives_an_empty_result_and_no_section():
    recs = [r for r in records() if r["metric"] != "coherence"]
    out = analyze(recs)["coherence"]
    assert out["sources"] == [] and out["by_condition"] == [] and out["restricted"] == []
    run = RunData(Path("."), {"coherence": out, "baseline": "baseline"})
    assert section_coherence(run) == ""
    assert section_coherence(RunData(Path("."), {})) == ""


@pytest.mark.parametrize(
    "variant",
    ["all coherence null", "one pair", "constant", "no steered trait", "nan threshold"],
)
def test_degenerate_data_never_raises_or_emits_nan(variant):
    recs = records()
    options: dict = {}
    if variant == "all coherence null":
        recs = [{**r, "value": None} if r["metric"] == "coherence" else r for r in recs]
    elif variant == "one pair":
        recs = [r for r in recs if r["prompt_id"] == "p0"]
    elif variant == "constant":
        recs = [{**r, "value": 60.0} for r in recs]
    elif variant == "no steered trait":
        recs = [r for r in recs if not (r["condition"] == "steer" and r["metric"] == "fear")]
    else:
        options = {"coherence_threshold": float("nan")}
    out = coherence_summary_from(recs, options)
    text = json.dumps(out, allow_nan=False)
    assert "NaN" not in text
    if variant == "all coherence null":
        assert all(r["mean"] is None and r["share_below"] is None for r in out["by_condition"])
        assert all(r["n_kept"] == 0 and r["delta_kept"] is None for r in out["restricted"])
    if variant == "constant":
        r = out["restricted"][0]
        assert r["delta_kept"] == 0.0 and r["ci_low"] == 0.0 and r["ci_high"] == 0.0
    if variant == "nan threshold":
        assert out["threshold"] == 50.0
    md = section_coherence(RunData(Path("."), {"coherence": out, "baseline": "baseline"}))
    assert "nan" not in md.lower()


def coherence_summary_from(recs: list[dict], options: dict) -> dict:
    from harness.analysis.table import AnalysisInput, score_table

    conds = list(dict.fromkeys(r["condition"] for r in recs))
    return coherence_summary(AnalysisInput(recs, "baseline", conds, {}, options, score_table(recs)))


def test_report_section_shows_coherence_and_the_restricted_delta():
    analysis = analyze(records())
    md = section_coherence(RunData(Path("."), analysis))
    assert md.startswith("## Coherence")
    assert "| `baseline` | 70.83 (SD" in md  # mean baseline coherence 425 / 6
    assert "17%" in md and "share < 50" in md
    assert "| judge | fear | `steer` | 30.00 (6) |" in md
    assert "30.00 [" in md and "3 (60%); 1 without coherence" in md
