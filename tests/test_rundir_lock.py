"""One writer per run directory, and sessions that say what they are.

A second writer is refused at once, naming the holder, and writes nothing; a dead
holder's lock is taken over and its leftover description overwritten; readers need no
lock; a killed session reads "interrupted (no end recorded)", a live one "running".
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from small_run import build_finished_run, copy_run

from harness.cli import main
from harness.core.lock import RunInUseError, RunLock, lock_holder
from harness.core.manifest import INTERRUPTED, RUNNING, Manifest, read_manifest
from harness.core.rundir import RunDir
from harness.run.runner import open_plan, run_stages

ROOT = Path(__file__).resolve().parent.parent
HOLDER = ROOT / "tests" / "fakes" / "lock_holder.py"
IN_USE = re.compile(
    r"^(\S+) is in use by PID (\d+) since (\S+); wait for it or use another --output-dir$"
)


class Holder:
    """A subprocess holding a run directory's lock (tests/fakes/lock_holder.py)."""

    def __init__(self, run_dir: Path):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
        self.proc = subprocess.Popen(
            [sys.executable, str(HOLDER), str(run_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # blocks until the lock is held
        assert line.startswith("ready"), (line, self.proc.stderr.read() if self.proc.stderr else "")
        self.pid = self.proc.pid

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[Holder]:
    h = Holder(tmp_path / "run")
    try:
        yield h
    finally:
        if h.proc.poll() is None:
            h.kill()


@pytest.fixture(scope="module")
def finished_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_finished_run(tiny_model_dir, tmp_path_factory.mktemp("finished"))


def session_statuses(report: Path) -> dict[str, list[str]]:
    """command -> statuses, from the Sessions table of a report's Manifest section."""
    text = report.read_text().split("Sessions:", 1)[1]
    out: dict[str, list[str]] = {}
    for line in text.strip().splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        out.setdefault(cells[0], []).append(cells[3])
    return out


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_second_writer_is_refused_at_once_and_writes_nothing(
    make_spec, tmp_path: Path, holder: Holder
):
    spec = make_spec()
    run_dir = tmp_path / "run"
    before = snapshot(run_dir)
    plan, source = open_plan(spec)
    t0 = time.monotonic()
    with pytest.raises(RunInUseError) as err:
        run_stages(plan, source)
    assert time.monotonic() - t0 < 5  # at once, not after a wait for the holder
    m = IN_USE.match(str(err.value))
    assert m, str(err.value)
    assert m.group(1) == str(run_dir) and int(m.group(2)) == holder.pid
    assert m.group(3) == json.loads(RunDir(run_dir).lock_owner.read_text())["since"]
    assert snapshot(run_dir) == before  # not the spec, not the manifest, nothing

    # the CLI says it in one line and exits 2, for `run`, `generate` and `score` alike
    for command in ("run", "generate", "score"):
        assert main([command, str(spec)]) == 2
    assert snapshot(run_dir) == before


def test_cli_refusal_is_one_line(make_spec, tmp_path: Path, holder: Holder, capsys):
    spec = make_spec()
    assert main(["run", str(spec)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    # the spec's absolute paths are noted before any work; the refusal is one error line
    err = [line for line in lines if not line.startswith("note: ")]
    assert len(err) == 1 and err[0].startswith("error: ") and lines[-1] == err[0]
    assert IN_USE.match(err[0].removeprefix("error: "))


def test_a_dead_writers_lock_is_taken_over_and_its_description_overwritten(tmp_path: Path):
    run = RunDir(tmp_path / "run")
    dead = Holder(run.root)
    dead.kill()  # SIGKILL: no release ran; the owner file still names the dead process
    assert json.loads(run.lock_owner.read_text())["pid"] == dead.pid
    assert lock_holder(run) is None  # a description of a dead process is not trusted
    with RunLock(run, "run") as lock:
        owner = json.loads(run.lock_owner.read_text())
        assert owner["pid"] == os.getpid() and owner["token"] == lock.token
        assert lock_holder(run) == owner
    assert not run.lock_owner.exists()  # released cleanly: no description left
    assert lock_holder(run) is None


def test_readers_need_no_lock(finished_run: Path, tmp_path: Path):
    copy_run(finished_run, tmp_path)
    h = Holder(tmp_path / "run")
    try:
        assert main(["report", str(tmp_path / "run"), "--out", str(tmp_path / "again.md")]) == 0
        assert main(["analyze", str(tmp_path / "run")]) == 0
        assert main(["power", str(tmp_path / "run")]) == 0
        out = tmp_path / "cmp.md"
        assert main(["compare", str(tmp_path / "run"), "--out", str(out)]) == 0
        assert (tmp_path / "again.md").exists() and out.exists()
        # and the report shows the holder's session as running: it holds the lock
        assert session_statuses(tmp_path / "again.md") == {
            "generate score analyze report": ["ok"],
            "run": [RUNNING],
        }
    finally:
        h.kill()


def test_sessions_read_as_running_while_held_and_interrupted_once_killed(tmp_path: Path):
    run = RunDir(tmp_path / "run")
    h = Holder(run.root)
    stored = json.loads(run.manifest.read_text())["sessions"]
    assert [s["status"] for s in stored] == [RUNNING]
    seen = read_manifest(run)
    assert seen is not None and [s["status"] for s in seen["sessions"]] == [RUNNING]
    h.kill()
    seen = read_manifest(run)
    assert seen is not None and [s["status"] for s in seen["sessions"]] == [INTERRUPTED]
    assert seen["sessions"][0]["finished"] is None

    # the next writer stores it so, and its own session is the one running
    with RunLock(run, "run") as lock:
        m = Manifest(run.manifest)
        m.start("run", session_id=lock.token)
        stored = json.loads(run.manifest.read_text())["sessions"]
        assert [s["status"] for s in stored] == [INTERRUPTED, RUNNING]
        seen = read_manifest(run)
        assert seen is not None
        assert [s["status"] for s in seen["sessions"]] == [INTERRUPTED, RUNNING]
        m.finish("ok")
    seen = read_manifest(run)
    assert seen is not None and [s["status"] for s in seen["sessions"]] == [INTERRUPTED, "ok"]


def test_report_manifest_section_shows_a_killed_session_as_interrupted(
    finished_run: Path, tmp_path: Path
):
    copy_run(finished_run, tmp_path)
    h = Holder(tmp_path / "run")
    h.kill()
    out = tmp_path / "after.md"
    assert main(["report", str(tmp_path / "run"), "--out", str(out)]) == 0
    assert session_statuses(out) == {
        "generate score analyze report": ["ok"],
        "run": [INTERRUPTED],
    }
