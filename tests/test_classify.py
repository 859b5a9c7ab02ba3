"""Classification tasks: a sequence classifier steered at its encoder layers.

Tiny random BERT and DistilBERT classifiers are built from configs, saved to a folder and
loaded through the real loader; every expected value is computed here from the model's
own forward pass (transformers directly), never from the harness's numbers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tiny import CLASSIFY_LABELS, TEXTS, write_labelled
from tiny import save_classifier as save_any_classifier

from harness.config.spec import ModelSpec, load_spec
from harness.core.errors import SpecError
from harness.core.store import JsonlStore
from harness.model.loading import load_model
from harness.run.plan import build_plan
from harness.run.runner import open_plan, run_stages

LABELS = list(CLASSIFY_LABELS)


def _save(path: Path, kind: str = "bert", seed: int = 0, layers: int = 2) -> Path:
    return save_any_classifier(path, kind, seed=seed, layers=layers, labels=LABELS)


def write_spec(tmp: Path, model: Path, body: str = "", conditions: str | None = None) -> Path:
    write_labelled(tmp / "texts.jsonl")
    if conditions is None:
        conditions = """
[[conditions]]
name = "joy"
method = "activation"
[conditions.params]
layers = [0]
coefficient = 1.0
vector = {classes = "texts.jsonl", positive = "joy", negative = "neutral"}
[conditions.sweep]
coefficient = [0.0, 3.0]
"""
    spec = tmp / "spec.toml"
    spec.write_text(
        f"""name = "cls"
output_dir = "{tmp / "run"}"
[model]
id = "{model}"
[prompts]
file = "texts.jsonl"
[generation]
batch_size = 4
[report]
path = "{tmp / "report.md"}"
[analysis]
bootstrap_resamples = 50
{body}
{conditions}"""
    )
    return spec


def records(run_dir: Path) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (r["condition"], r["prompt_id"]): r
        for r in JsonlStore(run_dir / "generations.jsonl").iter_dicts()
    }


@pytest.fixture(scope="module", params=["bert", "distilbert"])
def classifier_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp(request.param)
    model = _save(tmp / "model", request.param)
    spec = write_spec(tmp, model)
    plan, source = open_plan(spec)
    summary = run_stages(plan, source)
    return tmp, model, plan, summary


def direct_probs(model_dir: Path, texts: list[str]) -> torch.Tensor:
    """Each text alone through transformers' own classifier: the expected probabilities."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir)).eval()
    with torch.no_grad():
        return torch.cat([model(**tok([t], return_tensors="pt")).logits.softmax(-1) for t in texts])


def test_records_equal_a_direct_forward_pass(classifier_run: Any) -> None:
    tmp, model, plan, _ = classifier_run
    assert plan.task == "classify" and plan.labels == LABELS
    recs = records(tmp / "run")
    # One record per (condition, text): a classifier is classified once (seed 0).
    assert len(recs) == 3 * len(TEXTS)
    assert {r["seed"] for r in recs.values()} == {0}
    expected = direct_probs(model, TEXTS)
    for i, text in enumerate(TEXTS):
        rec = recs[("baseline", f"t{i}")]
        assert rec["kind"] == "classification" and rec["prompt"] == text
        assert rec["gold"] == LABELS[i % 3]
        got = torch.tensor([rec["probs"][lab] for lab in LABELS])
        torch.testing.assert_close(got, expected[i], atol=1e-5, rtol=1e-4)
        assert rec["predicted"] == LABELS[int(expected[i].argmax())] == rec["text"]


def test_alpha_zero_changes_nothing_and_steering_does(classifier_run: Any) -> None:
    tmp, _, _, _ = classifier_run
    recs = records(tmp / "run")
    for i in range(len(TEXTS)):
        base = recs[("baseline", f"t{i}")]["probs"]
        # Bitwise: h + 0 * v is h.
        assert recs[("joy@coefficient=0", f"t{i}")]["probs"] == base
    moved = [
        recs[("joy@coefficient=3", f"t{i}")]["probs"] != recs[("baseline", f"t{i}")]["probs"]
        for i in range(len(TEXTS))
    ]
    assert all(moved)


