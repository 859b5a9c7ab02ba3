"""Typed run artefacts: what one stage writes and a later stage (or another tool) reads.

They are JSON documents, so they are declared as ``TypedDict``s: code keeps plain dict
access, mypy checks the keys, and :func:`read_artifact` validates a stored file against
the declaration before any stage trusts it.

- :class:`AnalysisDoc` — ``analysis.json``: the comparisons (one per condition x scorer x
  metric, fields defined in :mod:`harness.stats`), the conditions and their
  :class:`ConditionInfo`, and one key per further analysis (agreement, coherence, ...).
- :class:`ConditionInfo` — what the analysis and the report know about a condition beyond
  its name: method, typed params (as JSON), the metrics it targets, its control kind,
  its sweep coordinates, its search outcome, the layers its ``locate:`` references
  resolved to.
- :class:`SearchResult` — ``search/<condition>.json``: a coefficient search's trajectory
  and chosen point.
- :class:`ManifestDoc` — ``manifest.json``: what produced the records, one session per
  command that wrote the run directory.
- :class:`ClassifiedRow` — one text classified under one condition (a sequence
  classifier's predicted label and class probabilities), and :class:`ShiftDoc` — the
  classification-shift analysis of such rows (:mod:`harness.analysis.shift`), versioned
  by :data:`SHIFT_VERSION`.

A cached artefact (analysis, search result) carries the ``key`` of everything it was
computed from; a reader compares it with the key of the current inputs and recomputes on
a mismatch, so a stale file is never reused.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from functools import cache
from pathlib import Path
from typing import Any, Final, Literal, NotRequired, TypeVar, cast

from pydantic import ConfigDict, TypeAdapter, with_config
from pydantic import ValidationError as PydanticError
from typing_extensions import TypedDict

from harness.core.errors import UserError


class SweepInfo(TypedDict):
    group: str
    """The swept condition's name."""
    point: dict[str, Any]
    """The swept values of this grid point."""
    coefficient: float | None
    layer: int | list[int] | None
    """An int when one layer is steered, else the list (None when the method has none)."""


class ChosenPoint(TypedDict):
    layer: int
    coefficient: float
    trait_delta: float | None


class SearchInfo(TypedDict):
    chosen: ChosenPoint
    trait: str


class LocatedInfo(TypedDict):
    """A ``locate:`` reference of a condition and the layers it was resolved to."""

    reference: str
    """As written, e.g. ``"locate:joy:3"``."""
    layers: list[int]
    ranking: str
    component: str
    localisation: str
    """The cached localisation document (``<run>/locate/<key>.json``)."""


class ConditionInfo(TypedDict):
    method: str
    params: dict[str, Any]
    targets: NotRequired[list[str]]
    """Trait names the method says it aims at (pair set, library vectors, ...)."""
    metrics: NotRequired[list[str]]
    """The metrics it targets, named explicitly (``"scorer/metric"`` or ``"metric"``): the
    condition's ``targets``, else the spec's ``[analysis] primary``. Without them the
    report matches metric names against the condition's name and ``targets``."""
    control: NotRequired[str | None]
    """The kind of control this condition is (``"random"``), None for an ordinary one."""
    sweep: NotRequired[SweepInfo]
    search: NotRequired[SearchInfo]
    located: NotRequired[list[LocatedInfo]]


Comparison = dict[str, Any]
"""One comparison record: the keys of :data:`harness.stats.FIELDS`, in that order."""


@with_config(ConfigDict(extra="allow"))
class AnalysisDoc(TypedDict):
    """Extra top-level keys (a further analysis a plug-in adds) are kept when read."""

    created: str
    baseline: str
    conditions: list[str]
    condition_info: dict[str, ConditionInfo]
    comparisons: list[Comparison]
    agreement: NotRequired[dict[str, Any]]
    steerability: NotRequired[list[dict[str, Any]]]
    coherence: NotRequired[dict[str, Any]]
    key: NotRequired[str]
    """Hash of everything the analysis was computed from (see harness.run.runner)."""


