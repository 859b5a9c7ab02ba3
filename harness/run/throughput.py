"""Throughput of a session: texts and new tokens per second per generation unit, texts
and calls per second per scorer, recorded in the manifest session that did the work.

Why: the statistics need n, and n costs time; a user sizing a run (or a sweep) needs to
know what the machine delivers, from the runs themselves rather than from a benchmark.
Times are wall-clock seconds measured around the work (a unit's batches and their store
writes; a scorer's calls), so they include the harness's own overhead.
"""

from __future__ import annotations

from typing import Any

from harness.core.artifacts import ScorerThroughput, Throughput, UnitThroughput
from harness.core.manifest import Manifest


def _rate(count: float, seconds: float) -> float:
    return round(count / seconds, 3) if seconds > 0 else 0.0


def unit_throughput(
    conditions: list[str], texts: int, new_tokens: int, seconds: float
) -> UnitThroughput:
    return UnitThroughput(
        conditions=conditions,
        texts=texts,
        new_tokens=new_tokens,
        seconds=round(seconds, 3),
        texts_per_s=_rate(texts, seconds),
        tokens_per_s=_rate(new_tokens, seconds),
    )


def scorer_throughput(
    texts: int, seconds: float, calls: int | None, overlapped: bool
) -> ScorerThroughput:
    out = ScorerThroughput(
        texts=texts,
        seconds=round(seconds, 3),
        texts_per_s=_rate(texts, seconds),
        overlapped=overlapped,
    )
    if calls is not None:
        out["calls"] = calls
        out["calls_per_s"] = _rate(calls, seconds)
    return out


def calls_made(scorer: Any) -> int | None:
    """Requests a scorer has sent so far, if it counts them (``stats.attempts``)."""
    attempts = getattr(getattr(scorer, "stats", None), "attempts", None)
    return int(attempts) if isinstance(attempts, int) else None


class ThroughputLog:
    """The session's throughput record, written through the manifest by the run's one
    writer thread (overlapped scoring hands its figures over when it is joined)."""

    def __init__(self, manifest: Manifest):
        self.manifest = manifest

    def _data(self) -> Throughput | None:
        session = self.manifest.session  # None when a stage runs outside a session
        if session is None:
            return None
        data: Throughput = session.setdefault("throughput", {"generation": [], "scoring": {}})
        return data

    def add_unit(self, unit: UnitThroughput) -> None:
        if (data := self._data()) is not None:
            data["generation"].append(unit)
            self.manifest.save()

    def add_scorer(
        self, name: str, texts: int, seconds: float, calls: int | None, overlapped: bool
    ) -> None:
        """Add one scorer's work (summed with what it did earlier in this session)."""
        if (data := self._data()) is None:
            return
        scoring = data["scoring"]
        before = scoring.get(name)
        if before is not None:
            texts += before["texts"]
            seconds += before["seconds"]
            if calls is not None or "calls" in before:
                calls = (calls or 0) + before.get("calls", 0)
            overlapped = overlapped or before["overlapped"]
        scoring[name] = scorer_throughput(texts, seconds, calls, overlapped)
        self.manifest.save()
