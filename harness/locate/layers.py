"""Located layers in a spec: ``layers = "locate:<pairs>"`` (the top layer) or
``"locate:<pairs>:<k>"`` (the top k), in a condition's params, a sweep's layer values or a
search's candidate layers.

The layers come from ``steer-harness locate``'s own measurements (:func:`.locator.locate`)
on the pair set, with the spec's ``[locate]`` settings, ranked by attribution patching of
``component`` (default the residual stream, where ``activation`` steers) or by probe
accuracy (``ranking = "probe"``, ties broken by attribution). A localisation is computed
once, when the run starts, and cached in the run directory as ``locate/<key>.json`` (with
its ``.md`` table and ``.png`` figure), where the key hashes everything it depends on —
the model key, the pair file's bytes, the metric's words and the settings — as extracted
vectors are keyed; a changed input gives another key and a new localisation, a damaged
file is located again with a warning. The ranking and k are applied when reading, so
changing them reuses the localisation.

The plan writes the located numbers into the condition (:func:`with_located`) before
anything else reads it, so a condition with ``"locate:joy"`` has the same name, content
ids and texts as one written with the layer's number. The numbers are in layer order, a
scalar for ``"locate:<pairs>"`` (as if ``layers = 12`` had been written), a list for k > 1.
Until the localisation exists the condition is pending, like a search that has not run:
``check`` says it will be located and plans no generations for it.

In a classification spec the layers are located by the classes of the condition's own
class-mean vector: ``layers = "locate:classes"`` (or ``"locate:classes:<k>"``) with
``vector = {classes = FILE, positive = P, negative = N}`` ranks the encoder's layers and
its embedding output by :mod:`.classes` (the attribution of the class-logit gap to adding
v there, or probe accuracy) on that file's P and N texts, the texts v is made of. It is
cached the same way, keyed by the model key, the file's bytes, the two classes and the
keyed settings; a located embedding output is written ``"embedding"``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from pydantic import ValidationError as PydanticValidationError

from harness.config.paths import resolve_data_path
from harness.config.spec import ConditionSpec, LocateSpec, MetricWords
from harness.config.vectors import LocateRef, VectorSource, is_locate, layer_label, parse_locate
from harness.core.artifacts import LocatedInfo
from harness.core.errors import LocateError, VectorFileError
from harness.core.files import sha256_of
from harness.core.ids import content_id
from harness.core.rundir import RunDir
from harness.locate.classes import ClassLocateOptions, ClassTexts, locate_classes, select_classes
from harness.locate.inputs import metric_for
from harness.locate.metric import TraitMetric, word_ids
from harness.model.loading import LoadedModel
from harness.steering.methods.activation import class_texts, resolve_pairs, shipped_pair_sets
from harness.steering.vectors import load_pairs

log = logging.getLogger(__name__)

KEYED_SETTINGS = {"component", "aggregate", "template", "folds", "seed", "check"}
"""The ``[locate]`` settings a localisation depends on (ranking and k are applied when it
is read, batch size changes no number)."""


@dataclass(frozen=True)
class LocateRequest:
    """One localisation a spec needs: a pair set under the spec's ``[locate]`` settings."""

    pairs: str
    """The pair set as written (a shipped name or a path)."""
    pairs_path: Path
    n_pairs: int
    metric: TraitMetric
    settings: LocateSpec
    key: str
    path: Path
    """The cached document, ``<run>/locate/<key>.json``."""

    def describe(self) -> str:
        s = self.settings
        return (
            f"pairs {self.pairs} ({self.n_pairs}), {s.component} ranked by {s.ranking}, "
            f"metric {self.metric.describe()}"
        )


def locate_request(
    pairs: str, settings: LocateSpec, base_dir: Path, run: RunDir, mkey: dict[str, Any]
) -> LocateRequest:
    """The request for ``pairs``, keyed; LocateError naming the fix for an unknown pair set,
    a pair set without a default metric, or too few pairs for the probe's folds."""
    path = resolve_pairs(pairs, base_dir)
    if path is None:
        raise LocateError(
            f"'{pairs}' is neither a shipped pair set ({', '.join(shipped_pair_sets())}) "
            f"nor a JSONL file relative to {base_dir}"
        )
    try:
        n = len(load_pairs(path))
    except VectorFileError as exc:
        raise LocateError(str(exc)) from None
    if n < settings.folds:
        raise LocateError(
            f"'{pairs}' has {n} pairs, fewer than locate.folds = {settings.folds}; lower the "
            "folds or add pairs"
        )
    words = settings.metric.get(path.stem, MetricWords())
    where = f"locate.metric.{path.stem}"
    metric = metric_for(
        path.stem,
        words.prefix,
        words.trait,
        words.neutral,
        f"pair set '{pairs}'",
        (f"{where}.prefix", f"{where}.trait", f"{where}.neutral"),
    )
    key = content_id(
        {
            "model": mkey,
            "pairs": sha256_of(path),
            "metric": [metric.prefix, metric.trait, metric.neutral],
            "settings": settings.model_dump(mode="json", include=KEYED_SETTINGS),
        }
    )
    return LocateRequest(pairs, path, n, metric, settings, key, run.located(key))