@with_config(ConfigDict(extra="allow"))
class StoredAnalysis(TypedDict):
    """What a reader of an ``analysis.json`` relies on, checked when it is read: written by
    another tool (or an older version) it may carry less per condition than
    :class:`AnalysisDoc` declares, which readers take with ``.get``."""

    baseline: str
    conditions: list[str]
    comparisons: list[dict[str, Any]]
    condition_info: NotRequired[dict[str, dict[str, Any]]]
    created: NotRequired[str]
    key: NotRequired[str]


class SearchPoint(TypedDict):
    layer: int
    coefficient: float
    step: int
    trait_delta: float | None
    n_pairs: int
    guards: dict[str, Any]
    valid: bool
    steps_up: NotRequired[bool]
    """Whether the step guards passed (the rule stepped up); ``valid`` may be stricter."""


class SearchResult(TypedDict):
    condition: str
    trait: str
    direction: str
    guards: list[dict[str, Any]]
    selection_prompts: list[str]
    seeds: list[int]
    trajectory: list[SearchPoint]
    chosen: ChosenPoint | None
    finished: str
    key: NotRequired[str]
    """Hash of everything the search depended on (see harness.run.plan.search_key)."""
    valid_guards: NotRequired[list[dict[str, Any]]]
    min_delta: NotRequired[float]
    rule: NotRequired[dict[str, Any]]


_STORED = ConfigDict(extra="allow", strict=True)


@with_config(_STORED)
class StoredModel(TypedDict):
    id: str
    chat_template: str


@with_config(_STORED)
class StoredGeneration(TypedDict):
    seeds: list[int]
    max_new_tokens: int
    sampling: bool
    temperature: float
    top_p: float
    top_k: int


@with_config(_STORED)
class StoredPrompts(TypedDict):
    file: NotRequired[str | None]
    dataset: NotRequired[str | None]


@with_config(_STORED)
class StoredCondition(TypedDict):
    name: str
    method: str
    params: NotRequired[dict[str, Any]]


@with_config(_STORED)
class StoredScorer(TypedDict):
    type: str
    name: NotRequired[str | None]
    params: NotRequired[dict[str, Any]]


@with_config(_STORED)
class StoredReport(TypedDict):
    samples: NotRequired[int]
    max_sample_chars: NotRequired[int]
    path: NotRequired[str | None]


@with_config(_STORED)
class StoredSpecBody(TypedDict):
    """What the report and ``compare`` read of a stored spec (the rest passes through)."""

    name: str
    description: NotRequired[str]
    model: StoredModel
    prompts: StoredPrompts
    generation: StoredGeneration
    baseline: StoredCondition
    conditions: list[StoredCondition]
    scorers: list[StoredScorer]
    report: NotRequired[StoredReport]


@with_config(_STORED)
class StoredSpec(TypedDict):
    """``spec.json``: the resolved spec a run directory was made from (the report needs
    only ``spec``; resuming a run also needs ``base_dir``)."""

    spec: StoredSpecBody
    source: NotRequired[str]
    base_dir: NotRequired[str]


class UnitThroughput(TypedDict):
    """One generation unit's pace in a session (wall time, store writes included)."""

    conditions: list[str]
    texts: int
    new_tokens: int
    seconds: float
    texts_per_s: float
    tokens_per_s: float


class ScorerThroughput(TypedDict):
    """One scorer's pace in a session: time spent in its scoring calls."""

    texts: int
    seconds: float
    texts_per_s: float
    overlapped: bool
    """Scored while texts were generated (a scorer that needs no device)."""
    calls: NotRequired[int]
    """Requests sent, for scorers that count them (the LLM judge)."""
    calls_per_s: NotRequired[float]


class Throughput(TypedDict):
    generation: list[UnitThroughput]
    scoring: dict[str, ScorerThroughput]


