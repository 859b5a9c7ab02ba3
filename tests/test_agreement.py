"""Agreement between scorers on the same trait: Spearman, Krippendorff's alpha, the report.

References computed here: Spearman's rho from the textbook formula and a worked example;
Krippendorff's alpha from its defining double sums, from the closed form for two coders
without missing values, and against the published example of Krippendorff (2011).
"""

from __future__ import annotations

import json
import math
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_validation import hand_pearson, hand_ranks  # the same hand-written references

from harness.analysis.agreement import agreement
from harness.analysis.analyze import EXTRAS, analyze_records
from harness.analysis.table import AnalysisInput, score_table
from harness.report.agreement import section_agreement
from harness.report.data import RunData
from harness.report.markdown import render
from harness.stats import krippendorff_alpha_interval, spearman

NAN = math.nan


def hand_spearman(x: list[float], y: list[float]) -> float | None:
    return hand_pearson(hand_ranks(x), hand_ranks(y))


def alpha_by_definition(units: list[list[float]]) -> float:
    """1 - (n-1) Σ_u Σ_{i≠j} δ²/(m_u-1) / Σ_{i≠j over all pairable values} δ² (interval δ)."""
    pairable = [[v for v in u if not math.isnan(v)] for u in units]
    pairable = [u for u in pairable if len(u) >= 2]
    values = [v for u in pairable for v in u]
    n = len(values)
    within = sum(
        (u[i] - u[j]) ** 2 / (len(u) - 1)
        for u in pairable
        for i, j in product(range(len(u)), repeat=2)
        if i != j
    )
    total = sum((a - b) ** 2 for a, b in product(values, repeat=2))
    return 1 - (n - 1) * within / total


# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 observers,
# 12 units, missing values; published alpha: nominal 0.743, interval 0.849.
KRIPPENDORFF_2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
    [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
]


def test_krippendorff_alpha_published_example_and_definition():
    units = np.array(KRIPPENDORFF_2011, dtype=float).T  # units x coders
    alpha = krippendorff_alpha_interval(units)
    assert alpha is not None
    assert round(alpha, 3) == 0.849
    assert alpha == pytest.approx(alpha_by_definition(units.tolist()), abs=1e-12)


def test_krippendorff_alpha_two_coders_closed_form():
    rng = np.random.default_rng(0)
    a = rng.normal(size=30)
    b = a + rng.normal(scale=0.7, size=30)
    values = np.concatenate([a, b])
    n = values.size
    closed = 1 - (n - 1) * np.sum((a - b) ** 2) / (n * np.sum((values - values.mean()) ** 2))
    assert krippendorff_alpha_interval(np.column_stack([a, b])) == pytest.approx(closed)
    assert krippendorff_alpha_interval([[1, 1], [1, 1], [1, 1]]) is None
    assert krippendorff_alpha_interval([[1, 2]]) is None


def test_spearman_textbook_formula_and_ties():
    iq = [106, 100, 86, 101, 99, 103, 97, 113, 112, 110]
    tv = [7, 27, 2, 50, 28, 29, 20, 12, 6, 17]
    d2 = sum((a - b) ** 2 for a, b in zip(hand_ranks(iq), hand_ranks(tv), strict=True))
    assert spearman(iq, tv) == pytest.approx(1 - 6 * d2 / (10 * (10**2 - 1)))
    assert spearman(iq, tv) == pytest.approx(-29 / 165)
    x = [1.0, 2.0, 2.0, 3.0, 5.0, 5.0, 5.0]
    y = [2.0, 1.0, 4.0, 4.0, 3.0, 6.0, 6.0]
    assert spearman(x, y) == pytest.approx(hand_spearman(x, y))
    assert spearman([1, 1, 1], [1, 2, 3]) is None


# ------------------------------------------------------------------ records -> agreement


def make_records(seed: int = 0) -> list[dict[str, Any]]:
    """lexicon (no scale), emb and clf (probability scale) on fear; lexicon has hedging."""
    rng = np.random.default_rng(seed)
    recs = []
    for cond, shift in (("baseline", 0.0), ("steered", 1.0)):
        for p in range(6):
            for s in range(3):
                latent = shift + rng.normal()
                vals = {
                    ("lexicon", "fear"): max(0.0, latent + rng.normal()),
                    ("lexicon", "hedging"): rng.random(),
                    ("emb", "fear"): 1 / (1 + math.exp(-latent - rng.normal(scale=0.5))),
                    ("clf", "fear"): 1 / (1 + math.exp(-latent - rng.normal(scale=0.5))),
                }
                for (scorer, metric), v in vals.items():
                    extra = {} if scorer == "lexicon" else {"scale": "probability"}
                    recs.append(
                        {
                            "condition": cond,
                            "prompt_id": f"p{p}",
                            "seed": s,
                            "scorer": scorer,
                            "metric": metric,
                            "value": v,
                            "extra": extra,
                        }
                    )
    return recs


def run_agreement(recs: list[dict[str, Any]], n_boot: int = 200) -> dict[str, Any]:
    inp = AnalysisInput(
        recs,
        "baseline",
        ["baseline", "steered"],
        options={"bootstrap_resamples": n_boot, "bootstrap_seed": 3},
        table=score_table(recs),
    )
    return agreement(inp)


def values(recs, scorer, metric, cond=None):  # type: ignore[no-untyped-def]
    return {
        (r["condition"], r["prompt_id"], r["seed"]): r["value"]
        for r in recs
        if r["scorer"] == scorer and r["metric"] == metric and cond in (None, r["condition"])
    }


