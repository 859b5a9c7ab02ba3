"""Judge throughput: calls in flight versus sequential calls, and the calls the cache saves.

Starts its own fake OpenAI-compatible judge on 127.0.0.1, in a separate process (as a real
server would be: it must not share this process's GIL), that answers every request after a
fixed latency (100 ms by default); then scores the same texts with the ``judge`` scorer
(its lean HTTP client, :mod:`judges.llm.http`, cache off) at several ``max_concurrency``
settings, and finally scores them twice with the cache on. Prints ratios; writes
``benchmarks/results/judge_concurrency.json``.

    python benchmarks/judge_concurrency.py [--calls 128] [--latency 0.1] [--repeats 3]

Ratios, not seconds, are what transfer to other machines: the speedup of N calls in
flight over sequential calls is bounded by N and by the server, not by this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import time
import urllib.request
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the fake server lives with the tests

from fakes.judge_server import FakeJudgeServer, Reply, Request, chat_logprobs  # noqa: E402

from harness.core.scoring import ScorerContext, ScoringItem  # noqa: E402
from judges.llm.scorer import JudgeParams, JudgeScorer  # noqa: E402

LEVELS = (1, 4, 8, 16, 32, 64)


class RemoteServer:
    """The fake judge in a child process; URLs and counts as FakeJudgeServer gives them."""

    def __init__(self, latency: float):
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=serve, args=(latency, child), daemon=True)
        self._proc.start()
        self.port = int(self._conn.recv())
        self.openai_url = f"http://127.0.0.1:{self.port}/v1"

    def stats(self, reset: bool = False) -> dict[str, int]:
        url = f"http://127.0.0.1:{self.port}/_stats" + ("?reset=1" if reset else "")
        with urllib.request.urlopen(url, timeout=10) as resp:
            data: dict[str, int] = json.loads(resp.read())
        return data

    def close(self) -> None:
        self._conn.send("stop")
        self._proc.join(timeout=10)


def serve(latency: float, conn: Connection) -> None:
    """Child process: run the server until told to stop."""

    def app(req: Request) -> Reply:
        return Reply(body=chat_logprobs({"50": 1.0}), delay=latency)

    with FakeJudgeServer(app) as server:
        conn.send(server.port)
        conn.recv()


def server_alone(port: int, n_calls: int, n: int) -> float:
    """Wall seconds of ``n_calls`` requests over ``n`` keep-alive connections from a bare
    asyncio client (a fixed request, about 0.2 ms of client CPU per call): the most this
    server and machine allow, against which the judge's figures are read."""
    body = json.dumps({"model": "fake-judge", "messages": [{"role": "user", "content": "x"}]})
    head = "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    req = (head + f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    req += body.encode()

    async def run() -> float:
        conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(n)]
        left = [n_calls]

        async def one(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            w.write(req)
            lines = (await r.readuntil(b"\r\n\r\n")).decode().lower().split("\r\n")
            size = next(int(x.split(":")[1]) for x in lines if x.startswith("content-length"))
            json.loads(await r.readexactly(size))

        async def worker(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            while left[0] > 0:
                left[0] -= 1
                await one(r, w)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(r, w) for r, w in conns))
        wall = time.perf_counter() - t0
        for _, w in conns:
            w.close()
        return wall

    return asyncio.run(run())


def make_items(n_texts: int) -> list[ScoringItem]:
    return [
        ScoringItem(f"Text number {i}: the road was dark and I was afraid.", f"q{i}", f"g{i}", "c")
        for i in range(n_texts)
    ]


def scorer(server: RemoteServer, workdir: Path, **params: Any) -> JudgeScorer:
    p = JudgeParams(
        model="fake-judge",
        base_url=server.openai_url,
        traits=["fear"],  # + coherence: two calls per text
        timeout=30.0,
        **params,
    )
    return JudgeScorer(p, ScorerContext(base_dir=workdir))