class RescoredScorers(TypedDict):
    """``spec.rescore.json``: the scorers a ``rescore`` used instead of the stored spec's,
    written beside ``spec.json`` (which is never changed by it), read by every later stage
    and the report as the run's scorers."""

    created: str
    source: str
    """The spec file the scorer settings were read from."""
    scorers: list[dict[str, Any]]
    """The run's scorers after the rescore, as spec ``[[scorers]]`` tables."""
    replaced: list[str]
    """Labels of the scorers whose settings came from ``source``."""
    previous: list[dict[str, Any]]
    """The stored spec's scorers, for the record."""


def stored_spec(spec_path: Path, rescore_path: Path, fix: str) -> dict[str, Any]:
    """``spec.json`` as stored, with the scorers of a later ``rescore`` in place of its own
    (and the rescore's record under ``"rescored"``) when ``spec.rescore.json`` exists."""
    stored: dict[str, Any] = dict(read_artifact(spec_path, StoredSpec, fix, as_stored=True))
    if rescore_path.exists():
        over = read_artifact(
            rescore_path, RescoredScorers, "delete it to use the stored spec's scorers"
        )
        stored["spec"] = {**stored["spec"], "scorers": over["scorers"]}
        stored["rescored"] = dict(over)
    return stored


@with_config(ConfigDict(extra="allow"))
class ManifestSession(TypedDict):
    command: str
    started: str
    finished: str | None
    status: str
    """``running`` while its command runs, ``ok``, ``interrupted``, ``error: ...``; read
    back, a session that never recorded its end is ``interrupted (no end recorded)``."""
    throughput: NotRequired[Throughput]
    """What this session generated and scored, and how fast (harness.run.throughput)."""


@with_config(ConfigDict(extra="allow"))
class ManifestDoc(TypedDict):
    sessions: list[ManifestSession]
    created: NotRequired[str]
    model: NotRequired[dict[str, Any]]
    conditions: NotRequired[dict[str, Any]]
    scorers: NotRequired[dict[str, Any]]


class ClassifiedRow(TypedDict):
    """One text classified under one condition; the unsteered classifier's rows carry the
    baseline's name as ``condition``. Every condition classifies the same texts."""

    condition: str
    prompt_id: str
    gold: str
    predicted: str
    probs: dict[str, float]
    """Probability of each class (every label of the analysis)."""


SHIFT_VERSION: Final = 1
"""Version of the :class:`ShiftDoc` layout; :func:`read_artifact` refuses another one."""


class ShiftMetric(TypedDict):
    """One classification metric of a condition on its paired texts, with the same metric
    of the unsteered classifier on the same texts and the paired difference."""

    metric: str
    """``accuracy``, ``precision``, ``recall`` or ``f1``."""
    scope: str
    """``all`` (accuracy), ``label`` (one class) or ``macro`` (the mean over classes)."""
    label: str | None
    value: float | None
    ci_low: float | None
    ci_high: float | None
    baseline: float | None
    delta: float | None
    """value - baseline (None for the baseline's own rows)."""
    delta_ci_low: float | None
    delta_ci_high: float | None
    boot_dropped: int
    """Resamples on which the value (or the difference) was undefined, left out."""
    reason: NotRequired[str]
    """Why a value or interval is null."""


class ShiftMcNemar(TypedDict):
    """Paired correctness against the unsteered classifier (harness.stats.confusion)."""

    both_correct: int
    correct_to_wrong: int
    """b: the unsteered classifier was right and the steered one is wrong."""
    wrong_to_correct: int
    """c: the reverse."""
    both_wrong: int
    p_exact: float
    p_holm: float | None
    """p_exact Holm-adjusted over the doc's conditions."""
    chi2: float | None
    p_chi2: float | None
    reason: NotRequired[str]


class ShiftTarget(TypedDict):
    """Predictions moved to (and away from) the target class, against the unsteered ones."""

    to_target: int
    """Texts not predicted as the target unsteered and predicted as it now."""
    from_target: int
    to_target_share: float | None
    """to_target / n (all paired texts)."""
    from_target_share: float | None
    rate_baseline: float | None
    """Share of texts predicted as the target, unsteered and steered."""
    rate: float | None
    rate_delta: float | None
    rate_delta_ci_low: float | None
    rate_delta_ci_high: float | None


