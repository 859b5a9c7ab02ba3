"""Scoring overlapped with generation: same records, really concurrent, errors surface."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest

from harness.core.scoring import ScorerContext, ScoreResult, ScorerParams, ScoringItem
from harness.core.store import JsonlStore
from harness.run.overlap import overlappable
from harness.run.runner import open_plan, run_stages

PROBE = '[[scorers]]\ntype = "test_overlap:Probe"\nname = "probe"\n'


class ProbeParams(ScorerParams):
    device_free: bool = True
    fail: bool = False


class Probe:
    """Text length; remembers how many texts were stored when it was first called."""

    Params = ProbeParams
    batch_size = 3
    stored_at_calls: ClassVar[list[int]] = []

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
        Probe.stored_at_calls.append(self.generations.read_bytes().count(b"\n"))
        if self.params.fail:
            raise RuntimeError("probe scorer broke")
        return [{"length": ScoreResult.ok(len(it.text))} for it in items]


def _records(path: Path) -> list[str]:
    recs = [{k: v for k, v in r.items() if k != "created"} for r in JsonlStore(path).read()]
    return sorted(json.dumps(r, sort_keys=True) for r in recs)


def _run(make_spec: Any, tmp_path: Path, name: str, overlap: bool, extra: str = PROBE) -> Any:
    spec = make_spec(n_prompts=4, seeds="[0, 1]", output_dir=tmp_path / name, extra=extra)
    plan, source = open_plan(spec)
    plan.spec.report.path = str(tmp_path / f"{name}.md")
    Probe.stored_at_calls = []
    summary = run_stages(plan, source, overlap=overlap)
    return plan, summary, list(Probe.stored_at_calls)


def test_records_are_the_same_with_and_without_overlap(make_spec, tmp_path: Path):
    plan_a, sum_a, calls_a = _run(make_spec, tmp_path, "overlapped", True)
    plan_b, sum_b, calls_b = _run(make_spec, tmp_path, "sequential", False)
    n_texts = len(plan_a.items)
    assert [s.name for s in overlappable(plan_a)] == ["lexicon", "probe"]
    assert _records(plan_a.run.generations) == _records(plan_b.run.generations)
    assert _records(plan_a.run.scores) == _records(plan_b.run.scores)
    assert len(JsonlStore(plan_a.run.scores).read()) > n_texts  # lexicon + probe records
    for s in (sum_a, sum_b):
        assert (s.stages["score"].done_now, s.stages["score"].done_before) == (2 * n_texts, 0)
    # overlapped: the probe was first called before every text was stored
    assert calls_a[0] < n_texts and calls_b[0] == n_texts
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
    plan, _, calls = _run(make_spec, tmp_path, "after", True, extra)
    assert [s.name for s in overlappable(plan)] == ["lexicon"]
    assert calls and min(calls) == len(plan.items)


def test_a_failing_overlapped_scorer_fails_the_run(make_spec, tmp_path: Path):
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
