"""Per-step cost of the reproducible sampler against plain multinomial sampling.

One step of each, on the same (batch x vocabulary) logits: the harness's sampler
(:class:`harness.run.sampler.CounterGumbelSampler`: temperature, counter-based Gumbel
noise for every row, then the argmax the greedy decoder takes) against
``torch.multinomial(torch.softmax(logits / T, -1), 1)``, which draws from a shared
generator and so cannot keep a row's text independent of its batch. Runs alternate
between the two; the result is the median of the per-pair ratios. Goal: at most 1.1.

    python benchmarks/sampler.py                    # batch 64, vocabulary 128256, CPU
    python benchmarks/sampler.py --device cuda

Absolute times depend on the machine and its load; the ratio is the result.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from harness.run.sampler import SAMPLER, CounterGumbelSampler


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--vocab", type=int, default=128256)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=15, help="timed pairs of steps")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/sampler.json"))
    args = ap.parse_args()

    gen = torch.Generator(device="cpu").manual_seed(0)
    logits = (torch.randn(args.batch, args.vocab, generator=gen) * 3).to(args.device)
    sampler = CounterGumbelSampler(list(range(args.batch)), args.temperature, 1.0, 0)
    temp = args.temperature

    def ours(step: int) -> torch.Tensor:
        return sampler.perturb(logits, step).argmax(-1)

    def multinomial(step: int) -> torch.Tensor:
        return torch.multinomial(torch.softmax(logits / temp, -1), 1)

    def timed(fn: Any, step: int) -> float:
        _sync(args.device)
        start = time.perf_counter()
        fn(step)
        _sync(args.device)
        return time.perf_counter() - start

    for step in range(3):  # warm-up: allocator, caches, kernels
        ours(step), multinomial(step)
    pairs = []
    for step in range(args.repeats):
        first, second = (ours, multinomial) if step % 2 == 0 else (multinomial, ours)
        t = {first.__name__: timed(first, step), second.__name__: timed(second, step)}
        pairs.append(t)
    ratio = statistics.median(p["ours"] / p["multinomial"] for p in pairs)
    ours_ms = statistics.median(p["ours"] for p in pairs) * 1e3
    multi_ms = statistics.median(p["multinomial"] for p in pairs) * 1e3
    report = {
        "sampler": SAMPLER,
        "batch": args.batch,
        "vocab": args.vocab,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "machine": platform.platform(),
        "load_average": list(os.getloadavg()),
        "ours_ms": round(ours_ms, 3),
        "multinomial_ms": round(multi_ms, 3),
        "ratio": round(ratio, 3),
        "goal": 1.1,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"per step: ours {ours_ms:.1f} ms, multinomial {multi_ms:.1f} ms ({args.device})")
    print(f"results: {args.out}")
    print(f"sampler: {ratio:.2f}x multinomial (goal <= 1.1)")


if __name__ == "__main__":
    main()