def read_located(request: AnyRequest) -> dict[str, Any] | None:
    """The cached localisation, if it is whole and made for this key; else None (a damaged
    one is warned about and located again)."""
    path = request.path
    if not path.exists():
        return None
    problem = None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        problem = f"unreadable ({exc})"
    else:
        component = request.settings.component
        if not isinstance(doc, dict) or doc.get("key") != request.key:
            problem = "made for another key"
        elif not any(s.get("component") == component for s in doc.get("sites", [])):
            problem = f"holds no {component} sites"
    if problem is None:
        return doc
    log.warning("%s: damaged localisation (%s); locating again", path, problem)
    return None


def top_layers(doc: dict[str, Any], component: str, ranking: str, k: int) -> list[int]:
    """The top ``k`` layers of ``component`` by ``ranking``, in layer order."""
    sites = [s for s in doc["sites"] if s["component"] == component]

    def rank(s: dict[str, Any]) -> float:
        return math.inf if s.get("rank") is None else float(s["rank"])

    if ranking == "probe":

        def key(s: dict[str, Any]) -> tuple[float, float, int]:
            acc = s.get("probe_accuracy")
            return (-acc if acc is not None else math.inf, rank(s), s["layer"])
    else:

        def key(s: dict[str, Any]) -> tuple[float, float, int]:
            return (rank(s), 0.0, s["layer"])

    return sorted(s["layer"] for s in sorted(sites, key=key)[:k])


def run_locate(lm: LoadedModel, request: AnyRequest) -> dict[str, Any]:
    """Locate and cache: the document, table and figure under the request's path."""
    from harness.locate.locator import LocateOptions, locate
    from harness.locate.probe import require_sklearn
    from harness.locate.report import write_outputs

    require_sklearn()
    if isinstance(request, ClassesRequest):
        return run_locate_classes(lm, request)
    s = request.settings
    opts = LocateOptions(
        components=(s.component,),
        aggregate=s.aggregate,
        template=s.template,
        folds=s.folds,
        seed=s.seed,
        top_k=3,
        check=s.check,
        batch_size=s.batch_size,
    )
    where = f"locate.metric.{request.pairs_path.stem}"
    # The words checked against the tokenizer first, so a bad word names the spec's field.
    word_ids(lm.tokenizer, request.metric, (f"{where}.trait", f"{where}.neutral"))
    log.info("locating layers: %s", request.describe())
    doc = locate(lm, load_pairs(request.pairs_path), request.metric, opts, str(request.pairs_path))
    doc["key"] = request.key
    write_outputs(doc, request.path.with_suffix(""))
    return doc


CLASSES = "classes"
"""``locate:classes``: a classifier's layers, located by its condition's class-mean vector."""
CLASS_KEYED = {"folds", "seed", "check"}


@dataclass(frozen=True)
class ClassesRequest:
    """One localisation of a classification spec: two classes of a labelled file."""

    pairs: str
    """The reference's name as written (``classes``)."""
    texts_path: Path
    positive: str
    negative: str
    n_positive: int
    n_negative: int
    settings: LocateSpec
    key: str
    path: Path

    def describe(self) -> str:
        return (
            f"classes {self.positive} ({self.n_positive}) vs {self.negative} "
            f"({self.n_negative}) of {self.texts_path.name}, ranked by {self.settings.ranking}"
        )


AnyRequest = LocateRequest | ClassesRequest


