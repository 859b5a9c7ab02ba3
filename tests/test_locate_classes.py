"""``steer-harness locate`` on a classifier, on a tiny random 3-block BERT classifier: the
probe against scikit-learn on the same features, the attribution of the class-logit gap
against an autograd reference and finite differences, the exact effect against a forward
pass hooked by hand, ``layers = "locate:classes"`` in a spec (resolution, caching, ids
equal to the numeric spec), and the one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tiny import CLASSIFY_LABELS, TEXTS, save_classifier, write_labelled

from harness.cli import main
from harness.config.spec import ConditionSpec, ModelSpec
from harness.config.vectors import EMBEDDING, LocateRef
from harness.locate.classes import (
    ClassLocateOptions,
    forward_gap,
    locate_classes,
    select_classes,
)
from harness.locate.layers import top_layers, with_located
from harness.model.loading import load_model
from harness.run.runner import open_plan, run_stages
from harness.stats import spearman
from harness.steering.vectors import hidden_states

# 18 texts over the tiny vocabulary, labelled joy, neutral, fear in turn: 6 per class.
ALL_TEXTS = TEXTS + [" ".join(reversed(t.split())) for t in TEXTS]
LAYERS = [EMBEDDING, 0, 1, 2]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Any]:
    tmp = tmp_path_factory.mktemp("cls-locate")
    model = save_classifier(tmp / "model", "bert", seed=1, layers=3, labels=CLASSIFY_LABELS)
    texts = write_labelled(tmp / "texts.jsonl", ALL_TEXTS)
    lm = load_model(ModelSpec(id=str(model), device="cpu", task="classify"))
    return model, texts, lm


def class_texts_of(texts: Path) -> Any:
    rows = [json.loads(line) for line in texts.read_text().splitlines()]
    return select_classes(
        [r["text"] for r in rows], [r["label"] for r in rows], "joy", "neutral", str(texts)
    )


@pytest.fixture(scope="module")
def doc(setup: Any) -> dict[str, Any]:
    _, texts, lm = setup
    return locate_classes(lm, class_texts_of(texts), ClassLocateOptions(folds=3, check=3))


def hooked_gap(model: Any, enc: Any, layer: int, vector: torch.Tensor | None) -> torch.Tensor:
    """logit[joy] - logit[neutral] with ``vector`` added at every position of ``layer``,
    hooked by hand on transformers' own modules (no harness hook)."""
    bert = model.bert
    module = bert.embeddings if layer == EMBEDDING else bert.encoder.layer[layer]

    def hook(_m: Any, _a: Any, out: Any) -> Any:
        if vector is None:
            return None
        if isinstance(out, tuple):
            return (out[0] + vector, *out[1:])
        return out + vector

    handle = module.register_forward_hook(hook)
    try:
        logits = model(**enc).logits.float()
    finally:
        handle.remove()
    joy, neutral = CLASSIFY_LABELS.index("joy"), CLASSIFY_LABELS.index("neutral")
    return logits[:, joy] - logits[:, neutral]


def vectors_of(lm: Any, ct: Any) -> dict[int, torch.Tensor]:
    hp = hidden_states(lm, ct.pos, LAYERS, "mean")
    hn = hidden_states(lm, ct.neg, LAYERS, "mean")
    return {i: hp[i].mean(0) - hn[i].mean(0) for i in LAYERS}


def test_probe_accuracy_equals_scikit_learn(setup: Any, doc: dict[str, Any]) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    _, texts, lm = setup
    ct = class_texts_of(texts)
    hp = hidden_states(lm, ct.pos, LAYERS, "mean")
    hn = hidden_states(lm, ct.neg, LAYERS, "mean")
    assert [s["layer"] for s in doc["sites"]] == LAYERS
    for site in doc["sites"]:
        i = site["layer"]
        x = np.concatenate([hp[i].numpy(), hn[i].numpy()]).astype(np.float64)
        y = np.array([1] * len(ct.pos) + [0] * len(ct.neg))
        pipe = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
        cv = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)
        scores = cross_val_score(pipe, x, y, cv=cv, scoring="accuracy")
        assert site["probe_folds"] == pytest.approx(list(scores), abs=1e-12)
        assert site["probe_accuracy"] == pytest.approx(float(scores.mean()), abs=1e-12)
        assert site["vector_norm"] == pytest.approx(float((hp[i].mean(0) - hn[i].mean(0)).norm()))


