"""Scorers: the protocol in :mod:`judges.base` and every built-in scorer."""

from harness.registry import Registry
from judges.base import (
    Scorer,
    ScorerContext,
    ScoreResult,
    ScorerParams,
    ScoringItem,
    is_scorer_class,
)

SCORERS: Registry[Scorer] = Registry("scorer", "steer_harness.scorers", is_scorer_class)

__all__ = [
    "SCORERS",
    "ScoreResult",
    "Scorer",
    "ScorerContext",
    "ScorerParams",
    "ScoringItem",
]
