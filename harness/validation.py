"""How good is a scorer? Score gold-labelled texts and report standard metrics with CIs.

``steer-harness validate-scorer SCORER DATA`` runs any scorer (a spec file with a
``[scorer]`` table, or a registered name with default params) on a JSONL file of texts
with gold labels or gold ratings, and writes JSON and markdown.

Data: one JSON object per line with ``text`` and either ``label`` (a class name: the
*labels* mode) or ``rating`` (a number, e.g. 0-100: the *ratings* mode); ``id`` and
``trait`` are optional. Shipped: ``labels/emotions.jsonl`` (210 texts, 7 labels) and
``labels/ratings.jsonl`` (60 fear ratings), see ``prompts/README.md``.

Labels mode
-----------
Gold labels L (in order of first appearance). Each label needs a scorer metric of the same
name; at most one label may lack one (the *none label*, e.g. ``neutral`` for the lexicon,
chosen automatically or with ``--none-label``): it is predicted when every other label's
score is <= 0 (no evidence for any of them). Prediction = argmax of the scores of the
labels in L (other metrics are ignored); ties go to the earlier label in L. A text with a
null score on any of these metrics is left out and counted (``n_unscored``).

- accuracy = mean(pred == gold);
- per label: precision TP/(TP+FP), recall TP/(TP+FN), F1 = 2TP/(2TP+FP+FN);
  macro-F1 = unweighted mean of the per-label F1 over L (Sokolova & Lapalme 2009); a
  label with 2TP+FP+FN = 0 (absent from a bootstrap resample and never predicted) is left
  out of that mean;
- AUROC per label (one-vs-rest, the label's own score): the Mann-Whitney form
  AUC = (R+ - n+(n+ + 1)/2) / (n+ · n-) with R+ the sum of the positives' mid-ranks among
  all texts, i.e. P(score of a positive > score of a negative) + 0.5 P(tie) (Mann & Whitney
  1947; Hanley & McNeil 1982). Null for the none label (no score) and when a class is
  empty.

Ratings mode
------------
The scorer metric named by ``--metric`` (default: the records' ``trait``) against the
gold rating, over texts with a non-null score: Spearman's ρ (Pearson's r of mid-ranks;
Spearman 1904) and Pearson's r (Pearson 1896).

Confidence intervals
--------------------
Percentile bootstrap over texts (Efron & Tibshirani 1993, ch. 13), 95%, exactly:
``rng = np.random.default_rng(seed)``; ``idx = rng.integers(0, n, size=(B, n))`` over the n
scored texts in file order; row r is resample r (texts drawn with replacement, a text drawn
twice counted twice, ties in the ranks of a resample get mid-ranks); a statistic undefined
on a resample (no positive or no negative for an AUROC, constant values for a
correlation) drops that resample for that statistic, counted in ``dropped``;
``np.percentile(values, [2.5, 97.5])`` with linear interpolation. Defaults: B = 2000,
seed 0. The texts are treated as independent (they are: one gold item each).

References: Efron, B. & Tibshirani, R. J. (1993), An Introduction to the Bootstrap;
Mann, H. B. & Whitney, D. R. (1947), Ann. Math. Statist. 18, 50-60; Hanley, J. A. &
McNeil, B. J. (1982), Radiology 143, 29-36; Sokolova, M. & Lapalme, G. (2009), Inf.
Process. Manag. 45, 427-437; Spearman, C. (1904); Pearson, K. (1896).
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import math
import tomllib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import rankdata

from harness.agreement import pearson, spearman
from harness.records import read_jsonl, utc_now
from judges.base import ScorerContext, ScoreResult, ScoringItem, check_results

LEVEL = 0.95


class ValidationError(ValueError):
    """A scorer spec or gold file that cannot be used, with what to fix."""


@dataclass
class ScorerSetup:
    type: str
    name: str
    params: dict[str, Any]
    base_dir: Path
    source: str


@dataclass
class GoldItem:
    id: str
    text: str
    label: str | None
    rating: float | None
    trait: str | None


# ---------------------------------------------------------------------------- inputs


def load_scorer_setup(target: str) -> ScorerSetup:
    """A scorer spec file (TOML/YAML with a ``[scorer]`` table) or a registered name."""
    path = Path(target).expanduser()
    if path.is_file():
        text = path.read_text(encoding="utf-8")
        try:
            if path.suffix.lower() == ".toml":
                data = tomllib.loads(text)
            elif path.suffix.lower() in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(text)
            else:
                raise ValidationError(f"{path}: use a .toml or .yaml scorer spec")
        except (tomllib.TOMLDecodeError, ValueError) as exc:
            if isinstance(exc, ValidationError):
                raise
            raise ValidationError(f"{path}: cannot parse ({exc})") from None
        except Exception as exc:  # yaml.YAMLError
            raise ValidationError(f"{path}: cannot parse ({exc})") from None
        if not isinstance(data, dict) or not isinstance(data.get("scorer"), dict):
            raise ValidationError(f"{path}: needs a [scorer] table with `type` (and `params`)")
        extra_top = sorted(set(data) - {"scorer"})
        if extra_top:
            raise ValidationError(f"{path}: unknown top-level keys {extra_top}; only [scorer]")
        sc = data["scorer"]
        unknown = sorted(set(sc) - {"type", "name", "params"})
        if unknown:
            raise ValidationError(
                f"{path}: scorer: unknown keys {unknown}; allowed: type, name, params"
            )
        if not isinstance(sc.get("type"), str):
            raise ValidationError(f'{path}: scorer.type is required (e.g. type = "embedding")')
        params = sc.get("params") or {}
        if not isinstance(params, dict):
            raise ValidationError(f"{path}: scorer.params must be a table")
        return ScorerSetup(
            sc["type"], str(sc.get("name") or sc["type"]), params, path.resolve().parent, str(path)
        )
    if path.suffix.lower() in (".toml", ".yaml", ".yml") or "/" in target:
        raise ValidationError(f"scorer spec '{target}' not found")
    return ScorerSetup(target, target, {}, Path.cwd(), f"scorer '{target}' (default params)")


def build_scorer(setup: ScorerSetup) -> Any:
    """Resolve, validate (as the spec check does) and construct the scorer."""
    from pydantic import ValidationError as PydanticError

    from harness.registry import RegistryError
    from judges import SCORERS

    try:
        cls = SCORERS.get(setup.type)
    except RegistryError as exc:
        raise ValidationError(f"{setup.source}: scorer.type: {exc}") from None
    try:
        params = cls.Params.model_validate(setup.params)
    except PydanticError as exc:
        from harness.spec import describe_errors

        lines = describe_errors(exc, cls.Params, ("scorer", "params"))
        raise ValidationError(f"{setup.source}: " + "; ".join(lines)) from None
    check = getattr(cls, "check", None)
    if check is not None:
        problems = check(params, setup.base_dir)
        if problems:
            raise ValidationError(f"{setup.source}: " + "; ".join(problems))
    factory: Any = cls
    try:
        return factory(params, ScorerContext(base_dir=setup.base_dir))
    except (ValueError, OSError) as exc:
        raise ValidationError(f"{setup.source}: cannot construct the scorer: {exc}") from None


def _display_path(path: Path) -> str:
    """Relative to the working directory when inside it (no machine paths in reports)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def resolve_data(value: str) -> Path:
    from harness.spec import resolve_data_path

    path = resolve_data_path(value, Path.cwd())
    if path is None:
        raise ValidationError(
            f"gold file '{value}' not found (looked in {Path.cwd()} and the shipped prompts/)"
        )
    return path


