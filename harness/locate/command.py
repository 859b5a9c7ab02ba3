"""``steer-harness locate SPEC --pairs NAME``: the subcommand's arguments and its body.

Kept here, not in :mod:`harness.cli`, so the CLI only registers it; nothing heavy is
imported until the command runs. Only the spec's ``[model]`` table is read (a spec with
just ``name`` and ``[model]`` is enough); the rest of a full spec is ignored.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.core.errors import LocateError

DEFAULT_STEER_PROMPTS = "sets/everyday-tuning.jsonl"

DESCRIPTION = """\
Where to steer: for a contrastive pair set, per decoder layer and component (residual
stream, attention output, MLP output), the cross-validated linear-probe accuracy that
separates the two sides, and the attribution-patching estimate (gradient x activation
difference; Nanda 2023, Syed et al. 2023) of how much patching the negative side's
activation to the positive's raises a trait metric: log P(prefix + trait word) -
log P(prefix + neutral word) after the text. The top layers by attribution are checked by
exact activation patching, with Spearman's rho between the two. Writes a markdown table,
a JSON document and a figure (default reports/locate/<spec name>-<pairs>.{md,json,png}).

For a sequence classifier ([model] task = "classify"), per encoder layer and the
embedding output, on two of its classes' labelled texts (--classes, default the spec's
class-mean vector's; --texts, default the spec's prompt set): the probe accuracy of
positive vs negative on mean-pooled hidden states, and the first-order effect on the
class-logit gap logit[positive] - logit[negative] of adding the class-mean difference v
at that layer, on the negative class's texts, checked by adding v exactly
(default reports/locate/<spec name>-<positive>-<negative>.{md,json,png}).
"""


def add_locate_parser(sub: Any) -> None:
    """Register ``locate`` on the CLI's subparsers."""
    p = sub.add_parser(
        "locate",
        help="where to steer: probe accuracy and attribution patching per layer and component",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("spec", type=Path, help="a spec file; only its [model] table is used")
    p.add_argument(
        "--pairs",
        help="a causal LM's pair set: a shipped one (fear, joy, ...) or a JSONL path (required)",
    )
    p.add_argument(
        "--classes",
        help="a classifier's two classes, positive first (joy,neutral); default: the "
        "classes of the spec's class-mean vector",
    )
    p.add_argument(
        "--texts",
        help="a classifier's labelled texts (JSONL/CSV with text and label); default: the "
        "spec's prompt set",
    )
    p.add_argument(
        "--components",
        default="residual,attention,mlp",
        help="comma-separated: residual, attention, mlp (default all three)",
    )
    p.add_argument("--top-k", type=int, default=3, help="layers listed per component (3)")
    p.add_argument("--folds", type=int, default=5, help="probe cross-validation folds (5)")
    p.add_argument(
        "--check",
        type=int,
        default=3,
        help="top layers per component checked by exact patching (3; 0 skips the check)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the probe's folds (0)")
    p.add_argument(
        "--aggregate",
        choices=["last", "mean"],
        default="last",
        help="last token or mean over tokens, as in vector extraction (last)",
    )
    p.add_argument(
        "--template", choices=["raw", "chat"], default="raw", help="pair rendering (raw)"
    )
    p.add_argument("--prefix", help="the metric's continuation prefix (default per pair set)")
    p.add_argument("--trait-word", help="the trait continuation (default per pair set)")
    p.add_argument("--neutral-word", help="the neutral continuation (default per pair set)")
    p.add_argument(
        "--batch-size", type=int, default=8, help="pairs (or texts) per forward pass (8)"
    )
    p.add_argument(
        "--steer",
        action="store_true",
        help="also measure the metric's delta when steering each site on tuning prompts",
    )
    p.add_argument(
        "--steer-coefficient",
        type=float,
        default=0.5,
        help="norm-relative coefficient of --steer (0.5 x the layer's typical norm)",
    )
    p.add_argument(
        "--steer-prompts",
        default=DEFAULT_STEER_PROMPTS,
        help=f"prompts for --steer (default {DEFAULT_STEER_PROMPTS})",
    )
    p.add_argument("--device", help="override model.device")
    p.add_argument(
        "--dtype", choices=["auto", "float32", "float16", "bfloat16"], help="override model.dtype"
    )
    p.add_argument(
        "--out",
        type=Path,
        help="output path without suffix (default reports/locate/<spec name>-<pairs>)",
    )


def cmd_locate_classes(args: argparse.Namespace) -> int:
    """``locate`` on a classifier spec (:mod:`harness.locate.classes`)."""
    from harness.locate.classes import locate_classes
    from harness.locate.inputs import read_class_inputs
    from harness.locate.report import write_outputs
    from harness.model.loading import load_model

    inputs = read_class_inputs(args)
    lm = load_model(inputs.model, task="classify")
    doc = locate_classes(lm, inputs.texts, inputs.options)
    json_path, md_path, png_path = write_outputs(doc, inputs.out)
    c = doc["classes"]
    print(
        f"locate: {doc['model']['id']}, {c['positive']} ({c['n_positive']}) vs "
        f"{c['negative']} ({c['n_negative']}) from {c['source']}, metric "
        f"{doc['metric']['definition']}"
    )
    label = {-1: "embedding"}
    by_layer = {s["layer"]: s for s in doc["sites"]}
    print("layer      probe  attribution")
    for layer, s in by_layer.items():
        acc, attr = s["probe_accuracy"], s["attribution"]
        print(
            f"  {label.get(layer, str(layer)):<9} "
            f"{'-' if acc is None else f'{acc:.3f}'}  {'-' if attr is None else f'{attr:.3f}'}"
        )
    top = doc["top_k"]["residual"]
    print(f"top {len(top)} layers by attribution: {', '.join(label.get(i, str(i)) for i in top)}")
    _print_check(doc, "the exact effect")
    print(f"report: {md_path} (+ {json_path.name}, {png_path.name})")
    return 0


def _print_check(doc: dict[str, Any], what: str = "exact patching") -> None:
    pooled = doc["check"]["pooled"]
    if pooled["n"]:
        rho = pooled["spearman"]
        shown = f"{rho:.2f}" if rho is not None else f"undefined ({pooled['reason']})"
        print(
            f"causal check: {what} of {pooled['n']} sites, Spearman rho "
            f"(attribution vs exact) = {shown}"
        )


def cmd_locate(args: argparse.Namespace) -> int:
    from harness.locate.inputs import is_classifier_spec, read_inputs, read_model
    from harness.locate.probe import require_sklearn

    require_sklearn()
    if is_classifier_spec(read_model(Path(args.spec))[0]):
        return cmd_locate_classes(args)
    if args.classes is not None or args.texts is not None:
        flag = "--classes" if args.classes is not None else "--texts"
        raise LocateError(
            f"{flag}: {args.spec} has a causal LM, located by a pair set (--pairs NAME); "
            '--classes and --texts are for a classifier ([model] task = "classify")'
        )
    if args.pairs is None:
        raise LocateError(
            "--pairs: give the pair set to locate (a shipped one: fear, joy, ...; or a JSONL)"
        )
    from harness.locate.locator import locate
    from harness.locate.report import write_outputs
    from harness.model.loading import load_model

    inputs = read_inputs(args)
    lm = load_model(inputs.model)
    doc = locate(lm, inputs.pairs, inputs.metric, inputs.options, inputs.pairs_source)
    json_path, md_path, png_path = write_outputs(doc, inputs.out)
    print(
        f"locate: {doc['model']['id']}, {doc['pairs']['n']} pairs from {inputs.pair_name}, "
        f"metric {doc['metric']['definition']}"
    )
    print(f"top {args.top_k} layers by attribution:")
    for component, layers in doc["top_k"].items():
        print(f"  {component:<9} {', '.join(str(i) for i in layers) or '-'}")
    _print_check(doc)
    print(f"report: {md_path} (+ {json_path.name}, {png_path.name})")
    return 0
