"""Render the markdown report from a run directory's records alone (no model needed).

The report is a list of sections, each a function from the loaded run
(:class:`harness.report.data.RunData`) to markdown; a section with nothing to say returns
an empty string. Numbers that could not be computed print as "n/a" and their reasons are
listed, never as NaN.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from harness.core.files import write_text_atomic
from harness.core.rundir import RunDir
from harness.report.agreement import section_agreement
from harness.report.classification import CLASSIFY_SECTIONS, is_classification
from harness.report.coherence import section_coherence
from harness.report.data import RunData, load_run
from harness.report.figures import asset_dir, make_figures
from harness.report.overview import section_header, section_manifest, section_setup
from harness.report.results import section_notes, section_results, section_samples, section_seeds
from harness.report.search import section_search, section_steerability
from harness.report.sections import (
    section_dose_response,
    section_power,
    section_robustness,
    section_summary,
    section_verdicts,
)

__all__ = ["SECTIONS", "RunData", "load_run", "render", "write_report"]

Section = Callable[[RunData], str]

SECTIONS: list[Section] = [
    section_header,
    section_summary,
    section_setup,
    section_results,
    section_coherence,
    section_verdicts,
    section_power,
    section_robustness,
    section_dose_response,
    section_steerability,
    section_search,
    section_seeds,
    section_agreement,
    section_samples,
    section_notes,
    section_manifest,
]


def render(run: RunData, sections: Sequence[Section] | None = None) -> str:
    """The report's markdown: ``sections``, by default those of its kind of run (a
    classification run's: :data:`harness.report.classification.CLASSIFY_SECTIONS`)."""
    if sections is None:
        sections = CLASSIFY_SECTIONS if is_classification(run) else SECTIONS
    parts = [s(run) for s in sections]
    return "\n\n".join(p for p in parts if p.strip()) + "\n"


def write_report(run_dir: Path | RunDir, out_path: Path) -> Path:
    """Render the report to ``out_path`` and its figures to the folder of the same name
    next to it (``reports/demo.md`` -> ``reports/demo/forest.png``, linked relatively)."""
    run = load_run(run_dir.root if isinstance(run_dir, RunDir) else Path(run_dir))
    run.report_path = out_path
    folder = asset_dir(out_path)
    # A classification run's figures are drawn by its shift section.
    run.figures = {} if is_classification(run) else make_figures(run, folder, folder.name)
    return write_text_atomic(out_path, render(run))
