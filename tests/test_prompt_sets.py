"""Prompts from JSONL, CSV and `datasets`, with ids stable across runs and file orders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.config.prompts import PromptSetError, load_prompts, text_id
from harness.config.spec import PromptSource
from harness.core.ids import content_id


def test_jsonl_with_ids(tmp_path: Path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a", "text": "first"}\n\n{"id": "b", "text": " second "}\n')
    prompts = load_prompts(PromptSource(file=str(path)))
    assert [(p.id, p.text) for p in prompts] == [("a", "first"), ("b", "second")]


def test_ids_from_text_hash_are_stable_across_orders(tmp_path: Path):
    a = tmp_path / "a.jsonl"
    b = tmp_path / "b.jsonl"
    a.write_text('{"text": "one"}\n{"text": "two"}\n')
    b.write_text('{"text": "two"}\n{"text": "one"}\n')
    ids_a = {p.text: p.id for p in load_prompts(PromptSource(file=str(a)))}
    ids_b = {p.text: p.id for p in load_prompts(PromptSource(file=str(b)))}
    assert ids_a == ids_b
    assert ids_a["one"] == "p-" + content_id("one", 12) == text_id("one")


def test_csv_with_custom_columns_and_limit(tmp_path: Path):
    path = tmp_path / "p.csv"
    path.write_text('key,question\nq1,"Hello, there"\nq2,Bye\nq3,Again\n')
    src = PromptSource(file=str(path), text_field="question", id_field="key", limit=2)
    assert [(p.id, p.text) for p in load_prompts(src)] == [("q1", "Hello, there"), ("q2", "Bye")]


def test_dataset_from_local_path(tmp_path: Path):
    import datasets

    ds = datasets.Dataset.from_dict({"prompt": ["x one", "x two"], "uid": [10, 11]})
    ds.save_to_disk(str(tmp_path / "ds"))
    src = PromptSource(dataset=str(tmp_path / "ds"), text_field="prompt", id_field="uid")
    assert [(p.id, p.text) for p in load_prompts(src)] == [("10", "x one"), ("11", "x two")]
    # a DatasetDict picks the split
    datasets.DatasetDict({"test": ds}).save_to_disk(str(tmp_path / "dd"))
    src = PromptSource(dataset=str(tmp_path / "dd"), split="test", text_field="prompt")
    assert [p.text for p in load_prompts(src)] == ["x one", "x two"]


def test_dataset_files_through_load_dataset(tmp_path: Path):
    folder = tmp_path / "jsonfolder"
    folder.mkdir()
    (folder / "train.jsonl").write_text(json.dumps({"text": "from a folder"}) + "\n")
    prompts = load_prompts(PromptSource(dataset=str(folder)))
    assert [p.text for p in prompts] == ["from a folder"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n',
            r"p.jsonl:2: duplicate prompt id 'a' \(first at .*p.jsonl:1\)",
        ),
        ('{"id": "a", "prompt": "x"}\n', r"p.jsonl:1: no 'text' field \(has: id, prompt\)"),
        ('{"id": "a", "text": "x"}\nnot json\n', r"p.jsonl:2: invalid JSON"),
        ('{"id": "a", "text": "  "}\n', r"p.jsonl:1: empty prompt text"),
    ],
)
def test_errors_name_file_and_line(tmp_path: Path, content: str, message: str):
    path = tmp_path / "p.jsonl"
    path.write_text(content)
    with pytest.raises(PromptSetError, match=message):
        load_prompts(PromptSource(file=str(path)))


def test_shipped_demo_set_has_unique_ids():
    from prompts import data_path

    prompts = load_prompts(PromptSource(file=str(data_path("sets/everyday.jsonl"))))
    assert len(prompts) >= 20
    assert len({p.id for p in prompts}) == len(prompts)
