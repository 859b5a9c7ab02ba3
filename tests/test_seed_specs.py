"""Every seed protocol in specs/seeds/ runs end to end at smoke size.

Each spec is loaded as written and changed only by :func:`smoke`: the model becomes a
tiny random Llama (14 layers, so the specs' layer indices stay valid), the prompts two
short ones, one seed, four new tokens; embedding scorers get a tiny random sentence model,
local HF judges the tiny model itself (its tokenizer spells numbers digit by digit), a
stacked vector file is rebuilt for the tiny model by the script that made the real one,
a search takes two steps, and a located layer's trait metric uses words of the tiny
vocabulary. Everything else (conditions, methods, layers, coefficient
lists, presets, scorer settings) is the spec's own, so a seed that stops working fails
here. Whether the effects are real is for the committed full-size reports
(reports/seeds/), not for random weights.
"""

from __future__ import annotations

import json
import math
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from tiny import (
    CLASSIFY_LABELS,
    digit_tokenizer,
    save_classifier,
    save_tiny_sentence_model,
    write_labelled,
)

from harness.config.spec import ModelSpec, validate_spec
from harness.model.loading import load_model
from harness.run.plan import build_plan
from harness.run.runner import run_stages

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "specs" / "seeds"
sys.path.insert(0, str(ROOT / "scripts"))

SEED_SPECS = sorted(p for p in SEEDS.glob("*.toml"))


def classifies(path: Path) -> bool:
    """Whether a seed spec is a classification-shift task (its own smoke path)."""
    return tomllib.loads(path.read_text()).get("model", {}).get("task") == "classify"


GENERATING = [p for p in SEED_SPECS if not classifies(p)]
CLASSIFYING = [p for p in SEED_SPECS if classifies(p)]


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tiny import build_model

    root = tmp_path_factory.mktemp("seed-models")
    tok = digit_tokenizer()
    model = build_model("llama", vocab_size=len(tok), layers=14, seed=3)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(root / "lm")
    tok.save_pretrained(root / "lm")
    st_dir, _ = save_tiny_sentence_model(root / "embed")
    classifier = save_classifier(root / "classifier", layers=6, labels=CLASSIFY_LABELS)
    labelled = write_labelled(root / "labelled.jsonl")
    return {"lm": root / "lm", "embed": st_dir, "classifier": classifier, "labelled": labelled}


def smoke(data: dict[str, Any], dirs: dict[str, Path], tmp: Path) -> dict[str, Any]:
    """The spec ``data`` at smoke size (see the module docstring); paths are absolute."""
    out = json.loads(json.dumps(data))
    out["model"] = {**out.get("model", {}), "id": str(dirs["lm"]), "device": "cpu"}
    prompts = tmp / "prompts.jsonl"
    prompts.write_text(
        '{"id": "a", "text": "describe your walk to the bakery this morning ."}\n'
        '{"id": "b", "text": "tell me about the room you are sitting in ."}\n'
    )
    out["prompts"] = {"file": str(prompts)}
    gen = out.setdefault("generation", {})
    gen.update(seeds=[0], max_new_tokens=4, batch_size=4)
    out["analysis"] = {**out.get("analysis", {}), "bootstrap_resamples": 100}
    out["output_dir"] = str(tmp / "run")
    out["report"] = {**out.get("report", {}), "path": str(tmp / "report.md"), "samples": 1}
    lm = None
    for name, vec in out.get("vectors", {}).items():
        if "file" in vec:
            from seed_memory import build

            lm = lm or load_model(ModelSpec(id=str(dirs["lm"]), device="cpu"))
            vec["file"] = str(build(lm, tmp / f"{name}.safetensors", tuple(vec["layers"])))
    for sc in out["scorers"]:
        params = sc.setdefault("params", {})
        if sc["type"] == "embedding":
            params["model"] = str(dirs["embed"])
        if sc["type"] == "judge" and params.get("provider") == "hf":
            params.update(model=str(dirs["lm"]), cache_path=str(tmp / "judge.sqlite"))
    for cond in out.get("conditions", []):
        if "search" in cond:
            cond["search"]["steps"] = 2
        layers = cond.get("params", {}).get("layers")
        if isinstance(layers, str) and layers.startswith("locate:"):
            # the trait metric in words of the tiny vocabulary (tests/tiny.py)
            words = {"prefix": "i feel", "trait": "afraid", "neutral": "happy"}
            metric = out.setdefault("locate", {}).setdefault("metric", {})
            metric[layers.split(":")[1]] = words
    return out