class ShiftCondition(TypedDict):
    condition: str
    dose: float | None
    """The condition's α (from the caller's doses), None when not on a dose curve."""
    n: int
    """Texts classified under both this condition and the baseline."""
    n_missing: int
    """Baseline texts this condition lacks."""
    predicted_counts: dict[str, int]
    confusion: dict[str, dict[str, int]]
    """Gold label -> predicted label -> texts."""
    transitions: dict[str, dict[str, int]]
    """Unsteered prediction -> this condition's prediction -> texts (empty for the
    baseline itself)."""
    metrics: list[ShiftMetric]
    mcnemar: ShiftMcNemar | None
    """None for the baseline itself."""
    target: ShiftTarget | None
    """None for the baseline itself or when no target class is named."""


class ShiftProbability(TypedDict):
    """Mean shift of one class's probability under a condition, paired by text."""

    condition: str
    label: str
    n: int
    mean_baseline: float | None
    mean: float | None
    delta: float | None
    ci_low: float | None
    """Paired bootstrap interval of delta."""
    ci_high: float | None
    d_z: float | None
    p_paired_t: float | None
    p_wilcoxon: float | None
    p_holm: float | None
    """p_paired_t Holm-adjusted over the classes of this condition."""
    reason: NotRequired[str]


class ShiftBootstrap(TypedDict):
    n_resamples: int
    seed: int
    level: float
    unit: str
    """What is resampled (``text``): the same indices for the baseline and a condition."""


class ShiftDoc(TypedDict):
    """Classification shift of every condition against the unsteered classifier on the same
    texts (definitions in harness.stats.confusion and harness.analysis.shift)."""

    version: Literal[1]
    baseline: str
    labels: list[str]
    target: str | None
    conditions: list[str]
    """Steered conditions, in order of first appearance (the baseline is not among them)."""
    doses: dict[str, float]
    n_texts: int
    """Texts the baseline classified."""
    gold_counts: dict[str, int]
    bootstrap: ShiftBootstrap
    by_condition: list[ShiftCondition]
    """The baseline first, then each condition."""
    probability: list[ShiftProbability]
    target_probs: dict[str, list[float | None]]
    """Per condition (the baseline included), the target class's probability of each
    text, in the order of ``prompt_ids``; empty without a target."""
    prompt_ids: list[str]
    """The baseline's texts, sorted (the bootstrap's unit order)."""
    notes: list[str]
    key: NotRequired[str]
    """Hash of the rows it was computed from, when the caller caches it."""


class ArtifactError(UserError, ValueError):
    """A stored artefact that is not valid JSON or not of its declared shape."""

    def __init__(self, path: Path, detail: str, fix: str):
        self.path = Path(path)
        self.detail = detail
        super().__init__(f"{path}: {detail}; {fix}")


T = TypeVar("T")


@cache
def _adapter(kind: Hashable) -> TypeAdapter[Any]:
    return TypeAdapter(cast(Any, kind))


def read_artifact(
    path: Path, kind: type[T], fix: str = "delete it to recompute it", *, as_stored: bool = False
) -> T:
    """Read and validate a stored JSON artefact; damage is an :class:`ArtifactError` naming
    the file and the first bad field (``detail``), then ``fix``. With ``as_stored`` the
    JSON is returned exactly as stored once it is valid (no coercion, e.g. of 1 to 1.0),
    for readers that render it or write it back."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ArtifactError(path, "not UTF-8 text", fix) from None
    except json.JSONDecodeError as exc:
        raise ArtifactError(path, f"damaged JSON ({exc.msg})", fix) from None
    try:
        checked = _adapter(cast(Hashable, kind)).validate_python(data)
    except PydanticError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise ArtifactError(path, f"{where}: {err['msg']}", fix) from None
    return cast(T, data if as_stored else checked)