def classes_request(
    cond: ConditionSpec,
    library: dict[str, Any],
    settings: LocateSpec,
    base_dir: Path,
    run: RunDir,
    mkey: dict[str, Any],
) -> ClassesRequest:
    """The request of a classification condition's ``locate:classes``, from its class-mean
    vector; LocateError naming the fix when it has none, a class is unknown or too small."""
    if settings.component != "residual":
        raise LocateError(
            f"locate.component = '{settings.component}': a classifier's encoder is located "
            "at the residual site (its block outputs) only; remove locate.component"
        )
    vector = cond.params.get("vector")
    if isinstance(vector, str):
        vector = library.get(vector)
    try:
        src = vector if isinstance(vector, VectorSource) else VectorSource.model_validate(vector)
    except (PydanticValidationError, TypeError, ValueError):
        src = None
    if src is None or src.classes is None:
        raise LocateError(
            "'locate:classes' takes its classes from the condition's class-mean vector; give "
            "params.vector = {classes = FILE, positive = A, negative = B}"
        )
    if src.aggregate != "mean":
        raise LocateError(
            "'locate:classes' locates mean-pooled class means; remove vector.aggregate = "
            f"'{src.aggregate}'"
        )
    path = resolve_data_path(src.classes, base_dir)
    if path is None:
        raise LocateError(f"vector.classes: '{src.classes}' not found (relative to {base_dir})")
    try:
        pos, neg = class_texts(src, path)
    except VectorFileError as exc:
        raise LocateError(str(exc)) from None
    texts = [*pos, *neg]
    labels = [str(src.positive)] * len(pos) + [str(src.negative)] * len(neg)
    select_classes(texts, labels, str(src.positive), str(src.negative), path.name, "vector")
    if min(len(pos), len(neg)) < settings.folds:
        raise LocateError(
            f"{path.name}: a class has {min(len(pos), len(neg))} texts, fewer than "
            f"locate.folds = {settings.folds}; lower the folds or add texts"
        )
    key = content_id(
        {
            "kind": CLASSES,
            "model": mkey,
            "texts": sha256_of(path),
            "classes": [src.positive, src.negative],
            "settings": settings.model_dump(mode="json", include=CLASS_KEYED),
        }
    )
    return ClassesRequest(
        CLASSES,
        path,
        str(src.positive),
        str(src.negative),
        len(pos),
        len(neg),
        settings,
        key,
        run.located(key),
    )


def run_locate_classes(lm: LoadedModel, request: ClassesRequest) -> dict[str, Any]:
    """Locate a classifier's two classes and cache it under the request's path."""
    from harness.locate.report import write_outputs

    src = VectorSource(
        classes=str(request.texts_path), positive=request.positive, negative=request.negative
    )
    pos, neg = class_texts(src, request.texts_path)
    texts = ClassTexts(str(request.texts_path), request.positive, request.negative, pos, neg)
    s = request.settings
    opts = ClassLocateOptions(
        folds=s.folds, seed=s.seed, top_k=3, check=s.check, batch_size=s.batch_size
    )
    log.info("locating layers: %s", request.describe())
    doc = locate_classes(lm, texts, opts)
    doc["key"] = request.key
    write_outputs(doc, request.path.with_suffix(""))
    return doc


Resolve = Callable[[LocateRef], list[int]]
"""A located reference -> its layers (raises LocateError or ValueError on bad input)."""


def located_refs(cond: ConditionSpec) -> list[str]:
    """Every ``locate:`` string of a condition (params, sweep, search), as written."""
    values: list[Any] = [cond.params.get("layers")]
    values += list((cond.sweep or {}).get("layers", []))
    if cond.search is not None:
        values.append(cond.search.layers)
    found: list[str] = []
    for v in values:
        for item in v if isinstance(v, list) else [v]:
            if is_locate(item):
                found.append(str(item))
    return found


def with_located(cond: ConditionSpec, resolve: Resolve) -> tuple[ConditionSpec, list[str]]:
    """The condition with its ``locate:`` layers written as numbers, and the problems
    (each naming its field)."""
    problems: list[str] = []

    def one(text: str, where: str) -> list[int]:
        try:
            return resolve(parse_locate(text))
        except (LocateError, ValueError) as exc:
            problems.append(f"{where}: {exc}")
            return []

    def labelled(text: str, where: str) -> list[Any]:
        # Written as a spec would write them: the embedding output as "embedding".
        return [layer_label(i) for i in one(text, where)]

    def sub(value: Any, where: str) -> Any:
        if is_locate(value):
            layers = labelled(str(value), where)
            return layers[0] if len(layers) == 1 else layers
        if isinstance(value, list) and any(is_locate(v) for v in value):
            out: list[Any] = []
            for v in value:
                out += labelled(str(v), where) if is_locate(v) else [v]
            return out
        return value

    update: dict[str, Any] = {}
    if "layers" in cond.params:
        update["params"] = {**cond.params, "layers": sub(cond.params["layers"], "params.layers")}
    if cond.sweep and "layers" in cond.sweep:
        values = [sub(v, f"sweep.layers[{i}]") for i, v in enumerate(cond.sweep["layers"])]
        update["sweep"] = {**cond.sweep, "layers": values}
    if cond.search is not None and is_locate(cond.search.layers):
        layers = one(str(cond.search.layers), "search.layers")
        update["search"] = cond.search.model_copy(update={"layers": layers})
    return cond.model_copy(update=update), problems


