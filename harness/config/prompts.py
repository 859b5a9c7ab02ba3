"""Prompt sets from JSONL, CSV, or any `datasets` dataset, with ids stable across runs.

An id comes from the id column when there is one (``id_field``, or a column named ``id``),
and is otherwise a hash of the prompt's text, so the same prompt gets the same id in every
run and every file order.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config.spec import PromptSource
from harness.core.errors import PromptSetError
from harness.core.ids import content_id
from harness.core.store import read_jsonl


@dataclass(frozen=True)
class Prompt:
    id: str
    text: str
    label: str | None = None
    """The gold label of a labelled text (classification tasks); None when unlabelled.
    Not part of any content id: a text's id and the texts generated from it do not change
    when a label column is added to a prompt file."""


def text_id(text: str) -> str:
    return "p-" + content_id(text, 12)


def _rows_from_file(path: Path) -> Iterable[tuple[str, Mapping[str, Any]]]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        for lineno, obj in read_jsonl(path, PromptSetError):
            yield f"{path}:{lineno}", obj
    elif suffix in (".csv", ".tsv"):
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ",")
            lineno = 1
            try:
                for lineno, row in enumerate(reader, start=2):
                    yield f"{path}:{lineno}", row
            except UnicodeDecodeError:
                raise PromptSetError(
                    f"{path}: not UTF-8 text after line {lineno}; save the file as UTF-8"
                ) from None
            except csv.Error as exc:
                raise PromptSetError(f"{path}:{lineno + 1}: not valid CSV ({exc})") from None
    else:
        raise PromptSetError(f"{path}: unknown prompt file type '{suffix}'; use .jsonl or .csv")


def _rows_from_dataset(src: PromptSource) -> Iterable[tuple[str, Mapping[str, Any]]]:
    import datasets

    assert src.dataset is not None
    local = Path(src.dataset)
    try:
        saved = ("dataset_info.json", "state.json", "dataset_dict.json")
        if local.is_dir() and any((local / name).exists() for name in saved):
            ds: Any = datasets.load_from_disk(str(local))
            if isinstance(ds, datasets.DatasetDict):
                ds = ds[src.split]
        else:
            ds = datasets.load_dataset(src.dataset, src.subset, split=src.split)
    except Exception as exc:  # datasets raises many kinds
        raise PromptSetError(f"prompts.dataset: cannot load '{src.dataset}' ({exc})") from exc
    for i, row in enumerate(ds):
        yield f"{src.dataset}[{src.split}][{i}]", row


def _label(row: Mapping[str, Any], where: str, field: str, required: bool) -> str | None:
    """The row's gold label (a non-empty string or an integer, kept as its string)."""
    if field not in row or row[field] is None:
        if required:
            raise PromptSetError(
                f"{where}: no '{field}' field; a classification task needs a label per text "
                "(set prompts.label_field)"
            )
        return None
    value = row[field]
    if isinstance(value, bool) or not isinstance(value, str | int):
        if not required:
            return None
        raise PromptSetError(
            f"{where}: label '{field}' must be a string or an integer (got {type(value).__name__})"
        )
    label = str(value).strip()
    if not label and required:
        raise PromptSetError(f"{where}: empty label in '{field}'")
    return label or None


def load_prompts(src: PromptSource, require_label: bool = False) -> list[Prompt]:
    """The prompts of a spec, in file order, ids checked for duplicates; each with its
    gold label when the row has one (``require_label``: every row must)."""
    rows = _rows_from_file(Path(src.file)) if src.file else _rows_from_dataset(src)
    prompts: list[Prompt] = []
    seen: dict[str, str] = {}
    for where, row in rows:
        if src.text_field not in row:
            raise PromptSetError(
                f"{where}: no '{src.text_field}' field (has: {', '.join(map(str, row))}); "
                "set prompts.text_field"
            )
        raw = row[src.text_field]
        if not isinstance(raw, str):
            raise PromptSetError(
                f"{where}: '{src.text_field}' must be a string (got {type(raw).__name__})"
            )
        text = raw.strip()
        if not text:
            raise PromptSetError(f"{where}: empty prompt text")
        id_col = src.id_field or ("id" if "id" in row else None)
        if src.id_field and src.id_field not in row:
            raise PromptSetError(f"{where}: no id field '{src.id_field}'; set prompts.id_field")
        if id_col and (isinstance(row[id_col], bool) or not isinstance(row[id_col], str | int)):
            raise PromptSetError(
                f"{where}: id '{id_col}' must be a string or an integer "
                f"(got {type(row[id_col]).__name__})"
            )
        pid = str(row[id_col]) if id_col else text_id(text)
        if pid in seen:
            raise PromptSetError(f"{where}: duplicate prompt id '{pid}' (first at {seen[pid]})")
        seen[pid] = where
        prompts.append(Prompt(pid, text, _label(row, where, src.label_field, require_label)))
        if src.limit and len(prompts) >= src.limit:
            break
    if not prompts:
        raise PromptSetError("the prompt set is empty")
    return prompts
