"""The Ray engine on a local Ray cluster this module starts (2 CPUs, on this machine).

Every Ray run is compared with one local-engine run of the same spec: the generation and
score records (ids, texts, values) must be the same, after an uninterrupted Ray run, after
one whose actor is SIGKILLed mid-run, and after a driver SIGKILLed mid-run and resumed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import spec_toml, write_prompts
from ray_cluster import local_cluster
from stores import records

from harness.run import stages
from harness.run.runner import open_plan, run_stages

ray = pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 240.0
"""Seconds any one wait in this module may take before the test fails."""
N_PROMPTS, SEEDS = 6, "[0, 1, 2]"  # 3 conditions x 18 items, batches of 2: 18 Ray tasks
RAY = '\n[execution]\nengine = "ray"\nworkers = 2\nbatches_per_task = 1\n'


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A 2-CPU Ray cluster for this module; its GCS address for other drivers."""
    with local_cluster() as address:
        yield address


def write_spec(folder: Path, model_dir: Path, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    prompts = write_prompts(folder / "prompts.jsonl", N_PROMPTS)
    spec = folder / "spec.toml"
    # conditions_per_batch = 2 stacks baseline and 'act': a Ray actor prepares the
    # conditions to find that out, and generates stacked and single units.
    text = spec_toml(
        model_dir, prompts, seeds=SEEDS, batch_size=2, max_new_tokens=8, output_dir=folder / "run"
    )
    text = text.replace("seeds = ", "conditions_per_batch = 2\nseeds = ", 1)
    spec.write_text(text + extra)
    return spec


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def run(spec: Path) -> Path:
    plan, source = open_plan(spec)
    run_stages(plan, source, ("generate", "score"))
    return plan.run_dir


@pytest.fixture(scope="module")
def reference(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The local engine's run of the spec every Ray run is compared with."""
    return run(write_spec(tmp_path_factory.mktemp("local"), tiny_model_dir))


def assert_same_records(run_dir: Path, reference: Path) -> None:
    gens = records(run_dir / "generations.jsonl")
    assert len(gens) == 3 * N_PROMPTS * 3
    assert gens == records(reference / "generations.jsonl")
    assert records(run_dir / "scores.jsonl") == records(reference / "scores.jsonl")


class EngineSpy:
    """Keeps the engines the generate stage opens, so a test can reach their actors."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.engines: list[Any] = []
        real = stages.open_engine

        def spy(*args: Any, **kwargs: Any) -> Any:
            engine = real(*args, **kwargs)
            self.engines.append(engine)
            return engine

        monkeypatch.setattr(stages, "open_engine", spy)


def test_ray_records_equal_local_records(
    cluster: str, reference: Path, tiny_model_dir: Path, tmp_path: Path, monkeypatch
):
    spy = EngineSpy(monkeypatch)
    run_dir = run(write_spec(tmp_path, tiny_model_dir, RAY))
    assert_same_records(run_dir, reference)
    [engine] = spy.engines
    assert type(engine).__name__ == "RayEngine"
    assert engine.workers == 2 and not engine.owns_ray  # it joined the module's cluster
    assert engine.lost == 0 and engine.retried == []
    manifest = json.loads((run_dir / "manifest.json").read_text())
    local = json.loads((reference / "manifest.json").read_text())
    # Prepared on an actor: the same vector norms and coefficients.
    for key in ("vector_norms", "effective_coefficients"):
        assert manifest["conditions"]["act"][key] == local["conditions"]["act"][key]
    assert manifest["model"] == local["model"]  # reported by the actor that generated


def signal_a_busy_actor(
    spy: Any, store: Path, sig: signal.Signals
) -> tuple[threading.Thread, list[int]]:
    """A started thread that sends ``sig`` to one actor with a task in flight once the
    first records are written (within DEADLINE), and the list its pid is put in."""
    sent: list[int] = []

    def send() -> None:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline and not sent:
            engine = spy.engines[0] if spy.engines else None
            busy = [engine.pids[s] for s in list(engine.busy) if s in engine.pids] if engine else []
            if busy and lines(store) >= 2:
                os.kill(busy[0], sig)
                sent.append(busy[0])
            time.sleep(0.01)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread, sent


def test_actor_sigkilled_mid_run_has_its_task_retried_and_records_are_identical(
    cluster: str, reference: Path, tiny_model_dir: Path, tmp_path: Path, monkeypatch
):
    spy = EngineSpy(monkeypatch)
    spec = write_spec(tmp_path, tiny_model_dir, RAY)
    store = tmp_path / "run" / "generations.jsonl"
    killer, killed = signal_a_busy_actor(spy, store, signal.SIGKILL)
    run_dir = run(spec)
    killer.join(timeout=5)
    assert killed, "no actor was killed: the run ended first"
    [engine] = spy.engines
    assert engine.lost == 1 and len(engine.retried) == 1
    assert 0 < lines(store) <= 3 * N_PROMPTS * 3  # nothing written twice
    assert_same_records(run_dir, reference)


def test_an_actor_that_hangs_past_task_timeout_is_killed_and_its_task_retried(
    cluster: str, reference: Path, tiny_model_dir: Path, tmp_path: Path, monkeypatch
):
    """A hung actor (SIGSTOPped: alive to Ray, doing nothing) would hang the driver for
    ever; with task_timeout_s it is killed and its task goes to another actor."""
    spy = EngineSpy(monkeypatch)
    spec = write_spec(tmp_path, tiny_model_dir, RAY + "task_timeout_s = 15\n")
    store = tmp_path / "run" / "generations.jsonl"
    stopper, stopped = signal_a_busy_actor(spy, store, signal.SIGSTOP)
    started = time.monotonic()
    try:
        run_dir = run(spec)
    finally:
        stopper.join(timeout=5)
        for pid in stopped:  # if the engine did not kill it, let it go
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    assert stopped, "no actor was stopped: the run ended first"
    [engine] = spy.engines
    assert engine.timed_out and engine.lost >= 1 and engine.retried
    assert time.monotonic() - started < DEADLINE
    assert_same_records(run_dir, reference)


def test_task_whose_actors_keep_dying_stops_with_an_error_naming_its_unit(
    cluster: str, tiny_model_dir: Path, tmp_path: Path, monkeypatch
):
    from harness.core.errors import EngineError

    spy = EngineSpy(monkeypatch)
    extra = RAY.replace("workers = 2", "workers = 1") + "max_retries = 1\n"
    plan, source = open_plan(write_spec(tmp_path, tiny_model_dir, extra))
    stop = threading.Event()

    def kill_every_busy_actor() -> None:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline and not stop.is_set():
            engine = spy.engines[0] if spy.engines else None
            for s in list(engine.busy) if engine else []:
                pid = engine.pids.get(s)
                if pid is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            time.sleep(0.005)

    killer = threading.Thread(target=kill_every_busy_actor, daemon=True)
    killer.start()
    try:
        with pytest.raises(
            EngineError, match=r"generation unit '.+', batch \d+: its Ray actor died 2"
        ):
            run_stages(plan, source, ("generate",))
    finally:
        stop.set()
        killer.join(timeout=5)
    assert spy.engines[0].lost >= 2


def test_driver_sigkilled_mid_run_resumes_to_identical_records(
    cluster: str, reference: Path, tiny_model_dir: Path, tmp_path: Path
):
    spec = write_spec(tmp_path, tiny_model_dir, RAY)
    store = tmp_path / "run" / "generations.jsonl"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path]),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "TQDM_DISABLE": "1",
    }
    driver = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "generate", str(spec), "--address", cluster],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    started = time.monotonic()
    while lines(store) < 2 and driver.poll() is None:
        assert time.monotonic() - started < DEADLINE, "the driver wrote nothing in time"
        time.sleep(0.01)
    driver.send_signal(signal.SIGKILL)
    _, err = driver.communicate(timeout=DEADLINE)
    written = lines(store)
    assert driver.returncode == -signal.SIGKILL, err
    assert 0 < written < 3 * N_PROMPTS * 3, "the kill did not land mid-run"
    run_dir = run(spec)  # resumes through the Ray engine, in this process
    assert_same_records(run_dir, reference)