def smoke_classify(data: dict[str, Any], dirs: dict[str, Path], tmp: Path) -> dict[str, Any]:
    """A classification seed at smoke size: a tiny random 6-block BERT classifier (joy,
    neutral, fear; so the spec's layer indices stay valid) and its 9 labelled texts, as
    prompts and as the class-mean vectors' source."""
    out = json.loads(json.dumps(data))
    out["model"] = {**out["model"], "id": str(dirs["classifier"]), "device": "cpu"}
    out["prompts"] = {**out.get("prompts", {}), "file": str(dirs["labelled"])}
    out["analysis"] = {**out.get("analysis", {}), "bootstrap_resamples": 100}
    out["output_dir"] = str(tmp / "run")
    out["report"] = {**out.get("report", {}), "path": str(tmp / "report.md"), "samples": 1}
    for cond in out.get("conditions", []):
        vector = cond.get("params", {}).get("vector", {})
        if "classes" in vector:
            vector["classes"] = str(dirs["labelled"])
    return out


def test_every_protocol_has_a_seed_spec():
    names = {p.stem for p in SEED_SPECS}
    assert {
        "fear-caution-memory",
        "layer-scales",
        "guide-search",
        "encoder-shift",
        "locate-steer",
    } <= names


@pytest.mark.parametrize("path", CLASSIFYING, ids=lambda p: p.stem)
def test_classification_seed_runs_end_to_end_at_smoke_size(path: Path, tiny_dirs, tmp_path):
    data = tomllib.loads(path.read_text())
    spec = validate_spec(smoke_classify(data, tiny_dirs, tmp_path), str(path), SEEDS)
    plan = build_plan(spec, str(path))
    run_stages(plan, str(path))
    run = tmp_path / "run"
    gens = [json.loads(line) for line in (run / "generations.jsonl").read_text().splitlines()]
    n_texts = len(tiny_dirs["labelled"].read_text().splitlines())
    swept = sum(len(c.get("sweep", {}).get("coefficient", [0])) for c in data["conditions"])
    assert len(gens) == n_texts * (1 + swept)
    assert {g["kind"] for g in gens} == {"classification"}
    shift = json.loads((run / "analysis.json").read_text())["classification_shift"]
    assert shift["target"] == data["analysis"]["target"]
    assert len(shift["by_condition"]) == 1 + swept
    report = (tmp_path / "report.md").read_text()
    for section in ["## Classification shift", "## Setup", "## Manifest"]:
        assert section in report, section


@pytest.mark.parametrize("path", GENERATING, ids=lambda p: p.stem)
def test_seed_spec_runs_end_to_end_at_smoke_size(path: Path, tiny_dirs, tmp_path):
    data = tomllib.loads(path.read_text())
    spec = validate_spec(smoke(data, tiny_dirs, tmp_path), str(path), SEEDS)
    plan = build_plan(spec, str(path))
    summary = run_stages(plan, str(path))
    run = tmp_path / "run"
    conditions = [c["name"] for c in data.get("conditions", [])]
    gens = [json.loads(line) for line in (run / "generations.jsonl").read_text().splitlines()]
    searched = [c["name"] for c in data.get("conditions", []) if "search" in c]
    if searched:
        # one held-out prompt: the baseline, and each searched condition if a point passed
        result = json.loads((run / "search" / f"{searched[0]}.json").read_text())
        chosen = result["chosen"] is not None
        assert len(gens) == 1 + int(chosen)
        assert summary.searches[searched[0]] == result["chosen"]
    else:
        # a swept condition's points are named <condition>@<point>
        groups = {g["condition"].split("@")[0] for g in gens}
        assert sorted(groups) == sorted(["baseline", *conditions])
        points = sum(
            math.prod(len(v) for v in c.get("sweep", {}).values()) for c in data["conditions"]
        )
        assert len(gens) == 2 * (1 + points)  # 2 prompts x 1 seed per condition
    analysis = json.loads((run / "analysis.json").read_text())
    assert {"comparisons", "condition_info"} <= set(analysis)
    scorers = {sc.get("name") or sc["type"] for sc in data["scorers"]}
    scored = {
        json.loads(line)["scorer"] for line in (run / "scores.jsonl").read_text().splitlines()
    }
    assert scored == scorers
    report = (tmp_path / "report.md").read_text()
    wanted = ["## Setup", "## Manifest"]
    if searched:
        wanted.append("## Coefficient searches")
    if not searched or chosen:
        wanted += ["## Summary", "## Results", "## Verdicts"]
    for section in wanted:
        assert section in report, section
    for name in conditions:
        if name not in searched:
            assert f"`{name}`" in report
