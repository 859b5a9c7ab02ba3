"""A whole benchmark on the tiny generator, judged by a local fake OpenAI-compatible server:
trait and coherence statistics in analysis.json and the report, zero calls on re-runs, and
the API key nowhere in what the run writes."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from fakes.judge_server import FakeJudgeServer, Reply, Request, chat_logprobs

from harness.core.store import JsonlStore
from harness.run.runner import open_plan, run_stages

pytest.importorskip("openai")

KEY = "sk-e2e-SECRET-4f9a8b7c6d5e"


def judge_app(counter: Counter[str], lock: threading.Lock):  # type: ignore[no-untyped-def]
    """A deterministic judge: the answer depends on the rubric and the response only."""

    def app(req: Request) -> Reply:
        prompt = req.prompt
        with lock:
            counter[prompt] += 1
        h = int(hashlib.sha256(prompt.encode()).hexdigest(), 16)
        k = h % 101
        # a third of the texts get a distribution far from numbers: low number mass -> null
        if h % 7 == 0:
            return Reply(body=chat_logprobs({"I": 0.9, str(k): 0.1}))
        return Reply(body=chat_logprobs({str(k): 0.6, str((k + 30) % 101): 0.3, "The": 0.1}))

    return app


@pytest.fixture(scope="module")
def judged_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """One benchmark for the whole module (generation dominates the time)."""
    from conftest import spec_toml, write_prompts

    tmp_path = tmp_path_factory.mktemp("judged")
    saved = os.environ.get("STEER_TEST_JUDGE_KEY")
    os.environ["STEER_TEST_JUDGE_KEY"] = KEY
    counter: Counter[str] = Counter()
    try:
        with FakeJudgeServer(judge_app(counter, threading.Lock())) as server:
            extra = f'''
[[scorers]]
type = "judge"
[scorers.params]
model = "fake-judge"
base_url = "{server.openai_url}"
api_key_env = "STEER_TEST_JUDGE_KEY"
traits = ["fear"]
cache_path = "{tmp_path / "judge.sqlite"}"
max_concurrency = 8
backoff_base = 0.01
timeout = 5.0

[analysis]
coherence_threshold = 40
'''
            prompts = write_prompts(tmp_path / "prompts.jsonl", 4)
            spec = tmp_path / "spec.toml"
            spec.write_text(
                spec_toml(tiny_model_dir, prompts, extra=extra, output_dir=tmp_path / "run")
            )
            plan, source = open_plan(spec)
            plan.spec.report.path = str(tmp_path / "report.md")
            summary = run_stages(plan, source)
            yield plan, source, summary, server, counter, tmp_path
    finally:
        if saved is None:
            os.environ.pop("STEER_TEST_JUDGE_KEY", None)
        else:
            os.environ["STEER_TEST_JUDGE_KEY"] = saved


def test_a_judged_benchmark_reports_trait_and_coherence(judged_run):
    plan, _, _, server, counter, _ = judged_run
    scores = JsonlStore(plan.run.scores).read()
    judge = [s for s in scores if s["scorer"] == "judge"]
    gens = JsonlStore(plan.run.generations).read()
    assert len(judge) == 2 * len(gens) == 2 * 24
    assert {s["metric"] for s in judge} == {"fear", "coherence"}
    nulls = [s for s in judge if s["value"] is None]
    assert nulls and all(s["reason"].startswith("low number mass") for s in nulls)
    for s in judge:
        assert s["extra"]["judge"] == "openai:fake-judge" and "number_mass" in s["extra"]
    # one request per distinct judge prompt (identical texts are asked once)
    distinct = {(m, g["prompt"], g["text"]) for g in gens for m in ("fear", "coherence")}
    assert len(server.requests) == len(counter) == len(distinct)
    assert max(counter.values()) == 1
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"  # the key was used

    analysis = json.loads(plan.run.analysis.read_text())
    comps = {(c["scorer"], c["metric"], c["condition"]) for c in analysis["comparisons"]}
    for cond in ("act", "persona"):
        assert ("judge", "fear", cond) in comps and ("judge", "coherence", cond) in comps
    coh = analysis["coherence"]
    assert coh["sources"] == ["judge"] and coh["threshold"] == 40.0
    # recompute the per-condition coherence from the score records
    for row in coh["by_condition"]:
        vals = [
            s["value"]
            for s in judge
            if s["metric"] == "coherence"
            and s["condition"] == row["condition"]
            and s["value"] is not None
        ]
        assert row["n_scored"] == len(vals)
        assert row["mean"] == pytest.approx(np.mean(vals))
        assert row["share_below"] == pytest.approx(np.mean([v < 40 for v in vals]))
    # and the restricted delta of the judge's fear for one condition
    r = next(
        x
        for x in coh["restricted"]
        if x["scorer"] == "judge" and x["metric"] == "fear" and x["condition"] == "act"
    )
    val = {(s["condition"], s["prompt_id"], s["seed"], s["metric"]): s["value"] for s in judge}
    diffs = []
    for pid, seed in {(s["prompt_id"], s["seed"]) for s in judge}:
        f0, f1 = val[("baseline", pid, seed, "fear")], val[("act", pid, seed, "fear")]
        c0, c1 = val[("baseline", pid, seed, "coherence")], val[("act", pid, seed, "coherence")]
        if None not in (f0, f1, c0, c1) and c0 >= 40 and c1 >= 40:
            diffs.append(f1 - f0)
    assert r["n_kept"] == len(diffs)
    if diffs:
        assert r["delta_kept"] == pytest.approx(np.mean(diffs))

    report = Path(plan.report_path).read_text()
    assert "## Coherence" in report and "share < 40" in report
    assert "| judge | fear | `act` |" in report


def test_rerunning_a_judged_benchmark_makes_zero_calls(judged_run):
    plan, source, _, server, _, _ = judged_run
    asked = len(server.requests)
    before = {s["id"]: s["value"] for s in JsonlStore(plan.run.scores).read()}
    server.reset()
    run_stages(plan, source)  # same run directory: nothing to score
    assert len(server.requests) == 0
    # a fresh scoring of the same texts (scores deleted): every answer from the cache
    plan.run.scores.unlink()
    summary = run_stages(plan, source, ("score", "analyze"))
    assert summary.stages["score"].done_now == 24 * 2  # both scorers re-scored all texts
    assert len(server.requests) == 0
    after = {s["id"]: s["value"] for s in JsonlStore(plan.run.scores).read()}
    assert after == before and asked > 0


def test_the_api_key_appears_nowhere(judged_run):
    plan, _, _, _, _, tmp_path = judged_run
    manifest = json.loads(plan.run.manifest.read_text())
    described = manifest["scorers"]["judge"]
    assert described["api_key_env"] == "STEER_TEST_JUDGE_KEY"
    assert described["judge"] == "openai:fake-judge"
    files = [p for p in Path(plan.run_dir).rglob("*") if p.is_file()]
    files += [Path(plan.report_path), tmp_path / "judge.sqlite"]
    files += list(tmp_path.glob("judge.sqlite*"))
    assert len(files) >= 6
    for path in files:
        data = path.read_bytes()
        assert KEY.encode() not in data and b"SECRET-4f9a" not in data, path
