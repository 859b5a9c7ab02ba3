"""Classification shift: how steering a sequence classifier moves its predictions, against
the unsteered classifier on the same texts.

:func:`classification_shift` turns :class:`~harness.core.artifacts.ClassifiedRow` records
(one per condition × text; the baseline's are the unsteered classifier's) into a
:class:`~harness.core.artifacts.ShiftDoc`. Per condition, on the texts it shares with the
baseline (paired by ``prompt_id``):

- accuracy, and precision, recall and F1 per label and macro-averaged, each with a
  percentile bootstrap interval, the unsteered value on the same texts, the difference
  condition − baseline and its interval. The bootstrap is paired: one resample of texts
  is used for both sides of a difference, and the same resamples for every condition
  (``harness.stats.confusion.paired_bootstrap`` on the one engine of
  ``harness.stats.bootstrap``);
- McNemar's exact conditional test on the paired correctness (McNemar 1947; exact
  binomial on the discordant pairs, two-sided) and the continuity-corrected χ², with the
  flip counts (correct → wrong, wrong → correct) and the exact p Holm-adjusted over the
  conditions;
- per class, the mean shift of its probability (condition − baseline, per text) with its
  paired bootstrap interval, d_z (Lakens 2013), the paired-t and Wilcoxon signed-rank
  p-values and the paired-t p Holm-adjusted over the classes of the condition;
- with a ``target`` class: the predictions moved to it and away from it, the share of
  texts predicted as it (with the interval of its change), and each text's target
  probability per condition (for the report's plots);
- with ``doses`` (condition -> α of a sweep): each condition's α, so the report can draw
  the target's metrics against α; the unsteered classifier stands at α = 0 unless the
  doses name it.

Pure: no clock, no files; the same rows and seed give the same document.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from harness.core.artifacts import (
    SHIFT_VERSION,
    ClassifiedRow,
    ShiftCondition,
    ShiftDoc,
    ShiftMcNemar,
    ShiftMetric,
    ShiftProbability,
    ShiftTarget,
)
from harness.core.errors import AnalysisError
from harness.stats import (
    adjust_holm,
    confusion_matrix,
    count_metrics,
    d_z,
    finite_or_none,
    interval_of,
    mcnemar,
    paired_bootstrap,
    paired_t_p,
    wilcoxon_p,
)

__all__ = ["classification_shift"]

LEVEL = 0.95
_UNDEFINED = {
    "precision": "the label is never predicted on these texts",
    "recall": "the label never occurs in the gold labels of these texts",
    "f1": "the label is neither gold nor predicted on these texts",
    "macro": "no label has a defined value",
    "accuracy": "no texts",
}


def _fix(where: str) -> str:
    return f"{where}; every classified row's gold and predicted labels must be among `labels`"


def _index(
    rows: Sequence[ClassifiedRow], labels: Sequence[str]
) -> tuple[dict[str, dict[str, ClassifiedRow]], list[str]]:
    """condition -> prompt_id -> row (the last row of a key wins), conditions in order."""
    known = set(labels)
    by: dict[str, dict[str, ClassifiedRow]] = {}
    for r in rows:
        for fld in ("gold", "predicted"):
            if r[fld] not in known:
                raise AnalysisError(
                    _fix(
                        f"condition {r['condition']!r}, text {r['prompt_id']!r}: {fld} label "
                        f"{r[fld]!r} is not one of {list(labels)}"
                    )
                )
        by.setdefault(str(r["condition"]), {})[str(r["prompt_id"])] = r
    return by, list(by)


def _prob(row: ClassifiedRow, label: str) -> float:
    v = finite_or_none((row.get("probs") or {}).get(label))
    return math.nan if v is None else v


def _metric_rows(
    cond: dict[str, np.ndarray] | None,
    base: dict[str, np.ndarray],
    point_c: object,
    point_b: object,
    labels: Sequence[str],
) -> list[ShiftMetric]:
    """Rows for one condition (``cond`` None: the baseline's own rows).

    ``base``/``cond`` are per-resample metric arrays (harness.stats.confusion);
    ``point_*`` the CountMetrics on the observed texts."""
    out: list[ShiftMetric] = []
    specs: list[tuple[str, str, str | None, str, int | None]] = [
        ("accuracy", "all", None, "accuracy", None)
    ]
    for col, lab in enumerate(labels):
        specs += [(m, "label", lab, m, col) for m in ("precision", "recall", "f1")]
    specs += [(m, "macro", None, f"macro_{m}", None) for m in ("precision", "recall", "f1")]
    for metric, scope, label, key, j in specs:
        own = point_b if cond is None else point_c
        arrays = base if cond is None else cond

        def value_of(obj: object, key: str = key, j: int | None = j) -> float | None:
            v = getattr(obj, key)
            return finite_or_none(v if j is None else v[j])

        value = value_of(own)
        arr = arrays[key] if j is None else arrays[key][:, j]
        ci = interval_of(arr, LEVEL)
        row: ShiftMetric = {
            "metric": metric,
            "scope": scope,
            "label": label,
            "value": value,
            "ci_low": ci.low if value is not None else None,
            "ci_high": ci.high if value is not None else None,
            "baseline": value_of(point_b),
            "delta": None,
            "delta_ci_low": None,
            "delta_ci_high": None,
            "boot_dropped": ci.n_dropped,
        }
        reasons: list[str] = []
        if value is None:
            reasons.append(_UNDEFINED["macro" if scope == "macro" else metric])
        elif ci.low is None and ci.reason:
            reasons.append(f"no interval: {ci.reason}")
        if cond is not None:
            b_arr = base[key] if j is None else base[key][:, j]
            if value is not None and row["baseline"] is not None:
                row["delta"] = value - row["baseline"]
                dci = interval_of(arr - b_arr, LEVEL)
                row["delta_ci_low"], row["delta_ci_high"] = dci.low, dci.high
                row["boot_dropped"] = dci.n_dropped
                if dci.low is None and dci.reason:
                    reasons.append(f"no interval of the difference: {dci.reason}")
            elif row["baseline"] is None and value is not None:
                reasons.append("no difference: undefined for the unsteered classifier")
        if reasons:
            row["reason"] = "; ".join(reasons)
        out.append(row)
    return out


def _table(m: np.ndarray, labels: Sequence[str]) -> dict[str, dict[str, int]]:
    return {a: {b: int(m[i, j]) for j, b in enumerate(labels)} for i, a in enumerate(labels)}


def _share(num: int, n: int) -> float | None:
    return num / n if n else None


def classification_shift(
    rows: Sequence[ClassifiedRow],
    *,
    baseline: str,
    labels: Sequence[str],
    target: str | None,
    doses: Mapping[str, float] | None,
    n_boot: int,
    seed: int,
) -> ShiftDoc:
    """The classification-shift document of ``rows`` (see the module docstring).

    Raises :class:`~harness.core.errors.AnalysisError` when the labels are empty or
    repeated, the target is not a label, the baseline has no rows, a row's gold or
    predicted label is not a label, or a text's gold label differs between conditions."""
    labels = [str(x) for x in labels]
    if not labels or len(set(labels)) != len(labels):
        raise AnalysisError(f"classification shift: labels must be distinct and given ({labels})")
    if target is not None and target not in labels:
        raise AnalysisError(
            f"classification shift: target {target!r} is not one of the labels {labels}; "
            "name one of them"
        )
    if n_boot < 1:
        raise AnalysisError(f"classification shift: n_boot must be at least 1 (got {n_boot})")
    by, order = _index(rows, labels)
    if baseline not in by:
        raise AnalysisError(
            f"classification shift: no rows for the baseline {baseline!r} "
            f"(conditions: {order}); classify the texts with the unsteered model too"
        )
    k = len(labels)
    code = {lab: i for i, lab in enumerate(labels)}
    base_rows = by[baseline]
    pids = sorted(base_rows)
    conditions = [c for c in order if c != baseline]
    notes: list[str] = []
    dose_map = {str(c): float(a) for c, a in (doses or {}).items() if c in by}
    if dose_map and baseline not in dose_map:
        dose_map[baseline] = 0.0
        notes.append(f"the unsteered classifier {baseline} stands at α = 0 on the dose curve")
    unknown = sorted(set(doses or {}) - set(by))
    if unknown:
        notes.append(f"doses for conditions without rows left out: {', '.join(unknown)}")

    gold_all = np.array([code[base_rows[p]["gold"]] for p in pids], dtype=np.int64)
    base_all = np.array([code[base_rows[p]["predicted"]] for p in pids], dtype=np.int64)
    point_base_all = count_metrics(gold_all, base_all, k)
    (own_arr,), _ = paired_bootstrap(gold_all, [base_all], k, n_resamples=n_boot, seed=seed)
    by_condition: list[ShiftCondition] = [
        {
            "condition": baseline,
            "dose": dose_map.get(baseline),
            "n": len(pids),
            "n_missing": 0,
            "predicted_counts": dict(zip(labels, point_base_all.predicted, strict=True)),
            "confusion": _table(confusion_matrix(gold_all, base_all, k), labels),
            "transitions": {},
            "metrics": _metric_rows(None, own_arr, None, point_base_all, labels),
            "mcnemar": None,
            "target": None,
        }
    ]
    probability: list[ShiftProbability] = []
    target_probs: dict[str, list[float | None]] = {}
    if target is not None:
        target_probs[baseline] = [finite_or_none(_prob(base_rows[p], target)) for p in pids]

    for cond in conditions:
        crow = by[cond]
        paired = [p for p in pids if p in crow]
        extra = len(set(crow) - set(base_rows))
        if len(paired) < len(pids):
            notes.append(
                f"{cond} lacks {len(pids) - len(paired)} of the baseline's {len(pids)} "
                "texts: compared on the texts both classified"
            )
        if extra:
            notes.append(f"{cond}: {extra} text(s) the baseline did not classify, left out")
        for p in paired:
            if crow[p]["gold"] != base_rows[p]["gold"]:
                raise AnalysisError(
                    f"classification shift: text {p!r} has gold label {crow[p]['gold']!r} "
                    f"under {cond!r} but {base_rows[p]['gold']!r} under {baseline!r}; "
                    "every condition must classify the same labelled texts"
                )
        n = len(paired)
        gold = np.array([code[base_rows[p]["gold"]] for p in paired], dtype=np.int64)
        bp = np.array([code[base_rows[p]["predicted"]] for p in paired], dtype=np.int64)
        cp = np.array([code[crow[p]["predicted"]] for p in paired], dtype=np.int64)
        pb = np.array([[_prob(base_rows[p], lab) for lab in labels] for p in paired]).reshape(n, k)
        pc = np.array([[_prob(crow[p], lab) for lab in labels] for p in paired]).reshape(n, k)
        diffs = pc - pb
        complete = [j for j in range(k) if np.all(np.isfinite(diffs[:, j]))]
        values = [diffs[:, j] for j in complete]
        if target is not None:
            t = code[target]
            values.append((cp == t).astype(float) - (bp == t).astype(float))
        (b_arr, c_arr), means = paired_bootstrap(
            gold, [bp, cp], k, values=values, n_resamples=n_boot, seed=seed
        )
        point_b = count_metrics(gold, bp, k)
        point_c = count_metrics(gold, cp, k)
        mc = mcnemar(gold == bp, gold == cp)
        mc_doc: ShiftMcNemar = {
            "both_correct": mc.both_correct,
            "correct_to_wrong": mc.b,
            "wrong_to_correct": mc.c,
            "both_wrong": mc.both_wrong,
            "p_exact": mc.p_exact,
            "p_holm": None,
            "chi2": mc.chi2,
            "p_chi2": mc.p_chi2,
        }
        if mc.reason:
            mc_doc["reason"] = mc.reason
        tgt: ShiftTarget | None = None
        if target is not None:
            t = code[target]
            rci = interval_of(means[-1], LEVEL)
            rb, rc = _share(int(np.sum(bp == t)), n), _share(int(np.sum(cp == t)), n)
            tgt = {
                "to_target": int(np.sum((bp != t) & (cp == t))),
                "from_target": int(np.sum((bp == t) & (cp != t))),
                "to_target_share": _share(int(np.sum((bp != t) & (cp == t))), n),
                "from_target_share": _share(int(np.sum((bp == t) & (cp != t))), n),
                "rate_baseline": rb,
                "rate": rc,
                "rate_delta": None if rb is None or rc is None else rc - rb,
                "rate_delta_ci_low": rci.low,
                "rate_delta_ci_high": rci.high,
            }
            pos = {p: i for i, p in enumerate(paired)}
            target_probs[cond] = [finite_or_none(pc[pos[p], t]) if p in pos else None for p in pids]
        by_condition.append(
            {
                "condition": cond,
                "dose": dose_map.get(cond),
                "n": n,
                "n_missing": len(pids) - n,
                "predicted_counts": dict(zip(labels, point_c.predicted, strict=True)),
                "confusion": _table(confusion_matrix(gold, cp, k), labels),
                "transitions": _table(confusion_matrix(bp, cp, k), labels),
                "metrics": _metric_rows(c_arr, b_arr, point_c, point_b, labels),
                "mcnemar": mc_doc,
                "target": tgt,
            }
        )
        probability += _probability_rows(cond, labels, pb, pc, complete, means, n_boot, seed)

    holm = adjust_holm([c["mcnemar"]["p_exact"] for c in by_condition if c["mcnemar"]])
    for c, p_adj in zip([c for c in by_condition if c["mcnemar"]], holm, strict=True):
        c["mcnemar"]["p_holm"] = p_adj  # type: ignore[index]
    return {
        "version": SHIFT_VERSION,
        "baseline": baseline,
        "labels": labels,
        "target": target,
        "conditions": conditions,
        "doses": dose_map,
        "n_texts": len(pids),
        "gold_counts": dict(zip(labels, point_base_all.support, strict=True)),
        "bootstrap": {"n_resamples": n_boot, "seed": seed, "level": LEVEL, "unit": "text"},
        "by_condition": by_condition,
        "probability": probability,
        "target_probs": target_probs,
        "prompt_ids": pids,
        "notes": notes,
    }


def _probability_rows(
    cond: str,
    labels: Sequence[str],
    pb: np.ndarray,
    pc: np.ndarray,
    complete: list[int],
    means: list[np.ndarray],
    n_boot: int,
    seed: int,
) -> list[ShiftProbability]:
    """Per class: mean shift of its probability, interval, d_z, paired t, Wilcoxon, Holm
    over the classes. A class with a missing probability on some texts is compared on
    the texts where both sides have one (its interval from its own resamples)."""
    out: list[ShiftProbability] = []
    for j, lab in enumerate(labels):
        ok = np.isfinite(pb[:, j]) & np.isfinite(pc[:, j])
        b, c = pb[ok, j], pc[ok, j]
        n = int(ok.sum())
        if j in complete:
            boot = means[complete.index(j)]
        else:
            _, (boot,) = paired_bootstrap(
                np.zeros(n, dtype=np.int64), [], 1, values=[c - b], n_resamples=n_boot, seed=seed
            )
        ci = interval_of(boot, LEVEL) if n else None
        row: ShiftProbability = {
            "condition": cond,
            "label": lab,
            "n": n,
            "mean_baseline": float(b.mean()) if n else None,
            "mean": float(c.mean()) if n else None,
            "delta": float((c - b).mean()) if n else None,
            "ci_low": ci.low if ci else None,
            "ci_high": ci.high if ci else None,
            "d_z": d_z(c - b),
            "p_paired_t": paired_t_p(c, b),
            "p_wilcoxon": wilcoxon_p(c, b),
            "p_holm": None,
        }
        reasons = []
        if n < len(ok):
            reasons.append(f"{len(ok) - n} text(s) without this probability on a side left out")
        if row["d_z"] is None or row["p_paired_t"] is None:
            reasons.append(
                "d_z and paired t undefined: "
                + ("fewer than 2 texts" if n < 2 else "the differences have zero SD")
            )
        if reasons:
            row["reason"] = "; ".join(reasons)
        out.append(row)
    for row, p_adj in zip(out, adjust_holm([r["p_paired_t"] for r in out]), strict=True):
        row["p_holm"] = p_adj
    return out
