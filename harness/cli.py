"""The ``steer-harness`` command: subcommands parse, call one function, say where things went."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from harness import __version__

DESCRIPTION = """\
Benchmark language-model steering honestly: generate baseline and steered texts on the
same prompts, seeds and random streams; score them with pluggable scorers; report effect
sizes with intervals and their variation across seeds.

Typical use:
  steer-harness check specs/demo.toml      validate a spec without loading weights
  steer-harness run specs/demo.toml        generate, score, analyse, report (resumable)
  steer-harness report runs/demo           re-render a report from stored records
"""

SPEC_OR_RUN = "a spec file (.toml/.yaml) or a run directory holding spec.json"


def _add_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--output-dir", help="run directory (default: output_dir in the spec, else runs/<name>)"
    )
    p.add_argument("--device", help="override model.device (auto, cpu, cuda, cuda:N, mps)")
    p.add_argument(
        "--dtype", choices=["auto", "float32", "float16", "bfloat16"], help="override model.dtype"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="steer-harness",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"steer-harness {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "run",
        help="all stages: generate, score, analyze, report (resumes)",
        description="Run every stage. Re-running resumes: only missing work is done.",
    )
    p.add_argument("target", help=SPEC_OR_RUN)
    _add_overrides(p)
    p.add_argument(
        "--report", help="report path (default: report.path in the spec, else reports/<name>.md)"
    )

    p = sub.add_parser(
        "check",
        help="validate a spec (names, params, files, layers) without loading weights",
        description=(
            "Validate a spec and print the work it plans. "
            "Reads the model's config, not its weights."
        ),
    )
    p.add_argument("target", help=SPEC_OR_RUN)

    p = sub.add_parser(
        "generate",
        help="generation stage only (needs the model)",
        description="Generate every missing (condition, prompt, seed) text into generations.jsonl.",
    )
    p.add_argument("target", help=SPEC_OR_RUN)
    _add_overrides(p)

    p = sub.add_parser(
        "score",
        help="scoring stage only (no generator model needed)",
        description="Score every generation not yet scored by each scorer of the spec. "
        "Add a scorer to the spec and run this to re-score old generations.",
    )
    p.add_argument("target", help=SPEC_OR_RUN)
    p.add_argument("--output-dir", help="run directory (default from the spec)")

    p = sub.add_parser(
        "analyze",
        help="statistics from scores.jsonl -> analysis.json",
        description="Compare every condition with the baseline on complete (prompt, seed) pairs. "
        "Works on any folder holding a scores.jsonl.",
    )
    p.add_argument("run_dir", type=Path)
    p.add_argument(
        "--baseline",
        default=None,
        help="baseline condition name (default: the spec's, else 'baseline')",
    )
    p.add_argument("--json", action="store_true", help="print the analysis JSON to stdout")
    p.add_argument("--bootstrap", type=int, default=None, help="bootstrap resamples (default 2000)")

    p = sub.add_parser(
        "report",
        help="render the markdown report from stored records (no model)",
        description=(
            "Re-render the report from analysis.json, generations.jsonl, "
            "spec.json and manifest.json."
        ),
    )
    p.add_argument("run_dir", type=Path)
    p.add_argument(
        "--out",
        type=Path,
        help="report path (default: the spec's report.path, else reports/<name>.md)",
    )

    sub.add_parser(
        "list",
        help="list registered steering methods and scorers",
        description="Names usable as `method` in a condition and `type` in a scorer.",
    )
    return parser


def _print_problems(exc: Exception) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return 2


def cmd_run(args: argparse.Namespace, stages: tuple[str, ...]) -> int:
    from harness.runner import Overrides, open_plan, run_stages

    ov = Overrides(
        output_dir=getattr(args, "output_dir", None),
        report_path=getattr(args, "report", None),
        device=getattr(args, "device", None),
        dtype=getattr(args, "dtype", None),
    )
    plan, source = open_plan(args.target, ov)
    summary = run_stages(plan, source, stages)
    for stage, res in summary.stages.items():
        print(f"{stage}: {res.done_now} done now, {res.done_before} already done")
    print(f"run directory: {summary.run_dir}")
    if summary.report is not None:
        print(f"report: {summary.report}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from harness.runner import open_plan

    plan, _ = open_plan(args.target)
    print(f"spec OK: {plan.spec.name}")
    print(f"  model: {plan.spec.model.id}")
    print(f"  prompts: {len(plan.prompts)}; seeds: {plan.spec.generation.seeds}")
    print(f"  conditions: {', '.join(c.name for c in plan.conditions)}")
    print(f"  scorers: {', '.join(s.name for s in plan.scorers)}")
    print(f"  generations planned: {len(plan.items)}; run directory: {plan.run_dir}")
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    run_dir: Path = args.run_dir
    if (run_dir / "spec.json").exists():
        from harness.runner import analyze_plan, open_plan

        plan, _ = open_plan(run_dir)
        result = analyze_plan(plan, args.baseline, args.bootstrap)
    else:  # scores made elsewhere: a folder holding only scores.jsonl
        from harness.analysis import analyze_run_dir

        n_boot = 2000 if args.bootstrap is None else args.bootstrap
        result = analyze_run_dir(run_dir, args.baseline or "baseline", n_boot=n_boot)
    if args.json:
        print(json.dumps(result, indent=2, allow_nan=False))
    else:
        print(f"{len(result['comparisons'])} comparisons written to {run_dir / 'analysis.json'}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from harness.report.markdown import write_report

    out = args.out
    if out is None:
        spec_file = args.run_dir / "spec.json"
        name, configured = args.run_dir.name, None
        if spec_file.exists():
            stored = json.loads(spec_file.read_text(encoding="utf-8"))["spec"]
            name, configured = stored["name"], stored["report"].get("path")
        out = Path(configured or f"reports/{name}.md")
    path = write_report(args.run_dir, out)
    print(f"report: {path}")
    return 0


def cmd_list() -> int:
    from harness.steering import METHODS
    from judges import SCORERS

    for title, reg in (("steering methods", METHODS), ("scorers", SCORERS)):
        print(f"{title}:")
        for name in reg.names():
            cls = reg.get(name)
            doc = (cls.__doc__ or "").strip().splitlines()
            print(f"  {name:<14} {doc[0] if doc else ''}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from harness.analysis import AnalysisError
    from harness.models import ModelLoadError
    from harness.records import StoreError
    from harness.spec import SpecError

    try:
        if args.command == "run":
            return cmd_run(args, ("generate", "score", "analyze", "report"))
        if args.command == "generate":
            return cmd_run(args, ("generate",))
        if args.command == "score":
            return cmd_run(args, ("score",))
        if args.command == "check":
            return cmd_check(args)
        if args.command == "analyze":
            return cmd_analyze(args)
        if args.command == "report":
            return cmd_report(args)
        if args.command == "list":
            return cmd_list()
    except (SpecError, ModelLoadError, StoreError, AnalysisError, FileNotFoundError) as exc:
        return _print_problems(exc)
    except KeyboardInterrupt:
        print(
            "interrupted: finished records are kept; run the same command again to resume",
            file=sys.stderr,
        )
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
