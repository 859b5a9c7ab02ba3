"""The README's plug-in example, run as written: an external method benchmarked end to end."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.core.store import JsonlStore

README = Path(__file__).resolve().parents[1] / "README.md"
pytestmark = pytest.mark.slow


def block(marker: str) -> str:
    text = README.read_text()
    m = re.search(rf"<!-- {marker} -->\s*```\w+\n(.*?)```", text, re.S)
    assert m, f"README has no block after <!-- {marker} -->"
    return m.group(1)


def test_readme_plugin_example_benchmarks_end_to_end(make_spec, tmp_path: Path):
    code = block("plugin-example:python")
    assert 20 <= len(code.strip().splitlines()) <= 40  # "about 30 lines"
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    (plugin_dir / "my_methods.py").write_text(code)
    spec = make_spec(n_prompts=3, seeds="[0, 1]")
    spec.write_text(spec.read_text() + "\n" + block("plugin-example:spec"))
    env = {**os.environ, "PYTHONPATH": str(plugin_dir), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", str(spec)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    gens = JsonlStore(tmp_path / "run" / "generations.jsonl").read()
    by_key = {(g["condition"], g["prompt_id"], g["seed"]): g["text"] for g in gens}
    control = [k for k in by_key if k[0] == "random_control"]
    assert len(control) == 6
    assert sum(by_key[k] != by_key[("baseline", *k[1:])] for k in control) >= 3  # it steers
    analysis = json.loads((tmp_path / "run" / "analysis.json").read_text())
    assert {c["condition"] for c in analysis["comparisons"]} == {"act", "persona", "random_control"}
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    entry = manifest["conditions"]["random_control"]
    assert entry["method"] == "my_methods:RandomDirection" and entry["norm"] == 40.0
