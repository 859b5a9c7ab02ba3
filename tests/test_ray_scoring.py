"""Scoring on Ray actors, on a local Ray cluster this module starts (2 CPUs, this machine).

Model-using scorers (fluency on the tiny generator, a classifier on a tiny BERT, the local
HF judge on a tiny digit-spelling model) give the same score records under the Ray engine
as under the local one: values, ids, nulls and their reasons; after an actor SIGKILLed
while scoring too. A unit whose actors keep dying stops with an error naming it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import spec_toml, write_prompts
from ray_cluster import local_cluster
from stores import records

from harness.core.errors import EngineError
from harness.run import stages
from harness.run.runner import open_plan, run_stages

ray = pytest.importorskip("ray")

DEADLINE = 240.0
"""Seconds any one wait in this module may take before the test fails."""
N_PROMPTS, SEEDS = 4, "[0, 1]"  # 3 conditions x 8 items = 24 texts
RAY = '\n[execution]\nengine = "ray"\nworkers = 2\nbatches_per_task = 1\n'


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A 2-CPU Ray cluster for this module; its GCS address for other drivers."""
    with local_cluster() as address:
        yield address


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tiny import build_model, digit_tokenizer, save_classifier

    judge = tmp_path_factory.mktemp("judge")
    tok = digit_tokenizer()
    build_model("llama", vocab_size=len(tok), layers=2, seed=3).save_pretrained(judge)
    tok.save_pretrained(judge)
    return {"classifier": save_classifier(tmp_path_factory.mktemp("clf")), "judge": judge}


def scorers_toml(models: dict[str, Path], judge: bool = True) -> str:
    # fluency n = 6 over at most 6 new words: some repetition values, some nulls.
    out = f"""
[[scorers]]
type = "fluency"
[scorers.params]
n = 6
batch_size = 3

[[scorers]]
type = "classifier"
[scorers.params]
model = "{models["classifier"]}"
device = "cpu"
batch_size = 5
"""
    if judge:
        # The cache lives in each spec's folder: a Ray run must compute, not read the
        # local run's answers.
        out += f"""
[[scorers]]
type = "judge"
[scorers.params]
provider = "hf"
model = "{models["judge"]}"
device = "cpu"
traits = ["fear"]
definitions = {{ fear = "afraid" }}
trait_template = "trait.txt"
coherence_template = "coherence.txt"
min_number_mass = 0.0
cache_path = "judge.sqlite"
batch_size = 8
"""
    return out


def write_spec(folder: Path, model_dir: Path, scorers: str, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "trait.txt").write_text("rate {trait} : {definition} {question} {response}")
    (folder / "coherence.txt").write_text("is it coherent ? {question} {response}")
    prompts = write_prompts(folder / "prompts.jsonl", N_PROMPTS)
    text = spec_toml(
        model_dir, prompts, seeds=SEEDS, batch_size=2, max_new_tokens=6, output_dir=folder / "run"
    )
    spec = folder / "spec.toml"
    spec.write_text(text + scorers + extra)
    return spec


def run(spec: Path, stages_: tuple[str, ...] = ("generate", "score")) -> Path:
    plan, source = open_plan(spec)
    run_stages(plan, source, stages_)
    return plan.run_dir


@pytest.fixture(scope="module")
def reference(
    models: dict[str, Path], tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The local engine's run, every Ray run's reference, on the actors' thread count (one,
    as ``num_cpus = 1``): on CPU a float reduction's last bits depend on it (README, Scale
    out), and CI runs without OMP_NUM_THREADS."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        spec = write_spec(tmp_path_factory.mktemp("local"), tiny_model_dir, scorers_toml(models))
        return run(spec)
    finally:
        torch.set_num_threads(threads)


