"""The vLLM backend on the Ray engine: a CPU actor's vLLM engine gives the local engine's records.

One spec per decoding (greedy; sampled with per-request seeds), run on the local engine
(vLLM in this process, one engine for both specs) and on the Ray engine with one CPU actor
(``num_gpus = 0``) on a 2-CPU local cluster this module starts on 127.0.0.1, the actor
starting its own vLLM engine. The generation records (ids, texts, token counts) must be
the same. Sampled texts tell the backends apart (vLLM draws with its own generator, README
"vLLM backend"), so equal sampled records show that the actor generated with vLLM, not with
the HF model it also holds to prepare conditions. The sampled Ray run has its actor
SIGKILLed mid-run: the task goes to a fresh actor (a fresh vLLM engine) and the records
are still the local ones, none twice; the killed actor's vLLM processes go with it.

Each Ray run's driver is a ``steer-harness generate --address`` subprocess with a
deadline, so a hung engine fails the test instead of hanging it. About 3 minutes on 2
loaded cores, most of it three vLLM start-ups (each spawns an engine-core and a worker
process that import vLLM again).
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
from typing import Any

import pytest

from tests.conftest import write_prompts
from tests.ray_cluster import local_cluster
from tests.stores import records
from tests.vllm.tiny_vllm import save_tiny_vllm

pytest.importorskip("ray")

# Set before the cluster starts, so its actors (and their vLLM engines) inherit it.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 300.0
"""Seconds one run (a subprocess: imports, vLLM start-up, generation) may take."""
N_PROMPTS = 4
DECODINGS = {"greedy": ("false", "[0]"), "sampled": ("true", "[0, 1]")}
RAY = '[execution]\nengine = "ray"\nworkers = 1\nnum_gpus = 0\nbatches_per_task = 1\n'


def write_spec(folder: Path, model: Path, decoding: str, engine: str) -> Path:
    """Baseline and an activation condition (hooks on vLLM's decoder layers), batches of 2."""
    sampling, seeds = DECODINGS[decoding]
    folder.mkdir(parents=True, exist_ok=True)
    prompts = write_prompts(folder / "prompts.jsonl", N_PROMPTS)
    spec = folder / "spec.toml"
    spec.write_text(
        f'name = "{decoding}"\noutput_dir = "{folder / "run"}"\n'
        f'[model]\nid = "{model}"\ndevice = "cpu"\ndtype = "float32"\n'
        'backend = "vllm"\nmax_model_len = 128\n'
        f'[prompts]\nfile = "{prompts}"\n'
        f"[generation]\nmax_new_tokens = 8\nsampling = {sampling}\nbatch_size = 2\n"
        f"seeds = {seeds}\n"
        '[[conditions]]\nname = "act"\nmethod = "activation"\n[conditions.params]\n'
        'layers = [0]\ncoefficient = 8.0\nvector = { pairs = "fear" }\n'
        '[[scorers]]\ntype = "lexicon"\n' + (RAY if engine == "ray" else "")
    )
    return spec


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def start_driver(spec: Path, address: str) -> tuple[subprocess.Popen[bytes], Path]:
    """``steer-harness -v generate SPEC --address ADDRESS`` in a subprocess, its log
    (stderr) going to a file, so a chatty engine cannot fill a pipe."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path]),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "TQDM_DISABLE": "1",
    }
    log = spec.parent / "driver.log"
    with log.open("wb") as err:
        argv = ["-v", "generate", str(spec), "--address", address]
        driver = subprocess.Popen(
            [sys.executable, "-m", "harness.cli", *argv],
            cwd=spec.parent,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    return driver, log


def finish(driver: subprocess.Popen[bytes], log: Path, started: float) -> str:
    """Wait for the driver until the deadline; its log, asserting it succeeded."""
    try:
        driver.wait(timeout=max(1.0, started + DEADLINE - time.monotonic()))
    except subprocess.TimeoutExpired:
        driver.kill()
        driver.wait(timeout=30)
    text = log.read_text(errors="replace")
    assert driver.returncode == 0, text[-4000:]
    return text


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_vllm(tmp_path_factory.mktemp("tiny-vllm"))


@pytest.fixture(scope="module")
def local_runs(model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The local engine's runs, in this process before the cluster starts (so two vLLM
    engines never share the CPU), on one engine: both specs name the same model, and
    per-request seeds make a text independent of what the engine generated before. Torch
    on the actors' thread count (one, as ``num_cpus = 1``) for preparing the condition: on
    CPU a float reduction's last bits depend on it (README, Scale out)."""
    import torch

    from harness.model.loading import load_model
    from harness.run import stages
    from harness.run.runner import open_plan, run_stages

    loaded: list[Any] = []

    def load_once(spec: Any, task: Any) -> Any:
        if not loaded:
            loaded.append(load_model(spec, task))
        assert loaded[0].spec == spec
        return loaded[0]

    root = tmp_path_factory.mktemp("local")
    threads = torch.get_num_threads()
    patch = pytest.MonkeyPatch()
    patch.setattr(stages, "load_model", load_once)
    torch.set_num_threads(1)
    runs = {}
    try:
        for decoding in DECODINGS:
            plan, source = open_plan(write_spec(root / decoding, model, decoding, "local"))
            run_stages(plan, source, ("generate",))
            runs[decoding] = plan.run_dir
    finally:
        torch.set_num_threads(threads)
        patch.undo()
        if loaded:
            loaded[0].engine.close()  # its processes would otherwise hold CPU and memory
    return runs


@pytest.fixture(scope="module")
def cluster(local_runs: dict[str, Path]) -> Iterator[str]:
    with local_cluster() as address:
        yield address


def assert_same_records(run_dir: Path, reference: Path, seeds: int) -> None:
    got, want = records(run_dir / "generations.jsonl"), records(reference / "generations.jsonl")
    assert len(want) == 2 * N_PROMPTS * seeds  # baseline and 'act'
    assert got == want
    texts = {(r["condition"], r["prompt_id"], r["seed"]): r["text"] for r in map(json.loads, got)}
    assert any(texts["act", p, s] != texts["baseline", p, s] for _, p, s in texts)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    local = json.loads((reference / "manifest.json").read_text())
    assert manifest["model"] == local["model"]  # reported by the actor that generated
    for key in ("vector_norms", "effective_coefficients"):  # prepared on the actor
        assert manifest["conditions"]["act"][key] == local["conditions"]["act"][key]


def first_actor_engine(
    driver: subprocess.Popen[bytes], log: Path, store: Path, started: float
) -> tuple[int, list[Any]]:
    """Once the first task's records are written (the actor's vLLM engine is up): the
    first actor's process id and its child processes (vLLM's engine core and worker)."""
    import psutil

    while driver.poll() is None:
        assert time.monotonic() - started < DEADLINE, "no records in time"
        ready = re.search(r"ray: actor 0 ready: pid (\d+)", log.read_text(errors="replace"))
        if ready and lines(store) >= 2:
            pid = int(ready.group(1))
            children = psutil.Process(pid).children(recursive=True)
            assert children, "the actor runs no vLLM processes"
            return pid, children
        time.sleep(0.01)
    raise AssertionError("the run ended before its first records were seen")


def assert_gone(processes: list[Any], started: float) -> None:
    import psutil

    _, alive = psutil.wait_procs(processes, timeout=max(1.0, started + DEADLINE - time.monotonic()))
    assert not alive, f"an actor's vLLM processes outlived it: {alive}"


def test_a_vllm_actor_gives_the_local_engines_greedy_records(
    cluster: str, local_runs: dict[str, Path], model: Path, tmp_path: Path
) -> None:
    started = time.monotonic()
    driver, log = start_driver(write_spec(tmp_path, model, "greedy", "ray"), cluster)
    _, engine = first_actor_engine(driver, log, tmp_path / "run" / "generations.jsonl", started)
    text = finish(driver, log, started)
    assert "ray: 1 actor(s), 0 GPU and 1 CPU each" in text, text[-4000:]
    assert "died" not in text, text[-4000:]
    assert_same_records(tmp_path / "run", local_runs["greedy"], seeds=1)
    assert_gone(engine, started)  # the actor, released at the stage's end, took vLLM along


def test_a_vllm_actor_sigkilled_mid_run_is_replaced_and_sampled_records_are_the_local_ones(
    cluster: str, local_runs: dict[str, Path], model: Path, tmp_path: Path
) -> None:
    store = tmp_path / "run" / "generations.jsonl"
    started = time.monotonic()
    driver, log = start_driver(write_spec(tmp_path, model, "sampled", "ray"), cluster)
    pid, engine = first_actor_engine(driver, log, store, started)
    os.kill(pid, signal.SIGKILL)
    text = finish(driver, log, started)
    assert "ray: actor 0 died" in text and "goes to another actor" in text, text[-4000:]
    assert "ray: actor 1 ready" in text, text[-4000:]
    assert lines(store) == 2 * N_PROMPTS * 2  # nothing written twice
    assert_same_records(tmp_path / "run", local_runs["sampled"], seeds=2)
    assert_gone(engine, started)