def test_hooks_removed_after_steering(tmp_path: Path) -> None:
    from harness.run.classification import classify_rows
    from harness.run.generation import Row
    from harness.steering.base import MethodContext, NoSteering
    from harness.steering.methods.activation import ActivationSteering

    model = _save(tmp_path / "m")
    write_labelled(tmp_path / "texts.jsonl")
    lm = load_model(ModelSpec(id=str(model), task="classify"))
    params = ActivationSteering.Params.model_validate(
        {
            "layers": [1],
            "coefficient": 0.0,
            "vector": {"classes": "texts.jsonl", "positive": "joy", "negative": "neutral"},
        }
    )
    method = ActivationSteering(params, MethodContext("joy", tmp_path))
    method.prepare(lm)
    rows = [Row(f"t{i}", t, 0) for i, t in enumerate(TEXTS)]
    base = classify_rows(lm, NoSteering(NoSteering.Params(), MethodContext("b")), rows)
    steered = classify_rows(lm, method, rows)
    assert [c.probs for c in steered] == [c.probs for c in base]
    hooks = [m for m in lm.model.modules() if m._forward_hooks or m._forward_pre_hooks]
    assert hooks == []
    again = classify_rows(lm, NoSteering(NoSteering.Params(), MethodContext("b")), rows)
    assert [c.probs for c in again] == [c.probs for c in base]


@pytest.mark.parametrize("kind", ["bert", "distilbert"])
def test_class_mean_vector_equals_hand_computation(tmp_path: Path, kind: str) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from harness.config.vectors import EMBEDDING, VectorSource
    from harness.steering.base import MethodContext
    from harness.steering.methods.activation import obtain_vector

    model = _save(tmp_path / "m", kind)
    write_labelled(tmp_path / "texts.jsonl")
    lm = load_model(ModelSpec(id=str(model)))
    assert lm.task == "classify" and len(lm.layers) == 2
    src = VectorSource(classes="texts.jsonl", positive="joy", negative="neutral")
    assert src.aggregate == "mean"
    vec, _ = obtain_vector(lm, src, [EMBEDDING, 0, 1], MethodContext("c", tmp_path))
    tok = AutoTokenizer.from_pretrained(str(model))
    ref = AutoModelForSequenceClassification.from_pretrained(str(model)).eval()

    def pooled(texts: list[str], index: int) -> torch.Tensor:
        out = []
        for t in texts:  # one at a time: no padding at all
            enc = tok([t], return_tensors="pt")
            with torch.no_grad():
                hs = ref(**enc, output_hidden_states=True).hidden_states
            out.append(hs[index][0].mean(0))
        return torch.stack(out).mean(0)

    joy = [t for i, t in enumerate(TEXTS) if LABELS[i % 3] == "joy"]
    neutral = [t for i, t in enumerate(TEXTS) if LABELS[i % 3] == "neutral"]
    # hidden_states[0] is the embedding output, [i + 1] block i's output.
    for layer, index in ((EMBEDDING, 0), (0, 1), (1, 2)):
        expected = pooled(joy, index) - pooled(neutral, index)
        torch.testing.assert_close(vec.directions[layer], expected, atol=1e-5, rtol=1e-4)


