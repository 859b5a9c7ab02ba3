"""Speedup of steering K conditions in one forward pass over K passes of one condition.

Runs the harness's own generation path: K activation conditions (random directions at one
layer, each its own coefficient), B rows each, greedy decoding; first one condition at a
time, then all K stacked with per-row vectors. Prints the time ratio per K and whether the
texts were identical, and writes them to benchmarks/results/batched_conditions.json.

    python benchmarks/batched_conditions.py                       # embedded SmolLM2-135M
    python benchmarks/batched_conditions.py --random-config llama-1b --device cuda

``--random-config`` builds a random-weight model of a real architecture from its config
(speed does not depend on the weights), for machines where nothing can be downloaded.
Absolute times depend on the machine and its load; the ratios are the result.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from harness.config.spec import GenerationSpec, ModelSpec
from harness.model.loading import LoadedModel, load_model
from harness.run.generation import Row, generate_rows
from harness.steering.base import MethodContext
from harness.steering.batched import RowwiseAddition, row_additions
from harness.steering.methods.activation import ActivationSteering
from harness.steering.vectors import SteeringVector

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

RANDOM_CONFIGS: dict[str, dict[str, Any]] = {
    # Shapes of real models; weights are random.
    "llama-135m": dict(
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        vocab_size=49152,
    ),
    "llama-1b": dict(
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
    ),
    "llama-8b": dict(
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
    ),
}


def random_model(name: str, folder: Path) -> Path:
    """Save a random-weight Llama of the given shape with a byte-level tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    cfg = LlamaConfig(max_position_embeddings=2048, **RANDOM_CONFIGS[name])
    model = LlamaForCausalLM(cfg)
    vocab = {chr(i): i for i in range(256)} | {"<eos>": 256, "<pad>": 257}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>")
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def conditions(lm: LoadedModel, k: int, layer: int, folder: Path) -> list[ActivationSteering]:
    torch.manual_seed(0)
    out = []
    for i in range(k):
        path = folder / f"v{i}.safetensors"
        v = torch.randn(lm.info.hidden_size)
        SteeringVector({layer: v / v.norm()}, {}).save(path)
        params = ActivationSteering.Params.model_validate(
            {"layers": [layer], "coefficient": 2.0 + i, "vector": {"file": str(path)}}
        )
        method = ActivationSteering(params, MethodContext(f"c{i}", base_dir=folder))
        method.prepare(lm)
        out.append(method)
    return out


def timed(fn: Any) -> tuple[float, Any]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, result


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--random-config", choices=sorted(RANDOM_CONFIGS))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--ks", default="1,2,4,8", help="numbers of conditions to stack")
    ap.add_argument("--rows", type=int, default=8, help="rows (prompt x seed) per condition")
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/batched_conditions.json"))
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model_id = (
            str(random_model(args.random_config, folder / "m"))
            if args.random_config
            else args.model
        )
        lm = load_model(ModelSpec(id=model_id, device=args.device))
        layer = lm.info.num_layers // 3
        rows = [
            Row(f"p{i}", PROMPTS[i % len(PROMPTS)], i // len(PROMPTS)) for i in range(args.rows)
        ]
        gen = GenerationSpec(max_new_tokens=args.new_tokens, sampling=False)
        ks = [int(k) for k in args.ks.split(",")]
        methods = conditions(lm, max(ks), layer, folder)
        generate_rows(
            lm, methods[0], rows[:2], GenerationSpec(max_new_tokens=4, sampling=False)
        )  # warm-up
        results = []
        for k in ks:
            t_alone, alone = timed(
                lambda k=k: [generate_rows(lm, m, rows, gen) for m in methods[:k]]
            )
            per_row = [row_additions(m) or {} for m in methods[:k] for _ in rows]
            stacked_method = RowwiseAddition(per_row, "all")
            t_stacked, stacked = timed(
                lambda k=k, sm=stacked_method: generate_rows(lm, sm, rows * k, gen)
            )
            identical = [o.text for batch in alone for o in batch] == [o.text for o in stacked]
            results.append({"k": k, "speedup": t_alone / t_stacked, "identical": identical})
            print(
                f"K={k:>2}: {t_alone / t_stacked:5.2f}x faster stacked; "
                f"texts identical: {identical}"
            )
    report = {
        "model": f"random {args.random_config}" if args.random_config else args.model,
        "device": lm.device,
        "dtype": str(lm.dtype).removeprefix("torch."),
        "rows_per_condition": args.rows,
        "new_tokens": args.new_tokens,
        "machine": platform.platform(),
        "threads": torch.get_num_threads(),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
