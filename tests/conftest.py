from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tiny import save_tiny


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Llama with a chat template, saved to disk."""
    return save_tiny(tmp_path_factory.mktemp("tiny-llama"), "llama", layers=2)


@pytest.fixture(scope="session")
def tiny_lm(tiny_model_dir: Path) -> Any:
    from harness.config.spec import ModelSpec
    from harness.model.loading import load_model

    return load_model(ModelSpec(id=str(tiny_model_dir), device="cpu"))


def write_prompts(path: Path, n: int = 4) -> Path:
    import json

    texts = [
        "describe your walk to the bakery this morning .",
        "tell me about the room you are sitting in .",
        "what will you do this weekend ?",
        "describe the view from your window .",
        "tell me about your favourite meal .",
        "what did you do yesterday ?",
    ]
    with path.open("w") as fh:
        for i in range(n):
            fh.write(json.dumps({"id": f"p{i}", "text": texts[i % len(texts)] + f" {i}"}) + "\n")
    return path


def spec_toml(
    model_dir: Path,
    prompts: Path,
    *,
    name: str = "t",
    seeds: str = "[0, 1]",
    extra: str = "",
    max_new_tokens: int = 6,
    batch_size: int = 4,
    output_dir: Path | None = None,
) -> str:
    out = f'output_dir = "{output_dir}"\n' if output_dir else ""
    return f'''name = "{name}"
{out}
[model]
id = "{model_dir}"
device = "cpu"

[prompts]
file = "{prompts}"

[generation]
max_new_tokens = {max_new_tokens}
temperature = 0.7
batch_size = {batch_size}
seeds = {seeds}

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
{extra}
'''


@pytest.fixture
def make_spec(tmp_path: Path, tiny_model_dir: Path):  # type: ignore[no-untyped-def]
    """Write a spec on the tiny model; returns its path. Keyword args go to spec_toml."""

    def make(**kw: Any) -> Path:
        prompts = write_prompts(tmp_path / "prompts.jsonl", kw.pop("n_prompts", 4))
        kw.setdefault("output_dir", tmp_path / "run")
        text = spec_toml(tiny_model_dir, prompts, **kw)
        path = tmp_path / "spec.toml"
        path.write_text(text)
        return path

    return make
