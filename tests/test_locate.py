"""`steer-harness locate` on tiny random models: the attribution formula against finite
differences, exact patching against a direct computation, the probe against
scikit-learn, the command end to end, and the errors a user can cause."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from harness.cli import main
from harness.config.spec import ModelSpec
from harness.core.errors import LocateError, ModelLoadError
from harness.locate.locator import LocateOptions, locate, pair_rows
from harness.locate.metric import TraitMetric
from harness.locate.patching import SiteModules, forward_metric, pair_activations, patch_effect
from harness.locate.probe import probe_accuracy
from harness.locate.sites import Site, site_modules
from harness.model.layers import decoder_layers
from harness.model.loading import load_model
from harness.steering.vectors import hidden_states, load_pairs
from prompts import data_path

# Words of the tiny word-level vocabulary (tests/tiny.py), so that no token is <unk>.
METRIC = TraitMetric(" i feel", " afraid", " happy")
# A two-token trait continuation: each word gets its own row, teacher-forced.
METRIC_2 = TraitMetric(" i feel", " terrified afraid", " happy")


@pytest.fixture(scope="module")
def pairs() -> list[Any]:
    return load_pairs(data_path("pairs/fear.jsonl"))[:4]


@pytest.fixture(scope="module")
def lm64(tiny_model_dir: Path) -> Any:
    """The tiny Llama in float64, so that a finite difference is precise."""
    lm = load_model(ModelSpec(id=str(tiny_model_dir), device="cpu"))
    lm.model.double()
    return lm


@pytest.fixture(scope="module")
def gpt2_lm(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tiny import save_tiny

    path = save_tiny(tmp_path_factory.mktemp("tiny-gpt2"), "gpt2", layers=2)
    lm = load_model(ModelSpec(id=str(path), device="cpu"))
    lm.model.double()
    return lm


def _no_hooks_left(model: torch.nn.Module) -> bool:
    return all(not m._forward_hooks for m in model.modules())


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("aggregate", ["last", "mean"])
def test_attribution_is_the_first_order_term_of_patching(
    lm64: Any, gpt2_lm: Any, pairs: list[Any], arch: str, aggregate: str
):
    """(M(a + eps*delta) - M(a - eps*delta)) / (2 eps) = grad . delta + O(eps^2) at every
    site. GPT-2 runs fully in float64; Llama's RMSNorm computes in float32, which bounds
    how small eps can be and how close the two can get."""
    lm = lm64 if arch == "llama" else gpt2_lm
    eps, atol = (1e-3, 2e-3) if arch == "llama" else (1e-4, 1e-5)
    components = ("residual", "attention", "mlp")
    modules = SiteModules.of(lm, components)
    sites = [Site(c, i) for c in components for i in range(2)]
    pos_rows, neg_rows = pair_rows(lm, pairs, METRIC, aggregate)  # type: ignore[arg-type]
    acts = pair_activations(lm, pos_rows, neg_rows, modules, sites)
    assert _no_hooks_left(lm.model)
    assert all(p.grad is None for p in lm.model.parameters())
    for site in sites:
        attribution = acts.attribution(site)
        delta = acts.delta(site).double()
        up = patch_effect(lm, neg_rows, modules, site, eps * delta).double()
        down = patch_effect(lm, neg_rows, modules, site, -eps * delta).double()
        fd = (up - down) / (2 * eps)
        assert fd.shape == attribution.shape == (len(pairs),)
        torch.testing.assert_close(fd, attribution.double(), rtol=1e-3, atol=atol)
        if site.layer == 1:
            # the last layer's write at the text's tokens reaches no scored position (the
            # continuation's prefix comes first): zero, by construction and by measurement
            assert float(attribution.abs().max()) == 0.0 and float(fd.abs().max()) == 0.0
        else:
            assert float((attribution.abs() > 1e-3).float().mean()) > 0.5, site


def _logprob(logits: torch.Tensor, ids: list[int], start: int) -> float:
    lp = torch.log_softmax(logits.double(), -1)
    return float(sum(lp[t - 1, ids[t]] for t in range(start, len(ids))))


@pytest.mark.parametrize(
    ("component", "layer", "aggregate", "metric"),
    [
        ("residual", 0, "last", METRIC),
        ("attention", 0, "last", METRIC),
        ("attention", 0, "mean", METRIC_2),
        ("mlp", 0, "mean", METRIC),
        ("mlp", 0, "last", METRIC_2),
    ],
)
def test_exact_patching_equals_a_direct_computation(
    tiny_lm: Any,
    pairs: list[Any],
    component: str,
    layer: int,
    aggregate: str,
    metric: TraitMetric,
):
    """Run the negative text with the site's (aggregated) activation set to the positive
    text's, by a hand-written hook on the HF module, and score the metric by hand."""
    lm, tok = tiny_lm, tiny_lm.tokenizer
    block = lm.model.model.layers[layer]
    module = {"residual": block, "attention": block.self_attn, "mlp": block.mlp}[component]
    site = Site(component, layer)  # type: ignore[arg-type]
    modules = SiteModules.of(lm, [site.component])
    pos_rows, neg_rows = pair_rows(lm, pairs, metric, aggregate)  # type: ignore[arg-type]
    # one row per text for one-token words, two (teacher-forced) otherwise
    assert neg_rows.input_ids.shape[0] == len(pairs) * (1 if metric is METRIC else 2)
    acts = pair_activations(lm, pos_rows, neg_rows, modules, [site])
    ours = patch_effect(lm, neg_rows, modules, site, acts.delta(site))
    baseline, _ = forward_metric(lm, neg_rows, modules)

    prefix = tok(metric.prefix, add_special_tokens=False)["input_ids"]
    words = [tok(w, add_special_tokens=False)["input_ids"] for w in (metric.trait, metric.neutral)]

    def site_output(ids: list[int]) -> torch.Tensor:
        seen: dict[str, torch.Tensor] = {}

        def grab(_m: Any, _a: Any, out: Any) -> None:
            seen["h"] = (out[0] if isinstance(out, tuple) else out)[0].detach()

        h = module.register_forward_hook(grab)
        with torch.no_grad():
            lm.model(input_ids=torch.tensor([ids]))
        h.remove()
        return seen["h"]

    def trait_gap(ids: list[int], patch: torch.Tensor | None) -> float:
        n = len(ids)
        values = []
        for word in words:
            full = ids + prefix + word

            def replace(_m: Any, _a: Any, out: Any) -> Any:
                hidden = out[0] if isinstance(out, tuple) else out
                hidden = hidden.clone()
                if aggregate == "last":
                    hidden[0, n - 1] = patch
                else:
                    hidden[0, :n] += patch
                return (hidden, *out[1:]) if isinstance(out, tuple) else hidden

            h = module.register_forward_hook(replace) if patch is not None else None
            with torch.no_grad():
                logits = lm.model(input_ids=torch.tensor([full])).logits[0]
            if h is not None:
                h.remove()
            values.append(_logprob(logits, full, n + len(prefix)))
        return values[0] - values[1]

    direct, direct_base = [], []
    for p in pairs:
        pos = tok(p.positive)["input_ids"]
        neg = tok(p.negative)["input_ids"]
        a_pos, a_neg = site_output(pos), site_output(neg)
        patch = a_pos[-1] if aggregate == "last" else a_pos.mean(0) - a_neg.mean(0)
        direct_base.append(trait_gap(neg, None))
        direct.append(trait_gap(neg, patch) - direct_base[-1])
    # float32, batched and right-padded against one text at a time: equal to ~1e-6
    torch.testing.assert_close(
        baseline.double(), torch.tensor(direct_base, dtype=torch.float64), atol=1e-4, rtol=1e-4
    )
    torch.testing.assert_close(
        ours.double(), torch.tensor(direct, dtype=torch.float64), atol=1e-4, rtol=1e-4
    )
    assert max(abs(d) for d in direct) > 1e-3  # the patch does something at this site


