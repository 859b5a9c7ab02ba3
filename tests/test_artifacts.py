"""Every artefact besides the append-only stores is written atomically and validated when
read: a damaged cache is recomputed with a warning naming it, a damaged manifest is kept
aside and started afresh, a damaged input of `report` is one line, not a traceback."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from small_run import build_finished_run, copy_run

from harness.cli import main
from harness.config.vectors import VectorSource
from harness.core.lock import RunLock
from harness.core.manifest import Manifest, read_manifest
from harness.core.rundir import RunDir
from harness.run.runner import open_plan, run_stages
from harness.steering.base import MethodContext
from harness.steering.methods.activation import obtain_vector
from harness.steering.vectors import SteeringVector

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def finished_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_finished_run(tiny_model_dir, tmp_path_factory.mktemp("finished"))


def warnings_naming(caplog: pytest.LogCaptureFixture, path: Path) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and str(path) in r.getMessage()
    ]


@pytest.mark.parametrize(
    "damage", [b'{"sessions": [{"command": "run", "sta', b'{"sessions": "none"}', b"\xff\xfe"]
)
def test_a_damaged_manifest_is_kept_aside_and_started_afresh(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: bytes
):
    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    run.manifest.write_bytes(damage)
    # a reader warns, shows no manifest and changes nothing
    with caplog.at_level(logging.WARNING):
        assert read_manifest(run) is None
    assert warnings_naming(caplog, run.manifest)
    assert run.manifest.read_bytes() == damage
    caplog.clear()
    # the next writer keeps its bytes beside it and starts a fresh one
    with RunLock(run, "run") as lock, caplog.at_level(logging.WARNING):
        m = Manifest(run.manifest)
        m.start("run", session_id=lock.token)
        m.finish("ok")
    (aside,) = run.root.glob("manifest.json.damaged-*")
    assert aside.read_bytes() == damage
    msgs = warnings_naming(caplog, run.manifest)
    assert len(msgs) == 1 and aside.name in msgs[0]
    fresh = json.loads(run.manifest.read_text())
    assert [s["status"] for s in fresh["sessions"]] == ["ok"]


def test_a_damaged_vector_cache_is_extracted_again(
    tiny_lm, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    ctx = MethodContext("c", base_dir=tmp_path, cache_dir=tmp_path / "vectors")
    src = VectorSource(pairs="fear")
    first, origin = obtain_vector(tiny_lm, src, [1], ctx)
    cached = Path(origin)
    assert cached.parent == tmp_path / "vectors" and cached.suffix == ".safetensors"
    whole = cached.read_bytes()

    # a kill while it was written (or any damage): truncated
    cached.write_bytes(whole[: len(whole) // 2])
    with caplog.at_level(logging.WARNING):
        again, origin2 = obtain_vector(tiny_lm, src, [1], ctx)
    assert origin2 == origin
    assert warnings_naming(caplog, cached)
    assert torch.equal(again.directions[1], first.directions[1])
    assert torch.equal(SteeringVector.load(cached).directions[1], first.directions[1])

    # a file under that name that is not that vector: other layers, non-finite values
    for bad in (
        SteeringVector({0: first.directions[1]}, {"cache_key": cached.stem}),
        SteeringVector({1: torch.full_like(first.directions[1], float("nan"))}, {}),
    ):
        bad.save(cached)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            again, _ = obtain_vector(tiny_lm, src, [1], ctx)
        assert warnings_naming(caplog, cached)
        assert torch.equal(again.directions[1], first.directions[1])

    # an intact cache is used without a word
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        obtain_vector(tiny_lm, src, [1], ctx)
    assert not warnings_naming(caplog, cached)


SEARCH = """
[conditions.search]
layers = [1]
start = 0.5
steps = 1
trait = "lexicon/fear"
guards = [{ metric = "lexicon/joy", max = 100 }]
"""


def search_spec(make_spec) -> Path:
    path = make_spec(n_prompts=4, seeds="[0]")
    text = path.read_text().replace(
        '[[conditions]]\nname = "persona"', SEARCH.strip() + '\n\n[[conditions]]\nname = "persona"'
    )
    path.write_text(text)
    return path


@pytest.mark.parametrize("damage", ["{", '{"condition": "act"}', "[]"])
def test_a_damaged_search_result_is_searched_again(
    make_spec, tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
):
    spec = search_spec(make_spec)
    stored = RunDir(tmp_path / "run").search_result("act")
    stored.parent.mkdir(parents=True)
    stored.write_text(damage)
    with caplog.at_level(logging.WARNING):
        plan, _ = open_plan(spec)
    assert [c.name for c in plan.pending_searches] == ["act"]
    assert warnings_naming(caplog, stored)


def test_a_damaged_analysis_is_recomputed_by_the_next_run(
    finished_run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    run = RunDir(copy_run(finished_run, tmp_path))
    good = json.loads(run.analysis.read_text())
    run.analysis.write_text(run.analysis.read_text()[:100])
    plan, source = open_plan(run.root)
    with caplog.at_level(logging.WARNING):
        run_stages(plan, source, ("analyze",))
    assert warnings_naming(caplog, run.analysis)
    redone = json.loads(run.analysis.read_text())
    assert redone["comparisons"] == good["comparisons"] and redone["key"] == good["key"]


@pytest.mark.parametrize("name", ["analysis.json", "spec.json"])
def test_report_on_a_damaged_artefact_is_one_line(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
):
    run = copy_run(finished_run, tmp_path)
    (run / name).write_text('{"comparisons": [')
    assert main(["report", str(run), "--out", str(tmp_path / "r.md")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {run / name}: damaged JSON")
    assert not (tmp_path / "r.md").exists()


def test_report_with_a_damaged_manifest_warns_and_renders(
    finished_run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    run = copy_run(finished_run, tmp_path)
    (run / "manifest.json").write_text("{")
    with caplog.at_level(logging.WARNING):
        assert main(["report", str(run), "--out", str(tmp_path / "r.md")]) == 0
    assert warnings_naming(caplog, run / "manifest.json")
    text = (tmp_path / "r.md").read_text()
    assert "## Results" in text and "## Manifest" not in text
    assert (run / "manifest.json").read_text() == "{"  # a reader writes nothing


def test_temp_files_of_a_killed_writer_are_removed_by_the_next(tmp_path: Path):
    run = RunDir(tmp_path / "run")
    (run.root / "vectors").mkdir(parents=True)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(dead.stdout)
    stale = [
        run.root / f".analysis.json.{pid}.0123abcd.tmp",
        run.root / "vectors" / f".k.safetensors.{pid}.89abcdef.tmp",
    ]
    live = run.root / f".manifest.json.{os.getpid()}.00000000.tmp"  # a live writer's
    for f in [*stale, live]:
        f.write_bytes(b"half")
    with RunLock(run, "run"):
        pass
    assert not any(f.exists() for f in stale)
    assert live.exists()


WRITE = re.compile(
    r"\.write_text\(|\.write_bytes\(|open\([^)]*['\"][wax]b?['\"]|\.savefig\(|save_file\("
    r"|torch\.save\(|json\.dump\("
)
ALLOWED = {
    # the atomic writes themselves, and the append-only store
    "harness/core/files.py": 1,
    "harness/core/store.py": 1,
    # inside write_atomic callbacks: figures and vector files are written to the temp path
    "harness/report/plots.py": 1,
    "harness/steering/vectors.py": 1,
    "harness/model/builtin.py": 1,  # the built-in classifier's cached heads
}


def test_every_artefact_writer_goes_through_the_atomic_write():
    """No module writes a file directly except through harness.core.files (or appends to
    a store); the few raw calls are the atomic write's own and its callbacks."""
    found: dict[str, int] = {}
    for pkg in ("harness", "judges"):
        for path in (ROOT / pkg).rglob("*.py"):
            n = len(WRITE.findall(path.read_text(encoding="utf-8")))
            if n:
                found[str(path.relative_to(ROOT))] = n
    assert found == ALLOWED
