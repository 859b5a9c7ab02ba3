"""The real CLI in subprocesses on a tiny model: run, kill -9 and resume, re-render, errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.core.store import JsonlStore

pytestmark = pytest.mark.slow
CLI = [sys.executable, "-m", "harness.cli"]


def cli(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(
        [*CLI, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=600
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_help_explains_every_subcommand(tmp_path: Path):
    out = cli("--help", cwd=tmp_path).stdout
    for name in ("run", "check", "generate", "score", "analyze", "report", "list"):
        assert name in out
    assert "resum" in cli("run", "--help", cwd=tmp_path).stdout
    assert "--baseline" in cli("analyze", "--help", cwd=tmp_path).stdout
    listed = cli("list", cwd=tmp_path).stdout
    assert "activation" in listed and "prompt" in listed and "lexicon" in listed


def test_end_to_end_run_then_rerender_without_the_model(
    make_spec, tmp_path: Path, tiny_model_dir: Path
):
    model_copy = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_copy)
    spec = make_spec(n_prompts=3, seeds="[0, 1]")
    spec.write_text(spec.read_text().replace(str(tiny_model_dir), str(model_copy)))
    proc = cli("run", str(spec), cwd=tmp_path)
    assert "generate: 18 done now, 0 already done" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "report: reports/t.md"
    report = tmp_path / "reports" / "t.md"
    assert "## Results" in report.read_text()
    assert "generate:" in proc.stderr  # progress bars

    # analysis from stored records, as JSON
    analysis = json.loads(cli("analyze", str(tmp_path / "run"), "--json", cwd=tmp_path).stdout)
    assert {c["condition"] for c in analysis["comparisons"]} == {"act", "persona"}

    # the report re-renders with the model gone
    shutil.rmtree(model_copy)
    out = tmp_path / "again.md"
    proc = cli("report", str(tmp_path / "run"), "--out", str(out), cwd=tmp_path)
    assert proc.stdout.strip() == f"report: {out}"
    assert "## Sample generations" in out.read_text()


def test_kill_minus_nine_midway_then_resume(make_spec, tmp_path: Path):
    spec = make_spec(n_prompts=6, seeds="[0, 1, 2, 3]", batch_size=1, max_new_tokens=24)
    total = 3 * 6 * 4
    gens = tmp_path / "run" / "generations.jsonl"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [*CLI, "run", str(spec)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 300
    while time.time() < deadline:
        if gens.exists() and gens.read_bytes().count(b"\n") >= 10:
            break
        if proc.poll() is not None:
            pytest.fail("the run finished before it could be killed")
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = len(JsonlStore(gens).read())
    assert 10 <= kept < total, kept

    out = cli("run", str(spec), cwd=tmp_path).stdout
    assert f"generate: {total - kept} done now, {kept} already done" in out
    records = JsonlStore(gens).read()
    assert len(records) == total == len({r["id"] for r in records})
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert [s["status"] for s in manifest["sessions"]] == ["interrupted (no end recorded)", "ok"]


def test_bad_spec_exits_2_with_the_problem(make_spec, tmp_path: Path):
    spec = make_spec()
    spec.write_text(spec.read_text().replace("layers = [1]", "layers = [9]"))
    proc = cli("run", str(spec), cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "conditions[0].params.layers: [9] out of range" in proc.stderr
    assert not (tmp_path / "run").exists()  # nothing started


def test_analyze_a_folder_with_only_foreign_scores(tmp_path: Path):
    rows = []
    for cond, shift in (("baseline", 0.0), ("steered", 1.0)):
        for p in range(6):
            for seed in (0, 1):
                value = (
                    None
                    if (cond, p, seed) == ("steered", 5, 1)
                    else p + shift + 0.1 * seed * (p % 3)
                )
                rows.append(
                    {
                        "condition": cond,
                        "prompt_id": f"q{p}",
                        "seed": seed,
                        "scorer": "ext",
                        "metric": "m",
                        "value": value,
                    }
                )
    (tmp_path / "scores.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = json.loads(cli("analyze", str(tmp_path), "--json", cwd=tmp_path).stdout)
    (comp,) = result["comparisons"]
    assert comp["n"] == 11 and comp["n_dropped"] == 1
    assert comp["delta"] == pytest.approx(1.0)
    bad = cli("analyze", str(tmp_path), "--baseline", "basline", cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "did you mean 'baseline'?" in bad.stderr