def test_probe_equals_sklearn_cross_val_score_on_the_same_features(tiny_lm: Any):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pairs = load_pairs(data_path("pairs/fear.jsonl"))[:20]
    opts = LocateOptions(components=("residual",), folds=4, seed=3, check=0, batch_size=7)
    doc = locate(tiny_lm, pairs, METRIC, opts)
    # the features, read independently through vector extraction's hidden_states (one
    # text at a time: no padding)
    hp = hidden_states(tiny_lm, [p.positive for p in pairs], [0, 1], "last", batch_size=1)
    hn = hidden_states(tiny_lm, [p.negative for p in pairs], [0, 1], "last", batch_size=1)
    n = len(pairs)
    y = np.r_[np.ones(n), np.zeros(n)]
    groups = np.r_[np.arange(n), np.arange(n)]
    seen = []
    for site in doc["sites"]:
        x = np.concatenate([hp[site["layer"]].numpy(), hn[site["layer"]].numpy()]).astype(float)
        expected = cross_val_score(
            make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000)),
            x,
            y,
            groups=groups,
            cv=StratifiedGroupKFold(n_splits=4, shuffle=True, random_state=3),
            scoring="accuracy",
        )
        assert site["probe_folds"] == pytest.approx(list(expected), abs=1e-12)
        assert site["probe_accuracy"] == pytest.approx(float(expected.mean()), abs=1e-12)
        seen.append(site["probe_accuracy"])
    assert len(seen) == 2


