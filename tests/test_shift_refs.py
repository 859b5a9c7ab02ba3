"""The classification-shift statistics against R (tests/refs/classification_shift.R).

The R script writes its inputs and results to tests/refs/classification_shift.json, which
is committed, so these tests need no R; where ``Rscript`` (with jsonlite) is installed,
the script is re-run and must reproduce the committed file.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.analysis.shift import classification_shift
from harness.core.artifacts import ClassifiedRow
from harness.stats import count_metrics, mcnemar

REFS = Path(__file__).parent / "refs"
SCRIPT = REFS / "classification_shift.R"
JSON = REFS / "classification_shift.json"
TOL = 1e-6
REF: dict[str, Any] = json.loads(JSON.read_text(encoding="utf-8"))


def close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=TOL, abs_tol=1e-12)


def _rows() -> list[ClassifiedRow]:
    inp = REF["inputs"]
    rows: list[ClassifiedRow] = []
    for cond, pred, prob in (
        ("baseline", inp["baseline_pred"], inp["baseline_prob"]),
        ("joy_add", inp["steered_pred"], inp["steered_prob"]),
    ):
        for i, pid in enumerate(inp["prompt_ids"]):
            rows.append(
                {
                    "condition": cond,
                    "prompt_id": pid,
                    "gold": inp["gold"][i],
                    "predicted": pred[i],
                    "probs": dict(zip(inp["labels"], prob[i], strict=True)),
                }
            )
    return rows


@pytest.fixture(scope="module")
def doc() -> Any:
    labels = REF["inputs"]["labels"]
    return classification_shift(
        _rows(), baseline="baseline", labels=labels, target="joy", doses=None, n_boot=200, seed=0
    )


def _metric(cond: dict[str, Any], metric: str, scope: str, label: str | None) -> Any:
    (m,) = [
        m
        for m in cond["metrics"]
        if m["metric"] == metric and m["scope"] == scope and m["label"] == label
    ]
    return m


def test_precision_recall_f1_match_r(doc: Any) -> None:
    base, steer = doc["by_condition"]
    for cond, ref in ((base, REF["baseline"]), (steer, REF["steered"])):
        assert close(_metric(cond, "accuracy", "all", None)["value"], ref["accuracy"])
        for lab, r in ref["per_label"].items():
            for m in ("precision", "recall", "f1"):
                assert close(_metric(cond, m, "label", lab)["value"], r[m]), (lab, m)
        for m in ("precision", "recall", "f1"):
            assert close(_metric(cond, m, "macro", None)["value"], ref[f"macro_{m}"]), m
    # the steered rows carry the unsteered value on the same texts and the difference
    f1 = _metric(steer, "f1", "label", "joy")
    assert close(f1["baseline"], REF["baseline"]["per_label"]["joy"]["f1"])
    assert close(f1["delta"], REF["steered"]["per_label"]["joy"]["f1"] - f1["baseline"])


def test_undefined_labels_match_r() -> None:
    small = REF["small"]
    labels = small["labels"]
    code = {lab: i for i, lab in enumerate(labels)}
    m = count_metrics([code[g] for g in small["gold"]], [code[p] for p in small["pred"]], 5)
    res = small["result"]
    assert close(m.accuracy, res["accuracy"])
    for j, lab in enumerate(labels):
        r = res["per_label"][lab]
        assert close(m.precision[j], r["precision"]), lab  # NA in R = None here
        assert close(m.recall[j], r["recall"]), lab
        assert close(m.f1[j], r["f1"]), lab
    assert close(m.macro_precision, res["macro_precision"])
    assert close(m.macro_recall, res["macro_recall"])
    assert close(m.macro_f1, res["macro_f1"])


def test_mcnemar_matches_r_binom_and_mcnemar_test(doc: Any) -> None:
    mc = doc["by_condition"][1]["mcnemar"]
    ref = REF["mcnemar"]
    assert (mc["correct_to_wrong"], mc["wrong_to_correct"]) == (ref["b"], ref["c"])
    assert close(mc["p_exact"], ref["p_exact"])
    assert close(mc["chi2"], ref["chi2"])
    assert close(mc["p_chi2"], ref["p_chi2"])
    for case in REF["mcnemar_fixed"]:
        b, c = int(case["b"]), int(case["c"])
        res = mcnemar([True] * b + [False] * c, [False] * b + [True] * c)
        assert close(res.p_exact, case["p_exact"]), (b, c)
        assert close(res.chi2, case["chi2"]), (b, c)
        assert close(res.p_chi2, case["p_chi2"]), (b, c)


def test_probability_shift_matches_r_t_test_wilcoxon_and_holm(doc: Any) -> None:
    rows = {r["label"]: r for r in doc["probability"]}
    for ref in REF["probability"]:
        r = rows[ref["label"]]
        assert close(r["delta"], ref["delta"]), ref["label"]
        assert close(r["d_z"], ref["d_z"]), ref["label"]
        assert close(r["p_paired_t"], ref["p_paired_t"]), ref["label"]
        assert close(r["p_wilcoxon"], ref["p_wilcoxon"]), ref["label"]
        assert close(r["p_holm"], ref["p_holm"]), ref["label"]


def test_inputs_are_what_r_used() -> None:
    prob = np.array(REF["inputs"]["baseline_prob"])
    assert prob.shape == (60, 3)
    assert np.allclose(prob.sum(axis=1), 1.0, atol=1e-10)


def _numbers_equal(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_numbers_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_numbers_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15)
    return bool(a == b)


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="R is not installed")
def test_r_script_reproduces_the_committed_references(tmp_path: Path) -> None:
    out = tmp_path / "refs.json"
    proc = subprocess.run(
        ["Rscript", str(SCRIPT), str(out)], capture_output=True, text=True, timeout=120
    )
    if proc.returncode != 0 and "jsonlite" in proc.stderr:
        pytest.skip("R's jsonlite is not installed")
    assert proc.returncode == 0, proc.stderr
    fresh = json.loads(out.read_text(encoding="utf-8"))
    fresh.pop("r_version")
    committed = dict(REF)
    committed.pop("r_version")
    assert _numbers_equal(fresh, committed)