def load_gold(path: Path) -> tuple[str, list[GoldItem]]:
    """(mode, items); mode is 'labels' or 'ratings'. Errors name the file and line."""
    items: list[GoldItem] = []
    for lineno, obj in read_jsonl(path, ValidationError):
        if not isinstance(obj.get("text"), str):
            raise ValidationError(f"{path}:{lineno}: each line needs a string 'text'")
        label = obj.get("label")
        rating = obj.get("rating")
        if label is None and rating is None:
            raise ValidationError(f"{path}:{lineno}: needs 'label' or 'rating'")
        if rating is not None:
            try:
                rating = float(rating)
            except (TypeError, ValueError):
                raise ValidationError(
                    f"{path}:{lineno}: rating {rating!r} is not a number"
                ) from None
            if not math.isfinite(rating):
                raise ValidationError(f"{path}:{lineno}: rating must be finite")
        trait = obj.get("trait")
        items.append(
            GoldItem(
                str(obj.get("id", lineno)),
                obj["text"],
                None if label is None else str(label),
                rating,
                None if trait is None else str(trait),
            )
        )
    if not items:
        raise ValidationError(f"{path}: no records")
    has_label = [it.label is not None for it in items]
    if all(has_label):
        return "labels", items
    if all(it.rating is not None for it in items):
        return "ratings", items
    raise ValidationError(f"{path}: mix of labelled and rated records; use one kind per file")


