"""Which comparisons a reader should see first: target metrics, coherence, sweep groups.

A condition's targets are named explicitly by its ``targets`` (``["lexicon/hedging",
"fear"]``: a scorer's metric, or a metric of every scorer), else by the spec's
``[analysis] primary`` (both recorded as ``condition_info[...]["metrics"]``). Without
either, a metric is a *target* of a condition when its name appears as a whole word in the
condition's name, its sweep group, the trait names its method declares
(``SteeringMethod.targets``: a contrastive pair set, library vectors, a ``trait`` or
``target`` parameter) or its search trait: ``fear_activation`` with pairs ``fear`` targets
the metric ``fear`` of every scorer. Metric names are trait names by the scorer contract
(``harness/core/scoring.py``), so this finds the intended trait without extra configuration.
A *coherence* metric is one named ``coherence`` (an LLM judge) or any metric of a scorer
of type or name ``fluency``. Everything here reads stored records only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.report.data import RunData
from harness.stats import finite_or_none

__all__ = [
    "DosePlan",
    "SweepPoint",
    "condition_infos",
    "control_of",
    "dose_plans",
    "is_coherence",
    "is_target",
    "layer_label",
    "metric_order",
    "priority_key",
    "scorer_types",
    "sweep_points",
    "target_metrics",
]

MAX_DOSE_TRAITS = 4


@dataclass(frozen=True)
class SweepPoint:
    condition: str
    coefficient: float
    layer: int | tuple[int, ...] | None
    """The steered layer, the layers when several are steered together, or None."""

    @property
    def layer_label(self) -> str:
        return layer_label(self.layer)


def layer_label(layer: int | tuple[int, ...] | None) -> str:
    if layer is None:
        return "—"
    if isinstance(layer, tuple):
        return "+".join(map(str, layer))
    return str(layer)


def _layer(value: Any) -> int | tuple[int, ...] | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float) and finite_or_none(value) is not None:
        return int(value)
    if isinstance(value, list | tuple) and value:
        items = [_layer(v) for v in value]
        if all(isinstance(v, int) for v in items):
            return tuple(int(v) for v in items)  # type: ignore[arg-type]
    return None


def _layer_key(layer: int | tuple[int, ...] | None) -> tuple[int, tuple[int, ...]]:
    if layer is None:
        return (0, ())
    return (1, layer if isinstance(layer, tuple) else (layer,))


def sweep_points(
    condition_info: Mapping[str, Mapping[str, Any]], conditions: Sequence[str] | None = None
) -> tuple[dict[str, list[SweepPoint]], dict[str, list[str]]]:
    """Sweep groups -> points sorted by (layer, coefficient), and per group the notes on
    points whose coefficient is not a number (they cannot be placed on a dose axis; a
    group whose points all lack one has an empty list). ``conditions`` restricts to those
    analysed."""
    groups: dict[str, list[SweepPoint]] = {}
    notes: dict[str, list[str]] = {}
    for name, info in condition_info.items():
        sw = (info or {}).get("sweep")
        if not isinstance(sw, Mapping) or (conditions is not None and name not in conditions):
            continue
        coef = finite_or_none(sw.get("coefficient"))
        group = str(sw.get("group") or name)
        groups.setdefault(group, [])
        if coef is None:
            notes.setdefault(group, []).append(
                f"`{name}`: sweep coefficient {sw.get('coefficient')!r} is not a number"
            )
            continue
        groups[group].append(SweepPoint(name, coef, _layer(sw.get("layer"))))
    for pts in groups.values():
        pts.sort(key=lambda p: (_layer_key(p.layer), p.coefficient))
    return groups, notes


def condition_infos(run: RunData) -> dict[str, dict[str, Any]]:
    """Per condition: ``analysis.json["condition_info"]``, else method and params from
    spec.json (analyses written before condition_info existed)."""
    infos: dict[str, dict[str, Any]] = {
        str(k): dict(v or {}) for k, v in (run.analysis.get("condition_info") or {}).items()
    }
    if run.spec:
        for c in run.spec["spec"].get("conditions", []):
            infos.setdefault(c["name"], {"method": c.get("method"), "params": c.get("params")})
    return infos


def _texts(condition: str, info: Mapping[str, Any]) -> list[str]:
    texts = [condition]
    sweep = info.get("sweep")
    if isinstance(sweep, Mapping) and sweep.get("group"):
        texts.append(str(sweep["group"]))
    targets = info.get("targets")  # what the method says it aims at (pairs, vectors, ...)
    if isinstance(targets, list):
        texts += [str(t) for t in targets]
    else:
        texts += _legacy_targets(info.get("params"))
    search = info.get("search")
    if isinstance(search, Mapping) and isinstance(search.get("trait"), str):
        texts.append(search["trait"].rsplit("/", 1)[-1])  # "lexicon/fear" -> "fear"
    return [t.lower() for t in texts]


def _legacy_targets(params: Any) -> list[str]:
    """Target hints of an analysis written before methods declared ``targets``: the
    params' pair set, library vector name, composite weights, ``trait`` or ``target``."""
    if not isinstance(params, Mapping):
        return []
    texts = []
    vector = params.get("vector")
    if isinstance(vector, Mapping) and isinstance(vector.get("pairs"), str):
        texts.append(vector["pairs"])
    if isinstance(vector, str):
        texts.append(vector)
    weights = params.get("weights")
    if isinstance(weights, Mapping):
        texts += [str(k) for k in weights]
    texts += [params[k] for k in ("trait", "target") if isinstance(params.get(k), str)]
    return texts


