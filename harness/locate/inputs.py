"""What ``locate`` reads: the spec's ``[model]`` table, a pair set, the metric's words, the
options; every problem a user can cause is one line naming the file or flag."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from harness.config.paths import resolve_data_path
from harness.config.prompts import load_prompts
from harness.config.spec import NAME_RE, ModelSpec, PromptSource, describe_errors, parse_file
from harness.core.errors import LocateError, SpecError
from harness.locate.locator import LocateOptions, check_options
from harness.locate.metric import DEFAULT_PREFIX, TraitMetric, default_metric, shipped_metrics
from harness.locate.sites import parse_components
from harness.steering.methods.activation import resolve_pairs, shipped_pair_sets
from harness.steering.vectors import ContrastPair, load_pairs


@dataclass
class LocateInputs:
    model: ModelSpec
    pairs: list[ContrastPair]
    pairs_source: str
    pair_name: str
    metric: TraitMetric
    options: LocateOptions
    out: Path


def read_model(path: Path) -> tuple[ModelSpec, str]:
    """The spec's [model] table (validated like the full spec's) and the spec's name."""
    data = parse_file(path)
    try:
        model = ModelSpec.model_validate(data.get("model", {}))
    except ValidationError as exc:
        raise SpecError(str(path), describe_errors(exc, ModelSpec, ("model",))) from None
    name = data.get("name")
    if not isinstance(name, str) or not re.fullmatch(NAME_RE, name):
        name = path.stem
    return model, name


def metric_for(
    pair_name: str,
    prefix: str | None,
    trait: str | None,
    neutral: str | None,
    where: str,
    fields: tuple[str, str, str] = ("--prefix", "--trait-word", "--neutral-word"),
) -> TraitMetric:
    """The shipped default for the pair set, with any of the three words overridden;
    ``where`` and ``fields`` name the flags (or spec fields) in the error."""
    default = default_metric(pair_name)
    if default is None:
        if trait is None or neutral is None:
            raise LocateError(
                f"{where}: no default trait metric for this pair set (defaults exist for "
                f"{', '.join(shipped_metrics())}); give {fields[1]} and {fields[2]} (and "
                f"{fields[0]}, default {DEFAULT_PREFIX!r})"
            )
        default = TraitMetric(DEFAULT_PREFIX, trait, neutral)
    return TraitMetric(
        default.prefix if prefix is None else prefix,
        default.trait if trait is None else trait,
        default.neutral if neutral is None else neutral,
    )


def read_metric(pair_name: str, args: argparse.Namespace) -> TraitMetric:
    """The shipped default for the pair set, with any of the three words overridden."""
    return metric_for(
        pair_name, args.prefix, args.trait_word, args.neutral_word, f"--pairs {pair_name}"
    )


def read_inputs(args: argparse.Namespace) -> LocateInputs:
    spec_path = Path(args.spec)
    model, name = read_model(spec_path)
    updates = {k: v for k, v in (("device", args.device), ("dtype", args.dtype)) if v}
    if updates:
        model = model.model_copy(update=updates)
    base_dir = spec_path.resolve().parent
    path = resolve_pairs(args.pairs, base_dir)
    if path is None:
        raise LocateError(
            f"--pairs: '{args.pairs}' is neither a shipped pair set "
            f"({', '.join(shipped_pair_sets())}) nor a JSONL file relative to {base_dir}"
        )
    pairs = load_pairs(path)
    pair_name = path.stem
    steer_prompts: list[str] = []
    steer_source = ""
    if args.steer:
        found = resolve_data_path(args.steer_prompts, base_dir)
        if found is None:
            raise LocateError(f"--steer-prompts: '{args.steer_prompts}' not found")
        steer_prompts = [p.text for p in load_prompts(PromptSource(file=str(found)))]
        steer_source = str(found)
    options = LocateOptions(
        components=tuple(parse_components(args.components)),
        aggregate=args.aggregate,
        template=args.template,
        folds=args.folds,
        seed=args.seed,
        top_k=args.top_k,
        check=args.check,
        batch_size=args.batch_size,
        steer=args.steer,
        steer_coefficient=args.steer_coefficient,
        steer_prompts=steer_prompts,
        steer_prompts_source=steer_source,
        base_dir=base_dir,
    )
    check_options(pairs, options)
    out = args.out if args.out is not None else Path("reports/locate") / f"{name}-{pair_name}"
    return LocateInputs(
        model, pairs, str(path), pair_name, read_metric(pair_name, args), options, Path(out)
    )
