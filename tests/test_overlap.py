"""Scoring overlapped with generation: same records, really concurrent, errors surface,
in the consumer process (the default) and in a thread."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from harness.core.scoring import ScorerContext, ScoreResult, ScorerParams, ScoringItem
from harness.core.store import JsonlStore
from harness.run.overlap import MODE_ENV, overlappable
from harness.run.runner import open_plan, run_stages

PROBE = '[[scorers]]\ntype = "test_overlap:Probe"\nname = "probe"\n'


class ProbeParams(ScorerParams):
    device_free: bool = True
    fail: bool = False


class Probe:
    """Text length; its records say how many texts were stored when it was called and in
    which process (they may be scored in another one)."""

    Params = ProbeParams
    batch_size = 3

    def __init__(self, params: ProbeParams, context: ScorerContext):
        self.params = params
        assert context.run_dir is not None
        self.generations = context.run_dir / "generations.jsonl"

    @classmethod
    def uses_device(cls, params: ProbeParams) -> bool:
        return not params.device_free

    @property
    def metrics(self) -> list[str]:
        return ["length"]

    def score(self, items: list[ScoringItem]) -> list[dict[str, ScoreResult]]:
        stored = self.generations.read_bytes().count(b"\n")
        if self.params.fail:
            raise RuntimeError("probe scorer broke")
        seen = {"stored": stored, "pid": os.getpid()}
        return [{"length": ScoreResult.ok(len(it.text), **seen)} for it in items]


def _records(path: Path) -> list[str]:
    """The records without their time and the probe's where-and-when."""
    out = []
    for r in JsonlStore(path).read():
        r = {k: v for k, v in r.items() if k != "created"}
        if r.get("scorer") == "probe":
            r["extra"] = {k: v for k, v in r["extra"].items() if k not in ("stored", "pid")}
        out.append(json.dumps(r, sort_keys=True))
    return sorted(out)


def _probe_calls(plan: Any) -> tuple[list[int], set[int]]:
    """(texts stored at each probe call, in call order; the processes it ran in)."""
    extras = [r["extra"] for r in JsonlStore(plan.run.scores).read() if r["scorer"] == "probe"]
    return sorted(e["stored"] for e in extras), {e["pid"] for e in extras}


def _run(make_spec: Any, tmp_path: Path, name: str, overlap: bool, extra: str = PROBE) -> Any:
    spec = make_spec(n_prompts=4, seeds="[0, 1]", output_dir=tmp_path / name, extra=extra)
    plan, source = open_plan(spec)
    plan.spec.report.path = str(tmp_path / f"{name}.md")
    summary = run_stages(plan, source, overlap=overlap)
    return plan, summary, _probe_calls(plan)


