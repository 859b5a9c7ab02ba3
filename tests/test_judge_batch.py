"""The judge through the providers' batch APIs: the real openai and anthropic SDKs against a
fake of both batch APIs on 127.0.0.1 (tests/fakes/batch_server.py), polled every few ms.

What must hold: batch answers become exactly the online path's scores; only cache misses
are sent; errored and expired requests are retryable nulls that a re-run sends again;
``batch_max_requests`` splits; a run killed while polling polls the same batch again; and
every answered call's tokens are counted and priced.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from fakes.batch_server import FakeBatchServer
from fakes.judge_server import FakeJudgeServer, Reply, Request, anthropic_text, chat_logprobs

from harness.config.spec import SpecError
from harness.core.rundir import RunDir
from harness.core.scoring import ScorerContext, ScoringItem, is_final
from judges.llm.cost import Price, Tokens, shipped_price
from judges.llm.scorer import JudgeParams, JudgeScorer

pytest.importorskip("openai")
pytest.importorskip("anthropic")

FAST = {
    "backoff_base": 0.01,
    "backoff_max": 0.5,
    "timeout": 5.0,
    "batch": True,
    "batch_poll_interval": 0.02,
    "batch_poll_max": 0.05,
    "batch_timeout": 20.0,
}
PRICE = {"input": 2.0, "output": 8.0, "batch_input": 1.0, "batch_output": 4.0}


def prompt_of(body: dict[str, Any]) -> str:
    content = body["messages"][-1]["content"]
    return content if isinstance(content, str) else "".join(b["text"] for b in content)


def digits(prompt: str) -> int:
    return int(hashlib.sha256(prompt.encode()).hexdigest(), 16)


def logprob_body(prompt: str) -> dict[str, Any]:
    """A deterministic judge: its distribution depends on the prompt only."""
    k = digits(prompt) % 101
    body = chat_logprobs({str(k): 0.6, str((k + 30) % 101): 0.3, "The": 0.1})
    body["usage"] = {"prompt_tokens": len(prompt) // 4, "completion_tokens": 1}
    return body


def sample_body(prompt: str, temperature: Any) -> dict[str, Any]:
    body = anthropic_text(str(digits(prompt) % 101))
    body["usage"] = {"input_tokens": len(prompt) // 4, "output_tokens": 2}
    return body


def openai_answer(body: dict[str, Any]) -> tuple[int, Any]:
    assert body["logprobs"] is True and body["max_tokens"] == 1
    return 200, logprob_body(prompt_of(body))


def items(n: int) -> list[ScoringItem]:
    return [
        ScoringItem(f"I fear the dark road {i}.", f"question {i}", f"g{i}", "c") for i in range(n)
    ]


def make(tmp_path: Path, run_dir: Path | None = None, **params: Any) -> JudgeScorer:
    params.setdefault("model", "fake-judge")
    params.setdefault("cache_path", str(tmp_path / "judge.sqlite"))
    params.setdefault("traits", ["fear"])
    for k, v in FAST.items():
        params.setdefault(k, v)
    p = JudgeParams(**params)
    assert JudgeScorer.check(p, tmp_path) == []
    return JudgeScorer(p, ScorerContext(run_dir=run_dir, base_dir=tmp_path))


def score(scorer: JudgeScorer, its: list[ScoringItem]) -> list[dict]:
    return asyncio.run(scorer.ascore(its))


@pytest.fixture
def batches():
    with FakeBatchServer(openai_answer, polls_in_progress=3) as srv:
        yield srv


def test_openai_batch_gives_the_online_scores_and_caches_them(batches, tmp_path):
    its = items(6)
    run = tmp_path / "run"
    batched = make(tmp_path, run, base_url=batches.openai_url, price=PRICE)
    rows = score(batched, its)
    assert batches.submissions == 1
    assert batches.uploads[0]["purpose"] == b"batch"
    assert batches.created[0]["endpoint"] == "/v1/chat/completions"
    assert batches.created[0]["completion_window"] == "24h"
    batch = next(iter(batches.batches.values()))
    assert batch.polls == 4  # in progress for three polls, ended on the fourth
    assert len(batch.requests) == 12  # 6 texts x (fear, coherence)
    assert {r["custom_id"] for r in batch.requests} == {
        c.key
        for it in its
        for m in ("fear", "coherence")
        for c in batched._task(it, m, batched._identity()).calls
    }
    # The online path through the same judge gives exactly the same records.
    with FakeJudgeServer(lambda req: Reply(body=logprob_body(req.prompt))) as online_srv:
        online = make(
            tmp_path,
            None,
            base_url=online_srv.openai_url,
            batch=False,
            cache_path=str(tmp_path / "online.sqlite"),
        )
        expected = score(online, its)
        assert len(online_srv.requests) == 12
    assert rows == expected
    assert all(r["fear"].value is not None and r["coherence"].value is not None for r in rows)
    # Answers are in the cache: scoring again sends nothing.
    again = make(tmp_path, run, base_url=batches.openai_url)
    assert score(again, its) == expected
    assert batches.submissions == 1 and again.stats.cache_hits == 12
    # Collected batches leave the ledger.
    assert json.loads(RunDir(run).judge_batches.read_text()) == {"batches": {}}
    # Tokens come from each response's usage; dollars at the batch price.
    prompts = [prompt_of(r["body"]) for r in batch.requests]
    tokens_in = sum(len(p) // 4 for p in prompts)
    usage = batched.usage_record()
    assert usage["calls"] == 12 and usage["batch"]["calls"] == 12 and usage["online"]["calls"] == 0
    assert usage["input_tokens"] == tokens_in and usage["output_tokens"] == 12
    assert usage["cost_usd"] == pytest.approx((tokens_in * 1.0 + 12 * 4.0) / 1e6)
    assert usage["cost_online_usd"] == pytest.approx((tokens_in * 2.0 + 12 * 8.0) / 1e6)
    assert usage["price"]["source"] == "spec"
    online_usage = online.usage_record()
    assert online_usage["online"] == {"calls": 12, "input_tokens": tokens_in, "output_tokens": 12}
    assert again.usage_record()["cache_hits"] == 12 and again.usage_record()["calls"] == 0


def test_only_cache_misses_are_sent_and_large_jobs_are_split(batches, tmp_path):
    first = make(tmp_path, tmp_path / "run", base_url=batches.openai_url)
    score(first, items(3))
    assert batches.submissions == 1
    more = make(tmp_path, tmp_path / "run", base_url=batches.openai_url, batch_max_requests=5)
    rows = score(more, items(10))  # 3 texts cached, 7 new: 14 calls in batches of <= 5
    assert all(r["fear"].value is not None for r in rows)
    sizes = [len(b.requests) for b in list(batches.batches.values())[1:]]
    assert sorted(sizes) == [4, 5, 5] and batches.submissions == 4
    assert more.stats.cache_hits == 6


def test_per_request_errors_are_retryable_nulls_sent_again(batches, tmp_path):
    def answer(body: dict[str, Any]) -> tuple[int, Any]:
        prompt = prompt_of(body)
        if "question 1" in prompt and "Trait: fear" in prompt:
            return 500, {"error": {"message": "The server had an error", "type": "server_error"}}
        if "question 2" in prompt and "Trait: fear" in prompt:
            return 200, {"choices": []}  # malformed
        return openai_answer(body)

    batches.answer = answer
    sc = make(tmp_path, tmp_path / "run", base_url=batches.openai_url)
    rows = score(sc, items(4))
    assert rows[0]["fear"].value is not None and rows[1]["coherence"].value is not None
    failed = rows[1]["fear"]
    assert failed.value is None and "HTTP 500" in (failed.reason or "")
    assert "server had an error" in (failed.reason or "")
    assert not is_final({"value": None, "extra": dict(failed.extra)})
    bad = rows[2]["fear"]
    assert bad.value is None and "malformed response: no choices" in (bad.reason or "")
    # A re-run sends exactly the two failed calls, in one new batch.
    batches.answer = openai_answer
    again = make(tmp_path, tmp_path / "run", base_url=batches.openai_url)
    rows2 = score(again, items(4))
    assert batches.submissions == 2
    assert len(list(batches.batches.values())[1].requests) == 2
    assert rows2[1]["fear"].value is not None and rows2[2]["fear"].value is not None


def test_an_expired_batch_answers_what_it_did_and_the_rest_are_retryable(batches, tmp_path):
    sc = make(
        tmp_path, tmp_path / "run", base_url=batches.openai_url, traits=["fear"], coherence=False
    )
    its = items(4)
    keys = [sc._task(it, "fear", sc._identity()).calls[0].key for it in its]
    batches.expire = True
    batches.expire_keys = {keys[0], keys[3]}
    rows = score(sc, its)
    assert rows[1]["fear"].value is not None and rows[2]["fear"].value is not None
    for r in (rows[0], rows[3]):
        assert r["fear"].value is None and "batch_expired" in (r["fear"].reason or "")
        assert r["fear"].extra.get("retry") is True
    assert not RunDir(tmp_path / "run").judge_batches.exists() or json.loads(
        RunDir(tmp_path / "run").judge_batches.read_text()
    ) == {"batches": {}}


def test_a_batch_still_running_at_the_timeout_is_polled_again_next_run(batches, tmp_path):
    batches.hold.set()
    run = tmp_path / "run"
    sc = make(tmp_path, run, base_url=batches.openai_url, batch_timeout=0.2, coherence=False)
    rows = score(sc, items(2))
    assert all(r["fear"].value is None and "still in_progress" in r["fear"].reason for r in rows)
    assert all(r["fear"].extra.get("retry") for r in rows)
    ledger = json.loads(RunDir(run).judge_batches.read_text())["batches"]
    assert list(ledger) == list(batches.batches)
    batches.hold.clear()
    again = make(tmp_path, run, base_url=batches.openai_url, coherence=False)
    rows = score(again, items(2))
    assert all(r["fear"].value is not None for r in rows)
    assert batches.submissions == 1


def test_anthropic_message_batches_give_the_online_sample_scores(tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-key-000000")

    def answer(params: dict[str, Any]) -> tuple[int, Any]:
        prompt = prompt_of(params)
        if "question 2" in prompt and "Trait: fear" in prompt:
            return 429, {
                "type": "error",
                "error": {"type": "rate_limit_error", "message": "slow down"},
            }
        return 200, sample_body(prompt, params.get("temperature"))

    its = items(4)
    with FakeBatchServer(answer, polls_in_progress=2) as srv:
        sc = make(
            tmp_path,
            tmp_path / "run",
            provider="anthropic",
            model="claude-haiku-4-5",
            base_url=srv.root_url,
            samples=3,
            sample_temperature=0.7,
        )
        keys = [c.key for c in sc._task(its[3], "fear", sc._identity()).calls]
        srv.expire, srv.expire_keys = True, set(keys)
        rows = score(sc, its)
        assert srv.submissions == 1
        reqs = next(iter(srv.batches.values())).requests
        assert len(reqs) == 4 * 2 * 3 and reqs[0]["body"]["temperature"] == 0.7
        assert reqs[0]["body"]["model"] == "claude-haiku-4-5"
    errored = rows[2]["fear"]
    assert errored.value is None and "rate_limit_error" in (errored.reason or "")
    assert errored.extra.get("retry") is True
    expired = rows[3]["fear"]
    assert expired.value is None and "expired" in (expired.reason or "")
    assert expired.extra.get("retry") is True

    def online_app(req: Request) -> Reply:
        return Reply(body=sample_body(req.prompt, None))

    with FakeJudgeServer(online_app) as online_srv:
        online = make(
            tmp_path,
            None,
            provider="anthropic",
            model="claude-haiku-4-5",
            base_url=online_srv.root_url,
            samples=3,
            sample_temperature=0.7,
            batch=False,
            cache_path=str(tmp_path / "online.sqlite"),
        )
        expected = score(online, its)
    for got, want in zip(rows[:2], expected[:2], strict=True):
        assert got == want
    assert rows[3]["coherence"] == expected[3]["coherence"]
    usage = sc.usage_record()
    assert usage["batch"]["calls"] == 4 * 2 * 3 - 3 - 3  # less the errored and the expired
    assert usage["output_tokens"] == 2 * usage["calls"]
    assert usage["price"]["source"].endswith("claude-haiku-4-5)")
    assert usage["cost_batch_usd"] == pytest.approx(usage["cost_online_usd"] / 2)


def test_a_rejected_key_on_submission_stops_scoring(batches, tmp_path, monkeypatch):
    monkeypatch.setenv("STEER_BATCH_KEY", "sk-batch-SECRET-123456789")
    batches.auth_fails = True
    sc = make(
        tmp_path, tmp_path / "run", base_url=batches.openai_url, api_key_env="STEER_BATCH_KEY"
    )
    with pytest.raises(SpecError) as info:
        score(sc, items(1))
    assert "401" in str(info.value) and "SECRET" not in str(info.value)


KILLED_RUN = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from harness.core.scoring import ScorerContext, ScoringItem
    from judges.llm.scorer import JudgeParams, JudgeScorer

    url, run, cache = sys.argv[1:4]
    p = JudgeParams(model="fake-judge", base_url=url, traits=["fear"], cache_path=cache,
                    batch=True, batch_poll_interval=0.02, batch_poll_max=0.05)
    sc = JudgeScorer(p, ScorerContext(run_dir=Path(run), base_dir=Path(run).parent))
    items = [ScoringItem(f"I fear the dark road {i}.", f"question {i}", f"g{i}", "c")
             for i in range(5)]
    asyncio.run(sc.ascore(items))
    print("finished")
    """
)


