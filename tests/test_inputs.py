"""Bad inputs are refused where they enter, with one line naming the field and the fix
(issue 10 points 4, 5, 6): anchored names, contained paths, finite and strictly typed
numbers, typed foreign scores, and what ``check`` must catch before ``run`` would."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from safetensors.torch import save_file
from small_run import build_finished_run

from harness.cli import main
from harness.core.scoring import ScorerParams
from harness.steering.methods.prompt import PromptSteering


def _check(spec: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    rc = main(["check", str(spec)])
    out = capsys.readouterr()
    return rc, out.err + out.out


def _edit(spec: Path, old: str, new: str) -> Path:
    text = spec.read_text()
    assert old in text, old
    spec.write_text(text.replace(old, new, 1))
    return spec


# --- point 4: names and paths --------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('name = "t"', 'name = "../../x"'),
        ('name = "act"', 'name = "../act"'),
        ('type = "lexicon"', 'type = "lexicon"\nname = "a/../../b"'),
    ],
)
def test_names_are_matched_in_full(make_spec: Any, capsys: Any, old: str, new: str) -> None:
    spec = _edit(make_spec(), old, new)
    rc, text = _check(spec, capsys)
    assert rc == 2
    assert "../" in text and "error:" in text


def test_relative_paths_cannot_climb_out(make_spec: Any, tmp_path: Path, capsys: Any) -> None:
    spec = make_spec()
    text = spec.read_text()
    out_line = next(ln for ln in text.splitlines() if ln.startswith("output_dir"))
    for new, field in [
        ('output_dir = "../elsewhere"', "output_dir"),
        (out_line + '\n[report]\npath = "../r.md"', "report.path"),
    ]:
        spec.write_text(text.replace(out_line, new, 1))
        rc, err = _check(spec, capsys)
        assert rc == 2 and field in err and "climbs out" in err
    (tmp_path.parent / "p-outside.jsonl").write_text('{"id": "a", "text": "hi ."}\n')
    spec.write_text(
        text.replace(f'file = "{tmp_path / "prompts.jsonl"}"', 'file = "../p-outside.jsonl"')
    )
    rc, err = _check(spec, capsys)
    assert rc == 2 and "prompts.file" in err and "climbs out" in err
    spec.write_text(
        text.replace('vector = { pairs = "fear" }', 'vector = { pairs = "../x.jsonl" }')
    )
    rc, err = _check(spec, capsys)
    assert rc == 2 and "climbs out" in err


def test_absolute_paths_are_printed_before_work(make_spec: Any, capsys: Any) -> None:
    rc, text = _check(make_spec(), capsys)
    assert rc == 0
    notes = [ln for ln in text.splitlines() if ln.startswith("note:")]
    assert any("output_dir is an absolute path" in n for n in notes)
    assert any("prompts.file is an absolute path" in n for n in notes)


@pytest.fixture(scope="module")
def finished(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_finished_run(tiny_model_dir, tmp_path_factory.mktemp("inputs-finished"))


def test_report_writes_under_cwd_never_where_spec_json_says(
    finished: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished, run)
    stored = json.loads((run / "spec.json").read_text())
    target = tmp_path / "outside" / "owned.md"
    stored["spec"]["report"]["path"] = str(target)
    stored["spec"]["description"] = "<script>alert(1)</script> [click](javascript:x) # head"
    (run / "spec.json").write_text(json.dumps(stored))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    assert main(["report", str(run)]) == 0
    assert not target.exists()
    report = cwd / "reports" / "t.md"
    md = report.read_text()
    assert "<script>" not in md and "&lt;script&gt;" in md
    assert "[click](javascript:x)" not in md


# --- point 5: numbers and types ------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("coefficient = 4.0", "coefficient = nan", "coefficient"),
        ("temperature = 0.7", "temperature = inf", "temperature"),
        ("max_new_tokens = 6", "max_new_tokens = true", "max_new_tokens"),
        ("max_new_tokens = 6", 'max_new_tokens = "8"', "max_new_tokens"),
        ("seeds = [0, 1]", "seeds = [0, -1]", "seeds"),
        ("seeds = [0, 1]", f"seeds = [0, {2**63}]", "seeds"),
        ("batch_size = 4", "batch_size = 4.0", "batch_size"),
    ],
)
def test_numbers_finite_and_strictly_typed(
    make_spec: Any, capsys: Any, old: str, new: str, field: str
) -> None:
    spec = _edit(make_spec(), old, new)
    if new.endswith(f"{2**63}]"):  # beyond TOML's integers: give it as YAML
        import tomllib

        import yaml

        doc = tomllib.loads(spec.read_text().replace(new, old))
        doc["generation"]["seeds"] = [0, 2**63]
        spec = spec.with_suffix(".yaml")
        spec.write_text(yaml.safe_dump(doc))
    rc, text = _check(spec, capsys)
    assert rc == 2, text
    assert field in text


def test_vector_file_with_nan_is_refused(make_spec: Any, tmp_path: Path, capsys: Any) -> None:
    vec = torch.zeros(64)
    vec[3] = float("nan")
    save_file({"layer.1": vec}, str(tmp_path / "v.safetensors"))
    spec = _edit(
        make_spec(),
        'vector = { pairs = "fear" }',
        f'vector = {{ file = "{tmp_path}/v.safetensors" }}',
    )
    rc, text = _check(spec, capsys)
    assert rc == 2 and "NaN" in text and "v.safetensors" in text


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seed", "3"),
        ("seed", True),
        ("seed", None),
        ("seed", [1]),
        ("value", "high"),
        ("value", True),
        ("value", [1.0]),
        ("condition", 3),
    ],
)
def test_foreign_scores_typed_with_file_and_line(
    tmp_path: Path, capsys: Any, field: str, value: Any
) -> None:
    recs = [
        {
            "condition": c,
            "prompt_id": f"p{p}",
            "seed": s,
            "scorer": "s",
            "metric": "m",
            "value": float(p + s),
        }
        for c in ("baseline", "steer")
        for p in range(2)
        for s in range(2)
    ]
    recs[5][field] = value
    (tmp_path / "scores.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    rc = main(["analyze", str(tmp_path), "--bootstrap", "10"])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"scores.jsonl:6: damaged record ('{field}' must be" in err


def test_foreign_scores_nan_refused_ints_and_nulls_accepted(tmp_path: Path, capsys: Any) -> None:
    recs = [
        {
            "condition": c,
            "prompt_id": p,
            "seed": s,
            "scorer": "s",
            "metric": "m",
            "value": None if (p, s) == (0, 0) else p + s + (c == "steer"),
        }
        for c in ("baseline", "steer")
        for p in range(3)
        for s in range(2)
    ]
    path = tmp_path / "scores.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert main(["analyze", str(tmp_path), "--bootstrap", "10"]) == 0
    path.write_text(
        path.read_text() + '{"condition": "steer", "prompt_id": 9, "seed": 0, '
        '"scorer": "s", "metric": "m", "value": NaN}\n'
    )
    assert main(["analyze", str(tmp_path), "--bootstrap", "10"]) == 2
    assert "scores.jsonl:13" in capsys.readouterr().err


def test_negative_bootstrap_refused(tmp_path: Path, capsys: Any) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["analyze", str(tmp_path), "--bootstrap", "-5"])
    assert exc.value.code == 2
    assert "negative" in capsys.readouterr().err


# --- point 5 (positions) and point 6: what check must catch --------------------------


def test_max_new_tokens_beyond_model_positions(make_spec: Any, capsys: Any) -> None:
    spec = _edit(make_spec(), "max_new_tokens = 6", "max_new_tokens = 600")
    rc, text = _check(spec, capsys)
    assert rc == 2 and "generation.max_new_tokens" in text and "512 positions" in text


def test_chat_template_on_without_one(
    tmp_path_factory: pytest.TempPathFactory, make_spec: Any, tiny_model_dir: Path, capsys: Any
) -> None:
    from tiny import save_tiny

    plain = save_tiny(tmp_path_factory.mktemp("no-template"), chat_template=False)
    spec = _edit(make_spec(), f'id = "{tiny_model_dir}"', f'id = "{plain}"\nchat_template = "on"')
    rc, text = _check(spec, capsys)
    assert rc == 2 and "model.chat_template" in text and "no chat template" in text
    assert _check(_edit(spec, 'chat_template = "on"', 'chat_template = "auto"'), capsys)[0] == 0


def test_not_a_causal_lm(make_spec: Any, tmp_path: Path, tiny_model_dir: Path, capsys: Any) -> None:
    from transformers import ViTConfig

    bert = tmp_path / "vit"
    ViTConfig(
        num_hidden_layers=2, hidden_size=64, num_attention_heads=2, intermediate_size=64
    ).save_pretrained(bert)
    spec = _edit(make_spec(), f'id = "{tiny_model_dir}"', f'id = "{bert}"')
    rc, text = _check(spec, capsys)
    assert rc == 2 and "not a causal language model" in text


SEARCH = """
[[conditions]]
name = "searched"
method = "activation"
[conditions.params]
layers = [1]
coefficient = 1.0
vector = {{ pairs = "fear" }}
[conditions.search]
start = 1.0
steps = 1
trait = "{trait}"
[[conditions.search.guards]]
metric = "lexicon/joy"
max = 100.0
"""


def test_search_trait_its_scorer_does_not_produce(make_spec: Any, capsys: Any) -> None:
    spec = make_spec(n_prompts=4)
    text = spec.read_text()
    cut = text.index("[[scorers]]")
    spec.write_text(text[:cut] + SEARCH.format(trait="lexicon/fera") + "\n" + text[cut:])
    rc, out = _check(spec, capsys)
    assert rc == 2
    assert "search.trait: scorer 'lexicon' produces no metric 'fera'" in out
    assert "did you mean 'lexicon/fear'?" in out


class NeedsSdkScorer:
    """A plug-in scorer that declares the package it needs."""

    Params = ScorerParams
    requires: ClassVar[dict[str, str]] = {"surely_not_installed_sdk": "sdkextra"}
    metrics = ("x",)

    def __init__(self, params: Any, context: Any):
        raise AssertionError("check must not construct a scorer")

    def score(self, items: Any) -> Any:
        raise AssertionError


def test_missing_sdk_of_a_scorer_names_the_extra(make_spec: Any, capsys: Any) -> None:
    spec = _edit(make_spec(), 'type = "lexicon"', 'type = "test_inputs:NeedsSdkScorer"')
    rc, text = _check(spec, capsys)
    assert rc == 2
    assert "needs the 'surely_not_installed_sdk' package" in text
    assert "pip install 'steer-harness[sdkextra]'" in text


class NanPrepareSteering(PromptSteering):
    """A prompt method whose prepare step reports a NaN (as a broken vector would)."""

    def prepare(self, lm: Any) -> dict[str, Any]:
        return {"norms": {"1": float("nan")}}


def test_nan_in_prepare_metadata_is_one_line(make_spec: Any, capsys: Any) -> None:
    spec = _edit(make_spec(), 'method = "prompt"', 'method = "test_inputs:NanPrepareSteering"')
    rc = main(["generate", str(spec)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "condition 'persona'" in err and "norms.1" in err
    manifest = spec.parent / "run" / "manifest.json"
    json.loads(manifest.read_text())  # still valid JSON: nothing half-written


def test_search_guard_a_judge_does_not_produce(make_spec: Any, capsys: Any) -> None:
    """The judge says its metrics (its traits, coherence) from its params alone."""
    spec = make_spec(n_prompts=4)
    text = spec.read_text()
    cut = text.index("[[scorers]]")
    judge = (
        '\n[[scorers]]\ntype = "judge"\n[scorers.params]\n'
        'model = "m"\nbase_url = "http://127.0.0.1:9/v1"\n'
        'traits = ["fear"]\ncoherence = true\n'
    )
    search = SEARCH.format(trait="judge/fear").replace("lexicon/joy", "judge/coherense")
    spec.write_text(text[:cut] + search + "\n" + text[cut:] + judge)
    rc, out = _check(spec, capsys)
    assert rc == 2
    assert "guards[0].metric: scorer 'judge' produces no metric 'coherense'" in out
    assert "did you mean 'judge/coherence'?" in out