def test_probe_separates_separable_features_and_groups_pairs():
    rng = np.random.default_rng(0)
    pos = rng.normal(size=(12, 5)) + np.array([3.0, 0, 0, 0, 0])
    neg = rng.normal(size=(12, 5))
    assert probe_accuracy(pos, neg, folds=3, seed=0).accuracy == 1.0
    # identical sides: nothing to learn, and a pair's twin is never in the training fold
    same = probe_accuracy(neg, neg, folds=3, seed=0)
    assert same.accuracy <= 0.6
    with pytest.raises(LocateError, match="at most 12 folds"):
        probe_accuracy(pos, neg, folds=13, seed=0)


def test_locate_command_end_to_end(tmp_path: Path, tiny_model_dir: Path, capsys: Any):
    spec = tmp_path / "spec.toml"
    spec.write_text(f'name = "tiny"\n[model]\nid = "{tiny_model_dir}"\ndevice = "cpu"\n')
    lines = data_path("pairs/fear.jsonl").read_text().splitlines()[:8]
    (tmp_path / "few.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "tune.jsonl").write_text(
        '{"id": "a", "text": "describe your walk ."}\n{"id": "b", "text": "what is for dinner ?"}\n'
    )
    out = tmp_path / "out" / "loc"
    rc = main(
        [
            "locate",
            str(spec),
            "--pairs",
            "few.jsonl",
            "--trait-word",
            "afraid",
            "--neutral-word",
            "happy",
            "--prefix",
            "i feel",
            "--folds",
            "4",
            "--check",
            "2",
            "--top-k",
            "2",
            "--steer",
            "--steer-prompts",
            "tune.jsonl",
            "--out",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert rc == 0
    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc["pairs"]["n"] == 8 and doc["num_layers"] == 2
    assert doc["metric"]["definition"] == "log P(' i feel afraid' | x) - log P(' i feel happy' | x)"
    assert doc["metric"]["total_effect"] == pytest.approx(
        doc["metric"]["mean_positive"] - doc["metric"]["mean_negative"], abs=1e-5
    )
    assert {(s["component"], s["layer"]) for s in doc["sites"]} == {
        (c, i) for c in ("residual", "attention", "mlp") for i in range(2)
    }
    for s in doc["sites"]:
        assert 0.0 <= s["probe_accuracy"] <= 1.0 and len(s["probe_folds"]) == 4
        assert isinstance(s["attribution"], float) and s["attribution_se"] >= 0
        assert isinstance(s["steer_delta"], float)
    # top-k is the attribution ranking; the checked sites are the top 2 per component
    for component, top in doc["top_k"].items():
        own = {s["layer"]: s["attribution"] for s in doc["sites"] if s["component"] == component}
        assert top == sorted(own, key=lambda i: -own[i])[:2]
        ranks = {s["layer"]: s["rank"] for s in doc["sites"] if s["component"] == component}
        assert [ranks[i] for i in top] == [1, 2]
    checked = {
        s["component"] + "." + str(s["layer"]) for s in doc["sites"] if s["exact"] is not None
    }
    # the last layer's sites cannot reach the scored positions: not checked; so 1 per component
    assert [s["reaches_metric"] for s in doc["sites"]] == [True, False] * 3
    assert checked == set(doc["check"]["sites"]) == {"residual.0", "attention.0", "mlp.0"}
    rho = doc["check"]["pooled"]["spearman"]
    assert doc["check"]["pooled"]["n"] == 3 and (rho is None or -1.0 <= rho <= 1.0)
    assert doc["steer"]["n_prompts"] == 2 and set(doc["steer"]["typical_norms"]) == {"0", "1"}

    md = out.with_suffix(".md").read_text()
    assert "| layer | probe accuracy | attribution ± SE |" in md
    assert md.count("\n| 0 |") == 3 and md.count("\n| 1 |") == 3
    assert "![probe accuracy and attribution per layer](loc.png)" in md
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "top 2 layers by attribution:" in printed
    res = doc["top_k"]["residual"]
    assert f"  residual  {', '.join(map(str, res))}" in printed
    assert f"report: {out}.md" in printed


def _run(args: list[str], capsys: Any) -> tuple[int, str]:
    rc = main(args)
    return rc, capsys.readouterr().err


def test_locate_errors_are_one_line(tmp_path: Path, tiny_model_dir: Path, capsys: Any):
    spec = tmp_path / "spec.toml"
    spec.write_text(f'name = "t"\n[model]\nid = "{tiny_model_dir}"\ndevice = "cpu"\n')
    cases = [
        (["--pairs", "feer"], "'feer' is neither a shipped pair set (anger, calm, curiosity, fear"),
        (["--pairs", "fear", "--components", "residual,mlpp"], "unknown component(s) ['mlpp']"),
        (["--pairs", "fear", "--folds", "65"], "only 64 pairs; give at most 64 folds"),
    ]
    (tmp_path / "mine.jsonl").write_text('{"positive": "a", "negative": "b"}\n' * 3)
    cases.append(
        (["--pairs", "mine.jsonl", "--folds", "2"], "give --trait-word and --neutral-word")
    )
    for extra, expected in cases:
        rc, err = _run(["locate", str(spec), *extra], capsys)
        assert rc == 2 and expected in err and err.count("\n") == 1, err
    bad = tmp_path / "bad.toml"
    bad.write_text('[model]\nid = "x"\ndevise = "cpu"\n')
    rc, err = _run(["locate", str(bad), "--pairs", "fear"], capsys)
    assert (
        rc == 2 and "model.devise: unknown key 'devise'" in err and "did you mean 'device'" in err
    )


def test_unsupported_architecture_gets_a_clear_error():
    from tiny import build_model

    layers = decoder_layers(build_model("gpt_neox", vocab_size=50, layers=1))
    assert site_modules(layers, "residual") is layers  # the residual stream works anywhere
    for component in ("attention", "mlp"):
        with pytest.raises(ModelLoadError, match=r"GPTNeoXLayer.*--components residual"):
            site_modules(layers, component)  # type: ignore[arg-type]


def test_without_scikit_learn_the_command_names_the_extra(
    tmp_path: Path, tiny_model_dir: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
):
    import sys

    spec = tmp_path / "spec.toml"
    spec.write_text(f'[model]\nid = "{tiny_model_dir}"\n')
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn -> ImportError
    rc, err = _run(["locate", str(spec), "--pairs", "fear"], capsys)
    assert rc == 2
    assert err == (
        "error: steer-harness locate needs scikit-learn for its probes: "
        "pip install 'steer-harness[locate]'\n"
    )
