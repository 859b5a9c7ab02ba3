"""A vector trained with the `steering-vectors` package, benchmarked through the plug-in API.

The method below is what a user writes to bring that library's vectors into the harness;
the spec names it by dotted path, nothing is registered.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from harness.core.store import JsonlStore
from harness.run.runner import open_plan, run_stages
from harness.steering import BaseMethod, MethodParams
from harness.steering.methods.activation import resolve_pairs
from harness.steering.vectors import load_pairs

steering_vectors = pytest.importorskip(
    "steering_vectors", reason="install it with: pip install --no-deps steering-vectors==0.12.2"
)


class SVParams(MethodParams):
    pairs: str = "fear"
    layers: list[int]
    multiplier: float


class SteeringVectorsMethod(BaseMethod):
    """A steering-vectors SteeringVector, trained on contrastive pairs, as a condition."""

    Params = SVParams
    params: SVParams

    def prepare(self, lm: Any) -> dict[str, Any]:
        path = resolve_pairs(self.params.pairs, self.context.base_dir)
        assert path is not None
        samples = [(p.positive, p.negative) for p in load_pairs(path)]
        self.sv = steering_vectors.train_steering_vector(
            lm.model, lm.tokenizer, samples, layers=self.params.layers, read_token_index=-1
        )
        return {"library": "steering-vectors", "layers": sorted(self.sv.layer_activations)}

    @contextmanager
    def apply(self, lm: Any, batch: Any) -> Iterator[None]:
        with self.sv.apply(lm.model, multiplier=self.params.multiplier):
            yield


CONDITION = """
[[conditions]]
name = "sv_fear"
method = "test_plugin_steering_vectors:SteeringVectorsMethod"
params = { layers = [1], multiplier = 4.0 }
"""


def test_steering_vectors_library_through_the_plugin_api(make_spec, tmp_path: Path):
    spec = make_spec(n_prompts=3, seeds="[0, 1]")
    spec.write_text(spec.read_text() + CONDITION)
    plan, source = open_plan(spec)
    plan.spec.report.path = str(tmp_path / "r.md")
    run_stages(plan, source)  # the harness verifies the library restored the model
    gens = JsonlStore(plan.run.generations).read()
    by_key = {(g["condition"], g["prompt_id"], g["seed"]): g["text"] for g in gens}
    sv = [k for k in by_key if k[0] == "sv_fear"]
    assert len(sv) == 6
    assert sum(by_key[k] != by_key[("baseline", *k[1:])] for k in sv) >= 3
    analysis = json.loads(plan.run.analysis.read_text())
    fear = next(
        c for c in analysis["comparisons"] if c["condition"] == "sv_fear" and c["metric"] == "fear"
    )
    assert fear["n"] == 6
    manifest = json.loads(plan.run.manifest.read_text())
    assert manifest["conditions"]["sv_fear"]["library"] == "steering-vectors"
    assert "sv_fear" in (tmp_path / "r.md").read_text()