class PoolSpy:
    """Keeps the scoring pools the score stage opens, so a test can reach their actors."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.pools: list[Any] = []
        real = stages.open_scoring

        def spy(*args: Any, **kwargs: Any) -> Any:
            pool = real(*args, **kwargs)
            self.pools.append(pool)
            return pool

        monkeypatch.setattr(stages, "open_scoring", spy)

    def busy_pids(self, key_part: str) -> list[int]:
        pool = self.pools[0] if self.pools else None
        if pool is None or key_part not in (pool.current or ""):
            return []
        return [pool.pids[s] for s in list(pool.busy) if s in pool.pids]


def score_only(folder: Path, reference: Path, spec: Path) -> Path:
    """Score the reference's texts (copied) through the spec's engine."""
    (folder / "run").mkdir(parents=True, exist_ok=True)
    shutil.copy(reference / "generations.jsonl", folder / "run" / "generations.jsonl")
    return run(spec, ("score",))


def test_ray_scores_equal_local_scores(
    cluster: str, reference: Path, models, tiny_model_dir: Path, tmp_path: Path, monkeypatch
):
    spy = PoolSpy(monkeypatch)
    loaded: list[str] = []
    real = stages.load_model
    monkeypatch.setattr(stages, "load_model", lambda spec: loaded.append(spec.id) or real(spec))
    run_dir = run(write_spec(tmp_path, tiny_model_dir, scorers_toml(models), RAY))
    assert records(run_dir / "generations.jsonl") == records(reference / "generations.jsonl")
    ray_scores = records(run_dir / "scores.jsonl")
    assert ray_scores == records(reference / "scores.jsonl")
    recs = [json.loads(r) for r in ray_scores]
    by = {(r["scorer"], r["metric"]) for r in recs}
    assert {("fluency", "perplexity"), ("classifier", "fear"), ("judge", "coherence")} <= by
    counts = {name: sum(r["scorer"] == name for r in recs) for name in ("fluency", "classifier")}
    assert counts == {"fluency": 24 * 2, "classifier": 24 * 3}
    assert sum(r["scorer"] == "judge" for r in recs) == 24 * 2
    nulls = [r for r in recs if r["value"] is None]
    assert nulls and all(r["reason"] for r in nulls)
    assert any(r["metric"] == "repetition" and r["value"] is not None for r in recs)
    assert loaded == []  # the driver never loaded the generator: the actors scored
    [pool] = spy.pools
    assert pool.lost == 0 and not pool.owns_ray and pool._next_slot == 2  # 2 actors, kept
    manifest = json.loads((run_dir / "manifest.json").read_text())
    local = json.loads((reference / "manifest.json").read_text())
    for name in ("fluency", "classifier"):
        assert manifest["scorers"][name] == local["scorers"][name]


def test_actors_sigkilled_while_scoring_have_their_work_retried_and_records_are_identical(
    cluster: str, reference: Path, models, tiny_model_dir: Path, tmp_path: Path, monkeypatch
):
    spy = PoolSpy(monkeypatch)
    spec = write_spec(tmp_path, tiny_model_dir, scorers_toml(models), RAY)
    killed: dict[str, int] = {}

    def kill(phase: str, key_part: str) -> None:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline and phase not in killed:
            busy = spy.busy_pids(key_part)
            if busy:
                os.kill(busy[0], signal.SIGKILL)
                killed[phase] = busy[0]
            time.sleep(0.002)

    def killer() -> None:
        fluency = next(sc.key for sc in open_plan(spec)[0].scorers if sc.type_name == "fluency")
        kill("fluency unit", fluency)  # a whole batch on an actor
        kill("judge call", "hf judge")  # one judge call from the driver

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    run_dir = score_only(tmp_path, reference, spec)
    thread.join(timeout=5)
    assert set(killed) == {"fluency unit", "judge call"}, killed
    [pool] = spy.pools
    assert pool.lost == 2
    assert any("scorer 'fluency'" in r for r in pool.retried)
    assert any("hf judge" in r for r in pool.retried)
    assert records(run_dir / "scores.jsonl") == records(reference / "scores.jsonl")


def test_a_scoring_unit_whose_actors_keep_dying_stops_with_an_error_naming_it(
    cluster: str, reference: Path, models, tiny_model_dir: Path, tmp_path: Path, monkeypatch
):
    spy = PoolSpy(monkeypatch)
    extra = RAY.replace("workers = 2", "workers = 1") + "max_retries = 1\n"
    spec = write_spec(tmp_path, tiny_model_dir, scorers_toml(models, judge=False), extra)
    fluency = next(sc.key for sc in open_plan(spec)[0].scorers if sc.type_name == "fluency")
    stop = threading.Event()

    def kill_every_busy_actor() -> None:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline and not stop.is_set():
            for pid in spy.busy_pids(fluency):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.002)

    thread = threading.Thread(target=kill_every_busy_actor, daemon=True)
    thread.start()
    try:
        with pytest.raises(EngineError, match=r"scorer 'fluency'.*Ray actor died 2 time\(s\)"):
            score_only(tmp_path, reference, spec)
    finally:
        stop.set()
        thread.join(timeout=5)
    assert spy.pools[0].lost >= 2
