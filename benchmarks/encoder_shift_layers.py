"""Where and how hard to steer the built-in MiniLM emotion classifier: per encoder layer,
the localisation of ``steer-harness locate`` on joy vs neutral (harness/locate/classes.py:
cross-validated linear-probe accuracy on mean-pooled hidden states, and the attribution
and exact effect on logit[joy] - logit[neutral] of adding the class-mean vector
v = mean(h | joy) - mean(h | neutral)), and the shift of P(joy) on the neutral texts when
v is added at that layer with several α.

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
from harness.locate.classes import (
    ClassLocateOptions,
    class_features,
    locate_classes,
    select_classes,
)
from harness.model.builtin import read_labelled
from harness.model.loading import load_model
from harness.run.classification import classify_rows
from harness.run.generation import Row
from harness.steering.base import NoSteering
from harness.steering.hooks import add_vector, edit_residual
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
    ct = select_classes(texts, labels, "joy", "neutral", "labels/emotions.jsonl")
    layers = [EMBEDDING, *range(lm.info.num_layers)]
    # The same localisation as `steer-harness locate specs/seeds/encoder-shift.toml`.
    doc = locate_classes(lm, ct, ClassLocateOptions(folds=5, seed=0, check=len(layers)))
    located = {s["layer"]: s for s in doc["sites"]}
    hj, hn, vectors = class_features(lm, ct, layers)
    rows = [Row(f"n{i}", t, 0) for i, t in enumerate(ct.neg)]
    base = classify_rows(lm, NoSteering(NoSteering.Params(), None), rows)  # type: ignore[arg-type]
    p0 = np.array([c.probs["joy"] for c in base])
    out: dict[str, object] = {
        "p_joy_unsteered_on_neutral": float(p0.mean()),
        "top_by_attribution": doc["top_k"]["residual"],
        "spearman_attribution_exact": doc["check"]["pooled"]["spearman"],
        "layers": {},
    }
    print(f"mean P(joy) on the 30 neutral texts, unsteered: {p0.mean():.3f}")
    print(
        "layer  probe-acc  attrib  exact  |v|   mean|h|  "
        + "  ".join(f"α={a:g}" for a in ALPHAS_RAW)
    )
    for i in layers:
        acc = located[i]["probe_accuracy"]
        attribution, exact = located[i]["attribution"], located[i]["exact"]
        v = vectors[i]
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
            "attribution": attribution,
            "exact": exact,
            "vector_norm": float(v.norm()),
            "pooled_norm": h_norm,
            "shifts": shifts,
        }
        cells = "  ".join(f"{s['mean_delta']:+.3f}/{s['to_joy']:2d}" for s in shifts)
        print(
            f"{name:>9}  {acc:.3f}  {attribution:6.3f}  {exact:6.3f}  {float(v.norm()):5.2f}  "
            f"{h_norm:6.2f}  {cells}"
        )
    out["seconds"] = time.perf_counter() - started
    path = Path(__file__).parent / "results" / "encoder_shift_layers.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"(cells: mean ΔP(joy) / neutral texts now predicted joy, of 30) -> {path}")


if __name__ == "__main__":
    main()
