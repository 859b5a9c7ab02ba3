"""validate-scorer: accuracy, macro-F1, AUROC, correlations and their bootstrap intervals.

Every expected value is computed here independently: AUROC by counting positive/negative
pairs (Mann-Whitney), F1 from its counts, Spearman from the textbook formula or a
published worked example, and the bootstrap by a plain loop over the documented protocol.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from pydantic import Field

from harness.cli import main
from harness.core.errors import ValidationError
from harness.core.scoring import SCORERS, ScorerContext, ScoreResult, ScorerParams, ScoringItem
from harness.report.validation import render_markdown
from harness.stats import auroc
from harness.validate import validate_scorer
from harness.validate.metrics import labels_metrics, ratings_metrics
from harness.validate.setup import load_scorer_setup

# ---------------------------------------------------------------- independent references


def pair_auc(scores: Sequence[float], positive: Sequence[bool]) -> float | None:
    pos = [s for s, p in zip(scores, positive, strict=True) if p]
    neg = [s for s, p in zip(scores, positive, strict=True) if not p]
    if not pos or not neg:
        return None
    wins = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def hand_ranks(x: Sequence[float]) -> list[float]:
    """Mid-ranks (1-based): tied values share the mean of the ranks they occupy."""
    order = sorted(range(len(x)), key=lambda i: x[i])
    ranks = [0.0] * len(x)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and x[order[j + 1]] == x[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def hand_pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)


def hand_f1s(gold: Sequence[str], pred: Sequence[str], labels: Sequence[str]) -> list[float]:
    out = []
    for lab in labels:
        tp = sum(g == lab and p == lab for g, p in zip(gold, pred, strict=True))
        fp = sum(g != lab and p == lab for g, p in zip(gold, pred, strict=True))
        fn = sum(g == lab and p != lab for g, p in zip(gold, pred, strict=True))
        if 2 * tp + fp + fn:
            out.append(2 * tp / (2 * tp + fp + fn))
    return out


def percentile_95(values: list[float]) -> tuple[float, float]:
    lo, hi = np.percentile(np.array(values), [2.5, 97.5])
    return float(lo), float(hi)


# ---------------------------------------------------------------- statistics


def test_auroc_is_the_mann_whitney_pair_count_with_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=40).astype(float)  # many ties
    positive = rng.random(40) < 0.4
    assert auroc(scores, positive) == pytest.approx(pair_auc(scores, positive), abs=1e-12)
    assert auroc([1, 2, 3], [True, True, True]) is None
    assert auroc([0.1, 0.9, 0.4, 0.8], [False, True, False, True]) == 1.0


def test_accuracy_macro_f1_and_confusion_by_hand():
    gold = ["a", "a", "a", "b", "b", "c", "c", "c"]
    scores = {
        "a": np.array([0.9, 0.2, 0.5, 0.1, 0.5, 0.0, 0.3, 0.1]),
        "b": np.array([0.1, 0.7, 0.2, 0.8, 0.5, 0.1, 0.2, 0.1]),
        "c": np.array([0.0, 0.1, 0.3, 0.1, 0.0, 0.9, 0.5, 0.8]),
    }
    # argmax, ties to the earlier label: a b a b a(tie a=b) c c c
    pred = ["a", "b", "a", "b", "a", "c", "c", "c"]
    res = labels_metrics(gold, scores, ["a", "b", "c"], None, 0, 0)
    assert res["accuracy"]["value"] == pytest.approx(6 / 8)
    # a: tp 2, fp 1, fn 1 -> 4/6; b: tp 1, fp 1, fn 1 -> 2/4; c: 3/3 -> 1
    assert res["macro_f1"]["value"] == pytest.approx((4 / 6 + 2 / 4 + 1) / 3)
    assert res["macro_f1"]["value"] == pytest.approx(np.mean(hand_f1s(gold, pred, "abc")))
    assert res["per_label"]["a"]["precision"] == pytest.approx(2 / 3)
    assert res["per_label"]["b"]["recall"] == pytest.approx(1 / 2)
    assert res["confusion"]["matrix"] == [[2, 1, 0], [1, 1, 0], [0, 0, 3]]
    for lab in "abc":
        positive = [g == lab for g in gold]
        assert res["per_label"][lab]["auroc"]["value"] == pytest.approx(
            pair_auc(list(scores[lab]), positive)
        )


def test_none_label_is_predicted_when_no_other_label_scores_above_zero():
    gold = ["fear", "neutral", "neutral", "joy"]
    scores = {"fear": np.array([2.0, 0.0, 1.0, 0.0]), "joy": np.array([0.0, 0.0, 0.0, 3.0])}
    res = labels_metrics(gold, scores, ["fear", "joy", "neutral"], "neutral", 0, 0)
    assert res["confusion"]["matrix"] == [[1, 0, 0], [0, 1, 0], [1, 0, 1]]
    assert res["accuracy"]["value"] == pytest.approx(3 / 4)
    assert res["per_label"]["neutral"]["auroc"]["value"] is None
    assert "no metric" in res["per_label"]["neutral"]["auroc"]["reason"]


def test_labels_bootstrap_follows_the_documented_protocol():
    rng = np.random.default_rng(5)
    labels = ["x", "y", "z"]
    n = 30
    gold = [labels[i % 3] for i in range(n)]
    scores = {lab: rng.random(n) + 0.6 * (np.array(gold) == lab) for lab in labels}
    n_boot, seed = 300, 11
    res = labels_metrics(gold, scores, labels, None, n_boot, seed)
    pred = [labels[int(np.argmax([scores[lab][i] for lab in labels]))] for i in range(n)]
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    accs, macros, aucs = [], [], []
    for row in idx:
        g = [gold[i] for i in row]
        p = [pred[i] for i in row]
        accs.append(sum(a == b for a, b in zip(g, p, strict=True)) / n)
        macros.append(float(np.mean(hand_f1s(g, p, labels))))
        a = pair_auc([scores["y"][i] for i in row], [gold[i] == "y" for i in row])
        if a is not None:
            aucs.append(a)
    assert (res["accuracy"]["ci_low"], res["accuracy"]["ci_high"]) == pytest.approx(
        percentile_95(accs), abs=1e-12
    )
    assert (res["macro_f1"]["ci_low"], res["macro_f1"]["ci_high"]) == pytest.approx(
        percentile_95(macros), abs=1e-12
    )
    auc = res["per_label"]["y"]["auroc"]
    assert (auc["ci_low"], auc["ci_high"]) == pytest.approx(percentile_95(aucs), abs=1e-12)
    assert auc["dropped"] == n_boot - len(aucs)
    assert res["accuracy"]["ci_low"] < res["accuracy"]["value"] < res["accuracy"]["ci_high"]


def test_spearman_matches_the_textbook_formula_and_a_worked_example():
    # Spearman's rho without ties: 1 - 6 sum d^2 / (n (n^2 - 1)). Worked example (IQ vs.
    # hours of TV per week, 10 people): rho = -29/165.
    iq = [106, 100, 86, 101, 99, 103, 97, 113, 112, 110]
    tv = [7, 27, 2, 50, 28, 29, 20, 12, 6, 17]
    res = ratings_metrics(np.array(iq, float), np.array(tv, float), 0, 0)
    d2 = sum((a - b) ** 2 for a, b in zip(hand_ranks(iq), hand_ranks(tv), strict=True))
    assert res["spearman"]["value"] == pytest.approx(1 - 6 * d2 / (10 * 99))
    assert res["spearman"]["value"] == pytest.approx(-29 / 165)
    assert res["pearson"]["value"] == pytest.approx(hand_pearson(iq, tv))


def test_ratings_bootstrap_with_ties_follows_the_protocol():
    rng = np.random.default_rng(2)
    x = np.round(rng.random(25), 1)  # ties, and more ties in resamples
    y = np.round(x * 50 + rng.normal(0, 20, 25))
    res = ratings_metrics(x, y, 200, 4)
    idx = np.random.default_rng(4).integers(0, 25, size=(200, 25))
    rhos, rs = [], []
    for row in idx:
        xs, ys = [float(x[i]) for i in row], [float(y[i]) for i in row]
        rho = hand_pearson(hand_ranks(xs), hand_ranks(ys))
        r = hand_pearson(xs, ys)
        if rho is not None:
            rhos.append(rho)
        if r is not None:
            rs.append(r)
    sp = res["spearman"]
    assert sp["value"] == pytest.approx(hand_pearson(hand_ranks(list(x)), hand_ranks(list(y))))
    assert (sp["ci_low"], sp["ci_high"]) == pytest.approx(percentile_95(rhos), abs=1e-12)
    pe = res["pearson"]
    assert (pe["ci_low"], pe["ci_high"]) == pytest.approx(percentile_95(rs), abs=1e-12)


def test_degenerate_ratings_are_null_with_reason_not_nan():
    res = ratings_metrics(np.array([1.0, 1.0, 1.0, 1.0]), np.array([1.0, 2.0, 3.0, 4.0]), 50, 0)
    assert res["spearman"]["value"] is None
    assert "constant" in res["spearman"]["reason"]
    res = ratings_metrics(np.array([1.0, 2.0]), np.array([1.0, 2.0]), 50, 0)
    assert "fewer than 3" in res["pearson"]["reason"]
    json.dumps(res, allow_nan=False)


# ---------------------------------------------------------------- end to end


class KeywordParams(ScorerParams):
    words: dict[str, str] = Field(default_factory=dict)


class KeywordScorer:
    """Test scorer: 1 for a label whose keyword is in the text, else 0; null for 'xxx'."""

    Params = KeywordParams
    batch_size = 3
    calls: ClassVar[int] = 0

    def __init__(self, params: KeywordParams, context: ScorerContext):
        self.params = params

    @property
    def metrics(self) -> list[str]:
        return list(self.params.words.values())

    def score(self, items: Sequence[ScoringItem]) -> list[dict[str, ScoreResult]]:
        out = []
        for it in items:
            if it.text == "xxx":
                out.append({m: ScoreResult.null("unreadable") for m in self.metrics})
                continue
            out.append(
                {
                    lab: ScoreResult.ok(float(word in it.text) * (1 + len(it.text) / 100))
                    for word, lab in self.params.words.items()
                }
            )
        return out


@pytest.fixture
def keyword_scorer():  # type: ignore[no-untyped-def]
    SCORERS.register("keyword-test", KeywordScorer)
    yield "keyword-test"
    SCORERS._explicit.pop("keyword-test", None)


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


GOLD = [
    ("i was scared", "fear"),
    ("so scared of it", "fear"),
    ("a happy day", "joy"),
    ("happy and scared", "joy"),
    ("the bus came", "neutral"),
    ("xxx", "fear"),
    ("tea at four", "neutral"),
]


def test_validate_scorer_end_to_end_from_a_toml_spec(tmp_path: Path, keyword_scorer, capsys):
    spec = tmp_path / "scorer.toml"
    spec.write_text(
        f'[scorer]\ntype = "{keyword_scorer}"\nname = "kw"\n'
        '[scorer.params]\nwords = { scared = "fear", happy = "joy" }\n'
    )
    data = write_jsonl(
        tmp_path / "gold.jsonl",
        [{"id": f"t{i}", "text": t, "label": lab} for i, (t, lab) in enumerate(GOLD)],
    )
    out = tmp_path / "out" / "kw"
    rc = main(["validate-scorer", str(spec), str(data), "--bootstrap", "100", "--out", str(out)])
    assert rc == 0
    result = json.loads((tmp_path / "out" / "kw.json").read_text())
    assert result["mode"] == "labels"
    assert result["none_label"] == "neutral"  # the one gold label without a metric
    assert (result["n_scored"], result["n_unscored"]) == (6, 1)
    assert result["unscored_reasons"] == {"unreadable": 1}
    gold = [lab for t, lab in GOLD if t != "xxx"]
    texts = [t for t, _ in GOLD if t != "xxx"]
    pred = []
    for t in texts:
        s = {"fear": float("scared" in t), "joy": float("happy" in t)}
        pred.append("neutral" if max(s.values()) <= 0 else max(s, key=lambda k: s[k]))
    acc = sum(g == p for g, p in zip(gold, pred, strict=True)) / len(gold)
    assert result["accuracy"]["value"] == pytest.approx(acc)
    assert result["macro_f1"]["value"] == pytest.approx(
        np.mean(hand_f1s(gold, pred, ["fear", "joy", "neutral"]))
    )
    md = (tmp_path / "out" / "kw.md").read_text()
    assert md == capsys.readouterr().out.split("written:")[0].rstrip("\n") + "\n"
    assert "| accuracy [95% CI] | macro-F1 [95% CI] |" in md
    assert "neutral (none label)" in md


def test_validate_ratings_from_a_yaml_spec_and_metric_choice(tmp_path: Path, keyword_scorer):
    spec = tmp_path / "scorer.yaml"
    spec.write_text(f"scorer:\n  type: {keyword_scorer}\n  params:\n    words: {{scared: fear}}\n")
    rows = [
        {"text": "calm day", "rating": 0, "trait": "fear"},
        {"text": "a bit scared", "rating": 60, "trait": "fear"},
        {"text": "very very scared of all of it", "rating": 95, "trait": "fear"},
        {"text": "quiet", "rating": 5, "trait": "fear"},
        {"text": "scared", "rating": 40, "trait": "fear"},
    ]
    data = write_jsonl(tmp_path / "r.jsonl", rows)
    res = validate_scorer(str(spec), str(data), n_resamples=100, seed=0)
    assert res["mode"] == "ratings" and res["metric"] == "fear"
    sc = [float("scared" in r["text"]) * (1 + len(r["text"]) / 100) for r in rows]
    ratings = [r["rating"] for r in rows]
    assert res["spearman"]["value"] == pytest.approx(
        hand_pearson(hand_ranks(sc), hand_ranks(ratings))
    )
    assert res["pearson"]["value"] == pytest.approx(hand_pearson(sc, ratings))
    assert "Spearman ρ" in render_markdown(res)
    with pytest.raises(ValidationError, match="not a metric of the scorer"):
        validate_scorer(str(spec), str(data), metric="joy")


def test_lexicon_on_the_shipped_labelled_set_runs_by_name(tmp_path: Path):
    res = validate_scorer("lexicon", "labels/emotions.jsonl", n_resamples=50)
    assert res["n_texts"] == 210 and res["none_label"] == "neutral"
    assert res["accuracy"]["ci_low"] <= res["accuracy"]["value"] <= res["accuracy"]["ci_high"]
    json.dumps(res, allow_nan=False)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ('type = "lexicon"\n', "needs a [scorer] table"),
        ('[scorer]\ntype = "lexicon"\ncolour = 1\n', "unknown keys ['colour']"),
        ("[scorer]\nparams = {}\n", "scorer.type is required"),
        ('[scorer]\ntype = "lexicom"\n', "did you mean 'lexicon'"),
        ('[scorer]\ntype = "lexicon"\n[scorer.params]\nlexicon = "nope.csv"\n', "not found"),
        ('[scorer]\ntype = "lexicon"\n[scorer.params]\nlexcon = "x"\n', "params.lexcon"),
    ],
)
def test_bad_scorer_specs_fail_with_what_to_fix(tmp_path: Path, content: str, needle: str):
    spec = tmp_path / "s.toml"
    spec.write_text(content)
    with pytest.raises(ValidationError) as info:
        validate_scorer(str(spec), "labels/ratings.jsonl", n_resamples=0)
    assert needle in str(info.value)


def test_too_many_labels_without_metrics_and_bad_gold_files(tmp_path: Path, keyword_scorer):
    data = write_jsonl(
        tmp_path / "g.jsonl",
        [{"text": "a", "label": "x"}, {"text": "b", "label": "y"}, {"text": "c", "label": "z"}],
    )
    spec = tmp_path / "s.toml"
    spec.write_text(f'[scorer]\ntype = "{keyword_scorer}"\nparams = {{ words = {{a = "x"}} }}\n')
    with pytest.raises(ValidationError, match=r"no metric for gold labels \['y', 'z'\]"):
        validate_scorer(str(spec), str(data))
    with pytest.raises(ValidationError, match=r"no metric for gold labels \['z'\]"):
        validate_scorer(str(spec), str(data), none_label="y")
    with pytest.raises(ValidationError, match="has a metric of that name"):
        validate_scorer(str(spec), str(data), none_label="x")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "label": "x"}\n{"text": "b"}\n')
    with pytest.raises(ValidationError, match=r"bad.jsonl:2: needs 'label' or 'rating'"):
        validate_scorer(str(spec), str(bad))
    assert main(["validate-scorer", str(spec), str(tmp_path / "none.jsonl")]) == 2
    assert load_scorer_setup("lexicon").params == {}
