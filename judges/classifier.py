"""Classifier scorer: any Hugging Face sequence-classification model, per-label probabilities.

Any model that ``AutoModelForSequenceClassification`` loads works: a hub id (an emotion
classifier, a toxicity model) or a local folder saved with ``save_pretrained``. Each of the
model's labels becomes a metric whose value is that label's probability for the text.

Probabilities. Logits are turned into scores exactly as transformers'
``TextClassificationPipeline`` does with ``function_to_apply="default"``:

- ``config.problem_type == "regression"``: the raw output (no function), no scale;
- ``"multi_label_classification"`` or a single label: the logistic sigmoid of each logit,
  independently (labels are not exclusive; values need not sum to 1);
- otherwise (``"single_label_classification"`` or several labels): the softmax over all
  labels, ``p_k = exp(z_k) / sum_j exp(z_j)`` (computed with the max subtracted).

``function = "softmax" | "sigmoid" | "none"`` overrides the rule. The softmax is taken over
*all* of the model's labels, also those dropped from the output (``unmapped = "drop"``), so
a probability does not change when other labels are hidden.

Labels and metric names. A label's metric is named by the spec's ``labels`` table, which
maps a model label to a trait name: ``labels = {LABEL_0 = "fear"}`` or
``{anger = "anger", annoyance = "anger_mild"}``. A key may be the label's name in the
model's ``id2label``, ``LABEL_<i>`` or the index ``"<i>"``. Unmapped labels keep their
``id2label`` name (``unmapped = "keep"``, the default) or are left out
(``unmapped = "drop"``). Use trait names shared with other scorers (``fear``, ``joy``) so
that the analysis can compare scorers on the same trait (see ``harness.analysis.agreement``).

Truncation. Texts are tokenised with the model's tokenizer (special tokens added) and cut
to ``max_length`` tokens, keeping the beginning (the tokenizer's truncation side, right by
default); the default ``max_length`` is the tokenizer's ``model_max_length``, capped by the
config's ``max_position_embeddings`` (512 for BERT-like models). A truncated text is still
scored, on its first ``max_length`` tokens only, and its results carry
``truncated=True`` and the full token count ``tokens`` in ``extra``. An empty or
whitespace-only text is a null, not a classification of nothing.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from harness.core.scoring import ScorerContext, ScoreResult, ScorerParams, ScoringItem
from harness.model.device import pick_device

log = logging.getLogger(__name__)

PATH_PREFIXES = ("/", "./", "../", "~", ".\\", "..\\")


class ClassifierError(ValueError):
    pass


def resolve_model_ref(value: str, base_dir: Path) -> tuple[str, bool]:
    """(reference, is_local): a local folder (relative to the spec's folder or the working
    directory, or absolute) when one exists, else a hub id. A value written as a path
    (``./x``, ``/x``, ``~/x``) that does not exist is an error, not a hub id."""
    raw = Path(value).expanduser()
    candidates = [raw] if raw.is_absolute() else [base_dir / raw, Path.cwd() / raw]
    for c in candidates:
        if c.exists():
            return str(c.resolve()), True
    if value.startswith(PATH_PREFIXES) or value.count("/") > 1:
        raise ClassifierError(
            f"model path '{value}' not found (looked in {base_dir} and {Path.cwd()})"
        )
    return value, False


class ClassifierParams(ScorerParams):
    model: str = Field(description="HF hub id or local folder of a sequence-classification model.")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit).")
    labels: dict[str, str] | None = Field(
        None,
        description="Model label (id2label name, LABEL_<i> or '<i>') -> metric (trait) name.",
    )
    unmapped: Literal["keep", "drop"] = Field(
        "keep", description="Labels not in `labels`: keep under their own name, or drop."
    )
    function: Literal["auto", "softmax", "sigmoid", "none"] = Field(
        "auto", description="auto: sigmoid for multi-label configs, else softmax (HF rule)."
    )
    max_length: int | None = Field(
        None, gt=1, description="Tokens per text (longer texts are truncated; default: model's)."
    )
    batch_size: int = Field(16, gt=0)
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N | mps")


def _label_index(key: str, id2label: dict[int, str]) -> int | None:
    by_name = {name: i for i, name in id2label.items()}
    if key in by_name:
        return by_name[key]
    if key.startswith("LABEL_") and key[6:].isdigit() and int(key[6:]) in id2label:
        return int(key[6:])
    if key.isdigit() and int(key) in id2label:
        return int(key)
    return None


def auto_function(config: Any) -> str:
    """transformers' TextClassificationPipeline default (see the module docstring)."""
    problem = getattr(config, "problem_type", None)
    if problem == "regression":
        return "none"
    if problem == "multi_label_classification" or config.num_labels == 1:
        return "sigmoid"
    return "softmax"


