"""The analysis stage of a classification task: classification records -> rows -> the
classification-shift document (:func:`harness.analysis.shift.classification_shift`),
stored in ``analysis.json`` under ``classification_shift``.

A classification task has no scores: its records (``generations.jsonl`` lines of kind
``classification``, :class:`harness.core.records.ClassificationRecord`) hold each text's
gold label, predicted label and class probabilities, and the statistics are computed on
them directly. ``analysis.json`` keeps its usual shape (no comparisons) so that every
reader of it (``report``, ``compare``, ``power``) opens it as before.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from harness.analysis.shift import classification_shift
from harness.core.artifacts import AnalysisDoc, ClassifiedRow, ConditionInfo
from harness.core.errors import AnalysisError
from harness.core.files import write_json_atomic
from harness.core.ids import utc_now
from harness.core.rundir import RunDir

__all__ = ["KEY", "analyze_classification", "classified_rows"]

KEY = "classification_shift"
"""The top-level key of ``analysis.json`` that holds the :class:`ShiftDoc`."""

KIND = "classification"


def classified_rows(records: Iterable[Mapping[str, Any]]) -> list[ClassifiedRow]:
    """One row per classification record (the last record of an id wins, as in every
    store reader); generation records are skipped. A record without a gold label or
    with malformed probabilities is an error naming it."""
    by_id: dict[str, ClassifiedRow] = {}
    for rec in records:
        if rec.get("kind") != KIND:
            continue
        rid = str(rec.get("id"))
        gold, predicted, probs = rec.get("gold"), rec.get("predicted"), rec.get("probs")
        if not isinstance(gold, str) or not isinstance(predicted, str):
            raise AnalysisError(
                f"classification record {rid} lacks a gold or predicted label; a "
                "classification task needs labelled texts (prompts.label_field)"
            )
        if not isinstance(probs, dict) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in probs.values()
        ):
            raise AnalysisError(f"classification record {rid}: probs must map class -> number")
        by_id[rid] = {
            "condition": str(rec["condition"]),
            "prompt_id": str(rec["prompt_id"]),
            "gold": gold,
            "predicted": predicted,
            "probs": {str(k): float(v) for k, v in probs.items()},
        }
    return list(by_id.values())


def analyze_classification(
    run: RunDir,
    records: Iterable[Mapping[str, Any]],
    *,
    baseline: str,
    labels: Sequence[str],
    target: str | None,
    doses: Mapping[str, float] | None,
    n_boot: int,
    boot_seed: int,
    condition_order: list[str],
    condition_info: Mapping[str, ConditionInfo],
    key: str | None = None,
) -> AnalysisDoc:
    """The shift of every condition against ``baseline``, stored in ``analysis.json``
    (with ``key``, the hash of its inputs, when the caller keys it: harness.run.runner)."""
    rows = classified_rows(records)
    shift = classification_shift(
        rows,
        baseline=baseline,
        labels=labels,
        target=target,
        doses=doses or None,
        n_boot=max(1, n_boot),
        seed=boot_seed,
    )
    if key is not None:
        shift["key"] = key
    result: dict[str, Any] = {
        "created": utc_now(),
        "baseline": baseline,
        "conditions": condition_order,
        "condition_info": dict(condition_info),
        "comparisons": [],
        "task": "classify",
        KEY: shift,
    }
    if key is not None:
        result["key"] = key
    write_json_atomic(run.analysis, result)
    return result  # type: ignore[return-value]
