"""What judging a demo-sized run costs online and through a batch API, and what the cache saves.

Scores demo-sized texts (the demo's 32 prompts x 5 seeds x 4 conditions = 640 texts,
judged for fear and coherence: 1280 logprob calls) with the ``judge`` scorer, model
``gpt-4o-mini`` priced from ``prompts/judges/prices.toml``: once online against a fake
OpenAI-compatible server, once through the fake Batch API (tests/fakes/batch_server.py),
then again with the batch judge to count the calls the cache saves. The fake servers
report ``prompt_tokens = len(prompt) // 4`` (about 4 characters per token for English),
so the token counts are estimates of what the real API would bill; responses are
synthetic texts of about 48 tokens (the demo's ``max_new_tokens``). Everything runs on
127.0.0.1. Writes ``benchmarks/results/judge_batch_cost.json``.

    python benchmarks/judge_batch_cost.py [--seeds 5] [--conditions 4]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from fakes.batch_server import FakeBatchServer  # noqa: E402
from fakes.judge_server import FakeJudgeServer, Reply, chat_logprobs  # noqa: E402

from harness.core.scoring import ScorerContext, ScoringItem  # noqa: E402
from judges.llm.scorer import JudgeParams, JudgeScorer  # noqa: E402
from prompts import data_path  # noqa: E402

WORDS = [
    "the",
    "road",
    "was",
    "dark",
    "and",
    "I",
    "walked",
    "on",
    "slowly",
    "listening",
    "to",
    "every",
    "sound",
]


def body(prompt: str) -> dict[str, Any]:
    k = len(prompt) % 101
    out = chat_logprobs({str(k): 0.7, str((k + 10) % 101): 0.2, "The": 0.1}, model="gpt-4o-mini")
    out["usage"] = {"prompt_tokens": len(prompt) // 4, "completion_tokens": 1}
    return out


def prompt_of(b: dict[str, Any]) -> str:
    return str(b["messages"][-1]["content"])


def texts(seeds: int, conditions: int) -> list[ScoringItem]:
    lines = data_path("sets/everyday.jsonl").read_text(encoding="utf-8").splitlines()
    questions = [json.loads(x)["text"] for x in lines if x.strip()]
    out = []
    for c in range(conditions):
        for s in range(seeds):
            for i, q in enumerate(questions):
                gid = f"g{c}-{s}-{i}"
                h = int(hashlib.sha256(gid.encode()).hexdigest(), 16)
                words = [WORDS[(h >> (4 * j)) % len(WORDS)] for j in range(36)]
                out.append(ScoringItem(" ".join(words) + ".", q, gid, f"c{c}"))
    return out


def scorer(url: str, cache: Path, run: Path | None, batch: bool) -> JudgeScorer:
    p = JudgeParams(
        model="gpt-4o-mini",
        base_url=url,
        traits=["fear"],
        cache_path=str(cache),
        batch=batch,
        batch_poll_interval=0.05,
        batch_poll_max=0.2,
        max_concurrency=32,
    )
    return JudgeScorer(p, ScorerContext(run_dir=run, base_dir=ROOT))


def score(sc: JudgeScorer, items: list[ScoringItem]) -> dict[str, Any]:
    for start in range(0, len(items), sc.batch_size):
        asyncio.run(sc.ascore(items[start : start + sc.batch_size]))
    record = sc.usage_record()
    sc.close()
    return record


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--conditions", type=int, default=4)
    args = ap.parse_args()
    items = texts(args.seeds, args.conditions)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with FakeJudgeServer(lambda req: Reply(body=body(req.prompt))) as online_srv:
            online = score(
                scorer(online_srv.openai_url, root / "online.sqlite", None, False), items
            )
            online_requests = len(online_srv.requests)
        with FakeBatchServer(lambda b: (200, body(prompt_of(b))), polls_in_progress=2) as srv:
            batched = score(scorer(srv.openai_url, root / "b.sqlite", root / "run", True), items)
            rerun = score(scorer(srv.openai_url, root / "b.sqlite", root / "run", True), items)
            submissions = srv.submissions
    result = {
        "texts": len(items),
        "calls": online["calls"],
        "online": {"requests": online_requests, **online},
        "batch": {"submissions": submissions, **batched},
        "rerun": rerun,
        "note": "tokens: the fake servers report len(prompt) // 4; prices: prices.toml",
    }
    out = ROOT / "benchmarks" / "results" / "judge_batch_cost.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{len(items)} texts, {online['calls']} judge calls (fear + coherence), gpt-4o-mini")
    print(
        f"online: {online_requests} requests, {online['input_tokens']:,} input + "
        f"{online['output_tokens']:,} output tokens, ${online['cost_usd']:.4f}"
    )
    print(
        f"batch:  {batched['batch']['calls']} requests in {submissions} batch(es), "
        f"${batched['cost_usd']:.4f} (ratio {batched['cost_usd'] / online['cost_usd']:.2f})"
    )
    print(f"re-run: {rerun['calls']} calls made, {rerun['cache_hits']} saved by the cache")
    print(f"written: {out}")


if __name__ == "__main__":
    main()