@pytest.fixture(params=["process", "thread"])
def mode(request: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(MODE_ENV, request.param)
    return str(request.param)


def test_records_are_the_same_with_and_without_overlap(make_spec, tmp_path: Path, mode: str):
    plan_a, sum_a, (calls_a, pids_a) = _run(make_spec, tmp_path, "overlapped", True)
    plan_b, sum_b, (calls_b, pids_b) = _run(make_spec, tmp_path, "sequential", False)
    # where the overlapped scorers ran: another process, or this one
    assert pids_b == {os.getpid()}
    assert (pids_a == {os.getpid()}) == (mode == "thread") and len(pids_a) == 1
    n_texts = len(plan_a.items)
    assert [s.name for s in overlappable(plan_a)] == ["lexicon", "probe"]
    assert _records(plan_a.run.generations) == _records(plan_b.run.generations)
    assert _records(plan_a.run.scores) == _records(plan_b.run.scores)
    assert len(JsonlStore(plan_a.run.scores).read()) > n_texts  # lexicon + probe records
    for s in (sum_a, sum_b):
        assert (s.stages["score"].done_now, s.stages["score"].done_before) == (2 * n_texts, 0)
    # overlapped: the probe was first called before every text was stored (the process
    # may start after this tiny run's generation: see the feeding test below)
    assert calls_b[0] == n_texts
    if mode == "thread":
        assert calls_a[0] < n_texts
    m_a = json.loads(plan_a.run.manifest.read_text())
    m_b = json.loads(plan_b.run.manifest.read_text())
    assert m_a["scorers"] == m_b["scorers"]
    pace = m_a["sessions"][-1]["throughput"]
    assert sum(u["texts"] for u in pace["generation"]) == n_texts
    assert all(u["texts_per_s"] > 0 and u["tokens_per_s"] > 0 for u in pace["generation"])
    assert pace["scoring"]["probe"]["texts"] == n_texts
    assert pace["scoring"]["probe"]["overlapped"] is True
    assert m_b["sessions"][-1]["throughput"]["scoring"]["probe"]["overlapped"] is False
    report = (tmp_path / "overlapped.md").read_text()
    assert "| throughput | generation " in report and "probe " in report
    assert sum_a.throughput == pace
    # a re-run does no work, overlapped or not
    plan, source = open_plan(plan_a.run_dir)
    again = run_stages(plan, source)
    assert again.stages["score"].done_now == 0 and again.stages["generate"].done_now == 0
    assert _records(plan_a.run.scores) == _records(plan_b.run.scores)


def test_a_scorer_that_needs_the_device_runs_after_generation(make_spec, tmp_path: Path):
    extra = PROBE + "[scorers.params]\ndevice_free = false\n"
    plan, _, (calls, pids) = _run(make_spec, tmp_path, "after", True, extra)
    assert [s.name for s in overlappable(plan)] == ["lexicon"]
    assert calls and min(calls) == len(plan.items) and pids == {os.getpid()}


def test_a_failing_overlapped_scorer_fails_the_run(make_spec, tmp_path: Path, mode: str):
    extra = PROBE + "[scorers.params]\nfail = true\n"
    with pytest.raises(RuntimeError, match="probe scorer broke"):
        _run(make_spec, tmp_path, "broken", True, extra)


def test_throughput_text_sums_the_sessions():
    from harness.report.overview import throughput_text

    unit = {"conditions": ["b"], "texts": 10, "new_tokens": 400, "seconds": 4.0}
    judge = {"texts": 10, "seconds": 2.0, "overlapped": True, "calls": 20}
    lex = {"texts": 10, "seconds": 0.5, "overlapped": False}
    sessions = [
        {"throughput": {"generation": [unit], "scoring": {"judge": judge}}},
        {"status": "ok"},
        {"throughput": {"generation": [unit], "scoring": {"judge": judge, "lexicon": lex}}},
    ]
    assert throughput_text(sessions) == (
        "generation 2.5 texts/s, 100.0 new tokens/s; judge 10.0 calls/s (alongside "
        "generation); lexicon 20.0 texts/s"
    )
    assert throughput_text([{"status": "ok"}]) == ""


def _fed_consumer(make_spec: Any, tmp_path: Path) -> tuple[Any, list[Any], Any]:
    """A consumer for a run with no texts yet, and the texts of the same spec run before."""
    from harness.core.manifest import Manifest
    from harness.core.records import GenerationRecord
    from harness.run.overlap import OverlappedScoring

    done = make_spec(n_prompts=2, seeds="[0]", output_dir=tmp_path / "done", extra=PROBE)
    plan, source = open_plan(done)
    run_stages(plan, source, ("generate",))
    texts = [GenerationRecord(**r) for r in JsonlStore(plan.run.generations).read()]
    fresh = make_spec(n_prompts=2, seeds="[0]", output_dir=tmp_path / "fresh", extra=PROBE)
    plan, _ = open_plan(fresh)
    plan.run.root.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(plan.run.manifest)
    manifest.start("run", session_id="test")
    return OverlappedScoring(plan, overlappable(plan), manifest).start(), texts, manifest


def _wait_for(predicate: Any, seconds: float = 60.0) -> bool:
    import time

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_the_consumer_process_scores_each_batch_as_it_is_fed(make_spec, tmp_path: Path):
    overlap, texts, manifest = _fed_consumer(make_spec, tmp_path)
    scores = overlap.plan.run.scores
    assert overlap._proc is not None and overlap._proc.pid != os.getpid()

    def probe_records() -> int:
        if not scores.exists():
            return 0
        return sum(r["scorer"] == "probe" for r in JsonlStore(scores).read())

    store = JsonlStore(overlap.plan.run.generations)
    store.append(texts[:2])  # as the generate stage does: store, then feed
    overlap.feed(texts[:2])
    # the first batch is scored and stored before the second is given
    assert _wait_for(lambda: probe_records() == 2 or overlap._error is not None)
    assert overlap._error is None
    store.append(texts[2:])
    overlap.feed(texts[2:])
    result = overlap.finish()
    assert result.done_now == 2 * len(texts) and probe_records() == len(texts)
    assert overlap._proc.poll() == 0  # the process has exited
    extras = [r["extra"] for r in JsonlStore(scores).read() if r["scorer"] == "probe"]
    assert {e["pid"] for e in extras} == {overlap._proc.pid}
    assert sorted(e["stored"] for e in extras)[:2] == [2, 2]  # scored before the rest came
    # the manifest got the scorers and their throughput from the process
    assert set(manifest.data["scorers"]) == {"lexicon", "probe"}
    pace = manifest.data["sessions"][-1]["throughput"]["scoring"]
    assert pace["probe"]["texts"] == len(texts) and pace["probe"]["overlapped"] is True


def test_the_consumer_process_stops_when_aborted_or_orphaned(make_spec, tmp_path: Path):
    overlap, texts, _ = _fed_consumer(make_spec, tmp_path)
    JsonlStore(overlap.plan.run.generations).append(texts[:2])
    overlap.feed(texts[:2])
    overlap.abort()
    assert overlap._proc is not None and overlap._proc.poll() is not None
    # the run's process going away (its end of the pipe closed) stops the process too
    again, texts, _ = _fed_consumer(make_spec, tmp_path / "again")
    assert again._proc is not None and again._to is not None
    again._to.close()
    assert _wait_for(lambda: again._proc.poll() is not None, 30.0)


def test_a_scorer_that_cannot_go_to_another_process_stays_in_a_thread(monkeypatch):
    from harness.config.scorers import ResolvedScorer
    from harness.run.overlap import _sendable

    class Local(Probe):  # defined in a function: not importable by its name
        pass

    def resolved(cls: type) -> ResolvedScorer:
        return ResolvedScorer("p", "probe", cls, ProbeParams(), "key")

    monkeypatch.delenv(MODE_ENV, raising=False)
    assert isinstance(_sendable([resolved(Probe)]), bytes)
    assert "not importable" in str(_sendable([resolved(Local)]))
    monkeypatch.setenv(MODE_ENV, "thread")
    assert _sendable([resolved(Probe)]) == f"{MODE_ENV}=thread"
