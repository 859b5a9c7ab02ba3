"""The harness's generation against a bare ``model.generate`` loop on the same model.

Same prompts, same batches, lengths forced equal (no token ends a text early): the
harness's :func:`harness.run.generation.generate_rows` for the baseline (chat template,
tokenisation, its sampler, decoding, all inside the timing) against ``model.generate`` on
batches tokenised beforehand, sampled (HF's own multinomial sampling) and greedy; and an
activation condition against the baseline (the cost of the hooks). Runs are interleaved
and each ratio is the median of per-round ratios. The last line is exactly

    overhead: sampled X.XX greedy Y.YY hook Z.ZZ

(harness/bare sampled, harness/bare greedy, activation/baseline). Goals 1.05, 1.05, 1.03.
Writes ``benchmarks/results/overhead.json``.

    python benchmarks/overhead.py                         # random SmolLM2-135M-shaped model
    python benchmarks/overhead.py --model smollm2-135m    # the embedded GGUF model
    python benchmarks/overhead.py --random-config llama-1b --device cuda

The random-weight model has SmolLM2-135M's shape (speed does not depend on the weights);
on a loaded machine the embedded model is the same network, only slower to load.
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
from harness.config.spec import GenerationSpec, ModelSpec
from harness.model.chat import build_messages, render
from harness.model.loading import LoadedModel, load_model
from harness.run.generation import Row, generate_rows
from harness.steering import MethodContext, MethodParams, NoSteering


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn: Any) -> float:
    _sync()
    start = time.perf_counter()
    fn()
    _sync()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", help="a model id or alias (default: a random model)")
    ap.add_argument("--random-config", default="llama-135m", choices=sorted(RANDOM_CONFIGS))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--batches", type=int, default=2)
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/overhead.json"))
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model_id = args.model or str(random_model(args.random_config, folder / "m"))
        lm = load_model(ModelSpec(id=model_id, device=args.device))
        # Lengths forced equal: the end-of-text id is one no step can produce.
        never = [lm.model.config.vocab_size + 7]
        generation._eos_ids = lambda _lm: never  # type: ignore[assignment]
        rows = [
            Row(f"p{i}", PROMPTS[i % len(PROMPTS)], i // len(PROMPTS))
            for i in range(args.batch * args.batches)
        ]
        batches = [rows[i : i + args.batch] for i in range(0, len(rows), args.batch)]
        base = NoSteering(MethodParams(), MethodContext("baseline"))
        act = conditions(lm, 1, lm.info.num_layers // 3, folder)[0]
        sampled = GenerationSpec(max_new_tokens=args.new_tokens, temperature=0.7)
        greedy = GenerationSpec(max_new_tokens=args.new_tokens, sampling=False)
        encoded = [encode(lm, b) for b in batches]

        def bare(do_sample: bool) -> None:
            for enc in encoded:
                extra = {"temperature": 0.7, "top_k": 0, "top_p": 1.0} if do_sample else {}
                lm.model.generate(
                    **enc,
                    max_new_tokens=args.new_tokens,
                    do_sample=do_sample,
                    eos_token_id=never,
                    pad_token_id=lm.tokenizer.pad_token_id,
                    **extra,
                )

        def harness(method: Any, gen: GenerationSpec) -> None:
            for b in batches:
                out = generate_rows(lm, method, b, gen)
                assert all(o.n_new_tokens == args.new_tokens for o in out)

        runs = {
            "bare_sampled": lambda: bare(True),
            "harness_sampled": lambda: harness(base, sampled),
            "bare_greedy": lambda: bare(False),
            "harness_greedy": lambda: harness(base, greedy),
            "activation_greedy": lambda: harness(act, greedy),
        }
        for fn in runs.values():  # warm-up
            fn()
        times: dict[str, list[float]] = {k: [] for k in runs}
        names = list(runs)
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]  # rotate the order
            for name in order:
                times[name].append(timed(runs[name]))

    def ratio(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(times[a], times[b], strict=True))

    ratios = {
        "sampled": ratio("harness_sampled", "bare_sampled"),
        "greedy": ratio("harness_greedy", "bare_greedy"),
        "hook": ratio("activation_greedy", "harness_greedy"),
    }
    report = {
        "model": args.model or f"random {args.random_config}",
        "device": lm.device,
        "dtype": str(lm.dtype).removeprefix("torch."),
        "batch": args.batch,
        "batches": args.batches,
        "new_tokens": args.new_tokens,
        "rounds": args.rounds,
        "median_s": {k: round(statistics.median(v), 4) for k, v in times.items()},
        "ratios": {k: round(v, 4) for k, v in ratios.items()},
        "goals": {"sampled": 1.05, "greedy": 1.05, "hook": 1.03},
        "threads": torch.get_num_threads(),
        "machine": platform.platform(),
        "load_average": list(os.getloadavg()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for k, v in report["median_s"].items():
        print(f"{k:>18}: {v:.3f} s")
    print(f"results: {args.out}")
    print(
        f"overhead: sampled {ratios['sampled']:.2f} greedy {ratios['greedy']:.2f} "
        f"hook {ratios['hook']:.2f}"
    )


def encode(lm: LoadedModel, rows: list[Row]) -> dict[str, torch.Tensor]:
    """A batch as the bare loop gets it: rendered and tokenised before the timing."""
    rendered = [render(lm, build_messages(r.prompt, lm.spec.system_prompt)) for r in rows]
    enc = lm.tokenizer(
        rendered, return_tensors="pt", padding=True, add_special_tokens=not lm.use_chat_template
    )
    return {k: v.to(lm.device) for k, v in enc.items()}


if __name__ == "__main__":
    main()