def test_a_run_killed_while_polling_polls_the_same_batch_again(batches, tmp_path):
    batches.hold.set()
    run = tmp_path / "run"
    script = tmp_path / "killed.py"
    script.write_text(KILLED_RUN)
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(
            [str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")]
        ),
    )
    proc = subprocess.Popen(
        [sys.executable, str(script), batches.openai_url, str(run), str(tmp_path / "j.sqlite")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            polled = [b.polls for b in batches.batches.values()]
            if polled and polled[0] >= 2:
                break
            assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
            time.sleep(0.02)
        else:
            pytest.fail("the run never polled its batch")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert batches.submissions == 1
    (batch_id,) = batches.batches
    ledger = json.loads(RunDir(run).judge_batches.read_text())["batches"]
    assert list(ledger) == [batch_id] and len(ledger[batch_id]["keys"]) == 10
    polls_before = batches.batches[batch_id].polls
    batches.hold.clear()
    resumed = make(
        tmp_path, run, base_url=batches.openai_url, cache_path=str(tmp_path / "j.sqlite")
    )
    rows = score(resumed, items(5))
    assert all(r["fear"].value is not None and r["coherence"].value is not None for r in rows)
    assert batches.submissions == 1  # exactly one submission, killed run and resumed run
    assert batches.batches[batch_id].polls > polls_before
    assert json.loads(RunDir(run).judge_batches.read_text()) == {"batches": {}}


# ---- prices -----------------------------------------------------------------------------


def test_the_price_table_matches_snapshots_and_the_spec_overrides_it(tmp_path):
    price, source = shipped_price("openai", "gpt-4o-mini-2024-07-18")
    assert price is not None and source is not None and "gpt-4o-mini)" in source
    assert price.batch_input == pytest.approx(price.input / 2)
    assert shipped_price("openai", "gpt-4o-minimal") == (None, None)
    assert shipped_price("anthropic", "claude-haiku-4-5-20251001")[0] is not None
    assert shipped_price("openai", "my-local-model") == (None, None)
    tokens = Tokens(calls=2, input_tokens=1_000_000, output_tokens=500_000)
    p = Price(input=1.0, output=2.0)
    assert p.dollars(tokens, batch=False) == pytest.approx(2.0)
    assert p.dollars(tokens, batch=True) == pytest.approx(2.0)  # no batch price: online's
    sc = make(tmp_path, None, model="unpriced", base_url="http://127.0.0.1:9/v1")
    rec = sc.usage_record()
    assert rec["cost_usd"] is None and rec["price"] is None  # unknown, never 0


# ---- a whole run ------------------------------------------------------------------------

JUDGE_SPEC = """
[[scorers]]
type = "judge"
[scorers.params]
model = "gpt-4o-mini"
base_url = "{url}"
traits = ["fear"]
cache_path = "{cache}"
backoff_base = 0.01
timeout = 5.0
batch = {batch}
batch_poll_interval = 0.02
batch_poll_max = 0.05

[report]
path = "{report}"
"""


def judged_run(root: Path, model_dir: Path, url: str, batch: bool) -> tuple[Path, Path]:
    from conftest import spec_toml, write_prompts

    from harness.run.runner import open_plan, run_stages

    root.mkdir()
    extra = JUDGE_SPEC.format(
        url=url, cache=root / "judge.sqlite", batch=str(batch).lower(), report=root / "r.md"
    )
    prompts = write_prompts(root / "prompts.jsonl", 3)
    spec = root / "spec.toml"
    spec.write_text(
        spec_toml(
            model_dir,
            prompts,
            extra=extra + "\n[analysis]\nbootstrap_resamples = 200\n",
            output_dir=root / "run",
        )
    )
    plan, source = open_plan(spec)
    run_stages(plan, source)
    return spec, root / "run"


def test_a_batched_run_writes_the_online_records_and_its_cost(
    batches, tmp_path, tiny_model_dir, capsys
):
    from harness.cli import main
    from harness.core.store import JsonlStore

    with FakeJudgeServer(lambda req: Reply(body=logprob_body(req.prompt))) as online_srv:
        _, online_run = judged_run(
            tmp_path / "online", tiny_model_dir, online_srv.openai_url, batch=False
        )
        online_calls = len(online_srv.requests)
    spec, batch_run = judged_run(tmp_path / "batch", tiny_model_dir, batches.openai_url, batch=True)
    assert batches.submissions == 1
    sent = len(next(iter(batches.batches.values())).requests)
    assert sent == online_calls

    def judged(run: Path) -> dict[tuple[str, str], tuple[Any, ...]]:
        # By generation and metric: the scorer key (so the record id) hashes every param,
        # batch and cache_path included.
        recs = JsonlStore(run / "scores.jsonl").iter_dicts()
        return {
            (r["generation_id"], r["metric"]): (
                r["value"],
                r["reason"],
                json.dumps(r["extra"], sort_keys=True),
            )
            for r in recs
            if r["scorer"] == "judge"
        }

    # one call per distinct (prompt, text) and metric: a tiny random model may write the
    # same text twice, and the second is answered from the cache
    texts = JsonlStore(batch_run / "generations.jsonl").read()
    distinct = len({(g["prompt"], g["text"]) for g in texts})
    metrics = len({m for _, m in judged(batch_run)})
    assert judged(batch_run) == judged(online_run)
    assert len(judged(batch_run)) == len(texts) * metrics and online_calls == distinct * metrics
    manifest = json.loads((batch_run / "manifest.json").read_text())
    usage = manifest["scorers"]["judge"]["usage"]
    assert usage["batch"]["calls"] == sent and usage["online"]["calls"] == 0
    assert usage["cost_usd"] == pytest.approx(usage["cost_batch_usd"])
    assert usage["cost_online_usd"] == pytest.approx(2 * usage["cost_batch_usd"])
    online_usage = json.loads((online_run / "manifest.json").read_text())["scorers"]["judge"]
    assert online_usage["usage"]["cost_usd"] == pytest.approx(usage["cost_online_usd"])
    report = (tmp_path / "batch" / "r.md").read_text()
    assert "Judge calls" in report and f"{sent} calls (0 from the cache)" in report
    assert "prices.toml (2025-10-15: gpt-4o-mini)" in report
    # The run's last lines and check's estimate: a re-run answers everything from the cache.
    capsys.readouterr()
    assert main(["run", str(spec)]) == 0
    out = capsys.readouterr().out
    assert f"judge judge: {sent} calls (0 from the cache)" in out  # nothing new to score
    assert batches.submissions == 1
    assert main(["check", str(spec)]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if "judge judge (openai:gpt-4o-mini, batch)" in x)
    # at most one call per text and metric (identical texts share one: fewer were sent)
    assert f"at most {len(texts) * metrics} calls" in line and f"measured over {sent} calls" in line
    assert "generation: " not in out  # nothing left to generate
    # With a seed added, check gives the remaining generations' time at the measured rate.
    from harness.run.estimate import measured_throughput
    from harness.run.runner import open_plan

    rate = measured_throughput(open_plan(spec)[0])
    assert rate is not None and rate.records == 18 and rate.per_second > 0
    spec.write_text(spec.read_text().replace("seeds = [0, 1]", "seeds = [0, 1, 2]"))
    assert main(["check", str(spec)]) == 0
    out = capsys.readouterr().out
    assert f"generation: 9 to go, ~{9 / rate.per_second / 60:.1f} min at the" in out
    assert f"at most {27 * 2} calls" in out