def timed_run(
    server: RemoteServer, workdir: Path, items: list[ScoringItem], n: int
) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) of one scoring."""
    sc = scorer(server, workdir, cache=False, max_concurrency=n, batch_size=len(items))
    t0, c0 = time.perf_counter(), time.process_time()
    rows = asyncio.run(sc.ascore(items))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    sc.close()
    assert all(r["fear"].value == 50.0 for r in rows), "unexpected judge answers"
    return wall, cpu


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=128, help="judge calls per run (even)")
    ap.add_argument("--latency", type=float, default=0.1, help="server latency, seconds")
    ap.add_argument("--repeats", type=int, default=3, help="runs per level (median kept)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/judge_concurrency.json")
    args = ap.parse_args(argv)

    load_before = os.getloadavg()
    items = make_items(args.calls // 2)
    n_calls = 2 * len(items)
    levels: list[dict[str, Any]] = []
    server = RemoteServer(args.latency)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            timed_run(server, work, items[:4], 4)  # warm-up: imports, connection set-up
            for n in LEVELS:
                server.stats(reset=True)
                runs, bare = [], []
                for _ in range(args.repeats):  # interleaved: the load changes under us
                    runs.append(timed_run(server, work, items, n))
                    bare.append(server_alone(server.port, n_calls, n))
                seen = server.stats()
                assert seen["requests"] == 2 * n_calls * args.repeats
                levels.append(
                    {
                        "max_concurrency": n,
                        "median_wall_s": statistics.median(w for w, _ in runs),
                        "client_cpu_ms_per_call": 1000
                        * statistics.median(c for _, c in runs)
                        / n_calls,
                        "max_in_flight_seen": seen["max_in_flight"],
                        "server_alone_median_wall_s": statistics.median(bare),
                    }
                )
            # the cache: a first scoring asks every call, an identical second one asks none
            cache_path = work / "judge.sqlite"
            server.stats(reset=True)
            first = scorer(server, work, cache_path=str(cache_path), max_concurrency=32)
            asyncio.run(first.ascore(items))
            first.close()
            asked_first = server.stats(reset=True)["requests"]
            second = scorer(server, work, cache_path=str(cache_path), max_concurrency=32)
            asyncio.run(second.ascore(items))
            hits = second.stats.cache_hits
            second.close()
            asked_second = server.stats()["requests"]
    finally:
        server.close()

    load_after = os.getloadavg()
    seq = levels[0]["median_wall_s"]
    for row in levels:
        row["speedup_vs_sequential"] = seq / row["median_wall_s"]
        row["efficiency"] = row["speedup_vs_sequential"] / row["max_concurrency"]
        # the ceiling: the same calls from a bare client, against the judge's sequential time
        row["server_alone_speedup"] = seq / row["server_alone_median_wall_s"]
        row["wall_over_ideal"] = row["median_wall_s"] / (
            n_calls * args.latency / row["max_concurrency"]
        )
    result = {
        "benchmark": "judge_concurrency",
        "what": "judge scorer (lean HTTP client, cache off) against a local fake server (own "
        "process) with a fixed latency; speedup = sequential wall time / wall time with N "
        "calls in flight; efficiency = speedup / N; wall_over_ideal = wall time / "
        "(calls x latency / N)",
        "server_latency_s": args.latency,
        "calls_per_run": n_calls,
        "repeats": args.repeats,
        "levels": levels,
        "cache": {
            "calls": n_calls,
            "requests_first_run": asked_first,
            "requests_second_run": asked_second,
            "cache_hits_second_run": hits,
            "calls_saved": asked_first - asked_second,
            "share_saved": (asked_first - asked_second) / asked_first if asked_first else None,
        },
        "ratios": {str(r["max_concurrency"]): r["speedup_vs_sequential"] for r in levels[1:]},
        "server_alone_ratios": {
            str(r["max_concurrency"]): r["server_alone_speedup"] for r in levels[1:]
        },
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_1_5_15_before": [round(x, 2) for x in load_before],
            "load_1_5_15_after": [round(x, 2) for x in load_after],
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

    print(
        f"{n_calls} judge calls, server latency {args.latency * 1000:.0f} ms, "
        f"median of {args.repeats} runs"
    )
    print(
        f"{'in flight':>10} {'speedup':>9} {'efficiency':>11} {'wall / ideal':>13} "
        f"{'bare client':>12}"
    )
    for row in levels:
        print(
            f"{row['max_concurrency']:>10} {row['speedup_vs_sequential']:>8.1f}x "
            f"{row['efficiency']:>10.0%} {row['wall_over_ideal']:>12.2f} "
            f"{row['server_alone_speedup']:>11.1f}x"
        )
    cpu = levels[-1]["client_cpu_ms_per_call"] / (1000 * args.latency)
    print(
        f"client CPU per call at {levels[-1]['max_concurrency']} in flight: {cpu:.1%} of the "
        f"server latency, so one client process saturates a free core at ~{1 / cpu:.0f} calls "
        "in flight (less on a shared machine)"
    )
    c = result["cache"]
    print(
        f"cache: first run {c['requests_first_run']} requests, identical re-run "
        f"{c['requests_second_run']} ({c['calls_saved']} of {c['calls']} calls saved, "
        f"{c['share_saved']:.0%})"
    )
    ratios = " ".join(f"{n}:{r:.1f}x" for n, r in result["ratios"].items())
    print(
        f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after, on "
        f"{os.cpu_count()} CPUs (figures from a loaded machine are lower bounds)"
    )
    print(f"judge concurrency vs sequential: {ratios}")
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
