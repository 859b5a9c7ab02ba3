"""classification_shift (harness.analysis.shift) on hand-made rows, the ShiftDoc artefact,
and the report section (harness.report.shift)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.analysis.shift import classification_shift
from harness.core.artifacts import ArtifactError, ClassifiedRow, ShiftDoc, read_artifact
from harness.core.errors import AnalysisError
from harness.report.shift import DOSE_FIGURE, TARGET_FIGURE, shift_section

LABELS = ["joy", "neutral"]
# 8 texts: gold, unsteered prediction, steered (a=0.5) prediction
GOLD = ["joy", "joy", "joy", "neutral", "neutral", "neutral", "neutral", "joy"]
BASE = ["joy", "joy", "neutral", "neutral", "neutral", "neutral", "joy", "neutral"]
HALF = ["joy", "joy", "joy", "joy", "neutral", "neutral", "joy", "joy"]
FULL = ["joy"] * 8
P_BASE = [0.9, 0.8, 0.4, 0.2, 0.1, 0.3, 0.6, 0.45]


def _rows(cond: str, preds: list[str], shift: float) -> list[ClassifiedRow]:
    out: list[ClassifiedRow] = []
    for i, (g, p, q) in enumerate(zip(GOLD, preds, P_BASE, strict=True)):
        pj = min(1.0, q + shift + 0.01 * i)
        out.append(
            {
                "condition": cond,
                "prompt_id": f"t{i}",
                "gold": g,
                "predicted": p,
                "probs": {"joy": pj, "neutral": 1.0 - pj},
            }
        )
    return out


ROWS = _rows("baseline", BASE, 0.0) + _rows("a0.5", HALF, 0.2) + _rows("a1", FULL, 0.4)
# the baseline's probabilities get no per-text offset: rebuild them exactly
for i, r in enumerate(ROWS[:8]):
    r["probs"] = {"joy": P_BASE[i], "neutral": 1.0 - P_BASE[i]}


def _doc(**kw: Any) -> ShiftDoc:
    args: dict[str, Any] = {
        "baseline": "baseline",
        "labels": LABELS,
        "target": "joy",
        "doses": {"a0.5": 0.5, "a1": 1.0},
        "n_boot": 300,
        "seed": 1,
    }
    args.update(kw)
    rows = args.pop("rows", ROWS)
    return classification_shift(rows, **args)


def _metric(c: Any, metric: str, scope: str, label: str | None = None) -> Any:
    (m,) = [
        m
        for m in c["metrics"]
        if m["metric"] == metric and m["scope"] == scope and m["label"] == label
    ]
    return m


def test_counts_flips_and_target_moves_by_hand() -> None:
    doc = _doc()
    base, half, full = doc["by_condition"]
    assert [c["condition"] for c in doc["by_condition"]] == ["baseline", "a0.5", "a1"]
    assert doc["conditions"] == ["a0.5", "a1"]
    assert doc["gold_counts"] == {"joy": 4, "neutral": 4}
    # unsteered: correct on t0 t1 t3 t4 t5 -> 5/8
    assert _metric(base, "accuracy", "all")["value"] == pytest.approx(5 / 8)
    assert _metric(base, "accuracy", "all")["delta"] is None
    assert base["mcnemar"] is None and base["target"] is None
    # a0.5: correct on t0 t1 t2 t4 t5 t7 -> 6/8; flips: t3 right->wrong, t2 t7 wrong->right
    acc = _metric(half, "accuracy", "all")
    assert acc["value"] == pytest.approx(6 / 8)
    assert acc["baseline"] == pytest.approx(5 / 8)
    assert acc["delta"] == pytest.approx(1 / 8)
    mc = half["mcnemar"]
    assert (mc["correct_to_wrong"], mc["wrong_to_correct"]) == (1, 2)
    assert (mc["both_correct"], mc["both_wrong"]) == (4, 1)
    assert mc["p_exact"] == pytest.approx(1.0)  # 2·P(X ≤ 1 | 3, ½) = 2·4/8, capped at 1
    # joy under a0.5: predicted t0 t1 t2 t3 t6 t7 (6), tp = 4 -> precision 4/6, recall 1
    assert _metric(half, "precision", "label", "joy")["value"] == pytest.approx(4 / 6)
    assert _metric(half, "recall", "label", "joy")["value"] == pytest.approx(1.0)
    assert _metric(half, "f1", "label", "joy")["value"] == pytest.approx(8 / 10)
    t = half["target"]
    assert (t["to_target"], t["from_target"]) == (3, 0)  # t2 t3 t7 moved to joy
    assert t["to_target_share"] == pytest.approx(3 / 8)
    assert t["rate_baseline"] == pytest.approx(3 / 8) and t["rate"] == pytest.approx(6 / 8)
    assert half["transitions"]["neutral"] == {"joy": 3, "neutral": 2}
    assert half["confusion"]["neutral"] == {"joy": 2, "neutral": 2}
    # a1 predicts joy everywhere: neutral never predicted -> precision undefined, F1 0
    prec = _metric(full, "precision", "label", "neutral")
    assert prec["value"] is None and "never predicted" in prec["reason"]
    assert _metric(full, "f1", "label", "neutral")["value"] == 0.0
    # McNemar a1: right->wrong t3 t4 t5, wrong->right t2 t7 -> b 3, c 2
    assert (full["mcnemar"]["correct_to_wrong"], full["mcnemar"]["wrong_to_correct"]) == (3, 2)
    # Holm over the two conditions' exact p-values
    ps = sorted([half["mcnemar"]["p_exact"], full["mcnemar"]["p_exact"]])
    assert min(half["mcnemar"]["p_holm"], full["mcnemar"]["p_holm"]) == pytest.approx(
        min(1.0, 2 * ps[0])
    )


def test_probability_shift_and_doses() -> None:
    doc = _doc()
    rows = {(r["condition"], r["label"]): r for r in doc["probability"]}
    joy = rows[("a0.5", "joy")]
    # shift per text 0.2 + 0.01·i (i = 0..7), the probability capped at 1 (t0)
    shifts = [min(1.0, q + 0.2 + 0.01 * i) - q for i, q in enumerate(P_BASE)]
    assert shifts[0] == pytest.approx(0.1)
    assert joy["delta"] == pytest.approx(sum(shifts) / 8)
    assert joy["mean_baseline"] == pytest.approx(sum(P_BASE) / 8)
    assert joy["ci_low"] <= joy["delta"] <= joy["ci_high"]
    assert joy["d_z"] is not None and joy["d_z"] > 0
    assert rows[("a0.5", "neutral")]["delta"] == pytest.approx(-joy["delta"])
    assert joy["p_holm"] == pytest.approx(min(1.0, 2 * joy["p_paired_t"]))
    assert doc["doses"] == {"a0.5": 0.5, "a1": 1.0, "baseline": 0.0}
    assert [c["dose"] for c in doc["by_condition"]] == [0.0, 0.5, 1.0]
    assert doc["target_probs"]["baseline"] == pytest.approx(P_BASE)
    assert len(doc["target_probs"]["a1"]) == 8


def test_intervals_contain_the_estimate_and_are_deterministic() -> None:
    a, b, c = _doc(), _doc(), _doc(seed=2)
    assert a == b
    assert a != c
    for cond in a["by_condition"]:
        for m in cond["metrics"]:
            if m["value"] is not None and m["ci_low"] is not None:
                assert m["ci_low"] - 1e-12 <= m["value"] <= m["ci_high"] + 1e-12, m
            if m["delta"] is not None and m["delta_ci_low"] is not None:
                assert m["delta_ci_low"] - 1e-12 <= m["delta"] <= m["delta_ci_high"] + 1e-12


def test_doc_is_json_and_read_back_as_an_artefact(tmp_path: Path) -> None:
    doc = _doc()
    path = tmp_path / "shift.json"
    path.write_text(json.dumps(doc, allow_nan=False), encoding="utf-8")
    assert read_artifact(path, ShiftDoc) == doc
    path.write_text(json.dumps({**doc, "version": 2}), encoding="utf-8")
    with pytest.raises(ArtifactError, match="version"):
        read_artifact(path, ShiftDoc)


def test_missing_texts_and_probabilities_are_noted() -> None:
    rows = [r for r in ROWS if not (r["condition"] == "a1" and r["prompt_id"] == "t0")]
    rows = [dict(r) for r in rows]  # type: ignore[misc]
    rows[8]["probs"] = {"joy": 0.5}  # a0.5, t0: no neutral probability
    doc = _doc(rows=rows)
    full = doc["by_condition"][2]
    assert (full["n"], full["n_missing"]) == (7, 1)
    assert any("a1 lacks 1" in n for n in doc["notes"])
    assert doc["target_probs"]["a1"][0] is None
    neutral = [
        r for r in doc["probability"] if r["condition"] == "a0.5" and r["label"] == "neutral"
    ]
    assert neutral[0]["n"] == 7 and "left out" in neutral[0]["reason"]


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"target": "anger"}, "target 'anger'"),
        ({"baseline": "unsteered"}, "no rows for the baseline"),
        ({"labels": ["joy"]}, "not one of"),
        ({"labels": ["joy", "joy"]}, "distinct"),
    ],
)
def test_bad_input_is_a_user_error(change: dict[str, Any], match: str) -> None:
    with pytest.raises(AnalysisError, match=match):
        _doc(**change)


def test_gold_must_agree_across_conditions() -> None:
    rows = [dict(r) for r in ROWS]
    rows[9]["gold"] = "neutral"  # a0.5, t1
    with pytest.raises(AnalysisError, match="gold label"):
        _doc(rows=rows)


def test_section_renders_tables_and_figures(tmp_path: Path) -> None:
    folder = tmp_path / "report"
    text = "\n".join(shift_section(_doc(), folder))
    lines = text.splitlines()
    assert lines[0] == "## Classification shift"
    acc = "0.625 ["
    assert any(line.startswith("| `baseline` (unsteered) | 0 | 8 | " + acc) for line in lines), text
    (half,) = [line for line in lines if line.startswith("| `a0.5` | 0.5 | 8 | 0.750 [")]
    cells = [c.strip() for c in half.strip("|").split("|")]
    assert cells[4].startswith("0.125 [")  # Δ accuracy
    assert cells[7:11] == ["1", "2", "1.000", "1.000"]  # flips, McNemar p, Holm
    assert "### Target class: joy" in lines
    assert any(line.startswith("| `a0.5` | 0.5 | 0.667 [") for line in lines)  # precision
    assert "### Dose–response" in lines
    assert f"![Probability of joy per text, per condition](report/{TARGET_FIGURE})" in lines
    assert any(line.startswith("![Dose–response") and DOSE_FIGURE in line for line in lines)
    assert "never predicted" in text  # a1's undefined precision of neutral, in the notes
    for name in (TARGET_FIGURE, DOSE_FIGURE):
        data = (folder / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000


def test_section_without_target_or_doses_draws_nothing_and_escapes_labels(tmp_path: Path) -> None:
    rows = [dict(r) for r in ROWS if r["condition"] != "a1"]
    for r in rows:
        r["gold"] = r["gold"].replace("joy", "jo|y")
        r["predicted"] = r["predicted"].replace("joy", "jo|y")
        r["probs"] = {k.replace("joy", "jo|y"): v for k, v in r["probs"].items()}
    doc = _doc(rows=rows, labels=["jo|y", "neutral"], target=None, doses=None)
    lines = "\n".join(shift_section(doc, tmp_path / "figs")).splitlines()
    assert not (tmp_path / "figs").exists()
    assert "### Dose–response" not in lines and not any("Target class" in x for x in lines)
    assert any(line.startswith("| `a0.5` | jo\\|y | 4 | 6 | ") for line in lines)
