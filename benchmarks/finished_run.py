"""A finished run of any size, built fast, for the re-run and memory benchmarks.

The run is real except for its texts: a tiny random Llama (``tests/tiny.py``) stands in
for the generator, the plan is built by the harness from a real spec (baseline, an
activation condition, a persona prompt; a lexicon scorer), and every planned work item gets
a generation record under its real content id with a synthetic text (random words, more
fear words in the steered conditions). Generating 10k texts, even with a tiny model, would
cost minutes and measure nothing these benchmarks are about. The scores are then made by
the harness's own score stage, so ``generations.jsonl`` and ``scores.jsonl`` are exactly
what a finished run holds; ``run`` on the spec then finds nothing to generate or score.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

N_CONDITIONS = 3
N_SEEDS = 4

WORDS = (  # noqa: SIM905
    "the a walk bakery morning room window view meal weekend yesterday road light tree "
    "house table chair street friend bread coffee rain sun cloud garden door book quiet"
).split()
FEAR = "afraid terrified fear scared dread panic horror frightened nervous".split()  # noqa: SIM905


def spec_text(model_dir: Path, prompts: Path, run_dir: Path, report: Path) -> str:
    return f'''name = "bench"
output_dir = "{run_dir}"

[model]
id = "{model_dir}"
device = "cpu"

[prompts]
file = "{prompts}"

[generation]
max_new_tokens = 24
temperature = 0.7
batch_size = 16
seeds = {list(range(N_SEEDS))}

[[conditions]]
name = "act"
method = "activation"
[conditions.params]
layers = [1]
coefficient = 4.0
vector = {{ pairs = "fear" }}

[[conditions]]
name = "persona"
method = "prompt"
[conditions.params]
instruction = "you are afraid ."

[[scorers]]
type = "lexicon"

[report]
path = "{report}"
'''


def _text(rng: random.Random, fear_rate: float) -> str:
    words = [rng.choice(FEAR) if rng.random() < fear_rate else rng.choice(WORDS) for _ in range(24)]
    return " ".join(words) + " ."


def build_finished_run(root: Path, n_texts: int, seed: int = 0) -> Path:
    """Write a spec for about ``n_texts`` texts under ``root``, its generations and its
    scores; return the spec's path."""
    from tiny import save_tiny

    from harness.core.records import GenerationRecord
    from harness.core.store import JsonlStore
    from harness.run.runner import open_plan, run_stages

    root.mkdir(parents=True, exist_ok=True)
    model_dir = root / "model"
    if not (model_dir / "config.json").exists():
        save_tiny(model_dir, "llama", layers=2)
    n_prompts = -(-n_texts // (N_CONDITIONS * N_SEEDS))
    rng = random.Random(seed)
    prompts = root / "prompts.jsonl"
    with prompts.open("w", encoding="utf-8") as fh:
        for i in range(n_prompts):
            text = " ".join(rng.choice(WORDS) for _ in range(8)) + f" ? {i}"
            fh.write(json.dumps({"id": f"p{i}", "text": text}) + "\n")
    spec = root / "spec.toml"
    spec.write_text(spec_text(model_dir, prompts, root / "run", root / "reports" / "bench.md"))
    plan, source = open_plan(spec)
    rate = {"baseline": 0.02, "act": 0.12, "persona": 0.06}
    records = (
        GenerationRecord(
            id=it.id,
            condition=it.condition,
            method=plan.condition(it.condition).method_name,
            prompt_id=it.prompt.id,
            seed=it.seed,
            prompt=it.prompt.text,
            rendered_prompt=it.prompt.text,
            text=_text(rng, rate[it.condition]),
            n_prompt_tokens=10,
            n_new_tokens=24,
            finish="length",
            model=plan.spec.model.id,
        )
        for it in plan.items
    )
    JsonlStore(plan.run.generations).append(records)
    run_stages(plan, source, ("score",))
    return spec