def score_items(scorer: Any, name: str, texts: Sequence[str]) -> list[dict[str, ScoreResult]]:
    metrics = list(scorer.metrics)
    out: list[dict[str, ScoreResult]] = []
    size = max(1, int(getattr(scorer, "batch_size", 32)))
    for start in range(0, len(texts), size):
        items = [
            ScoringItem(t, "", f"gold-{start + i}", "validation")
            for i, t in enumerate(texts[start : start + size])
        ]
        ascore = getattr(scorer, "ascore", None)
        if ascore is not None and inspect.iscoroutinefunction(ascore):
            raw = asyncio.run(ascore(items))
        else:
            raw = scorer.score(items)
        out += check_results(name, metrics, items, raw)
    close = getattr(scorer, "close", None)
    if callable(close):
        close()
    return out


# ---------------------------------------------------------------------------- statistics


def auroc(
    scores: Sequence[float] | np.ndarray, positive: Sequence[bool] | np.ndarray
) -> float | None:
    """Mann-Whitney AUROC with mid-ranks; None when either class is empty."""
    s = np.asarray(scores, dtype=np.float64)
    pos = np.asarray(positive, dtype=bool)
    n1, n0 = int(pos.sum()), int((~pos).sum())
    if n1 == 0 or n0 == 0:
        return None
    ranks = rankdata(s)
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def percentile_ci(values: np.ndarray, n_resamples: int) -> dict[str, Any]:
    ok = values[np.isfinite(values)]
    dropped = int(n_resamples - ok.size)
    if ok.size == 0:
        return {"ci_low": None, "ci_high": None, "dropped": dropped}
    alpha = 100 * (1 - LEVEL) / 2
    lo, hi = np.percentile(ok, [alpha, 100 - alpha])
    return {"ci_low": float(lo), "ci_high": float(hi), "dropped": dropped}


