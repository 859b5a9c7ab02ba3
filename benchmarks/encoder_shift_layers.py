"""Where and how hard to steer the built-in MiniLM emotion classifier: per encoder layer,
the cross-validated linear-probe accuracy of joy vs neutral on mean-pooled hidden states
(harness/locate/probe.py's probe), and the shift of P(joy) on the neutral texts when the
class-mean vector v = mean(h | joy) - mean(h | neutral) is added at that layer with α in
a raw and a norm-relative scale.

    python benchmarks/encoder_shift_layers.py

It is the evidence behind specs/seeds/encoder-shift.toml (layer and α). Writes
benchmarks/results/encoder_shift_layers.json. Numbers from a loaded machine are as good
as any here (the classifier is deterministic); the seconds are not.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from harness.config.spec import ModelSpec
from harness.config.vectors import EMBEDDING
from harness.locate.probe import probe_accuracy
from harness.model.builtin import read_labelled
from harness.model.loading import load_model
from harness.run.classification import classify_rows
from harness.run.generation import Row
from harness.steering.base import NoSteering
from harness.steering.hooks import add_vector, edit_residual
from harness.steering.vectors import hidden_states
from prompts import data_path

ALPHAS_RAW = [0.1, 0.3, 0.5, 1.0, 2.0, 4.0]


class Add(NoSteering):
    def __init__(self, layer: int, vector: torch.Tensor, alpha: float):
        super().__init__(NoSteering.Params(), None)  # type: ignore[arg-type]
        self.layer, self.vector, self.alpha = layer, vector, alpha

    def apply(self, lm, batch):  # type: ignore[no-untyped-def, override]
        return edit_residual(lm.layers, {self.layer: add_vector(self.vector, self.alpha)})


def main() -> None:
    started = time.perf_counter()
    lm = load_model(ModelSpec(id="builtin:minilm-emotions"))
    texts, labels = read_labelled(data_path("labels/emotions.jsonl"))
    joy = [t for t, lab in zip(texts, labels, strict=True) if lab == "joy"]
    neutral = [t for t, lab in zip(texts, labels, strict=True) if lab == "neutral"]
    layers = [EMBEDDING, *range(lm.info.num_layers)]
    hj = hidden_states(lm, joy, layers, "mean")
    hn = hidden_states(lm, neutral, layers, "mean")
    rows = [Row(f"n{i}", t, 0) for i, t in enumerate(neutral)]
    base = classify_rows(lm, NoSteering(NoSteering.Params(), None), rows)  # type: ignore[arg-type]
    p0 = np.array([c.probs["joy"] for c in base])
    out: dict[str, object] = {"p_joy_unsteered_on_neutral": float(p0.mean()), "layers": {}}
    print(f"mean P(joy) on the 30 neutral texts, unsteered: {p0.mean():.3f}")
    print("layer  probe-acc  |v|   mean|h|  " + "  ".join(f"α={a:g}" for a in ALPHAS_RAW))
    for i in layers:
        acc = probe_accuracy(hj[i].numpy(), hn[i].numpy(), folds=5, seed=0).accuracy
        v = hj[i].mean(0) - hn[i].mean(0)
        h_norm = float(torch.cat([hj[i], hn[i]]).norm(dim=1).mean())
        shifts = []
        for a in ALPHAS_RAW:
            res = classify_rows(lm, Add(i, v, a), rows)  # type: ignore[arg-type]
            p = np.array([c.probs["joy"] for c in res])
            to_joy = sum(c.predicted == "joy" for c in res)
            shifts.append({"alpha": a, "mean_delta": float((p - p0).mean()), "to_joy": to_joy})
        name = "embedding" if i == EMBEDDING else str(i)
        out["layers"][name] = {  # type: ignore[index]
            "probe_accuracy": acc,
            "vector_norm": float(v.norm()),
            "pooled_norm": h_norm,
            "shifts": shifts,
        }
        cells = "  ".join(f"{s['mean_delta']:+.3f}/{s['to_joy']:2d}" for s in shifts)
        print(f"{name:>9}  {acc:.3f}  {float(v.norm()):5.2f}  {h_norm:6.2f}  {cells}")
    out["seconds"] = time.perf_counter() - started
    path = Path(__file__).parent / "results" / "encoder_shift_layers.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"(cells: mean ΔP(joy) / neutral texts now predicted joy, of 30) -> {path}")


if __name__ == "__main__":
    main()
