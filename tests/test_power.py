"""`steer-harness power`: pairs needed for an assumed d_z, and per comparison of a run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from synthetic_run import build_run

from harness.analysis.power import format_plan, power_rows
from harness.cli import main
from harness.stats import achieved_power, pairs_needed


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("power") / "run"
    build_run(d, generations=False)
    return d


def test_pairs_for_an_assumed_effect(capsys):
    assert main(["power", "--d-z", "0.3"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"pairs needed: {pairs_needed(0.3)}" == "pairs needed: 90"

    assert (
        main(
            [
                "power",
                "--d-z",
                "-0.5",
                "--power",
                "0.9",
                "--alpha",
                "0.01",
                "--seeds",
                "4",
                "--pairs",
                "30",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    need = pairs_needed(0.5, 0.9, 0.01)
    assert out.splitlines()[0] == f"pairs needed: {need}"
    assert f"with 4 seed(s): {-(-need // 4)} prompts" in out
    assert f"with 30 pairs the power is {achieved_power(0.5, 30, 0.01):.2f}" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["power"], "give either --d-z or a RUN_DIR"),
        (["power", "--d-z", "0"], "d_z must be finite and nonzero"),
        (["power", "--d-z", "0.3", "--power", "1.5"], "power must be in"),
        (["power", "--d-z", "0.3", "--seeds", "0"], "--seeds must be at least 1"),
        (["power", "/nonexistent-run"], "no analysis.json"),
    ],
)
def test_bad_input_is_an_error_not_a_traceback(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_run_listing_matches_the_stored_power_fields(run_dir, capsys):
    assert main(["power", str(run_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    comps = json.loads((run_dir / "analysis.json").read_text())["comparisons"]
    body = lines[2:-1]
    assert len(body) == len(comps)
    for line, c in zip(body, comps, strict=True):
        cells = line.split()
        assert cells[0] == c["condition"] and cells[1] == f"{c['scorer']}/{c['metric']}"
        assert int(cells[2]) == c["n"]
        if c["n_needed"] is None:
            assert cells[5] == "n/a"
        else:
            assert int(cells[5]) == c["n_needed"]
            assert cells[4] == f"{c['power']:.2f}"
        assert ("UNDERPOWERED" in line) == bool(c["underpowered"])
    under = sum(1 for c in comps if c["underpowered"])
    assert lines[-1] == f"{under} of {len(comps)} comparisons below 80% power"


def test_power_rows_recompute_the_stored_values_and_other_targets(run_dir):
    comps: list[dict[str, Any]] = json.loads((run_dir / "analysis.json").read_text())["comparisons"]
    rows = power_rows(comps)
    for r, c in zip(rows, comps, strict=True):
        assert r.power == c["power"] and r.n_needed == c["n_needed"]
        assert r.underpowered == c["underpowered"]
        if r.n_needed is not None:
            assert r.underpowered == (r.n < r.n_needed)
    strict = power_rows(comps, power=0.95, alpha=0.01)
    for r in strict:
        if r.d_z is not None and r.n >= 2:
            assert r.n_needed == pairs_needed(r.d_z, 0.95, 0.01)
            assert r.underpowered == (r.n < r.n_needed)
    reasons = {r.reason for r in rows if r.power is None}
    assert "d_z undefined: fewer than 3 complete pairs (n=0)" in reasons


def test_format_plan_rejects_too_few_pairs():
    with pytest.raises(ValueError, match="at least 2"):
        format_plan(0.3, pairs=1)


def test_parser_knows_power_and_compare():
    from harness.cli import build_parser

    p = build_parser()
    args = p.parse_args(["power", "runs/x", "--power", "0.9"])
    assert (args.command, str(args.run_dir), args.power, args.alpha) == (
        "power",
        "runs/x",
        0.9,
        0.05,
    )
    args = p.parse_args(["compare", "a", "b", "--sort", "abs-d", "--metric", "fear"])
    assert (args.command, [str(x) for x in args.run_dirs], args.sort, args.metric) == (
        "compare",
        ["a", "b"],
        "abs-d",
        ["fear"],
    )
    assert str(args.out) == "reports/compare.md"
