"""The Ray tests' local cluster: 2 CPUs on 127.0.0.1."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


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
