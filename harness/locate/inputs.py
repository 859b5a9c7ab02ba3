"""What ``locate`` reads: the spec's ``[model]`` table, a pair set, the metric's words, the
options; every problem a user can cause is one line naming the file or flag."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harness.config.paths import resolve_data_path
from harness.config.prompts import load_prompts
from harness.config.spec import NAME_RE, ModelSpec, PromptSource, describe_errors, parse_file
from harness.core.errors import LocateError, ModelLoadError, PromptSetError, SpecError
from harness.locate.classes import ClassLocateOptions, ClassTexts, select_classes
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


def is_classifier_spec(model: ModelSpec) -> bool:
    """Whether ``locate`` treats the spec's model as a sequence classifier: ``task =
    "classify"``, or ``auto`` resolved from a built-in id or the config (as ``run`` does;
    a config that cannot be read is left to the model loader to report)."""
    from harness.model.builtin import is_builtin
    from harness.model.loading import load_config, model_info, resolve_task

    if model.task != "auto":
        return model.task == "classify"
    if is_builtin(model.id):
        return True
    if model.gguf_file:
        return False
    try:
        return resolve_task(model, model_info(load_config(model))) == "classify"
    except ModelLoadError:
        return False


@dataclass
class ClassInputs:
    model: ModelSpec
    texts: ClassTexts
    options: ClassLocateOptions
    out: Path


def spec_classes(data: dict[str, Any]) -> tuple[str, str] | None:
    """(positive, negative) of the first class-mean vector in a spec's conditions (inline
    or by name from its [vectors]), or None."""
    raw_library, raw_conditions = data.get("vectors"), data.get("conditions")
    library: dict[str, Any] = raw_library if isinstance(raw_library, dict) else {}
    conditions: list[Any] = raw_conditions if isinstance(raw_conditions, list) else []
    for cond in conditions:
        params = cond.get("params") if isinstance(cond, dict) else None
        vector = params.get("vector") if isinstance(params, dict) else None
        if isinstance(vector, str):
            vector = library.get(vector)
        if isinstance(vector, dict) and vector.get("classes") is not None:
            pos, neg = vector.get("positive"), vector.get("negative")
            if isinstance(pos, str) and isinstance(neg, str):
                return pos, neg
    return None


def read_class_inputs(args: argparse.Namespace) -> ClassInputs:
    """A classifier's locate: the classes (``--classes``, else the spec's class-mean
    vector's), the labelled texts (``--texts``, else the spec's prompt set), the options."""
    spec_path = Path(args.spec)
    model, name = read_model(spec_path)
    updates = {k: v for k, v in (("device", args.device), ("dtype", args.dtype)) if v}
    if updates:
        model = model.model_copy(update=updates)
    for flag, given in (("--pairs", args.pairs), ("--steer", args.steer)):
        if given:
            raise LocateError(
                f"{flag}: {spec_path} has a sequence classifier, located by two of its classes "
                "(--classes POSITIVE,NEGATIVE), not by a pair set's trait metric"
            )
    data = parse_file(spec_path)
    base_dir = spec_path.resolve().parent
    if args.classes is not None:
        parts = [p.strip() for p in str(args.classes).split(",")]
        if len(parts) != 2 or not all(parts):
            raise LocateError(
                f"--classes {args.classes!r}: give two classes, positive first, e.g. "
                "--classes joy,neutral"
            )
        positive, negative = parts
    else:
        found = spec_classes(data)
        if found is None:
            raise LocateError(
                f"--classes: {spec_path} has no class-mean vector (vector = {{classes = ..., "
                "positive = ..., negative = ...}}) to take the classes from; give "
                "--classes POSITIVE,NEGATIVE"
            )
        positive, negative = found
    if args.texts is not None:
        path = Path(args.texts)
        found_path = path if path.exists() else resolve_data_path(str(args.texts), base_dir)
        if found_path is None:
            raise LocateError(f"--texts: '{args.texts}' not found")
        source = PromptSource(file=str(found_path))
        where = "--texts"
    else:
        try:
            source = PromptSource.model_validate(data.get("prompts", {}))
        except ValidationError as exc:
            problems = describe_errors(exc, PromptSource, ("prompts",))
            raise SpecError(str(spec_path), problems) from None
        if source.file is not None:
            found_path = resolve_data_path(source.file, base_dir)
            if found_path is None:
                raise LocateError(f"{spec_path}: prompts.file '{source.file}' not found")
            source = source.model_copy(update={"file": str(found_path)})
        where = "prompts"
    try:
        rows = load_prompts(source, require_label=True)
    except PromptSetError as exc:
        raise LocateError(f"{where}: {exc}") from None
    texts = select_classes(
        [p.text for p in rows],
        [str(p.label) for p in rows],
        positive,
        negative,
        shown_path(source.file) if source.file else str(source.dataset),
        "--classes" if args.classes is not None else f"{spec_path} (its class-mean vector)",
    )
    options = ClassLocateOptions(
        folds=args.folds,
        seed=args.seed,
        top_k=args.top_k,
        check=args.check,
        batch_size=args.batch_size,
    )
    smaller = min(len(texts.pos), len(texts.neg))
    if not 2 <= options.folds <= smaller:
        raise LocateError(
            f"--folds {options.folds}: give 2 to {smaller} folds (the smaller class has "
            f"{smaller} texts)"
        )
    for flag, value in (("--top-k", options.top_k), ("--check", options.check)):
        if value < 0:
            raise LocateError(f"{flag} {value}: give 0 or more")
    default = Path("reports/locate") / f"{name}-{positive}-{negative}"
    return ClassInputs(model, texts, options, Path(args.out) if args.out else default)


def shown_path(path: str) -> str:
    """A path as the report shows it: relative to the working directory when inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return path
