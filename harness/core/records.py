"""Generation and score records: one JSON line each, with a content-addressed id.

A generation's id is a hash of model, condition, prompt, seed and decoding settings; a
score's id a hash of (generation id, scorer key, metric). See :mod:`harness.core.ids`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from harness.core.ids import utc_now


class Record(BaseModel):
    model_config = ConfigDict(extra="allow")


class GenerationRecord(Record):
    id: str
    condition: str
    method: str
    prompt_id: str
    seed: int
    prompt: str = Field(description="The prompt as written in the prompt set.")
    rendered_prompt: str = Field(description="What the model saw, after template and method.")
    text: str = Field(description="The generated continuation only.")
    n_prompt_tokens: int
    n_new_tokens: int
    finish: str = Field(description="'eos' or 'length'.")
    model: str
    created: str = Field(default_factory=utc_now)


class ScoreRecord(Record):
    id: str
    generation_id: str
    condition: str
    prompt_id: str
    seed: int
    scorer: str
    scorer_key: str = Field(description="Hash of the scorer's type and parameters.")
    metric: str
    value: float | None
    reason: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)
    created: str = Field(default_factory=utc_now)


class ClassificationRecord(Record):
    """One labelled text classified under one condition (a classification task's line of
    ``generations.jsonl``). Same id scheme as a generation; ``text`` holds the model's
    output, its predicted label, so that every reader of the store finds the fields it
    relies on (condition, prompt_id, seed, text)."""

    kind: str = "classification"
    id: str
    condition: str
    method: str
    prompt_id: str
    seed: int
    prompt: str = Field(description="The text classified, as written in the prompt set.")
    gold: str | None = Field(description="Its gold label (None for an unlabelled text).")
    predicted: str = Field(description="The classifier's top class.")
    text: str = Field(description="The predicted label again (the store's output field).")
    probs: dict[str, float] = Field(description="Class -> probability (softmax, or sigmoid).")
    n_tokens: int = Field(description="Tokens the classifier read (after truncation).")
    truncated: bool = False
    model: str
    created: str = Field(default_factory=utc_now)