@dataclass
class Located:
    """One ``locate:`` reference of a condition, for ``check`` and the report."""

    condition: str
    text: str
    request: AnyRequest
    layers: list[int] | None
    """None until the localisation exists."""


class SpecLocator:
    """Resolves a spec's ``locate:`` references against the cached localisations, from
    the model's key and layer count only (no weights); what is not cached yet is listed
    in :attr:`pending` and resolves to placeholder layers ``0 .. k-1``, so that the rest of
    the condition can still be checked."""

    def __init__(
        self,
        settings: LocateSpec,
        base_dir: Path,
        run: RunDir,
        mkey: dict[str, Any],
        task: str = "generate",
        library: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.base_dir = base_dir
        self.run = run
        self.mkey = mkey
        self.task = task
        """``classify``: references are ``locate:classes`` (:func:`classes_request`)."""
        self.library = library or {}
        self.num_layers: int | None = None
        self.requests: dict[str, AnyRequest] = {}
        self.docs: dict[str, dict[str, Any] | None] = {}
        self.found: list[Located] = []

    def request(self, pairs: str) -> AnyRequest:
        if pairs not in self.requests:
            req = locate_request(pairs, self.settings, self.base_dir, self.run, self.mkey)
            self.requests[pairs] = req
        return self.requests[pairs]

    def class_request(self, ref: LocateRef, cond: ConditionSpec | None) -> ClassesRequest:
        if ref.pairs.lower() != CLASSES or cond is None:
            raise LocateError(
                f"'{ref.text}': a classifier's layers are located by the classes of the "
                "condition's class-mean vector; write 'locate:classes' (or "
                "'locate:classes:<k>')"
            )
        req = classes_request(cond, self.library, self.settings, self.base_dir, self.run, self.mkey)
        return cast(ClassesRequest, self.requests.setdefault(f"classes:{req.key}", req))

    def resolver(
        self, condition: str, cond: ConditionSpec | None = None
    ) -> tuple[Resolve, Callable[[], bool]]:
        """A resolver for one condition (``cond``: the condition itself, which a
        classifier's ``locate:classes`` takes its vector from), and whether it met an
        unlocated reference."""
        waiting = False
        classify = self.task == "classify"

        def resolve(ref: LocateRef) -> list[int]:
            nonlocal waiting
            # A classifier's candidates: its blocks and the embedding output.
            n = self.num_layers
            if n is not None and ref.k > n + int(classify):
                what = f"{n}-block encoder and its embedding output" if classify else ""
                raise LocateError(
                    f"'{ref.text}' asks for the top {ref.k} layers of a "
                    f"{what or f'{n}-layer model'}; give k <= {n + int(classify)}"
                )
            req = self.class_request(ref, cond) if classify else self.request(ref.pairs)
            if req.key not in self.docs:
                self.docs[req.key] = read_located(req)
            doc = self.docs[req.key]
            layers = None
            if doc is not None:
                layers = top_layers(doc, self.settings.component, self.settings.ranking, ref.k)
            self.found.append(Located(condition, ref.text, req, layers))
            if layers is None:
                waiting = True
                return list(range(ref.k))
            return layers

        return resolve, lambda: waiting

    def info(self, condition: str) -> list[LocatedInfo]:
        """What the analysis and report record of a condition's located layers."""
        return [
            {
                "reference": f.text,
                "layers": list(f.layers),
                "ranking": self.settings.ranking,
                "component": self.settings.component,
                "localisation": str(f.request.path),
            }
            for f in self.found
            if f.condition == condition and f.layers is not None
        ]

    def pending_requests(self) -> list[AnyRequest]:
        """The distinct localisations still to run, in the order the spec needs them."""
        seen: dict[str, AnyRequest] = {}
        for f in self.found:
            if f.layers is None:
                seen.setdefault(f.request.key, f.request)
        return list(seen.values())
