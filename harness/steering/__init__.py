"""Steering methods: the protocol (:mod:`.base`), hooks, vectors, and one module per method."""

from harness.registry import Registry
from harness.steering.base import (
    BaseMethod,
    BatchInfo,
    MethodContext,
    MethodParams,
    NoSteering,
    is_method_class,
)
from harness.steering.base import SteeringMethod as SteeringMethod

METHODS: Registry[BaseMethod] = Registry(
    "steering method", "steer_harness.methods", is_method_class
)

__all__ = [
    "METHODS",
    "BaseMethod",
    "BatchInfo",
    "MethodContext",
    "MethodParams",
    "NoSteering",
    "SteeringMethod",
]
