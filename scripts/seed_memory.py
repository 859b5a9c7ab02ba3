"""Build the stacked "memory" vector file that specs/seeds/fear-caution-memory.toml reads.

Steering-Memory and similar tools save a steering vector as one [n_layers, hidden] tensor
with the layer of each row in the metadata; the seed spec checks that the harness reads
that layout as written. The rows are the fear pairs' mean difference (mean over tokens)
at each layer, extracted by the harness's own code, so the file can be rebuilt exactly:

    python scripts/seed_memory.py                      # the embedded SmolLM2-135M-Instruct
    python scripts/seed_memory.py --model PATH --out FILE --layers 6,8,10
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from harness.config.spec import ModelSpec
from harness.model.loading import LoadedModel, load_model
from harness.steering.methods.activation import resolve_pairs
from harness.steering.vectors import extract_mean_difference, load_pairs

LAYERS = (6, 8, 10)
OUT = Path(__file__).resolve().parent.parent / "specs" / "seeds" / "fear-memory.safetensors"


def build(lm: LoadedModel, out: Path, layers: tuple[int, ...] = LAYERS) -> Path:
    """Write the fear vector at ``layers`` as one [len(layers), hidden] tensor 'memory'."""
    path = resolve_pairs("fear", Path.cwd())
    assert path is not None
    vec = extract_mean_difference(lm, load_pairs(path), list(layers), aggregate="mean")
    matrix = torch.stack([vec.directions[i].float() for i in layers]).contiguous()
    meta = {
        "layers": json.dumps(list(layers)),
        "model": lm.spec.id,
        "made_by": "scripts/seed_memory.py: fear pairs, mean difference, mean over tokens",
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({"memory": matrix}, str(out), metadata=meta)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--layers", default=",".join(str(i) for i in LAYERS))
    args = ap.parse_args()
    lm = load_model(ModelSpec(id=args.model, device="cpu"))
    layers = tuple(int(v) for v in args.layers.split(","))
    print(build(lm, args.out, layers))


if __name__ == "__main__":
    main()
