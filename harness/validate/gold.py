"""Gold-labelled data for scorer validation: labels or ratings, one JSON object a line."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from harness.config.paths import resolve_data_path
from harness.core.errors import ValidationError
from harness.core.store import read_jsonl


@dataclass
class GoldItem:
    id: str
    text: str
    label: str | None
    rating: float | None
    trait: str | None


def resolve_data(value: str) -> Path:
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
