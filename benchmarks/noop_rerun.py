"""How long a no-op ``run`` of a finished run takes, against the first full analysis + report.

Builds a finished run of about ``--texts`` texts (``benchmarks/finished_run.py``: real plan
ids and real lexicon scores, synthetic texts from a tiny random model's plan), then times
in this process, after start-up (imports):

0. start-up: one plan built untimed (it imports transformers to read the model config);
1. the first ``run`` of the spec: nothing to generate or score, so this is planning plus
   the full analysis and the report with its figures;
2. the same ``run`` again with nothing changed: planning, the stages finding nothing to
   do, the analysis and the figures reused because their inputs' keys are unchanged, and
   the markdown re-rendered (it shows the new session).

Prints both times and their ratio; writes ``benchmarks/results/noop_rerun.json``.

    python benchmarks/noop_rerun.py                 # 10k texts
    python benchmarks/noop_rerun.py --texts 2000 --profile
"""

from __future__ import annotations

import argparse
import cProfile
import json
import logging
import os
import platform
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")

from finished_run import build_finished_run

from harness.run.runner import open_plan, run_stages

RESULTS = Path(__file__).resolve().parent / "results" / "noop_rerun.json"


def timed_run(spec: Path, profile: bool) -> float:
    prof = cProfile.Profile() if profile else None
    t0 = time.perf_counter()
    if prof:
        prof.enable()
    plan, source = open_plan(spec)
    run_stages(plan, source)
    if prof:
        prof.disable()
    elapsed = time.perf_counter() - t0
    if prof:
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texts", type=int, default=10_000)
    ap.add_argument("--dir", type=Path, help="build here and keep it (default: a temp dir)")
    ap.add_argument("--profile", action="store_true", help="print a cProfile of each run")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.dir or Path(tmp)
        t0 = time.perf_counter()
        spec = build_finished_run(root, args.texts)
        build_s = time.perf_counter() - t0
        n_gen = sum(1 for _ in (root / "run" / "generations.jsonl").open("rb"))
        n_scores = sum(1 for _ in (root / "run" / "scores.jsonl").open("rb"))
        t0 = time.perf_counter()
        open_plan(spec)  # start-up: the first plan imports transformers for the model config
        startup_s = time.perf_counter() - t0
        first = timed_run(spec, args.profile)
        noop = timed_run(spec, args.profile)
    result = {
        "texts": n_gen,
        "score_records": n_scores,
        "build_s": round(build_s, 2),
        "startup_s": round(startup_s, 3),
        "first_run_s": round(first, 3),
        "noop_rerun_s": round(noop, 3),
        "ratio_noop_to_first": round(noop / first, 4),
        "target_noop_s": 3.0,
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 1),
        "python": platform.python_version(),
    }
    print(
        f"{n_gen} texts, {n_scores} score records: first run (analysis + report) {first:.2f} s, "
        f"no-op re-run {noop:.2f} s, ratio {noop / first:.3f}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
