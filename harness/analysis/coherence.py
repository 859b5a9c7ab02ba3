"""Coherence next to the trait effect: is the steering real, or does it only break the text?

A trait score can rise because the text broke: a looping "afraid afraid afraid" is very
fearful to a judge and to a lexicon. So wherever a scorer reports a metric named
``coherence`` (the ``judge`` scorer does), the analysis adds, under the ``coherence`` key
of ``analysis.json``:

- ``by_condition``: per condition (baseline included), the mean coherence, its SD, and the
  share of scored texts **below** the threshold (``analysis.coherence_threshold`` in the
  spec, default 50 on the 0-100 scale; a text at the threshold counts as coherent). Null
  coherence scores are left out and counted (``n_scored`` of ``n_texts``).
- ``restricted``: per condition, trait metric and coherence source, the trait delta on all
  complete pairs next to the delta on the **coherent pairs** only, with its 95% interval.

Which pairs are kept: a (prompt, seed) pair is kept when **both** its baseline text and its
steered text score at or above the threshold (pairs whose coherence is null on either side
are dropped and counted as ``n_unknown``). Why both rather than the steered text alone: the
question is "does steering change the trait among texts that are still language?", and a
baseline text that is itself broken has an arbitrary trait score, so comparing a coherent
steered text with it would mix a coherence effect back in. The price is that the kept
pairs are selected on an outcome of the treatment (a post-treatment selection, Rosenbaum
1984, J. R. Stat. Soc. A 147, 656-666): ``delta_kept`` describes the coherent subset, it
is not an unbiased causal effect; read it with ``share_kept``, and when ``share_kept`` is
small the steering mostly breaks the text.

Which metrics are restricted: the coherence scorer's own other metrics (the judge's
traits), and metrics of the same name from other scorers (``lexicon/fear`` when the judge
rates ``fear``). A scorer that reports only ``coherence`` restricts every other metric.

Statistics (Student 1908, Biometrika 6, 1-25): ``delta`` and ``delta_kept`` are the mean
paired difference steered - baseline; the interval is ``delta_kept ± t_{0.975, n-1} · SD /
√n`` with SD the sample SD (ddof = 1) of the kept differences. With fewer than 2 kept
pairs the interval is null with a reason. Nothing here raises or emits NaN: without any
``coherence`` metric the result has empty lists.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy import stats

from harness.analysis.table import AnalysisInput
from harness.stats import finite_or_none

COHERENCE = "coherence"
DEFAULT_THRESHOLD = 50.0
Key = tuple[str, int]


def _threshold(options: Mapping[str, Any]) -> float:
    value = finite_or_none(options.get("coherence_threshold", DEFAULT_THRESHOLD))
    return DEFAULT_THRESHOLD if value is None else value


def _finite(cells: Mapping[Key, float]) -> dict[Key, float]:
    return {k: float(v) for k, v in cells.items() if finite_or_none(v) is not None}


def _condition_row(source: str, cond: str, cells: Mapping[Key, float], thr: float) -> dict:
    vals = np.array(list(_finite(cells).values()), dtype=float)
    n = int(vals.size)
    below = int((vals < thr).sum()) if n else 0
    return {
        "coherence_scorer": source,
        "condition": cond,
        "n_texts": len(cells),
        "n_scored": n,
        "mean": finite_or_none(vals.mean()) if n else None,
        "sd": finite_or_none(vals.std(ddof=1)) if n > 1 else None,
        "n_below": below,
        "share_below": finite_or_none(below / n) if n else None,
    }


def _mean_ci(diffs: np.ndarray) -> tuple[float | None, float | None, float | None, str | None]:
    """(mean, ci_low, ci_high, reason the interval is null)."""
    n = int(diffs.size)
    if n == 0:
        return None, None, None, "no pair kept"
    mean = float(diffs.mean())
    if n < 2:
        return finite_or_none(mean), None, None, "fewer than 2 pairs kept"
    sd = float(diffs.std(ddof=1))
    half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return finite_or_none(mean), finite_or_none(mean - half), finite_or_none(mean + half), None


def _restricted_row(
    source: str,
    scorer: str,
    metric: str,
    cond: str,
    trait: Mapping[str, Mapping[Key, float]],
    coh: Mapping[str, Mapping[Key, float]],
    baseline: str,
    thr: float,
) -> dict[str, Any]:
    tb, ts = _finite(trait.get(baseline, {})), _finite(trait.get(cond, {}))
    cb, cs = _finite(coh.get(baseline, {})), _finite(coh.get(cond, {}))
    pairs = sorted(set(tb) & set(ts))
    known = [k for k in pairs if k in cb and k in cs]
    kept = [k for k in known if cb[k] >= thr and cs[k] >= thr]
    all_diffs = np.array([ts[k] - tb[k] for k in pairs], dtype=float)
    kept_diffs = np.array([ts[k] - tb[k] for k in kept], dtype=float)
    delta_kept, lo, hi, why = _mean_ci(kept_diffs)
    row: dict[str, Any] = {
        "coherence_scorer": source,
        "scorer": scorer,
        "metric": metric,
        "condition": cond,
        "n_pairs": len(pairs),
        "delta": finite_or_none(all_diffs.mean()) if pairs else None,
        "n_unknown": len(pairs) - len(known),
        "n_kept": len(kept),
        "share_kept": finite_or_none(len(kept) / len(known)) if known else None,
        "mean_baseline_kept": finite_or_none(np.mean([tb[k] for k in kept])) if kept else None,
        "mean_steered_kept": finite_or_none(np.mean([ts[k] for k in kept])) if kept else None,
        "delta_kept": delta_kept,
        "ci_low": lo,
        "ci_high": hi,
    }
    if why:
        row["reason"] = why
    return row


def _trait_keys(table: Mapping[tuple[str, str], Any], source: str) -> list[tuple[str, str]]:
    """The coherence scorer's own traits first, then same-named metrics of other scorers."""
    own = [m for (s, m) in table if s == source and m != COHERENCE]
    if not own:
        return [(s, m) for (s, m) in table if m != COHERENCE]
    keys = [(s, m) for (s, m) in table if m in own]
    return sorted(keys, key=lambda k: (k[0] != source, own.index(k[1])))


def coherence_summary(inp: AnalysisInput) -> dict[str, Any]:
    """The ``coherence`` entry of analysis.json (see the module docstring)."""
    thr = _threshold(inp.options)
    table = inp.table
    sources = [s for (s, m) in table if m == COHERENCE]
    out: dict[str, Any] = {
        "threshold": thr,
        "kept_pairs": "both the baseline and the steered text score >= threshold",
        "sources": sources,
        "by_condition": [],
        "restricted": [],
    }
    steered = [c for c in inp.conditions if c != inp.baseline]
    for source in sources:
        coh = table[(source, COHERENCE)]
        for cond in inp.conditions:
            out["by_condition"].append(_condition_row(source, cond, coh.get(cond, {}), thr))
        for scorer, metric in _trait_keys(table, source):
            trait = table[(scorer, metric)]
            for cond in steered:
                if cond not in trait:
                    continue
                out["restricted"].append(
                    _restricted_row(source, scorer, metric, cond, trait, coh, inp.baseline, thr)
                )
    return out
