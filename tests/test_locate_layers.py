"""``layers = "locate:<pairs>[:<k>]"`` in a spec, on a tiny random 4-block Llama: the
located layers are the localisation's top-ranked ones, a located condition has the ids and
texts of the same condition written with the numbers, the localisation is cached in the
run directory and reused (recomputed when the pairs change), ``check`` says what will be
located without loading the model, and bad references are errors naming the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import write_prompts

from harness.cli import main
from harness.config.spec import load_spec
from harness.config.vectors import LocateRef, parse_locate
from harness.core.errors import SpecError
from harness.locate import locator
from harness.locate.layers import top_layers
from harness.run.plan import build_plan
from harness.run.runner import open_plan, run_stages
from prompts import data_path

# Words of the tiny word-level vocabulary (tests/tiny.py), so that no token is <unk>.
LOCATE = """
[locate]
folds = 3
check = 2
[locate.metric.fear]
prefix = "i feel"
trait = "afraid"
neutral = "happy"
[locate.metric.fear-less]
trait = "afraid"
neutral = "happy"
"""


@pytest.fixture(scope="module")
def model4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny import save_tiny

    return save_tiny(tmp_path_factory.mktemp("tiny-llama-4"), "llama", layers=4)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts localisations actually computed (the locator's ``locate`` calls)."""
    made: list[int] = []
    real = locator.locate

    def counting(*args: Any, **kwargs: Any) -> Any:
        made.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(locator, "locate", counting)
    return made


def write_spec(
    root: Path, model: Path, condition: str, *, name: str = "loc", out: str = "run", extra: str = ""
) -> Path:
    prompts = root / "prompts.jsonl"
    if not prompts.exists():
        write_prompts(prompts, 2)
    path = root / f"{name}.toml"
    path.write_text(
        f"""name = "{name}"
output_dir = "{root / out}"

[model]
id = "{model}"
device = "cpu"

[prompts]
file = "{prompts}"

[generation]
max_new_tokens = 4
batch_size = 4
seeds = [0]

{condition}

[[scorers]]
type = "lexicon"

[analysis]
bootstrap_resamples = 50

[report]
path = "{root / (name + ".md")}"
{LOCATE}{extra}"""
    )
    return path


def activation(layers: str, extra: str = "") -> str:
    return f"""[[conditions]]
name = "act"
method = "activation"
[conditions.params]
layers = {layers}
coefficient = 4.0
vector = {{ pairs = "fear" }}
{extra}"""


