"""Content ids and the append-only store: torn tails are cut, damage elsewhere is an error."""

from __future__ import annotations

import hashlib
import json

import pytest

from harness.core.errors import StoreError
from harness.core.ids import content_id
from harness.core.store import JsonlStore


def test_content_id_is_sha256_of_canonical_json():
    obj = {"b": 1, "a": [1, "x"], "c": {"z": None, "y": 0.5}}
    expected = hashlib.sha256(b'{"a":[1,"x"],"b":1,"c":{"y":0.5,"z":null}}').hexdigest()[:20]
    assert content_id(obj) == expected
    assert content_id({"c": {"y": 0.5, "z": None}, "a": [1, "x"], "b": 1}) == expected
    assert content_id({**obj, "b": 2}) != expected


def test_append_and_read_roundtrip(tmp_path):
    store = JsonlStore(tmp_path / "r.jsonl")
    assert store.read() == []
    store.append([{"id": "a", "v": 1}, {"id": "b", "v": None}])
    store.append([{"id": "c", "v": 2.5}])
    assert [r["id"] for r in store.read()] == ["a", "b", "c"]
    assert store.ids() == {"a", "b", "c"}


def test_torn_last_line_is_skipped_then_cut_before_appending(tmp_path):
    path = tmp_path / "r.jsonl"
    store = JsonlStore(path)
    store.append([{"id": "a"}, {"id": "b"}])
    with path.open("a") as fh:
        fh.write('{"id": "c", "text": "half a rec')  # a kill in the middle of a write
    assert [r["id"] for r in store.read()] == ["a", "b"]
    store.append([{"id": "d"}])
    lines = path.read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["a", "b", "d"]


def test_repair_reports_dropped_bytes(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": "a"}\n{"id"')
    assert JsonlStore(path).repair() == len('{"id"')
    assert path.read_text() == '{"id": "a"}\n'
    assert JsonlStore(path).repair() == 0


def test_single_torn_line_only(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": "a", "x"')
    store = JsonlStore(path)
    assert store.read() == []
    assert store.repair() == len('{"id": "a", "x"')
    assert path.read_text() == ""


def test_damaged_middle_line_names_file_and_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": "a"}\n{oops}\n{"id": "c"}\n')
    with pytest.raises(StoreError, match=r"r\.jsonl:2: damaged record"):
        JsonlStore(path).read()


def test_nan_is_refused_not_written(tmp_path):
    store = JsonlStore(tmp_path / "r.jsonl")
    with pytest.raises(ValueError):
        store.append([{"id": "a", "value": float("nan")}])
