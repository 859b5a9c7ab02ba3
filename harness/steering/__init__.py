"""Steering: the method protocol (:mod:`.base`), forward hooks on decoder layers
(:mod:`.hooks`), steering vectors and their extraction (:mod:`.vectors`), the restore
guarantee (:mod:`.restore`), many additive conditions in one batch (:mod:`.batched`), and
one module per built-in method under :mod:`.methods`.

It may import :mod:`harness.model`, :mod:`harness.config` and :mod:`harness.core`; the
run builds on it. Judges, analysis and report never import it.
"""

from harness.steering.base import (
    METHODS,
    BaseMethod,
    BatchInfo,
    MethodContext,
    MethodParams,
    NoSteering,
    SteeringMethod,
    SteeringPoint,
)

__all__ = [
    "METHODS",
    "BaseMethod",
    "BatchInfo",
    "MethodContext",
    "MethodParams",
    "NoSteering",
    "SteeringMethod",
    "SteeringPoint",
]
