"""New tokens per second: the HF path against the vLLM backend, unsteered and steered.

Three runs over the same rows (prompt x seed), greedy, every text forced to the same length
(no token ends it early): (a) the harness's HF generation of the baseline
(:func:`harness.run.generation.generate_rows`, in fixed batches of ``--batch`` rows, as
the local engine hands them out), (b) the vLLM backend's baseline and (c) the vLLM
backend with one activation condition (a random unit direction at a third of the depth,
hooks on vLLM's decoder layer). The vLLM backend takes a condition's rows in one engine
call (:func:`harness.run.vllm_generation.generate_rows_vllm`, as the engines call it) and
schedules its own batches. Then ``--conditions K`` conditions (the baseline and K-1
activation conditions) over the same rows: (d) one engine call per condition and (e) all K
in one call (:func:`~harness.run.vllm_generation.generate_conditions_vllm`, each request
tagged with its condition, as ``conditions_per_batch = K`` runs them); their texts must be
equal. Tokenisation, decoding and the hooks are inside the timing.
After a warm-up each figure is the median over ``--rounds``: the HF path's rounds first
(vLLM's idle engine processes poll for work and would slow it on a CPU machine), then the
vLLM runs interleaved. The last line is exactly

    vllm_throughput: vllm/hf X.XX steered/hf Y.YY steered/unsteered Z.ZZ shared/separate W.WW

(new tokens/s ratios; goals on a GPU: steered/hf >= 5, steered/unsteered >= 1/1.3;
shared/separate: K conditions in one call against one call each).
Writes ``benchmarks/results/vllm_throughput.json``.

    .venv-vllm/bin/python benchmarks/vllm_throughput.py                   # small, CPU
    .venv-vllm/bin/python benchmarks/vllm_throughput.py --random-config llama-1b \\
        --device cuda --batch 64 --batches 4 --new-tokens 128
    .venv-vllm/bin/python benchmarks/vllm_throughput.py --model smollm2-135m

Runs in the vLLM virtualenv (scripts/install-vllm.sh). ``--random-config`` builds a
random-weight model of a real architecture from its config (speed does not depend on the
weights); absolute figures depend on the machine and its load, the ratios are the result.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from batched_conditions import PROMPTS, RANDOM_CONFIGS, conditions, random_model

import harness.run.generation as generation
import harness.run.vllm_generation as vllm_generation
from harness.config.spec import GenerationSpec, ModelSpec
from harness.model.loading import LoadedModel, load_model
from harness.run.generation import Row, generate_rows
from harness.run.vllm_generation import generate_conditions_vllm, generate_rows_vllm
from harness.steering import MethodContext, MethodParams, NoSteering


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def force_length(hf: LoadedModel, vl: LoadedModel) -> None:
    """No token ends a text early, on either backend: on the HF path the end-of-text id is
    one no step can produce; vLLM (which refuses out-of-vocabulary stop ids) is given no
    stop ids and ignores the model's own end-of-sequence token."""
    never = [hf.model.config.vocab_size + 7]
    generation._eos_ids = lambda _lm: never  # type: ignore[assignment]
    vl.engine.eos_ids = lambda _tok: []
    params_for = vllm_generation.sampling_params

    def ignoring_eos(*args: Any, **kwargs: Any) -> list[Any]:
        params = params_for(*args, **kwargs)
        for p in params:
            p.ignore_eos = True
        return params

    vllm_generation.sampling_params = ignoring_eos  # type: ignore[assignment]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", help="a model id or alias (default: a random model)")
    ap.add_argument("--random-config", default="llama-135m", choices=sorted(RANDOM_CONFIGS))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--batch", type=int, default=8, help="rows per HF batch")
    ap.add_argument("--batches", type=int, default=2)
    ap.add_argument("--new-tokens", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--conditions", type=int, default=3, help="K for shared/separate")
    ap.add_argument("--gpu-memory-utilization", type=float, default=0.45)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/vllm_throughput.json"))
    args = ap.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")  # GB of KV cache on CPU

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model_id = args.model or str(random_model(args.random_config, folder / "m"))
        common: dict[str, Any] = {"id": model_id, "device": args.device, "dtype": args.dtype}
        hf = load_model(ModelSpec(**common))
        vl = load_model(
            ModelSpec(
                **common,
                backend="vllm",
                max_model_len=256 + args.new_tokens,
                # Leaves room for the HF model on the same GPU.
                gpu_memory_utilization=args.gpu_memory_utilization,
            )
        )
        force_length(hf, vl)
        rows = [
            Row(f"p{i}", PROMPTS[i % len(PROMPTS)], i // len(PROMPTS))
            for i in range(args.batch * args.batches)
        ]
        batches = [rows[i : i + args.batch] for i in range(0, len(rows), args.batch)]
        base = NoSteering(MethodParams(), MethodContext("baseline"))
        # Prepared on the HF model, as the vLLM backend prepares conditions.
        acts = conditions(hf, max(1, args.conditions - 1), hf.info.num_layers // 3, folder)
        act = acts[0]
        several = [base, *acts][: max(2, args.conditions)]
        gen = GenerationSpec(max_new_tokens=args.new_tokens, sampling=False)

        def hf_path() -> list[Any]:
            return [o for b in batches for o in generate_rows(hf, base, b, gen)]

        runs = {
            "hf": hf_path,
            "vllm": lambda: generate_rows_vllm(vl, base, rows, gen),
            "vllm_steered": lambda: generate_rows_vllm(vl, act, rows, gen),
            "separate": lambda: [o for m in several for o in generate_rows_vllm(vl, m, rows, gen)],
            "shared": lambda: [
                o
                for out in generate_conditions_vllm(vl, [(m, rows) for m in several], gen)
                for o in out
            ],
        }
        tokens = {k: len(rows) * args.new_tokens for k in runs}
        tokens["separate"] = tokens["shared"] = len(several) * len(rows) * args.new_tokens
        texts: dict[str, list[str]] = {}
        times: dict[str, list[float]] = {k: [] for k in runs}
        # The HF path first, before vLLM's engine starts: its idle processes poll for work
        # and would take CPU from the HF path; the two vLLM runs are interleaved.
        for group in (["hf"], ["vllm", "vllm_steered", "separate", "shared"]):
            for name in group:  # warm-up (and vLLM's engine start)
                out = runs[name]()
                assert all(o.n_new_tokens == args.new_tokens for o in out), name
                texts[name] = [o.text for o in out]
            for r in range(args.rounds):
                for name in group[r % len(group) :] + group[: r % len(group)]:  # rotate
                    _sync()
                    start = time.perf_counter()
                    runs[name]()
                    _sync()
                    times[name].append(time.perf_counter() - start)
        assert vl.engine.hooks_left() == 0
        assert vl.engine.tagged_problem is None, vl.engine.tagged_problem

    rate = {k: tokens[k] / statistics.median(v) for k, v in times.items()}
    ratios = {
        "vllm/hf": rate["vllm"] / rate["hf"],
        "steered_vllm/hf": rate["vllm_steered"] / rate["hf"],
        "steered/unsteered": rate["vllm_steered"] / rate["vllm"],
        "shared/separate": rate["shared"] / rate["separate"],
    }
    report = {
        "model": args.model or f"random {args.random_config}",
        "device": hf.device,
        "dtype": str(hf.dtype).removeprefix("torch."),
        "rows": len(rows),
        "hf_batch": args.batch,
        "new_tokens": args.new_tokens,
        "rounds": args.rounds,
        "conditions": len(several),
        "new_tokens_per_s": {k: round(v, 2) for k, v in rate.items()},
        "median_s": {k: round(statistics.median(v), 4) for k, v in times.items()},
        "ratios": {k: round(v, 4) for k, v in ratios.items()},
        "goals": {"steered_vllm/hf": 5.0, "steered/unsteered": 1 / 1.3},
        # A random model's tokens are mostly outside its byte tokenizer (decoded to
        # nothing), so these say something only for a real model (--model).
        "nonempty_texts": sum(bool(t) for t in texts["vllm"]),
        "greedy_texts_equal_hf_vllm": texts["hf"] == texts["vllm"],
        "steering_changed_texts": texts["vllm_steered"] != texts["vllm"],
        "shared_texts_equal_separate": texts["shared"] == texts["separate"],
        "threads": torch.get_num_threads(),
        "machine": platform.platform(),
        "load_average": list(os.getloadavg()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for k, v in rate.items():
        print(f"{k:>14}: {v:8.1f} new tokens/s ({statistics.median(times[k]):.2f} s)")
    print(f"greedy texts equal (hf, vllm): {report['greedy_texts_equal_hf_vllm']}")
    print(f"shared-call texts equal one call each: {report['shared_texts_equal_separate']}")
    print(f"results: {args.out}")
    print(
        f"vllm_throughput: vllm/hf {ratios['vllm/hf']:.2f} "
        f"steered/hf {ratios['steered_vllm/hf']:.2f} "
        f"steered/unsteered {ratios['steered/unsteered']:.2f} "
        f"shared/separate {ratios['shared/separate']:.2f}"
    )


if __name__ == "__main__":
    main()
