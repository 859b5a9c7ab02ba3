"""Scoring overlapped with generation: a run's wall time against its two halves alone.

A tiny random model (tests/tiny.py, reloaded through the real loading code) generates
the texts; the ``judge`` scorer (cache off) scores them against the fake judge server in
its own process, answering after a fixed latency (100 ms). Three runs, each in a fresh
run directory: generation alone (``generate``), judging alone (``score`` on a copy of
those texts), and the whole run (``generate score``), where the judge scores texts as
they are stored. Goal: whole <= 1.1 x max(generation, judging). The three are repeated
in rounds (``--repeats``, interleaved, since the load of a shared machine changes under
us); the result is the median over rounds of each round's ratio. Prints the ratio and
writes ``benchmarks/results/overlap.json``.

    python benchmarks/overlap.py [--prompts 32] [--new-tokens 192] [--concurrency 4]
                                 [--repeats 5] [--threads 1] [--consumer process|thread]

The sizes make the two halves comparable (about 9-10 s each on one thread), the case
where overlapping matters most, and long enough that what a whole run adds once (the
consumer process's start, about 0.3 s after the first text; the last batch's judging,
0.2 s) is a few per cent, as in a real run, not a tenth. ``--consumer thread`` runs the
scorers in a thread of the run's process (``STEER_HARNESS_OVERLAP=thread``) for
comparison: the tiny model's generation is Python-bound and shares the interpreter lock
with that thread.

Generation runs on one torch thread by default (``--threads 0``: torch's default, one per
core). On the shared 2-core machine a two-thread team is at the mercy of the other
sessions (the same generation took 0.41 s and, minutes later with another process on one
core, 27.8 s); one thread does not depend on it. Even so, generation alone varies by up
to 40% from one minute to the next there, so read the rounds, not one of them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from conftest import spec_toml, write_prompts  # noqa: E402
from judge_concurrency import RemoteServer  # noqa: E402
from tiny import save_tiny  # noqa: E402

from harness.core.store import JsonlStore  # noqa: E402
from harness.run.overlap import MODE_ENV  # noqa: E402
from harness.run.runner import open_plan, run_stages  # noqa: E402


def write_spec(folder: Path, model: Path | str, url: str, args: argparse.Namespace) -> Path:
    extra = f'''
[[scorers]]
type = "judge"
[scorers.params]
model = "fake-judge"
base_url = "{url}"
api_key_env = "STEER_BENCH_JUDGE_KEY"
traits = ["fear"]
cache = false
max_concurrency = {args.concurrency}
timeout = 30.0
'''
    folder.mkdir(parents=True, exist_ok=True)
    prompts = write_prompts(folder / "prompts.jsonl", args.prompts)
    text = spec_toml(
        model,
        prompts,
        extra=extra,
        output_dir=folder / "run",
        seeds="[0, 1]",
        batch_size=4,
        max_new_tokens=args.new_tokens,
    )
    spec = folder / "spec.toml"
    spec.write_text(text)
    return spec


def timed(spec: Path, stages: tuple[str, ...], run_dir: Path | None = None) -> float:
    plan, source = open_plan(run_dir or spec)
    start = time.perf_counter()
    run_stages(plan, source, stages)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=192)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--latency", type=float, default=0.1)
    ap.add_argument("--repeats", type=int, default=5, help="interleaved rounds (median kept)")
    ap.add_argument(
        "--consumer", choices=["process", "thread"], default="process", help="where scorers run"
    )
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: its default)")
    ap.add_argument("--model", help="a model id or alias (default: a tiny random model)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/overlap.json")
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    os.environ["STEER_BENCH_JUDGE_KEY"] = "sk-bench"
    os.environ[MODE_ENV] = args.consumer
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    rounds: list[dict[str, float]] = []
    server = RemoteServer(args.latency)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            model: Path | str = args.model or save_tiny(work / "model")
            # warm-up: imports, model load code paths, the client's connection
            warm = write_spec(work / "warm", model, server.openai_url, args)
            timed(warm, ("generate", "score"))
            for i in range(args.repeats):
                alone = write_spec(work / f"alone{i}", model, server.openai_url, args)
                t_gen = timed(alone, ("generate",))
                judged = work / f"judged{i}"
                shutil.copytree(work / f"alone{i}", judged)
                judged_spec = judged / "spec.toml"
                judged_spec.write_text(
                    judged_spec.read_text().replace(str(work / f"alone{i}"), str(judged))
                )
                t_judge = timed(judged_spec, ("score",))
                whole = write_spec(work / f"whole{i}", model, server.openai_url, args)
                t_whole = timed(whole, ("generate", "score"))
                n_texts = len(JsonlStore(whole.parent / "run" / "generations.jsonl").read())
                n_scores = len(JsonlStore(whole.parent / "run" / "scores.jsonl").read())
                assert n_scores == len(JsonlStore(judged / "run" / "scores.jsonl").read())
                rounds.append(
                    {
                        "generation_s": round(t_gen, 3),
                        "judging_s": round(t_judge, 3),
                        "whole_run_s": round(t_whole, 3),
                        "ratio": round(t_whole / max(t_gen, t_judge), 3),
                    }
                )
                print(f"round {i + 1}: {rounds[-1]}", flush=True)
    finally:
        server.close()
    ratio = statistics.median(r["ratio"] for r in rounds)
    t_gen = statistics.median(r["generation_s"] for r in rounds)
    t_judge = statistics.median(r["judging_s"] for r in rounds)
    t_whole = statistics.median(r["whole_run_s"] for r in rounds)
    report = {
        "texts": n_texts,
        "score_records": n_scores,
        "judge_latency_s": args.latency,
        "judge_concurrency": args.concurrency,
        "consumer": args.consumer,
        "new_tokens": args.new_tokens,
        "generation_s": round(t_gen, 3),
        "judging_s": round(t_judge, 3),
        "whole_run_s": round(t_whole, 3),
        "sequential_sum_s": round(t_gen + t_judge, 3),
        "ratio": round(ratio, 3),
        "goal": 1.1,
        "repeats": args.repeats,
        "model": args.model or "tiny random llama",
        "torch_threads": torch.get_num_threads(),
        "rounds": rounds,
        "what": "seconds are medians over rounds; ratio is the median of the rounds' "
        "whole / max(generation, judging)",
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "load_1_5_15_before": [round(x, 2) for x in load_before],
        "load_1_5_15_after": [round(x, 2) for x in os.getloadavg()],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"medians of {args.repeats} rounds: generation alone {t_gen:.2f} s, judging alone "
        f"{t_judge:.2f} s, whole run {t_whole:.2f} s (sum {t_gen + t_judge:.2f} s); load "
        f"average {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after"
    )
    print(f"results: {args.out}")
    print(f"overlap: {ratio:.2f}x max(generation, judging) (goal <= 1.1)")


if __name__ == "__main__":
    main()