def test_pairs_rho_by_condition_and_alpha_only_on_one_scale():
    recs = make_records()
    recs[0]["value"] = None  # lexicon/fear of one text is null: that text drops from its pairs
    result = run_agreement(recs)
    pairs = {(p["scorer_a"], p["scorer_b"], p["metric"]): p for p in result["pairs"]}
    assert set(pairs) == {
        ("lexicon", "emb", "fear"),
        ("lexicon", "clf", "fear"),
        ("emb", "clf", "fear"),
    }  # hedging has one scorer only
    lex, emb = values(recs, "lexicon", "fear"), values(recs, "emb", "fear")
    keys = sorted(k for k in lex if lex[k] is not None)
    p = pairs[("lexicon", "emb", "fear")]
    assert p["n"] == 35 and p["n_incomplete"] == 1
    assert p["spearman"] == pytest.approx(
        hand_spearman([lex[k] for k in keys], [emb[k] for k in keys])
    )
    base = [k for k in keys if k[0] == "baseline"]
    assert p["by_condition"]["baseline"]["n"] == 17
    assert p["by_condition"]["baseline"]["spearman"] == pytest.approx(
        hand_spearman([lex[k] for k in base], [emb[k] for k in base])
    )
    assert p["krippendorff_alpha"] is None
    assert "not on one scale" in p["alpha_reason"] and "no declared scale" in p["alpha_reason"]
    q = pairs[("emb", "clf", "fear")]
    clf = values(recs, "clf", "fear")
    assert q["same_scale"] and q["scale_a"] == "probability"
    a, b = [emb[k] for k in sorted(emb)], [clf[k] for k in sorted(emb)]
    assert q["krippendorff_alpha"] == pytest.approx(
        alpha_by_definition([[x, y] for x, y in zip(a, b, strict=True)])
    )
    assert q["ci_low"] > 0 and q["spearman"] >= 0.5
    assert q["reading"] == "large agreement"
    json.dumps(result, allow_nan=False)


def test_rho_interval_is_the_documented_prompt_cluster_bootstrap():
    recs = make_records(1)
    p = next(x for x in run_agreement(recs, 150)["pairs"] if x["scorer_b"] == "emb")
    lex, emb = values(recs, "lexicon", "fear"), values(recs, "emb", "fear")
    prompts = sorted({k[1] for k in lex})
    by_prompt = {pid: sorted(k for k in lex if k[1] == pid) for pid in prompts}
    idx = np.random.default_rng(3).integers(0, len(prompts), size=(150, len(prompts)))
    rhos = []
    for row in idx:
        keys = [k for j in row for k in by_prompt[prompts[j]]]
        r = hand_spearman([lex[k] for k in keys], [emb[k] for k in keys])
        if r is not None:
            rhos.append(r)
    lo, hi = np.percentile(rhos, [2.5, 97.5])
    assert (p["ci_low"], p["ci_high"]) == pytest.approx((lo, hi), abs=1e-12)
    assert p["boot_resamples"] == 150 and p["boot_dropped"] == 150 - len(rhos)


def test_reading_uses_the_interval_sign_and_cohens_conventions():
    from harness.analysis.agreement import reading

    assert reading(0.15, 0.05, 0.24) == "small agreement"
    assert reading(0.35, 0.2, 0.5) == "medium agreement"
    assert reading(0.05, -0.02, 0.11) == "no detectable agreement"
    assert reading(-0.6, -0.8, -0.4) == "disagreement (large negative ρ)"
    assert reading(0.09, 0.01, 0.2) == "negligible agreement"
    assert reading(None, None, None) == "undefined"


def test_degenerate_data_gives_null_with_reason_never_nan():
    recs = [
        r for r in make_records() if r["scorer"] in ("lexicon", "emb") and r["metric"] == "fear"
    ]
    for r in recs:
        if r["scorer"] == "emb":
            r["value"] = 0.5  # constant
    (p,) = run_agreement(recs)["pairs"]
    assert p["spearman"] is None and "constant scores from emb/fear" in p["spearman_reason"]
    assert p["ci_low"] is None and p["reading"] == "undefined"
    few = [r for r in make_records() if r["prompt_id"] == "p0" and r["seed"] == 0]
    few = [r for r in few if r["metric"] == "fear"]  # 2 texts per scorer
    result = run_agreement(few)
    for p in result["pairs"]:
        assert p["spearman"] is None
        assert p["spearman_reason"] == "fewer than 3 texts scored by both (n=2)"
        assert p["krippendorff_alpha"] is None and p["alpha_reason"]
    json.dumps(result, allow_nan=False)


def test_registered_as_an_analysis_extra_and_rendered(tmp_path: Path):
    assert ("agreement", agreement) in EXTRAS
    analysis = analyze_records(make_records(), n_boot=50)
    assert {p["metric"] for p in analysis["agreement"]["pairs"]} == {"fear"}
    json.dumps(analysis, allow_nan=False)
    run = RunData(tmp_path, analysis)
    md = section_agreement(run)
    assert md.startswith("## Agreement between scorers")
    assert "| fear | lexicon · emb |" in md
    assert "— (scales differ)" in md
    assert "## Agreement between scorers" in render(run)
    assert section_agreement(RunData(tmp_path, {"agreement": {"pairs": []}})) == ""
    assert section_agreement(RunData(tmp_path, {})) == ""
