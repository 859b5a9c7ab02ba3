"""Wall time of the Ray engine with 2 CPU actors against the local engine, same spec.

Runs the generate stage of one small spec twice, into two run directories: first with
``engine = "local"`` (this process, one model), then with ``engine = "ray"`` on a local Ray
cluster of ``--cpus`` CPUs that this script starts, ``--workers`` actors of one CPU each.
Each time includes loading the model (once locally, once per actor); the cluster's own
start is timed apart. Prints the ratios and whether the two runs' records are identical,
and writes them to benchmarks/results/ray_engine.json.

    python benchmarks/ray_engine.py                   # embedded SmolLM2-135M, 2 actors
    python benchmarks/ray_engine.py --model PATH      # any local model or hub id
    python benchmarks/ray_engine.py --scorer fluency  # + the score stage, scored on actors

On CPU this measures correctness and overhead more than speed: two actors of one thread
each against one process that may use every core. Absolute times depend on the machine
and its load (recorded in the JSON); the ratio is the result.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.core.store import JsonlStore
from harness.run.runner import open_plan, run_stages

PROMPTS = [
    "Describe your walk to the bakery this morning.",
    "Tell me about the room you are sitting in.",
    "What will you do this weekend?",
    "Describe the view from your window.",
    "Tell me about your favourite meal.",
    "What did you do yesterday?",
    "Describe a day at the beach.",
    "What books are on your shelf?",
]

SPEC = """name = "ray-bench"
output_dir = "{out}"

[model]
id = "{model}"
device = "cpu"

[prompts]
file = "{prompts}"

[generation]
max_new_tokens = {tokens}
batch_size = 4
seeds = [0, 1]

[[conditions]]
name = "persona"
method = "prompt"
[conditions.params]
instruction = "Answer as someone who is afraid."

[[scorers]]
type = "lexicon"
{scorers}
[execution]
engine = "{engine}"
workers = {workers}
num_cpus = 1
batches_per_task = 1
"""


def records(path: Path) -> list[str]:
    recs = JsonlStore(path).iter_dicts()
    return sorted(json.dumps({k: v for k, v in r.items() if k != "created"}) for r in recs)


def generate(folder: Path, args: argparse.Namespace, engine: str) -> tuple[float, Path]:
    spec = folder / f"{engine}.toml"
    spec.write_text(
        SPEC.format(
            out=folder / engine,
            model=args.model,
            prompts=folder / "prompts.jsonl",
            tokens=args.max_new_tokens,
            engine=engine,
            workers=args.workers,
            scorers=f'\n[[scorers]]\ntype = "{args.scorer}"\n' if args.scorer else "",
        )
    )
    plan, source = open_plan(spec)
    start = time.perf_counter()
    run_stages(plan, source, ("generate", "score") if args.scorer else ("generate",))
    return time.perf_counter() - start, plan.run_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m", help="model id (default: embedded)")
    ap.add_argument("--workers", type=int, default=2, help="Ray actors (default 2)")
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument(
        "--scorer", default=None, help="a model-using scorer to add (score stage), e.g. fluency"
    )
    ap.add_argument(
        "--out", default=None, help="default benchmarks/results/ray_engine[_SCORER].json"
    )
    args = ap.parse_args()

    import ray
    import torch

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with (folder / "prompts.jsonl").open("w") as fh:
            for i, text in enumerate(PROMPTS):
                fh.write(json.dumps({"id": f"p{i}", "text": text}) + "\n")
        local_s, local_run = generate(folder, args, "local")
        start = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level=logging.WARNING)
        cluster_s = time.perf_counter() - start
        try:
            ray_s, ray_run = generate(folder, args, "ray")
        finally:
            ray.shutdown()
        stores = ["generations.jsonl", *(["scores.jsonl"] if args.scorer else [])]
        identical = all(records(local_run / f) == records(ray_run / f) for f in stores)
        n = len(records(local_run / "generations.jsonl"))
    result: dict[str, Any] = {
        "model": args.model,
        "texts": n,
        "scorer": args.scorer,
        "max_new_tokens": args.max_new_tokens,
        "workers": args.workers,
        "ray_cluster_cpus": args.cpus,
        "local_s": round(local_s, 2),
        "ray_s": round(ray_s, 2),
        "ray_cluster_start_s": round(cluster_s, 2),
        "ray_over_local": round(ray_s / local_s, 3),
        "ray_with_cluster_start_over_local": round((ray_s + cluster_s) / local_s, 3),
        "records_identical": identical,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch_threads_local": torch.get_num_threads(),
            "torch": torch.__version__,
            "ray": ray.__version__,
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        },
    }
    print(
        f"{n} texts of {args.model}: local {local_s:.1f} s, ray ({args.workers} CPU actors) "
        f"{ray_s:.1f} s (+{cluster_s:.1f} s cluster start); ray/local = "
        f"{ray_s / local_s:.2f}; records identical: {identical}; load {load_before[0]:.1f}"
    )
    out = Path(
        args.out or f"benchmarks/results/ray_engine{'_' + args.scorer if args.scorer else ''}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