def _stat(
    value: float | None, boot: np.ndarray | None, n_resamples: int, reason: str | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {"value": value}
    if value is None:
        out |= {"ci_low": None, "ci_high": None, "dropped": 0, "reason": reason or "undefined"}
    elif boot is None:
        out |= {"ci_low": None, "ci_high": None, "dropped": 0, "reason": "bootstrap disabled"}
    else:
        out |= percentile_ci(boot, n_resamples)
    return out


def resample_counts(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """(B x n) multiplicities of each text in each resample (protocol: module docstring)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_resamples, n))
    flat = (np.arange(n_resamples)[:, None] * n + idx).reshape(-1)
    return np.bincount(flat, minlength=n_resamples * n).reshape(n_resamples, n).astype(np.float64)


def _boot_auroc(s: np.ndarray, pos: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """AUROC of every resample: Σ_{i+, j-} w_i w_j ([s_i > s_j] + ½[s_i = s_j]) / (W+ W-)."""
    sp, sn = s[pos], s[~pos]
    kernel = (sp[:, None] > sn[None, :]) + 0.5 * (sp[:, None] == sn[None, :])
    wp, wn = counts[:, pos], counts[:, ~pos]
    num = np.sum((wp @ kernel) * wn, axis=1)
    den = wp.sum(axis=1) * wn.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def labels_metrics(
    gold: Sequence[str],
    scores: dict[str, np.ndarray],
    labels: Sequence[str],
    none_label: str | None,
    n_resamples: int,
    seed: int,
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-label P/R/F1 and AUROC with bootstrap CIs (module docstring).

    ``scores[label]`` are the scores of every label in ``labels`` except ``none_label``."""
    n = len(gold)
    scored = [lab for lab in labels if lab != none_label]
    mat = np.column_stack([scores[lab] for lab in scored])
    best = np.argmax(mat, axis=1)  # first maximum wins: ties go to the earlier label
    pred = [scored[int(b)] for b in best]
    if none_label is not None:
        top = mat.max(axis=1)
        pred = [none_label if t <= 0 else p for t, p in zip(top, pred, strict=True)]
    g = np.array(gold)
    p = np.array(pred)
    correct = (g == p).astype(np.float64)
    counts = resample_counts(n, n_resamples, seed) if n_resamples > 0 and n > 0 else None
    per_label: dict[str, Any] = {}
    f1_boot = []
    for lab in labels:
        is_g = (g == lab).astype(np.float64)
        is_p = (p == lab).astype(np.float64)
        tp = float(np.sum(is_g * is_p))
        ng, npred = float(is_g.sum()), float(is_p.sum())
        f1 = 2 * tp / (ng + npred) if ng + npred > 0 else None
        entry: dict[str, Any] = {
            "n_gold": int(ng),
            "n_pred": int(npred),
            "tp": int(tp),
            "precision": tp / npred if npred else None,
            "recall": tp / ng if ng else None,
            "f1": f1,
        }
        if counts is not None:
            tp_b = counts @ (is_g * is_p)
            den_b = counts @ is_g + counts @ is_p
            with np.errstate(invalid="ignore", divide="ignore"):
                f1_boot.append(
                    np.where(den_b > 0, 2 * tp_b / np.where(den_b > 0, den_b, 1), np.nan)
                )
        if lab == none_label:
            entry["auroc"] = _stat(None, None, 0, "the scorer has no metric for this label")
        else:
            a = auroc(scores[lab], g == lab)
            boot = _boot_auroc(scores[lab], g == lab, counts) if counts is not None else None
            entry["auroc"] = _stat(a, boot, n_resamples, "no positive or no negative texts")
        per_label[lab] = entry
    f1s = [e["f1"] for e in per_label.values() if e["f1"] is not None]
    macro = float(np.mean(f1s)) if f1s else None
    acc = float(correct.mean()) if n else None
    acc_boot = macro_boot = None
    if counts is not None:
        acc_boot = (counts @ correct) / n
        stack = np.column_stack(f1_boot)
        with np.errstate(invalid="ignore"):
            valid = np.isfinite(stack).sum(axis=1)
            macro_boot = np.where(
                valid > 0, np.nansum(stack, axis=1) / np.maximum(valid, 1), np.nan
            )
    matrix = [[int(np.sum((g == a) & (p == b))) for b in labels] for a in labels]
    return {
        "labels": list(labels),
        "none_label": none_label,
        "accuracy": _stat(acc, acc_boot, n_resamples, "no scored texts"),
        "macro_f1": _stat(macro, macro_boot, n_resamples, "no scored texts"),
        "per_label": per_label,
        "confusion": {
            "rows": "gold",
            "columns": "predicted",
            "labels": list(labels),
            "matrix": matrix,
        },
    }


def _boot_corr(x: np.ndarray, y: np.ndarray, idx: np.ndarray, ranks: bool) -> np.ndarray:
    xs, ys = x[idx], y[idx]
    if ranks:
        xs, ys = rankdata(xs, axis=1), rankdata(ys, axis=1)
    xs = xs - xs.mean(axis=1, keepdims=True)
    ys = ys - ys.mean(axis=1, keepdims=True)
    den = np.sqrt(np.sum(xs * xs, axis=1) * np.sum(ys * ys, axis=1))
    const = np.all(x[idx] == x[idx][:, :1], axis=1) | np.all(y[idx] == y[idx][:, :1], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.sum(xs * ys, axis=1) / den
    return np.where(const | ~(den > 0), np.nan, np.clip(r, -1.0, 1.0))


def ratings_metrics(
    scores: np.ndarray, ratings: np.ndarray, n_resamples: int, seed: int
) -> dict[str, Any]:
    n = int(scores.size)
    rho = spearman(scores, ratings) if n >= 3 else None
    r = pearson(scores, ratings) if n >= 3 else None
    boot_s = boot_p = None
    if n_resamples > 0 and n >= 3:
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, n, size=(n_resamples, n))
        boot_s = _boot_corr(scores, ratings, idx, ranks=True)
        boot_p = _boot_corr(scores, ratings, idx, ranks=False)
    why = f"fewer than 3 scored texts (n={n})" if n < 3 else "constant scores or ratings"
    return {
        "spearman": _stat(rho, boot_s, n_resamples, why),
        "pearson": _stat(r, boot_p, n_resamples, why),
    }


# ---------------------------------------------------------------------------- driver


def validate_scorer(
    scorer_target: str,
    data: str,
    *,
    n_resamples: int = 2000,
    seed: int = 0,
    metric: str | None = None,
    none_label: str | None = None,
    scorer: Any = None,
) -> dict[str, Any]:
    """Score the gold file with the scorer and compute the metrics (JSON-ready, no NaN)."""
    setup = load_scorer_setup(scorer_target)
    path = resolve_data(data)
    mode, gold = load_gold(path)
    if scorer is None:
        scorer = build_scorer(setup)
    metrics = list(scorer.metrics)
    result: dict[str, Any] = {
        "created": utc_now(),
        "mode": mode,
        "scorer": {
            "type": setup.type,
            "name": setup.name,
            "params": setup.params,
            "source": setup.source,
            "metrics": metrics,
        },
        "data": data,
        "data_path": _display_path(path),
        "data_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "n_texts": len(gold),
        "bootstrap": {
            "method": "percentile",
            "unit": "text",
            "level": LEVEL,
            "resamples": n_resamples,
            "seed": seed,
        },
    }
    describe = getattr(scorer, "describe", None)
    if callable(describe):
        result["scorer"]["describe"] = describe()
    if mode == "labels":
        labels = list(dict.fromkeys(str(it.label) for it in gold))
        missing = [lab for lab in labels if lab not in metrics]
        if none_label is not None:
            if none_label not in labels:
                raise ValidationError(f"--none-label '{none_label}' is not a gold label {labels}")
            if none_label in metrics:
                raise ValidationError(
                    f"--none-label '{none_label}': the scorer has a metric of that name"
                )
        elif len(missing) == 1:
            none_label = missing[0]
        others = [lab for lab in missing if lab != none_label]
        if others:
            raise ValidationError(
                f"the scorer has no metric for gold labels {others} (its metrics: "
                f"{', '.join(metrics)}); at most one label may lack one (the none label). "
                "Map model labels to these names (classifier `labels`) or choose the labels."
            )
        used = [lab for lab in labels if lab != none_label]
        needed = used
    else:
        traits = {it.trait for it in gold if it.trait}
        if metric is None:
            if len(traits) != 1:
                raise ValidationError(
                    f"{path}: records name traits {sorted(traits)}; choose one with --metric"
                )
            metric = traits.pop()
        if metric not in metrics:
            raise ValidationError(
                f"metric '{metric}' is not a metric of the scorer (has: {', '.join(metrics)}); "
                "use --metric"
            )
        needed = [metric]
    results = score_items(scorer, setup.name, [it.text for it in gold])
    keep: list[int] = []
    reasons: Counter[str] = Counter()
    for i, row in enumerate(results):
        nulls = [row[m].reason for m in needed if row[m].value is None]
        if nulls:
            reasons[str(nulls[0])] += 1
        else:
            keep.append(i)
    result["n_scored"] = len(keep)
    result["n_unscored"] = len(gold) - len(keep)
    result["unscored_reasons"] = dict(reasons)
    if mode == "labels":
        scores = {
            lab: np.array([results[i][lab].value for i in keep], dtype=np.float64) for lab in needed
        }
        result |= labels_metrics(
            [str(gold[i].label) for i in keep], scores, labels, none_label, n_resamples, seed
        )
    else:
        assert metric is not None
        result["metric"] = metric
        s = np.array([results[i][metric].value for i in keep], dtype=np.float64)
        y = np.array([gold[i].rating for i in keep], dtype=np.float64)
        result |= ratings_metrics(s, y, n_resamples, seed)
    return result


# ---------------------------------------------------------------------------- markdown


def _f(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _ci(stat: dict[str, Any]) -> str:
    text = _f(stat.get("value"))
    if stat.get("ci_low") is not None:
        text += f" [{_f(stat['ci_low'])}, {_f(stat['ci_high'])}]"
    return text


def render_markdown(result: dict[str, Any]) -> str:
    sc = result["scorer"]
    boot = result["bootstrap"]
    lines = [
        f"# Scorer validation: {sc['name']} on {Path(result['data']).name}",
        "",
        f"Scorer `{sc['type']}` from {sc['source']}; params "
        f"`{json.dumps(sc['params'], sort_keys=True)}`. {result['n_scored']} of "
        f"{result['n_texts']} texts scored"
        + (
            " (left out: "
            + "; ".join(f"{k}: {v}" for k, v in result["unscored_reasons"].items())
            + ")"
            if result["n_unscored"]
            else ""
        )
        + f". Intervals: {int(boot['level'] * 100)}% percentile bootstrap over texts, "
        f"{boot['resamples']} resamples, seed {boot['seed']}. Definitions: "
        "`harness/validation.py`.",
        "",
    ]
    if result["mode"] == "labels":
        none = result.get("none_label")
        lines += [
            "| accuracy [95% CI] | macro-F1 [95% CI] |",
            "|---|---|",
            f"| {_ci(result['accuracy'])} | {_ci(result['macro_f1'])} |",
            "",
            "| label | gold | predicted | precision | recall | F1 | AUROC [95% CI] |",
            "|---|---|---|---|---|---|---|",
        ]
        for lab, e in result["per_label"].items():
            lines.append(
                f"| {lab}{' (none label)' if lab == none else ''} | {e['n_gold']} | "
                f"{e['n_pred']} | {_f(e['precision'])} | {_f(e['recall'])} | {_f(e['f1'])} | "
                f"{_ci(e['auroc'])} |"
            )
        labels = result["confusion"]["labels"]
        lines += [
            "",
            "Confusion matrix (rows: gold, columns: predicted):",
            "",
            "| gold \\ predicted | " + " | ".join(labels) + " |",
            "|---|" + "---|" * len(labels),
        ]
        for lab, row in zip(labels, result["confusion"]["matrix"], strict=True):
            lines.append(f"| {lab} | " + " | ".join(str(v) for v in row) + " |")
        if none:
            lines += [
                "",
                f"`{none}` has no scorer metric: it is predicted when every other label "
                "scores <= 0.",
            ]
    else:
        lines += [
            f"Metric `{result['metric']}` against the gold rating:",
            "",
            "| n | Spearman ρ [95% CI] | Pearson r [95% CI] |",
            "|---|---|---|",
            f"| {result['n_scored']} | {_ci(result['spearman'])} | {_ci(result['pearson'])} |",
        ]
    return "\n".join(lines) + "\n"


def write_outputs(result: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """``out`` (a .md or .json suffix is dropped) -> out.json and out.md, parents created."""
    if out.suffix.lower() in (".md", ".json"):
        out = out.with_suffix("")
    out.parent.mkdir(parents=True, exist_ok=True)
    json_path = out.with_name(out.name + ".json")
    md_path = out.with_name(out.name + ".md")
    json_path.write_text(json.dumps(result, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    md_path.write_text(render_markdown(result), encoding="utf-8")
    return json_path, md_path