def _named(refs: Sequence[Any], scorer: str | None, metric: str) -> bool:
    """Whether ``scorer/metric`` is one of the explicit refs (a bare ref names a metric of
    every scorer; without a scorer, a ``scorer/metric`` ref matches on its metric)."""
    for ref in map(str, refs):
        want_scorer, _, want_metric = ref.rpartition("/")
        if want_metric == metric and (not want_scorer or scorer is None or want_scorer == scorer):
            return True
    return False


def target_metrics(
    condition: str, info: Mapping[str, Any], metrics: Iterable[str], scorer: str | None = None
) -> list[str]:
    """The metrics (by name, of ``scorer`` when given) that ``condition`` aims at; see the
    module docstring."""
    explicit = info.get("metrics")
    if isinstance(explicit, list) and explicit:
        return [m for m in metrics if _named(explicit, scorer, m)]
    texts = _texts(condition, info)
    out = []
    for m in metrics:
        pat = re.compile(rf"(?<![a-z0-9]){re.escape(m.lower())}(?![a-z0-9])")
        if m.lower() != "coherence" and any(pat.search(t) for t in texts):
            out.append(m)
    return out


def control_of(info: Mapping[str, Any]) -> str | None:
    """The kind of control a condition is (as its method declared it, e.g. ``"random"`` for
    a random direction of the same norm), None for an ordinary condition."""
    if "control" in info:
        control = info.get("control")
    else:  # an analysis written before methods declared their control kind
        params = info.get("params")
        control = params.get("control") if isinstance(params, Mapping) else None
    return str(control) if control and control != "none" else None


def scorer_types(run: RunData) -> dict[str, str]:
    """Scorer label -> scorer type, from spec.json (empty without one)."""
    if not run.spec:
        return {}
    return {
        str(s.get("name") or s["type"]): str(s["type"]) for s in run.spec["spec"].get("scorers", [])
    }


def is_coherence(run: RunData, scorer: str, metric: str) -> bool:
    kind = scorer_types(run).get(scorer, scorer)
    return metric.lower() == "coherence" or "fluency" in (kind.lower(), scorer.lower())


def is_target(run: RunData, c: Mapping[str, Any], infos: Mapping[str, Any] | None = None) -> bool:
    infos = condition_infos(run) if infos is None else infos
    cond = str(c["condition"])
    if is_coherence(run, str(c["scorer"]), str(c["metric"])):
        return False
    info = infos.get(cond) or {}
    return bool(target_metrics(cond, info, [str(c["metric"])], str(c["scorer"])))


def priority_key(c: Mapping[str, Any], target: bool) -> tuple[int, int, int, float]:
    """Sort key: targets first, then significant after Holm, then not significant, then not
    assessable; within each, by |d| (largest first), an undefined d last."""
    d = finite_or_none(c.get("cohens_d"))
    sig = c.get("significant_holm")
    return (
        0 if target else 1,
        0 if sig else (1 if sig is False else 2),
        0 if d is not None else 1,
        -abs(d) if d is not None else 0.0,
    )


@dataclass
class DosePlan:
    """What the dose-response figure and table of one sweep group show."""

    group: str
    points: list[SweepPoint]
    traits: list[tuple[str, str]]
    coherence: tuple[str, str] | None
    notes: list[str] = field(default_factory=list)


def dose_plans(run: RunData) -> list[DosePlan]:
    """One plan per sweep group among the analysed conditions (empty without sweeps)."""
    infos = condition_infos(run)
    conditions = list(run.analysis.get("conditions") or [])
    groups, bad = sweep_points(infos, conditions or None)
    if not groups:
        return []
    comps = run.comparisons
    keys = list(dict.fromkeys((str(c["scorer"]), str(c["metric"])) for c in comps))
    coh = [k for k in keys if is_coherence(run, *k)]
    coherence = next((k for k in coh if k[1].lower() == "coherence"), coh[0] if coh else None)
    plans = []
    for group, points in groups.items():
        names = {p.condition for p in points}
        notes = list(bad.get(group, []))
        traits = [
            k
            for k in keys
            if k not in coh
            and any(
                target_metrics(p.condition, infos.get(p.condition) or {}, [k[1]], k[0])
                for p in points
            )
        ]
        if not traits:
            best: dict[tuple[str, str], float] = {}
            for c in comps:
                k = (str(c["scorer"]), str(c["metric"]))
                d = finite_or_none(c.get("cohens_d"))
                if c["condition"] in names and k not in coh and d is not None:
                    best[k] = max(best.get(k, 0.0), abs(d))
            traits = sorted(best, key=lambda k: -best[k])[:3]
            if traits:
                notes.append(
                    f"no metric is named after `{group}`; showing the metrics with the "
                    "largest |d| across its sweep points"
                )
        elif len(traits) > MAX_DOSE_TRAITS:
            notes.append(f"{len(traits) - MAX_DOSE_TRAITS} further target metric(s) not plotted")
            traits = traits[:MAX_DOSE_TRAITS]
        plans.append(DosePlan(group, points, traits, coherence, notes))
    return plans


def metric_order(comps: Sequence[Mapping[str, Any]], scorer: str) -> list[str]:
    return list(dict.fromkeys(str(c["metric"]) for c in comps if c["scorer"] == scorer))
