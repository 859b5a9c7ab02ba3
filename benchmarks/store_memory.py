"""Peak memory of the harness against the number of stored records (1k vs 8k texts).

For each size a finished run is built (``benchmarks/finished_run.py``, in a subprocess),
then each of these runs in a fresh subprocess of this small parent, which reports its own
peak RSS (``resource.getrusage``):

- ``first``: ``run`` with nothing to generate or score: the full analysis and the report;
- ``noop``: the same ``run`` again, nothing changed (analysis and figures reused);
- ``score``: the score stage alone on every text (``scores.jsonl`` removed first).

The stores are streamed and the stages keep only ids and the fields they need, so the
``noop`` and ``score`` paths should grow by far less than a kilobyte per text; the analysis
holds every score value by design. Prints the 8k/1k ratio and the growth per text of each
path; writes ``benchmarks/results/store_memory.json``. The peak includes the imports
(torch, transformers: about 0.5 GB, recorded as ``rss_after_imports_mb``), which at 1k texts
is the whole peak; the growth per text is the result.

    python benchmarks/store_memory.py
    python benchmarks/store_memory.py --sizes 1000 8000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "store_memory.json"
MODES = ("first", "noop", "score")


def child(mode: str, spec: Path) -> None:
    """Run one path in this (fresh) process and print its peak RSS as JSON."""
    from harness.run.runner import open_plan, run_stages

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    plan, source = open_plan(spec)
    stages = ("score",) if mode == "score" else ("generate", "score", "analyze", "report")
    run_stages(plan, source, stages)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"mode": mode, "peak_rss_kb": peak, "rss_after_imports_kb": base}))


def measure(mode: str, spec: Path) -> dict[str, int]:
    env = _env()
    # Import the harness before the baseline reading, so that it is the same in every child.
    code = (
        f"import sys; sys.path.insert(0, {str(HERE)!r}); import harness.run.runner, "
        f"transformers; from store_memory import child; "
        f"child({mode!r}, __import__('pathlib').Path({str(spec)!r}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def build(root: Path, size: int) -> Path:
    """Build the finished run in a subprocess: Linux carries a process's peak RSS across
    fork and exec, so a parent that had grown would raise every child's reading."""
    code = (
        f"import sys; sys.path.insert(0, {str(HERE)!r}); from finished_run import "
        f"build_finished_run; from pathlib import Path; "
        f"print(build_finished_run(Path({str(root)!r}), {size}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=_env(), capture_output=True, text=True, check=True
    )
    return Path(out.stdout.strip().splitlines()[-1])


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "TQDM_DISABLE": "1",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs=2, default=[1000, 8000], metavar=("SMALL", "LARGE"))
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    rows: dict[int, dict[str, dict[str, int]]] = {}
    n_texts: dict[int, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            root = Path(tmp) / f"n{size}"
            spec = build(root, size)
            n_texts[size] = sum(1 for _ in (root / "run" / "generations.jsonl").open("rb"))
            rows[size] = {}
            for mode in MODES:
                if mode == "score":
                    (root / "run" / "scores.jsonl").unlink()
                rows[size][mode] = measure(mode, spec)
    small, large = args.sizes
    dn = n_texts[large] - n_texts[small]
    result: dict[str, object] = {
        "texts": {str(k): v for k, v in n_texts.items()},
        "machine": platform.platform(),
        "python": platform.python_version(),
        "load_average_1m": round(os.getloadavg()[0], 1),
        "paths": {},
    }
    for mode in MODES:
        a = rows[small][mode]["peak_rss_kb"]
        b = rows[large][mode]["peak_rss_kb"]
        per_text = (b - a) / dn
        result["paths"][mode] = {  # type: ignore[index]
            "peak_rss_mb": {str(small): round(a / 1024, 1), str(large): round(b / 1024, 1)},
            "rss_after_imports_mb": {
                str(n): round(rows[n][mode]["rss_after_imports_kb"] / 1024, 1)
                for n in (small, large)
            },
            "ratio_large_to_small": round(b / a, 3),
            "growth_kb_per_text": round(per_text, 2),
        }
        print(
            f"{mode:>5}: peak RSS {a / 1024:.0f} MB at {n_texts[small]} texts, "
            f"{b / 1024:.0f} MB at {n_texts[large]}: ratio {b / a:.3f}, "
            f"{per_text:.2f} KB per text"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
