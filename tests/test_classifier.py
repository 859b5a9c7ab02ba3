"""The classifier scorer on a tiny random BERT built from a config and saved to disk.

Expected values are computed here from the model's raw logits (loaded with transformers
directly) with softmax and sigmoid written out by hand.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from tiny import save_classifier

from harness.core.scoring import SCORERS, ScorerContext, ScoringItem
from judges.classifier import ClassifierError, ClassifierParams, ClassifierScorer

TEXTS = [
    "i am afraid of the dark .",
    "describe your walk to the bakery this morning .",
    "happy",
    "tell me about the room you are sitting in , and what you see from the window .",
]


@pytest.fixture(scope="module")
def clf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_classifier(tmp_path_factory.mktemp("clf"))


@pytest.fixture(scope="module")
def multi_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_classifier(
        tmp_path_factory.mktemp("multi"), problem_type="multi_label_classification"
    )


def raw_logits(path: Path, text: str) -> list[float]:
    """Logits of one text alone (no padding), straight from transformers."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    with torch.no_grad():
        out = model(**tok(text, return_tensors="pt")).logits[0]
    return [float(v) for v in out]


def hand_softmax(z: list[float]) -> list[float]:
    m = max(z)
    e = [math.exp(v - m) for v in z]
    return [v / sum(e) for v in e]


def hand_sigmoid(z: list[float]) -> list[float]:
    return [1 / (1 + math.exp(-v)) for v in z]


def run(scorer: ClassifierScorer, texts: list[str]) -> list[dict[str, Any]]:
    return scorer.score([ScoringItem(t, "p", f"g{i}", "c") for i, t in enumerate(texts)])


def make(path: Path, **params: Any) -> ClassifierScorer:
    return ClassifierScorer(
        ClassifierParams(model=str(path), device="cpu", **params), ScorerContext()
    )


def test_softmax_probabilities_match_hand_computation_in_a_padded_batch(clf_dir: Path):
    scorer = make(clf_dir)
    assert scorer.function == "softmax"
    assert scorer.metrics == ["calm", "fear", "joy"]
    rows = run(scorer, TEXTS)  # one padded batch: padding must not change any value
    for text, row in zip(TEXTS, rows, strict=True):
        expected = hand_softmax(raw_logits(clf_dir, text))
        got = [row[m].value for m in scorer.metrics]
        assert got == pytest.approx(expected, abs=1e-5)
        assert sum(got) == pytest.approx(1.0)
        assert row["fear"].extra["scale"] == "probability"
    # the random model is not flat: texts get different distributions
    assert abs(rows[0]["fear"].value - rows[1]["fear"].value) > 1e-3


def test_multi_label_config_uses_independent_sigmoids(multi_dir: Path):
    scorer = make(multi_dir)
    assert scorer.function == "sigmoid"
    (row,) = run(scorer, [TEXTS[0]])
    expected = hand_sigmoid(raw_logits(multi_dir, TEXTS[0]))
    got = [row[m].value for m in scorer.metrics]
    assert got == pytest.approx(expected, abs=1e-5)
    assert abs(sum(got) - 1.0) > 1e-3  # not a distribution over labels


def test_function_override_none_gives_raw_logits_without_scale(clf_dir: Path):
    scorer = make(clf_dir, function="none")
    (row,) = run(scorer, [TEXTS[2]])
    assert [row[m].value for m in scorer.metrics] == pytest.approx(
        raw_logits(clf_dir, TEXTS[2]), abs=1e-5
    )
    assert "scale" not in row["calm"].extra


def test_label_mapping_by_name_index_and_label_n_and_dropping(clf_dir: Path):
    scorer = make(clf_dir, labels={"LABEL_1": "fear_t", "2": "joy_t", "calm": "calm_t"})
    assert scorer.metrics == ["calm_t", "fear_t", "joy_t"]
    dropped = make(clf_dir, labels={"fear": "fear"}, unmapped="drop")
    assert dropped.metrics == ["fear"]
    full = run(make(clf_dir), [TEXTS[0]])[0]
    (row,) = run(dropped, [TEXTS[0]])
    # the softmax runs over every label, also the dropped ones
    assert row["fear"].value == pytest.approx(full["fear"].value, abs=1e-6)


def test_bad_mappings_fail_at_check_time_with_the_models_labels(clf_dir: Path):
    check = ClassifierScorer.check
    (msg,) = check(ClassifierParams(model=str(clf_dir), labels={"anger": "anger"}), clf_dir)
    assert "label 'anger' is not a label of model" in msg
    assert "0=calm, 1=fear, 2=joy" in msg
    (msg,) = check(ClassifierParams(model=str(clf_dir), labels={"calm": "fear"}), clf_dir)
    assert "occur twice" in msg
    (msg,) = check(
        ClassifierParams(model=str(clf_dir), labels={"calm": "x", "LABEL_0": "y"}), clf_dir
    )
    assert "mapped twice" in msg
    (msg,) = check(ClassifierParams(model="./no/such/model"), clf_dir)
    assert "not found" in msg
    assert check(ClassifierParams(model=str(clf_dir)), clf_dir) == []


def test_truncation_scores_the_first_max_length_tokens_and_flags_it(clf_dir: Path):
    scorer = make(clf_dir, max_length=4)
    long_text = "i am afraid of the dark ."  # 7 tokens (no special tokens in this tokenizer)
    head = "i am afraid of"
    rows = run(scorer, [long_text, head])
    assert rows[0]["fear"].extra["truncated"] is True
    assert rows[0]["fear"].extra["tokens"] == 7
    assert "truncated" not in rows[1]["fear"].extra
    for m in scorer.metrics:
        assert rows[0][m].value == pytest.approx(rows[1][m].value, abs=1e-6)
    # the default limit is the config's max_position_embeddings (the tokenizer sets none)
    assert make(clf_dir).max_length == 64


def test_empty_text_is_null_with_reason(clf_dir: Path):
    rows = run(make(clf_dir), ["  ", TEXTS[0]])
    assert rows[0]["fear"].value is None
    assert rows[0]["fear"].reason == "empty text: nothing to classify"
    assert rows[1]["fear"].value is not None


def test_registered_and_described(clf_dir: Path):
    assert SCORERS.get("classifier") is ClassifierScorer
    d = make(clf_dir, labels={"fear": "fear"}).describe()
    assert d["function"] == "softmax"
    assert d["labels"] == {"calm": "calm", "fear": "fear", "joy": "joy"}


def test_spec_check_reports_a_bad_label_against_the_scorer(make_spec, clf_dir: Path):
    from harness.config.spec import SpecError, load_spec
    from harness.run.plan import build_plan

    extra = (
        f'\n[[scorers]]\ntype = "classifier"\n[scorers.params]\nmodel = "{clf_dir}"\n'
        'labels = { angry = "anger" }\n'
    )
    path = make_spec(extra=extra)
    with pytest.raises(SpecError) as info:
        build_plan(load_spec(path), str(path))
    (msg,) = info.value.problems
    assert msg.startswith("scorers[1].params: label 'angry' is not a label")


def test_unknown_hub_model_offline_fails_at_check(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (msg,) = ClassifierScorer.check(ClassifierParams(model="nobody/no-such-model"), tmp_path)
    assert "cannot load the config of 'nobody/no-such-model'" in msg
    with pytest.raises(ClassifierError):
        make(tmp_path / "missing")