def test_last_token_of_right_padded_texts(tmp_path: Path) -> None:
    """aggregate = "last" reads each text's last real token under right padding."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from harness.steering.vectors import hidden_states

    model = _save(tmp_path / "m")
    lm = load_model(ModelSpec(id=str(model)))
    assert lm.tokenizer.padding_side == "right"
    got = hidden_states(lm, TEXTS[:3], [1], "last")[1]
    tok = AutoTokenizer.from_pretrained(str(model))
    ref = AutoModelForSequenceClassification.from_pretrained(str(model)).eval()
    for i, t in enumerate(TEXTS[:3]):
        with torch.no_grad():
            hs = ref(**tok([t], return_tensors="pt"), output_hidden_states=True).hidden_states
        torch.testing.assert_close(got[i], hs[2][0, -1], atol=1e-5, rtol=1e-4)


def test_analysis_and_report(classifier_run: Any) -> None:
    tmp, _, _, summary = classifier_run
    doc = json.loads((tmp / "run" / "analysis.json").read_text())
    shift = doc["classification_shift"]
    assert doc["comparisons"] == [] and shift["baseline"] == "baseline"
    assert shift["labels"] == LABELS and shift["target"] == "joy"
    assert shift["doses"] == {"joy@coefficient=0": 0.0, "joy@coefficient=3": 3.0, "baseline": 0.0}
    # The baseline's accuracy, recomputed from the records.
    recs = records(tmp / "run")
    acc = np.mean([recs[("baseline", f"t{i}")]["predicted"] == LABELS[i % 3] for i in range(9)])
    base = next(c for c in shift["by_condition"] if c["condition"] == "baseline")
    accuracy = next(m for m in base["metrics"] if m["metric"] == "accuracy")
    assert accuracy["value"] == pytest.approx(acc)
    text = Path(summary.report).read_text()
    assert "## Classification shift" in text and "## Sample predictions" in text
    assert "## Results" not in text  # the generation sections are not rendered
    assert (Path(summary.report).with_suffix("") / "shift-target.png").exists()


def test_classified_rows_skip_generations_and_keep_last() -> None:
    from harness.analysis.classified import classified_rows

    recs: list[dict[str, Any]] = [
        {"id": "g", "condition": "b", "prompt_id": "p", "seed": 0, "text": "hi"},
        {"kind": "classification", "id": "a", "condition": "b", "prompt_id": "p",
         "gold": "joy", "predicted": "fear", "probs": {"joy": 0.2, "fear": 0.8}},
        {"kind": "classification", "id": "a", "condition": "b", "prompt_id": "p",
         "gold": "joy", "predicted": "joy", "probs": {"joy": 0.6, "fear": 0.4}},
    ]  # fmt: skip
    assert classified_rows(recs) == [
        {
            "condition": "b",
            "prompt_id": "p",
            "gold": "joy",
            "predicted": "joy",
            "probs": {"joy": 0.6, "fear": 0.4},
        }
    ]


def test_crossfitting_no_text_scored_by_a_head_trained_on_it(tmp_path: Path) -> None:
    import transformers as tf
    from sklearn.linear_model import LogisticRegression
    from tiny import bert_config, build_tokenizer

    from harness.model.builtin import build_crossfitted, embed, text_hash

    tok = build_tokenizer(chat_template=False)
    torch.manual_seed(0)
    enc_dir = tmp_path / "encoder"
    tf.BertModel(bert_config(tok)).save_pretrained(enc_dir)
    tok.save_pretrained(enc_dir)
    texts = [*TEXTS, *(f"{t} really" for t in TEXTS), *(f"so {t}" for t in TEXTS)]
    labelled = write_labelled(tmp_path / "labelled.jsonl", texts)
    k = 3
    model, _, fp = build_crossfitted(enc_dir, labelled, folds=k, cache_dir=tmp_path / "cache")
    labels = [LABELS[i % 3] for i in range(len(texts))]
    folds = model.row_inputs(texts)["folds"].tolist()
    hashes = [text_hash(t) for t in texts]
    assert sorted(set(folds)) == list(range(k))
    for label in LABELS:  # stratified: every fold holds each label equally often
        counts = [
            sum(f == j and lab == label for f, lab in zip(folds, labels, strict=True))
            for j in range(k)
        ]
        assert counts == [3, 3, 3]
    for h, f in zip(hashes, folds, strict=True):
        assert h not in model.trained_on[f]  # the head that scores a text never saw it
        assert all(h in model.trained_on[g] for g in range(k) if g != f)
    # Each head is scikit-learn's fit on the other folds' embeddings.
    x = embed(model, tok, texts).numpy()
    y = np.array([LABELS.index(lab) for lab in labels])
    for f in range(k):
        train = np.array(folds) != f
        ref = LogisticRegression(C=10.0, max_iter=5000).fit(x[train], y[train])
        np.testing.assert_allclose(model.head_weight[f].numpy(), ref.coef_, atol=1e-4)
    # The fitted heads are cached and read back as they were.
    again, _, fp2 = build_crossfitted(enc_dir, labelled, folds=k, cache_dir=tmp_path / "cache")
    assert torch.equal(again.head_weight, model.head_weight) and fp2["heads"] == fp["heads"]
    assert len(list((tmp_path / "cache").glob("heads-*.safetensors"))) == 1
    # A text outside the training set gets a fold too (no head saw it).
    assert 0 <= int(model.row_inputs(["an unseen text"])["folds"][0]) < k


def problems_of(spec: Path) -> list[str]:
    with pytest.raises(SpecError) as exc:
        build_plan(load_spec(spec), str(spec))
    return exc.value.problems


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save(tmp_path_factory.mktemp("bert") / "m")


@pytest.mark.parametrize(
    ("body", "conditions", "expected"),
    [
        ('[[scorers]]\ntype = "lexicon"', "", "scorers: a classification task has no generated"),
        (
            "",
            '[[conditions]]\nname = "p"\nmethod = "prompt"\nparams = {instruction = "Be joyful."}',
            "condition 'p': method 'prompt' rewrites the prompt",
        ),
        (
            "",
            '[[conditions]]\nname = "j"\nmethod = "activation"\nparams = {layers = [0], '
            'coefficient = 1.0, positions = "generated", vector = {classes = "texts.jsonl", '
            'positive = "joy", negative = "neutral"}}',
            "positions = 'generated' steers nothing in a classifier",
        ),
        (
            "",
            '[[conditions]]\nname = "j"\nmethod = "activation"\nparams = {layers = [0], '
            'coefficient = 1.0, vector = {classes = "texts.jsonl", positive = "jo", '
            'negative = "neutral"}}',
            "vector.classes: texts.jsonl has no texts labelled ['jo']",
        ),
        (
            "",
            '[[conditions]]\nname = "j"\nmethod = "activation"\nparams = {layers = [0], '
            'coefficient = 1.0, site = "attention", vector = {classes = "texts.jsonl", '
            'positive = "joy", negative = "neutral"}}',
            "site = 'attention' is not supported for 'bert' models",
        ),
    ],
)
def test_check_errors_are_one_line(
    tmp_path: Path, bert_dir: Path, body: str, conditions: str, expected: str
) -> None:
    spec = write_spec(tmp_path, bert_dir, body, conditions)
    problems = problems_of(spec)
    assert any(expected in p for p in problems), problems
    assert all("\n" not in p for p in problems)


def test_check_labels_and_tasks(tmp_path: Path, bert_dir: Path, tiny_model_dir: Path) -> None:
    spec = write_spec(tmp_path, bert_dir, conditions="")
    spec.write_text(spec.read_text().replace("[analysis]\n", '[analysis]\ntarget = "jo"\n'))
    [problem] = problems_of(spec)
    assert problem == (
        "analysis.target: 'jo' is not a class of the classifier (joy, neutral, fear); "
        "did you mean 'joy'?"
    )
    spec = write_spec(tmp_path, bert_dir, conditions="")
    (tmp_path / "texts.jsonl").write_text(
        json.dumps({"id": "a", "text": "happy", "label": "x"}) + "\n"
    )
    [problem] = problems_of(spec)
    assert problem.startswith("prompts: labels ['x'] are not classes of the classifier")
    (tmp_path / "texts.jsonl").write_text(json.dumps({"id": "a", "text": "happy"}) + "\n")
    [problem] = problems_of(spec)
    assert "no 'label' field; a classification task needs a label per text" in problem
    # A causal LM asked to classify.
    write_labelled(tmp_path / "texts.jsonl")
    spec.write_text(
        spec.read_text().replace(
            f'id = "{bert_dir}"', f'id = "{tiny_model_dir}"\ntask = "classify"'
        )
    )
    problems = problems_of(spec)
    assert problems == [problems[0]] and "holds no trained classification head" in problems[0]
