"""The ``steer-harness`` command: subcommands parse, call one function, say where things went."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness import __version__
from harness.core.errors import UserError
from harness.core.params import MAX_SEED
from harness.core.rundir import RunDir
from harness.locate.command import add_locate_parser, cmd_locate

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


def count_arg(text: str) -> int:
    """A non-negative integer option (``--bootstrap -5`` is refused, not run)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative; give 0 or more")
    return value


def seed_arg(text: str) -> int:
    """A seed option: an integer in 0..2^63-1."""
    value = count_arg(text)
    if value > MAX_SEED:
        raise argparse.ArgumentTypeError(f"{value} is above the largest seed 2^63-1")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _add_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--output-dir", help="run directory (default: output_dir in the spec, else runs/<name>)"
    )
    p.add_argument("--device", help="override model.device (auto, cpu, cuda, cuda:N, mps)")
    p.add_argument(
        "--dtype", choices=["auto", "float32", "float16", "bfloat16"], help="override model.dtype"
    )
    p.add_argument(
        "--engine",
        choices=["local", "ray"],
        help="override execution.engine: generate here, or on Ray actors (one model each)",
    )
    p.add_argument(
        "--address", help="override execution.address: the Ray cluster to join ('auto', host:port)"
    )
    p.add_argument(
        "--workers", type=_positive_int, help="override execution.workers: Ray actors to start"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="steer-harness",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"steer-harness {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of an error, not one line"
    )
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
    p.add_argument(
        "--baseline-only",
        action="store_true",
        help="leave the spec's conditions out: generate, score and report the baseline alone",
    )

    p = sub.add_parser(
        "rescore",
        help="re-score stored texts with the spec file's current scorers, re-analyse, re-render",
        description=(
            "Score a run's stored generations with the current scorer settings of its spec "
            "file (or --spec PATH), without loading the generator, then analyse and render the "
            "report. spec.json is kept; the new scorer settings are recorded beside it in "
            "spec.rescore.json."
        ),
    )
    p.add_argument("run_dir", type=Path)
    p.add_argument(
        "--scorer",
        action="append",
        default=[],
        metavar="NAME",
        help="only this scorer of the spec file (repeatable; default: all of them)",
    )
    p.add_argument("--spec", type=Path, help="spec file to read the scorers from")

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
    p.add_argument(
        "--bootstrap", type=count_arg, default=None, help="bootstrap resamples (default 2000)"
    )

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
        help="report path (default: reports/<name>.md under the current directory; "
        "never a path read from the run directory)",
    )

    p = sub.add_parser(
        "validate-scorer",
        help="how good is a scorer: accuracy, macro-F1, AUROC or correlations on gold texts",
        description="Score gold-labelled texts (JSONL with text and label, or text and rating) "
        "and report accuracy, macro-F1 and AUROC per label, or Spearman and Pearson for "
        "ratings, with percentile bootstrap intervals. Writes OUT.json and OUT.md and prints "
        "the markdown. Shipped gold sets: labels/emotions.jsonl, labels/ratings.jsonl.",
    )
    p.add_argument(
        "scorer",
        help="a scorer spec (.toml/.yaml with a [scorer] table: type, params) or a "
        "registered scorer name (default params)",
    )
    p.add_argument(
        "data", help="gold JSONL: a path, or a shipped file such as labels/emotions.jsonl"
    )
    p.add_argument("--metric", help="ratings: the scorer metric to compare (default: the trait)")
    p.add_argument(
        "--none-label",
        help="labels: the gold label predicted when no other label scores above 0 "
        "(default: the one gold label the scorer has no metric for, if any)",
    )
    p.add_argument(
        "--bootstrap", type=count_arg, default=2000, help="bootstrap resamples (default 2000)"
    )
    p.add_argument("--seed", type=seed_arg, default=0, help="bootstrap seed (default 0)")
    p.add_argument(
        "--out",
        type=Path,
        help="output path without suffix (default reports/validation/<scorer>-<data>)",
    )
    p.add_argument("--json", action="store_true", help="print the JSON instead of the markdown")

    p = sub.add_parser(
        "power",
        help="pairs needed for 80%% power, for an assumed d_z or every comparison of a run",
        description="Power of a two-sided paired t-test (statsmodels TTestPower). "
        "With --d-z: the prompt x seed pairs needed for the target power. "
        "With RUN_DIR: each comparison's observed d_z, n, achieved power and pairs needed.",
        epilog="examples:\n  steer-harness power --d-z 0.3\n"
        "  steer-harness power --d-z 0.3 --seeds 5 --pairs 100\n"
        "  steer-harness power runs/demo",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dir", type=Path, nargs="?", help="a run directory with analysis.json")
    p.add_argument("--d-z", type=float, help="assumed standardized paired effect d_z")
    p.add_argument("--power", type=float, default=0.8, help="target power (default 0.8)")
    p.add_argument("--alpha", type=float, default=0.05, help="two-sided level (default 0.05)")
    p.add_argument("--seeds", type=count_arg, help="with --d-z: also say how many prompts that is")
    p.add_argument(
        "--pairs", type=count_arg, help="with --d-z: also the power with this many pairs"
    )

    p = sub.add_parser(
        "compare",
        help="several runs side by side: leaderboards and a combined forest plot",
        description="One leaderboard per scorer/metric with a row per (run, condition), "
        "sorted by d, and a combined forest plot; warns when the runs differ in model, "
        "prompts, seeds, decoding, baseline or scorer settings. Stored records only.",
    )
    p.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR")
    p.add_argument(
        "--out", type=Path, default=Path("reports/compare.md"), help="default reports/compare.md"
    )
    p.add_argument(
        "--sort",
        choices=["d", "abs-d", "input"],
        default="d",
        help="row order in each leaderboard (default d, largest first)",
    )
    p.add_argument("--metric", action="append", help="only this metric (repeatable; default all)")

    add_locate_parser(sub)

    sub.add_parser(
        "list",
        help="list registered steering methods and scorers",
        description="Names usable as `method` in a condition and `type` in a scorer.",
    )
    return parser


def _print_problems(exc: Exception) -> int:
    from harness.core.secrets import scrub

    print(scrub(f"error: {exc}"), file=sys.stderr)
    return 2


def _say_absolute_paths(plan: Any) -> None:
    """Name, before any work, every absolute path the spec reads or writes."""
    for field, path in plan.spec._absolute_paths:
        print(f"note: {field} is an absolute path: {path}", file=sys.stderr)


def cmd_run(args: argparse.Namespace, stages: tuple[str, ...]) -> int:
    from harness.run.runner import Overrides, open_plan, run_stages

    ov = Overrides(
        output_dir=getattr(args, "output_dir", None),
        report_path=getattr(args, "report", None),
        device=getattr(args, "device", None),
        dtype=getattr(args, "dtype", None),
        engine=getattr(args, "engine", None),
        address=getattr(args, "address", None),
        workers=getattr(args, "workers", None),
        baseline_only=bool(getattr(args, "baseline_only", False)),
    )
    plan, source = open_plan(args.target, ov)
    _say_absolute_paths(plan)
    summary = run_stages(plan, source, stages)
    return _print_summary(summary)


def cmd_rescore(args: argparse.Namespace) -> int:
    from harness.run.runner import rescore

    summary = rescore(args.run_dir, args.spec, args.scorer)
    print(f"scorer settings recorded in {RunDir(args.run_dir).rescore} (spec.json unchanged)")
    return _print_summary(summary)


def _print_summary(summary: Any) -> int:
    for name, chosen in summary.searches.items():
        if chosen is None:
            print(f"search {name}: no point passed the guards; the condition is left out")
        else:
            print(
                f"search {name}: chose layer {chosen['layer']}, coefficient "
                f"{chosen['coefficient']:.4g} (selection trait delta {chosen['trait_delta']:.3g})"
            )
    for stage, res in summary.stages.items():
        print(f"{stage}: {res.done_now} done now, {res.done_before} already done")
        if res.details.get("retryable"):
            print(
                f"  {res.details['retryable']} scores failed transiently and are null for now; "
                "run the same command again to retry them"
            )
    from harness.report.overview import throughput_text

    if summary.throughput and (pace := throughput_text([{"throughput": summary.throughput}])):
        print(f"throughput: {pace}")
    from harness.report.format import fmt_usage

    for name, usage in judge_usage(summary.run_dir).items():
        print(f"judge {name}: {fmt_usage(usage)}")
    print(f"run directory: {summary.run_dir}")
    if summary.report is not None:
        print(f"report: {summary.report}")
    return 0


def judge_usage(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Per scorer, the calls, tokens and cost its manifest entry records (judges only)."""
    from harness.core.manifest import read_manifest

    described = (read_manifest(RunDir(run_dir)) or {}).get("scorers", {})
    return {n: d["usage"] for n, d in described.items() if isinstance(d.get("usage"), dict)}


def cmd_check(args: argparse.Namespace) -> int:
    from harness.run.engines import engine_problem
    from harness.run.runner import open_plan

    plan, _ = open_plan(args.target)
    _say_absolute_paths(plan)
    print(f"spec OK: {plan.spec.name}")
    print(f"  model: {plan.spec.model.id}")
    if plan.task == "classify":
        seed = plan.items[0].seed if plan.items else plan.spec.generation.seeds[0]
        print(f"  task: classify ({', '.join(plan.labels)}); seed {seed} (deterministic)")
        print(f"  labelled texts: {len(plan.prompts)}")
        print(f"  conditions: {', '.join(c.name for c in plan.conditions)}")
        print(f"  classifications planned: {len(plan.items)}; run directory: {plan.run_dir}")
    else:
        print(f"  prompts: {len(plan.prompts)}; seeds: {plan.spec.generation.seeds}")
        print(f"  conditions: {', '.join(c.name for c in plan.conditions)}")
        print(f"  scorers: {', '.join(s.name for s in plan.scorers)}")
        print(f"  generations planned: {len(plan.items)}; run directory: {plan.run_dir}")
    execution = plan.spec.execution
    if execution.engine != "local":
        where = execution.address or "RAY_ADDRESS, else a local cluster"
        workers = execution.workers or "as many as fit"
        print(f"  engine: {execution.engine} ({where}; workers: {workers})")
    problem = engine_problem(execution)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if plan.selection_prompts:
        print(
            f"  search: {len(plan.selection_prompts)} prompts for selection, "
            f"{len(plan.prompts)} held out and reported"
        )
    for loc in plan.located:
        if loc.layers is None:
            print(
                f"  locate: layers of '{loc.condition}' ({loc.text}) will be located when the "
                f"run starts: {loc.request.describe()}; cached as {loc.request.path} (its "
                "generations are planned after it)"
            )
        else:
            print(
                f"  locate: '{loc.condition}' ({loc.text}) -> layers {loc.layers} "
                f"(cached {loc.request.path})"
            )
    for cond in plan.pending_searches:
        print(f"  search pending for '{cond.name}' (its generations are planned after it)")
    for line in estimate_lines(plan):
        print(f"  {line}")
    return 0


def estimate_lines(plan: Any) -> list[str]:
    """``check``'s estimates: judge calls and cost, and generation time once measured."""
    from harness.report.format import fmt_usd
    from harness.run.estimate import judge_estimates, measured_throughput, pending_generations

    lines = []
    for est in judge_estimates(plan):
        route = "batch" if est["batch"] else "online"
        price = f"prices: {est['price_source']}" if est["price_source"] else "no price known"
        lines.append(
            f"judge {est['scorer']} ({est['judge']}, {route}): at most {est['calls']} calls x "
            f"~{est['input_tokens_per_call']:.0f} input + {est['output_tokens_per_call']:.0f} "
            f"output tokens ({est['basis']}) = {fmt_usd(est['cost_online_usd'])} online, "
            f"{fmt_usd(est['cost_batch_usd'])} by batch API ({price}; cached calls are free)"
        )
    todo = pending_generations(plan)
    rate = measured_throughput(plan)
    if rate is not None and todo:
        lines.append(
            f"generation: {todo} to go, ~{todo / rate.per_second / 60:.1f} min at the "
            f"{rate.per_second:.2f} generations/s measured over {rate.records} records"
        )
    elif todo:
        lines.append(f"generation: {todo} to go (time estimated once this run has measured it)")
    return lines


def cmd_analyze(args: argparse.Namespace) -> int:
    from harness.analysis.analyze import analyze_run_dir
    from harness.run.runner import analyze_plan, open_plan

    run = RunDir(args.run_dir)
    if run.spec.exists():
        plan, _ = open_plan(run.root)
        result = analyze_plan(plan, args.baseline, args.bootstrap)
    else:  # scores made elsewhere: a folder holding only scores.jsonl
        n_boot = 2000 if args.bootstrap is None else args.bootstrap
        result = analyze_run_dir(run, args.baseline or "baseline", n_boot=n_boot)
    if args.json:
        print(json.dumps(result, indent=2, allow_nan=False))
    else:
        print(f"{len(result['comparisons'])} comparisons written to {run.analysis}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from harness.report.markdown import write_report

    out = args.out
    if out is None:
        out = Path("reports") / f"{report_name(args.run_dir)}.md"
    path = write_report(args.run_dir, out)
    print(f"report: {path}")
    return 0


def report_name(run_dir: Path) -> str:
    """The run's name for its default report file: the stored spec's name when it is a
    valid name (it never carries a path), else the folder's name."""
    from harness.config.spec import NAME_RE

    name = None
    try:
        stored = json.loads(RunDir(run_dir).spec.read_text(encoding="utf-8"))
        name = stored["spec"]["name"]
    except (OSError, ValueError, TypeError, KeyError):
        pass
    if not isinstance(name, str) or not re.fullmatch(NAME_RE, name):
        name = Path(run_dir).resolve().name
    if not re.fullmatch(NAME_RE, name):
        raise UserError(f"{run_dir}: cannot name the report after this folder; give --out PATH")
    return name


def cmd_validate_scorer(args: argparse.Namespace) -> int:
    from harness.report.validation import render_markdown, write_outputs
    from harness.validate import validate_scorer

    result = validate_scorer(
        args.scorer,
        args.data,
        n_resamples=args.bootstrap,
        seed=args.seed,
        metric=args.metric,
        none_label=args.none_label,
    )
    out = args.out
    if out is None:
        name = result["scorer"]["name"]
        out = Path("reports/validation") / f"{name}-{Path(result['data']).stem}"
    json_path, md_path = write_outputs(result, out)
    if args.json:
        print(json.dumps(result, indent=2, allow_nan=False))
    else:
        print(render_markdown(result))
        print(f"written: {json_path}, {md_path}")
    return 0


def cmd_power(args: argparse.Namespace) -> int:
    from harness.analysis.power import format_plan, format_power_rows, power_rows

    if (args.run_dir is None) == (args.d_z is None):
        print("error: give either --d-z or a RUN_DIR", file=sys.stderr)
        return 2
    try:
        if args.d_z is not None:
            print(format_plan(args.d_z, args.power, args.alpha, args.seeds, args.pairs))
            return 0
        path = RunDir(args.run_dir).analysis
        if not path.exists():
            raise FileNotFoundError(
                f"{args.run_dir}: no analysis.json; run `steer-harness analyze {args.run_dir}`"
            )
        comps = json.loads(path.read_text(encoding="utf-8")).get("comparisons", [])
        rows = power_rows(comps, args.power, args.alpha)
    except ValueError as exc:
        return _print_problems(exc)
    print(
        f"two-sided paired t-test, alpha = {args.alpha:g}, at each comparison's observed "
        f"|d_z| (post-hoc power restates the p-value; use it to plan a rerun)"
    )
    print(format_power_rows(rows, args.power))
    under = sum(1 for r in rows if r.underpowered)
    print(f"{under} of {len(rows)} comparisons below {args.power:.0%} power")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from harness.report.compare import write_compare

    path = write_compare(args.run_dirs, args.out, args.sort, args.metric)
    print(f"comparison: {path}")
    return 0


def cmd_list() -> int:
    from harness.core.scoring import SCORERS
    from harness.steering import METHODS

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
    from harness.core.secrets import install_excepthook, install_log_scrubber

    install_log_scrubber()
    install_excepthook()
    try:
        if args.command == "run":
            return cmd_run(args, ("generate", "score", "analyze", "report"))
        if args.command == "generate":
            return cmd_run(args, ("generate",))
        if args.command == "score":
            return cmd_run(args, ("score",))
        if args.command == "rescore":
            return cmd_rescore(args)
        if args.command == "check":
            return cmd_check(args)
        if args.command == "analyze":
            return cmd_analyze(args)
        if args.command == "report":
            return cmd_report(args)
        if args.command == "power":
            return cmd_power(args)
        if args.command == "compare":
            return cmd_compare(args)
        if args.command == "list":
            return cmd_list()
        if args.command == "validate-scorer":
            return cmd_validate_scorer(args)
        if args.command == "locate":
            return cmd_locate(args)
    except (UserError, OSError) as exc:  # OSError: a path that cannot be read or written
        if args.debug:
            raise
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
