"""The local engine: every task generated in this process, on the one model it loads."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from harness.config.spec import GenerationSpec
from harness.model.loading import LoadedModel
from harness.run.engines.base import BatchResult, UnitRunner, Units, UnitTask
from harness.run.plan import ResolvedCondition


class LocalEngine:
    def __init__(
        self,
        get_model: Callable[[], LoadedModel],
        conditions: Sequence[ResolvedCondition],
        gen: GenerationSpec,
    ):
        self.get_model = get_model
        self.conditions = list(conditions)
        self.gen = gen

        self._runner: UnitRunner | None = None

    def _get(self) -> UnitRunner:
        if self._runner is None:
            self._runner = UnitRunner(self.get_model(), self.conditions, self.gen)
        return self._runner

    def units(self, per_batch: int) -> Units:
        # Every pending condition is prepared before the first text, so a condition that
        # cannot be prepared stops the run before any generation.
        return self._get().units(per_batch)

    def generate(self, tasks: Sequence[UnitTask]) -> Iterator[BatchResult]:
        runner = self._get()
        for task in tasks:
            yield from runner.run(task)

    def close(self) -> None:
        """Nothing to release: the model stays with the run for the stages after this."""