def output_labels(params: ClassifierParams, config: Any) -> list[tuple[int, str]]:
    """(label index, metric name) in the model's label order; raises ClassifierError."""
    id2label = {int(i): str(n) for i, n in (config.id2label or {}).items()}
    if not id2label:
        id2label = {i: f"LABEL_{i}" for i in range(int(config.num_labels))}
    mapped: dict[int, str] = {}
    for key, name in (params.labels or {}).items():
        idx = _label_index(str(key), id2label)
        if idx is None:
            raise ClassifierError(
                f"label '{key}' is not a label of model '{params.model}'; its labels: "
                + ", ".join(f"{i}={n}" for i, n in sorted(id2label.items()))
            )
        if idx in mapped:
            raise ClassifierError(f"label {idx} ('{id2label[idx]}') is mapped twice")
        if not name:
            raise ClassifierError(f"label '{key}' is mapped to an empty name")
        mapped[idx] = name
    out = []
    for idx in sorted(id2label):
        if idx in mapped:
            out.append((idx, mapped[idx]))
        elif params.unmapped == "keep":
            out.append((idx, id2label[idx]))
    names = [n for _, n in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ClassifierError(
            f"metric names {dupes} occur twice (a mapped name equals another label's name); "
            "map that label too or set unmapped = 'drop'"
        )
    if not out:
        raise ClassifierError("no labels left to report: map some labels or set unmapped='keep'")
    return out


def load_config(params: ClassifierParams, base_dir: Path) -> Any:
    from transformers import AutoConfig

    ref, _ = resolve_model_ref(params.model, base_dir)
    try:
        return AutoConfig.from_pretrained(ref, revision=params.revision)
    except Exception as exc:  # OSError offline, ValueError for an unknown model type
        raise ClassifierError(f"cannot load the config of '{params.model}': {exc}") from None


def default_max_length(tokenizer: Any, config: Any) -> int:
    limits = []
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 1 < tok_max < 1_000_000:
        limits.append(tok_max)
    pos = getattr(config, "max_position_embeddings", None)
    if isinstance(pos, int) and pos > 1:
        limits.append(pos)
    return min(limits) if limits else 512


class ClassifierScorer:
    """Per-label probabilities from any HF sequence-classification model."""

    Params = ClassifierParams

    def __init__(self, params: ClassifierParams, context: ScorerContext):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.params = params
        self.batch_size = params.batch_size
        ref, self.local = resolve_model_ref(params.model, context.base_dir)
        self.device = pick_device(params.device, context.device)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(ref, revision=params.revision)
            self.model = AutoModelForSequenceClassification.from_pretrained(
                ref, revision=params.revision
            )
        except Exception as exc:
            raise ClassifierError(f"cannot load classifier '{params.model}': {exc}") from None
        self.model.to(self.device).eval()
        self.config = self.model.config
        if self.tokenizer.pad_token is None:
            if self.tokenizer.eos_token is None:
                raise ClassifierError(f"the tokenizer of '{params.model}' has no pad or eos token")
            self.tokenizer.pad_token = self.tokenizer.eos_token
            self.config.pad_token_id = self.tokenizer.pad_token_id
        self.labels = output_labels(params, self.config)
        self.function = params.function if params.function != "auto" else auto_function(self.config)
        self.max_length = params.max_length or default_max_length(self.tokenizer, self.config)
        self._torch = torch

    @classmethod
    def check(cls, params: ClassifierParams, base_dir: Path) -> list[str]:
        try:
            config = load_config(params, base_dir)
            output_labels(params, config)
        except ClassifierError as exc:
            return [f"params: {exc}"]
        if not getattr(config, "num_labels", 0):
            return [f"params.model: '{params.model}' is not a classification model"]
        return []

    @property
    def metrics(self) -> list[str]:
        return [name for _, name in self.labels]

    def _scores(self, logits: Any) -> Any:
        torch = self._torch
        logits = logits.float()
        if self.function == "softmax":
            return torch.softmax(logits, dim=-1)
        if self.function == "sigmoid":
            return torch.sigmoid(logits)
        return logits

    def score(self, items: Sequence[ScoringItem]) -> list[dict[str, ScoreResult]]:
        torch = self._torch
        todo = [i for i, it in enumerate(items) if it.text.strip()]
        texts = [items[i].text for i in todo]
        done: dict[int, dict[str, ScoreResult]] = {}
        if texts:
            lengths = [len(ids) for ids in self.tokenizer(texts, verbose=False)["input_ids"]]
            enc = self.tokenizer(
                texts,
                truncation=True,
                max_length=self.max_length,
                padding=True,
                return_tensors="pt",
            ).to(self.device)
            with torch.inference_mode():
                probs = self._scores(self.model(**enc).logits).cpu().numpy()
            scale = "probability" if self.function in ("softmax", "sigmoid") else None
            for row, i in enumerate(todo):
                extra: dict[str, Any] = {"tokens": lengths[row]}
                if lengths[row] > self.max_length:
                    extra["truncated"] = True
                if scale:
                    extra["scale"] = scale
                res: dict[str, ScoreResult] = {}
                for idx, name in self.labels:
                    v = float(probs[row, idx])
                    res[name] = (
                        ScoreResult.ok(v, **extra)
                        if math.isfinite(v)
                        else ScoreResult.null("the model returned a non-finite score")
                    )
                done[i] = res
        empty = "empty text: nothing to classify"
        return [
            done.get(i) or {m: ScoreResult.null(empty) for m in self.metrics}
            for i in range(len(items))
        ]

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.params.model,
            "local": self.local,
            "model_type": getattr(self.config, "model_type", None),
            "function": self.function,
            "max_length": self.max_length,
            "labels": {self.config.id2label.get(i, str(i)): n for i, n in self.labels},
        }
