"""The fault suite: a real CLI run killed with SIGKILL in every stage and resumed loses
nothing and duplicates nothing; two runs started at once on one directory leave one
writer.

The runs are ``python -m harness.cli run SPEC`` subprocesses on the tiny model, scored by
the lexicon and by a judge on a local fake OpenAI-compatible server (127.0.0.1, with a
latency, so that kills land with requests in flight). The kill points are drawn from a
seeded generator, and each is placed by what the run has observably reached (records
written, requests answered, the stage it logs, figures written), so CI is reproducible
and every kill lands inside its stage. Bounded: 7 CLI processes, each with a deadline.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fakes.judge_server import FakeJudgeServer, Reply, Request, chat_logprobs
from stores import records

from harness.core.manifest import INTERRUPTED

pytestmark = pytest.mark.slow
pytest.importorskip("openai")

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-fault-suite-0000"
N_TEXTS = 3 * 4 * 2  # conditions x prompts x seeds
DEADLINE = 240.0  # seconds, per CLI process
SEED = 20251202


def judge_app(req: Request) -> Reply:
    """A deterministic judge: the answer depends on the prompt only; 30 ms per answer."""
    k = int(hashlib.sha256(req.prompt.encode()).hexdigest(), 16) % 101
    return Reply(body=chat_logprobs({str(k): 0.7, str((k + 20) % 101): 0.3}), delay=0.03)


@pytest.fixture(scope="module")
def server() -> Iterator[FakeJudgeServer]:
    with FakeJudgeServer(judge_app) as s:
        yield s


def write_spec(folder: Path, model_dir: Path, server: FakeJudgeServer) -> Path:
    from conftest import spec_toml, write_prompts

    folder.mkdir(parents=True, exist_ok=True)
    # The judge cache is relative, so each run (started in its folder) has its own file
    # while the scorer's parameters, and so its key, are the same everywhere.
    extra = f'''
[[scorers]]
type = "judge"
[scorers.params]
model = "fake-judge"
base_url = "{server.openai_url}"
api_key_env = "STEER_TEST_JUDGE_KEY"
traits = ["fear"]
cache_path = "judge.sqlite"
max_concurrency = 2
backoff_base = 0.01
timeout = 10.0

[analysis]
bootstrap_resamples = 500

[report]
path = "{folder / "report.md"}"
'''
    prompts = write_prompts(folder / "prompts.jsonl", 4)
    text = spec_toml(
        model_dir,
        prompts,
        extra=extra,
        output_dir=folder / "run",
        batch_size=1,
        max_new_tokens=12,
    )
    spec = folder / "spec.toml"
    spec.write_text(text)
    return spec


@dataclass
class Cli:
    """One ``python -m harness.cli`` process, its stderr collected as it comes."""

    args: list[str]
    cwd: Path
    proc: subprocess.Popen[str] = field(init=False)
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path]),
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "TQDM_DISABLE": "1",
            "STEER_TEST_JUDGE_KEY": KEY,
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "harness.cli", *self.args],
            cwd=self.cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.started = time.monotonic()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def saw(self, text: str) -> bool:
        return any(text in line for line in list(self.lines))

    def wait_until(self, pred: Callable[[], bool]) -> bool:
        """Poll ``pred`` every 5 ms while the process lives; False if it ended first."""
        while time.monotonic() - self.started < DEADLINE:
            if pred():
                return self.proc.poll() is None
            if self.proc.poll() is not None:
                return False
            time.sleep(0.005)
        self.kill()
        pytest.fail(f"{self.args} ran past {DEADLINE} s")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.finish()

    def finish(self) -> int:
        try:
            rc = self.proc.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"{self.args} ran past {DEADLINE} s")
        self._reader.join(timeout=10)
        return rc

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def comparisons(run_dir: Path) -> dict[tuple[str, str, str], dict[str, Any]]:
    doc = json.loads((run_dir / "analysis.json").read_text())
    return {(c["condition"], c["scorer"], c["metric"]): c for c in doc["comparisons"]}


@dataclass
class Reference:
    folder: Path
    runs: list[Cli]
    codes: list[int]


@pytest.fixture(scope="module")
def reference(
    tiny_model_dir: Path, server: FakeJudgeServer, tmp_path_factory: pytest.TempPathFactory
) -> Reference:
    """Two uninterrupted runs started at once on one directory: one is refused, the other
    runs to the end and is the reference every interrupted run is compared with."""
    folder = tmp_path_factory.mktemp("reference")
    spec = write_spec(folder, tiny_model_dir, server)
    runs = [Cli(["run", str(spec)], folder), Cli(["run", str(spec)], folder)]
    codes = [r.finish() for r in runs]
    return Reference(folder, runs, codes)


def test_two_runs_at_once_one_is_refused_and_nothing_is_duplicated(reference: Reference):
    assert sorted(reference.codes) == [0, 2], [r.stderr for r in reference.runs]
    winner, loser = reference.runs if reference.codes[0] == 0 else reference.runs[::-1]
    run_dir = reference.folder / "run"
    m = re.fullmatch(
        r"error: (\S+) is in use by PID (\d+) since (\S+); wait for it or use another "
        r"--output-dir",
        loser.stderr.strip().splitlines()[-1],  # after the notes on absolute paths
    )
    assert m, loser.stderr
    assert m.group(1) == str(run_dir) and int(m.group(2)) == winner.proc.pid
    started = json.loads((run_dir / "manifest.json").read_text())["sessions"][0]["started"]
    since = datetime.fromisoformat(m.group(3))
    assert abs((datetime.fromisoformat(started) - since).total_seconds()) <= 2
    assert lines(run_dir / "generations.jsonl") == N_TEXTS
    assert len(records(run_dir / "generations.jsonl")) == N_TEXTS
    scores = records(run_dir / "scores.jsonl")
    assert scores and len(scores) == lines(run_dir / "scores.jsonl")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert [s["status"] for s in manifest["sessions"]] == ["ok"]  # the loser wrote nothing
    assert manifest["sessions"][0]["pid"] == winner.proc.pid


def test_sigkill_in_every_stage_then_resume_loses_and_duplicates_nothing(
    reference: Reference, tiny_model_dir: Path, server: FakeJudgeServer, tmp_path: Path
):
    assert 0 in reference.codes
    ref_run = reference.folder / "run"
    n_scores = lines(ref_run / "scores.jsonl")
    spec = write_spec(tmp_path, tiny_model_dir, server)
    run_dir = tmp_path / "run"
    gens, scores = run_dir / "generations.jsonl", run_dir / "scores.jsonl"
    figures = tmp_path / "report"
    rng = random.Random(SEED)
    command = ["-v", "run", str(spec)]
    landed: list[str] = []

    def trial(stage: str, pred: Callable[[Cli], bool], delay: float = 0.0) -> None:
        cli = Cli(command, tmp_path)
        assert cli.wait_until(lambda: pred(cli)), (
            f"the run ended before the {stage} kill point: {cli.stderr[-2000:]}"
        )
        if delay:
            time.sleep(delay)
        assert cli.proc.poll() is None, f"the run ended before the {stage} kill"
        cli.kill()
        landed.append(stage)

    # 1. generation, after a random number of texts
    n_gen = rng.randint(3, N_TEXTS - 3)
    trial("generate", lambda _: lines(gens) >= n_gen)
    assert n_gen <= lines(gens) < N_TEXTS

    # 2. scoring, with judge requests in flight (the judge needs no device, so it scores
    # while the rest is generated: the kill may land before generation ends)
    server.reset()
    n_req = rng.randint(3, 30)
    trial("score", lambda _: len(server.requests) >= n_req and server.in_flight > 0)
    assert lines(scores) < n_scores

    # 3. analysis, a random moment after it began
    trial("analyze", lambda c: c.saw("stage analyze"), delay=rng.uniform(0.0, 0.25))
    assert lines(scores) == n_scores and not (run_dir / "analysis.json").exists()

    # 4. the report, between its figures
    k = rng.randint(1, 2)
    trial("report", lambda c: c.saw("stage report") and len(list(figures.glob("*.png"))) >= k)
    assert (run_dir / "analysis.json").exists() and not (tmp_path / "report.md").exists()

    # 5. the same command finishes the run
    last = Cli(command, tmp_path)
    assert last.finish() == 0, last.stderr[-2000:]
    assert landed == ["generate", "score", "analyze", "report"]

    # the records equal the uninterrupted run's, as sets, and no id occurs twice
    assert records(gens) == records(ref_run / "generations.jsonl")
    assert records(scores) == records(ref_run / "scores.jsonl")
    # and so does the analysis computed from them
    got, want = comparisons(run_dir), comparisons(ref_run)
    assert got.keys() == want.keys()
    for key, c in want.items():
        for name in ("n", "delta", "cohens_d", "d_ci_low", "p_paired_t", "boot_ci_low", "verdict"):
            a, b = got[key][name], c[name]
            assert a == (b if b is None or isinstance(b, str) else pytest.approx(b)), (key, name)
    assert (tmp_path / "report.md").exists()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    # the session killed in the report had closed as ok: a session ends before its report
    # is rendered, so that the report shows it finished
    assert [s["status"] for s in manifest["sessions"]] == [INTERRUPTED] * 3 + ["ok", "ok"]