def test_attribution_equals_autograd_and_finite_differences(setup: Any, doc: dict[str, Any]):
    _, texts, lm = setup
    ct = class_texts_of(texts)
    vectors = vectors_of(lm, ct)
    enc = lm.tokenizer(ct.neg, return_tensors="pt", padding=True)
    joy, neutral = CLASSIFY_LABELS.index("joy"), CLASSIFY_LABELS.index("neutral")
    for site in doc["sites"]:
        i, v = site["layer"], vectors[site["layer"]]
        # Autograd reference: d/dα of M(h + α v) at α = 0, through a hand-made hook.
        alpha = torch.zeros((), requires_grad=True)
        m = hooked_gap(lm.model, enc, i, alpha * v)
        per_text = [
            float(torch.autograd.grad(m[t], alpha, retain_graph=True)[0]) for t in range(len(m))
        ]
        assert site["attribution"] == pytest.approx(float(np.mean(per_text)), rel=1e-4, abs=1e-6)
        se = float(np.std(per_text, ddof=1) / np.sqrt(len(per_text)))
        assert site["attribution_se"] == pytest.approx(se, rel=1e-3, abs=1e-6)
        # Central finite difference through the harness's own hook.
        eps = 1e-3
        with torch.no_grad():
            up = forward_gap(lm, ct.neg, (joy, neutral), {i: eps * v})
            down = forward_gap(lm, ct.neg, (joy, neutral), {i: -eps * v})
        fd = float(((up - down) / (2 * eps)).mean())
        assert site["attribution"] == pytest.approx(fd, rel=2e-2, abs=1e-3)


def test_exact_effect_equals_a_hooked_forward_and_rho(setup: Any, doc: dict[str, Any]) -> None:
    _, texts, lm = setup
    ct = class_texts_of(texts)
    vectors = vectors_of(lm, ct)
    enc = lm.tokenizer(ct.neg, return_tensors="pt", padding=True)
    checked = [s for s in doc["sites"] if s["exact"] is not None]
    assert len(checked) == 3
    by_attribution = sorted(doc["sites"], key=lambda s: -s["attribution"])
    assert {s["layer"] for s in checked} == {s["layer"] for s in by_attribution[:3]}
    assert doc["top_k"]["residual"] == [s["layer"] for s in by_attribution[:3]]
    for site in checked:
        i = site["layer"]
        with torch.no_grad():
            effect = hooked_gap(lm.model, enc, i, vectors[i]) - hooked_gap(lm.model, enc, i, None)
        assert site["exact"] == pytest.approx(float(effect.mean()), rel=1e-4, abs=1e-5)
    rho = spearman([s["attribution"] for s in checked], [s["exact"] for s in checked])
    assert doc["check"]["pooled"]["n"] == 3
    assert doc["check"]["pooled"]["spearman"] == pytest.approx(rho)


