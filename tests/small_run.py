"""A small finished run on the tiny model, built once per test module and copied per test.

Several reliability tests need a run that has been through every stage; building one
costs a few seconds, copying it a few milliseconds.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from conftest import spec_toml, write_prompts

from harness.run.runner import open_plan, run_stages

FAST_ANALYSIS = "\n[analysis]\nbootstrap_resamples = 200\n"


def build_finished_run(model_dir: Path, root: Path, extra: str = "") -> Path:
    """Run every stage of a 3-prompt, 2-seed spec under ``root``; returns the run folder
    (the spec is ``root/spec.toml``, the report ``root/r.md``)."""
    prompts = write_prompts(root / "prompts.jsonl", 3)
    spec = root / "spec.toml"
    spec.write_text(
        spec_toml(model_dir, prompts, extra=FAST_ANALYSIS + extra, output_dir=root / "run")
    )
    plan, source = open_plan(spec)
    plan.spec.report.path = str(root / "r.md")
    run_stages(plan, source)
    return root / "run"


def copy_run(finished: Path, tmp_path: Path) -> Path:
    """A private copy of a finished run folder, at ``tmp_path/run``."""
    dest = tmp_path / "run"
    shutil.copytree(finished, dest)
    return dest
