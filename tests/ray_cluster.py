"""What the Ray tests share: a 2-CPU local cluster on 127.0.0.1 and record comparison."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.core.store import JsonlStore


@contextmanager
def local_cluster() -> Iterator[str]:
    """A 2-CPU Ray cluster on this machine (127.0.0.1); yields its GCS address, so other
    drivers (a subprocess, ``--address``) can join it."""
    import ray

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        logging_level=logging.WARNING,
        log_to_driver=False,
    )
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def records(path: Path) -> list[str]:
    """The store's records as canonical JSON without their timestamps, asserting that no
    id occurs twice."""
    recs = list(JsonlStore(path).iter_dicts())
    ids = [r["id"] for r in recs]
    assert len(ids) == len(set(ids)), f"{path}: duplicated ids"
    return sorted(
        json.dumps({k: v for k, v in r.items() if k != "created"}, sort_keys=True) for r in recs
    )