def test_parse_locate_forms_and_errors():
    assert parse_locate("locate:joy") == LocateRef("locate:joy", "joy", 1)
    assert parse_locate("locate:my/pairs.jsonl:3") == LocateRef(
        "locate:my/pairs.jsonl:3", "my/pairs.jsonl", 3
    )
    for text, message in [
        ("locate:joy:0", "k must be 1 or more, got 0"),
        ("locate:joy:-2", "k must be 1 or more, got -2"),
        ("locate:joy:two", "k must be an integer, got 'two'"),
        ("locate:joy:1.5", "k must be an integer, got '1.5'"),
        ("locate:", "give a pair set"),
        ("locate:a:1:2", "give a pair set"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_locate(text)


def test_probe_ranking_breaks_ties_by_attribution_rank():
    doc = {
        "sites": [
            {"component": "residual", "layer": 0, "probe_accuracy": 0.9, "rank": 1},
            {"component": "residual", "layer": 1, "probe_accuracy": 1.0, "rank": 4},
            {"component": "residual", "layer": 2, "probe_accuracy": 1.0, "rank": 2},
            {"component": "residual", "layer": 3, "probe_accuracy": None, "rank": 3},
            {"component": "mlp", "layer": 0, "probe_accuracy": 1.0, "rank": 1},
        ]
    }
    assert top_layers(doc, "residual", "attribution", 1) == [0]
    assert top_layers(doc, "residual", "attribution", 3) == [0, 2, 3]  # in layer order
    assert top_layers(doc, "residual", "probe", 1) == [2]
    assert top_layers(doc, "residual", "probe", 2) == [1, 2]
    assert top_layers(doc, "residual", "probe", 4) == [0, 1, 2, 3]


def test_located_layers_are_the_top_ranked_and_cached(tmp_path: Path, model4: Path, calls):
    spec = write_spec(tmp_path, model4, activation('"locate:fear:2"'))
    plan, source = open_plan(spec)
    assert [c.name for c in plan.conditions] == ["baseline"]  # pending until located
    assert len(plan.pending_locates) == 1 and not calls
    request = plan.pending_locates[0]
    assert request.path.parent == tmp_path / "run" / "locate"
    run_stages(plan, source)
    assert len(calls) == 1
    doc = json.loads(request.path.read_text())
    assert doc["key"] == request.key
    assert request.path.with_suffix(".md").exists() and request.path.with_suffix(".png").exists()
    # The two sites with the largest mean attribution, read from the stored numbers.
    sites = [s for s in doc["sites"] if s["component"] == "residual"]
    by_attribution = sorted(sites, key=lambda s: -s["attribution"])
    expected = sorted(s["layer"] for s in by_attribution[:2])
    assert expected == sorted(doc["top_k"]["residual"][:2])
    plan2, _ = open_plan(spec)
    act = plan2.condition("act")
    assert act.params.layers == expected  # type: ignore[attr-defined]
    assert [loc.layers for loc in plan2.located] == [expected]
    gens = [json.loads(line) for line in (tmp_path / "run" / "generations.jsonl").open()]
    assert sorted({g["condition"] for g in gens}) == ["act", "baseline"]
    analysis = json.loads((tmp_path / "run" / "analysis.json").read_text())
    assert analysis["condition_info"]["act"]["located"] == [
        {
            "reference": "locate:fear:2",
            "layers": expected,
            "ranking": "attribution",
            "component": "residual",
            "localisation": str(request.path),
        }
    ]
    shown = ", ".join(map(str, expected))
    assert (
        f"- `act`: `locate:fear:2` → layers {shown} (top by attribution"
        in (tmp_path / "loc.md").read_text()
    )

    # A second run reuses the localisation: nothing is located, the file is untouched.
    mtime = request.path.stat().st_mtime_ns
    assert not plan2.pending_locates
    run_stages(plan2, source)
    assert len(calls) == 1
    assert request.path.stat().st_mtime_ns == mtime

    # The ranking is applied when reading: probe ranking reuses the same localisation.
    spec.write_text(spec.read_text().replace("[locate]\n", '[locate]\nranking = "probe"\n'))
    plan_probe, _ = open_plan(spec)
    assert not plan_probe.pending_locates
    by_probe = top_layers(doc, "residual", "probe", 2)
    assert plan_probe.condition("act").params.layers == by_probe  # type: ignore[attr-defined]
    spec.write_text(spec.read_text().replace('ranking = "probe"\n', ""))

    # Other pairs (one pair fewer) are another localisation, under another key.
    pairs = tmp_path / "fear-less.jsonl"
    lines = data_path("pairs/fear.jsonl").read_text().splitlines()
    pairs.write_text("\n".join(lines[:-1]) + "\n")
    spec.write_text(spec.read_text().replace('"locate:fear:2"', f'"locate:{pairs}:2"'))
    plan3, source = open_plan(spec)
    assert [r.key for r in plan3.pending_locates] != [request.key]
    run_stages(plan3, source)
    assert len(calls) == 2
    assert plan3.pending_locates[0].path.exists()
    assert request.path.stat().st_mtime_ns == mtime

    # A damaged localisation is located again.
    request.path.write_text("{ not json")
    spec.write_text(spec.read_text().replace(f'"locate:{pairs}:2"', '"locate:fear:2"'))
    plan4, _ = open_plan(spec)
    assert [r.key for r in plan4.pending_locates] == [request.key]


def test_a_located_condition_has_the_ids_and_texts_of_the_numeric_one(tmp_path: Path, model4: Path):
    sweep = "[conditions.sweep]\ncoefficient = [2.0, 4.0]\n"
    located = write_spec(tmp_path, model4, activation('"locate:fear"', sweep), name="a")
    plan, source = open_plan(located)
    run_stages(plan, source)
    plan, _ = open_plan(located)
    (layer,) = plan.located[0].layers or []
    numeric = write_spec(tmp_path, model4, activation(str(layer), sweep), name="b", out="run-b")
    plan_b, source_b = open_plan(numeric)
    assert not plan_b.located and not plan_b.pending_locates
    assert [(c.name, c.key) for c in plan.conditions] == [
        (c.name, c.key) for c in plan_b.conditions
    ]
    assert [it.id for it in plan.items] == [it.id for it in plan_b.items]
    run_stages(plan_b, source_b)

    def texts(run: str) -> dict[str, str]:
        rows = (tmp_path / run / "generations.jsonl").open()
        return {g["id"]: g["text"] for g in map(json.loads, rows)}

    assert texts("run") == texts("run-b")
    assert len(texts("run")) == 2 * 3  # 2 prompts x (baseline + 2 sweep points)

    # Sweep values and search candidates take references too, with the same names and
    # keys as their numbers (the localisation above is reused).
    swept = activation("0", '[conditions.sweep]\nlayers = ["locate:fear", [0, 1]]\n')
    plan_c, _ = open_plan(write_spec(tmp_path, model4, swept, name="a"))
    plain = activation("0", f"[conditions.sweep]\nlayers = [{layer}, [0, 1]]\n")
    plan_d, _ = open_plan(write_spec(tmp_path, model4, plain, name="a", out="run-d"))
    assert [(c.name, c.key) for c in plan_c.conditions] == [
        (c.name, c.key) for c in plan_d.conditions
    ]
    assert f"act@layers={layer}" in [c.name for c in plan_c.conditions]


def test_a_search_over_located_layers_tries_them(tmp_path: Path, model4: Path, calls):
    search = """[conditions.search]
layers = "locate:fear:3"
start = 1.0
steps = 1
trait = "lexicon/fear"
guards = [{ metric = "lexicon/joy", max = 100.0 }]
"""
    spec = write_spec(tmp_path, model4, activation("[0]", search))
    plan, _ = open_plan(spec)
    assert len(plan.pending_locates) == 1 and [c.name for c in plan.pending_searches] == []
    from harness.locate.layers import run_locate
    from harness.model.loading import load_model

    doc = run_locate(load_model(plan.spec.model), plan.pending_locates[0])
    plan, _ = open_plan(spec)
    assert [c.search.layers for c in plan.pending_searches] == [  # type: ignore[union-attr]
        top_layers(doc, "residual", "attribution", 3)
    ]


def test_check_says_what_will_be_located_without_loading_the_model(
    tmp_path: Path, model4: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
):
    import harness.model.loading as loading

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("check loaded the model")

    monkeypatch.setattr(loading, "load_model", refuse)
    spec = write_spec(tmp_path, model4, activation('"locate:fear:2"'))
    assert main(["check", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "locate: layers of 'act' (locate:fear:2) will be located when the run starts" in out
    assert "pairs fear (64), residual ranked by attribution" in out
    assert "generations planned: 2" in out  # the baseline's; act's come after locating
    assert not (tmp_path / "run" / "locate").exists()


@pytest.mark.parametrize(
    ("layers", "field", "message"),
    [
        ('"locate:nope"', "conditions[0].params.layers", "'nope' is neither a shipped pair set"),
        ('"locate:fear:0"', "conditions[0].params.layers", "k must be 1 or more, got 0"),
        ('"locate:fear:x"', "conditions[0].params.layers", "k must be an integer, got 'x'"),
        ('["locate:fear:9"]', "conditions[0].params.layers", "top 9 layers of a 4-layer model"),
    ],
)
def test_bad_references_name_the_field(
    tmp_path: Path, model4: Path, capsys: Any, layers: str, field: str, message: str
):
    spec = write_spec(tmp_path, model4, activation(layers))
    assert main(["check", str(spec)]) == 2
    err = capsys.readouterr().err
    problems = [line for line in err.splitlines() if line.startswith("  - ")]
    assert len(problems) == 1, err
    assert problems[0].startswith(f"  - {field}: ") and message in problems[0], err


def test_bad_search_reference_is_a_load_error(tmp_path: Path, model4: Path):
    search = """[conditions.search]
layers = "locate:fear:1.5"
start = 1.0
trait = "lexicon/fear"
guards = [{ metric = "lexicon/joy", max = 100.0 }]
"""
    spec = write_spec(tmp_path, model4, activation("[0]", search))
    with pytest.raises(SpecError, match=r"conditions\[0\]\.search\.layers: .*k must be an integer"):
        load_spec(spec)


def test_a_library_vector_cannot_be_located(tmp_path: Path, model4: Path):
    extra = '\n[vectors.fear]\npairs = "fear"\nlayers = "locate:fear"\n'
    spec = write_spec(tmp_path, model4, activation("[0]"), extra=extra)
    with pytest.raises(SpecError, match=r"vectors\.fear\.layers: .*condition's params.layers"):
        build_plan(load_spec(spec), str(spec))


def test_a_pair_set_without_a_default_metric_names_the_fields(tmp_path: Path, model4: Path):
    pairs = tmp_path / "mine.jsonl"
    pairs.write_text(data_path("pairs/fear.jsonl").read_text())
    spec = write_spec(tmp_path, model4, activation(f'"locate:{pairs}"'))
    with pytest.raises(SpecError) as err:
        open_plan(spec)
    assert err.value.problems == [
        f"conditions[0].params.layers: pair set '{pairs}': no default trait metric for this "
        "pair set (defaults exist for anger, calm, curiosity, fear, formal, joy, sadness, "
        "trust); give locate.metric.mine.trait and locate.metric.mine.neutral (and "
        "locate.metric.mine.prefix, default ' I feel')"
    ]


def test_words_the_tokenizer_cannot_tell_apart_are_one_line(
    tmp_path: Path, model4: Path, capsys: Any
):
    spec = write_spec(tmp_path, model4, activation('"locate:fear"'))
    spec.write_text(
        spec.read_text()
        .replace('trait = "afraid"', 'trait = "zzzq"', 1)
        .replace('neutral = "happy"', 'neutral = "qqqz"', 1)
    )
    assert main(["run", str(spec)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        "error: locate.metric.fear.trait ' zzzq' and locate.metric.fear.neutral ' qqqz' are "
        "the same tokens for this tokenizer; the metric would be 0 everywhere; give other words"
    )
    assert not (tmp_path / "run" / "locate").exists()