def test_command_writes_the_shared_report(setup: Any, tmp_path: Path, capsys: Any) -> None:
    model, texts, _ = setup
    spec = tmp_path / "s.toml"
    spec.write_text(
        f'name = "c"\n[model]\nid = "{model}"\ntask = "classify"\n[prompts]\nfile = "{texts}"\n'
        '[[conditions]]\nname = "joy"\nmethod = "activation"\n[conditions.params]\n'
        f'layers = [0]\nvector = {{classes = "{texts}", positive = "joy", negative = "neutral"}}\n'
    )
    out = tmp_path / "loc"
    # The classes come from the spec's class-mean vector, the texts from its prompt set.
    assert main(["locate", str(spec), "--folds", "3", "--check", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "joy (6) vs neutral (6)" in printed and "top 3 layers by attribution" in printed
    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc["kind"] == "classes" and doc["classes"]["positive"] == "joy"
    assert len([s for s in doc["sites"] if s["exact"] is not None]) == 2
    md = out.with_suffix(".md").read_text()
    assert "joy vs neutral" in md and "| embedding |" in md
    assert out.with_suffix(".png").stat().st_size > 0
    # --classes overrides, in the given order.
    out2 = tmp_path / "loc2"
    assert main(["locate", str(spec), "--classes", "fear,joy", "--folds", "2", "--check", "0",
                 "--out", str(out2)]) == 0  # fmt: skip
    doc2 = json.loads(out2.with_suffix(".json").read_text())
    assert (doc2["classes"]["positive"], doc2["classes"]["negative"]) == ("fear", "joy")


def test_errors_are_one_line(setup: Any, tmp_path: Path, capsys: Any) -> None:
    model, texts, _ = setup
    spec = tmp_path / "s.toml"
    spec.write_text(
        f'name = "c"\n[model]\nid = "{model}"\ntask = "classify"\n[prompts]\nfile = "{texts}"\n'
    )
    few = tmp_path / "few.jsonl"
    few.write_text(
        "\n".join(
            json.dumps({"text": t, "label": lab})
            for t, lab in [(TEXTS[0], "joy"), (TEXTS[1], "joy"), (TEXTS[2], "neutral")]
        )
    )
    cases = [
        (["--classes", "joy,sadness"], "no texts labelled ['sadness']; its labels: joy, neutral"),
        (["--classes", "joy"], "give two classes"),
        ([], "has no class-mean vector"),
        (["--classes", "joy,neutral", "--texts", str(few)], "1 text(s) labelled 'neutral'"),
        (["--classes", "joy,neutral", "--folds", "7"], "give 2 to 6 folds"),
        (["--classes", "joy,neutral", "--pairs", "fear"], "--pairs: "),
    ]
    for extra, message in cases:
        assert main(["locate", str(spec), *extra]) != 0
        err = capsys.readouterr().err.strip()
        assert message in err, err
        assert "Traceback" not in err and len(err.splitlines()) <= 2, err


def write_spec(tmp: Path, model: Path, texts: Path, layers: str, vector: str = "") -> Path:
    vector = vector or f'{{classes = "{texts}", positive = "joy", negative = "neutral"}}'
    spec = tmp / "spec.toml"
    spec.write_text(
        f"""name = "cls"
output_dir = "{tmp / "run"}"
[model]
id = "{model}"
task = "classify"
[prompts]
file = "{texts}"
[generation]
batch_size = 8
[report]
path = "{tmp / "report.md"}"
[analysis]
bootstrap_resamples = 20
[locate]
folds = 3
check = 2
[[conditions]]
name = "joy"
method = "activation"
[conditions.params]
layers = {layers}
coefficient = 1.0
vector = {vector}
"""
    )
    return spec


def test_locate_classes_in_a_spec_resolves_caches_and_keeps_ids(setup: Any, tmp_path: Path):
    model, texts, _ = setup
    spec = write_spec(tmp_path, model, texts, '"locate:classes:2"')
    plan, source = open_plan(spec)
    assert [c.name for c in plan.conditions] == ["baseline"]  # pending until located
    (request,) = plan.pending_locates
    assert request.path.parent == tmp_path / "run" / "locate"
    run_stages(plan, source)
    doc = json.loads(request.path.read_text())
    assert doc["key"] == request.key and doc["kind"] == "classes"
    expected = top_layers(doc, "residual", "attribution", 2)
    by_attribution = sorted(doc["sites"], key=lambda s: -s["attribution"])
    assert expected == sorted(s["layer"] for s in by_attribution[:2])
    plan2, _ = open_plan(spec)
    assert not plan2.pending_locates
    assert plan2.condition("joy").params.layers == expected  # type: ignore[attr-defined]
    mtime = request.path.stat().st_mtime_ns
    run_stages(plan2, source)
    assert request.path.stat().st_mtime_ns == mtime  # reused, not located again
    shown = ", ".join("embedding" if i == EMBEDDING else str(i) for i in expected)
    assert (
        f"`locate:classes:2` → layers {shown} (top by attribution"
        in (tmp_path / "report.md").read_text()
    )

    # The same condition written with the numbers has the same names and content ids.
    labels = ", ".join('"embedding"' if i == EMBEDDING else str(i) for i in expected)
    numeric = tmp_path / "numeric"
    numeric.mkdir()
    plan3, _ = open_plan(write_spec(numeric, model, texts, f"[{labels}]"))
    assert [(c.name, c.key) for c in plan2.conditions] == [
        (c.name, c.key) for c in plan3.conditions
    ]


def test_a_located_embedding_output_is_written_as_embedding() -> None:
    cond = ConditionSpec.model_validate(
        {"name": "c", "method": "activation", "params": {"layers": "locate:classes"}}
    )
    out, problems = with_located(cond, lambda ref: [EMBEDDING])
    assert not problems and out.params["layers"] == "embedding"
    out, _ = with_located(
        cond.model_copy(update={"params": {"layers": "locate:classes:2"}}),
        lambda ref: [EMBEDDING, 2] if ref == LocateRef("locate:classes:2", "classes", 2) else [],
    )
    assert out.params["layers"] == ["embedding", 2]


def test_spec_errors_name_the_field(setup: Any, tmp_path: Path, capsys: Any) -> None:
    model, texts, _ = setup
    cases = [
        ('"locate:fear"', "", "write 'locate:classes'"),
        ('"locate:classes"', '{pairs = "fear"}', "class-mean vector"),
        (
            '"locate:classes"',
            f'{{classes = "{texts}", positive = "joy", negative = "sadness"}}',
            "sadness",
        ),
        ('"locate:classes:9"', "", "give k <= 4"),
    ]
    for layers, vector, message in cases:
        spec = write_spec(tmp_path, model, texts, layers, vector)
        assert main(["check", str(spec)]) != 0
        err = capsys.readouterr().err
        assert "conditions[0].params.layers" in err and message in err, err
        assert "Traceback" not in err
