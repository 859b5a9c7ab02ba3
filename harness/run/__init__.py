"""Running a benchmark: the plan (:mod:`.plan`: work items with content ids), seeded
batched generation (:mod:`.generation`), the generate and score stages (:mod:`.stages`),
the coefficient search (:mod:`.search`) and the runner that chains every stage inside a
manifest session (:mod:`.runner`).

The top of the stack below the CLI: it may import steering, model, config, core, and the
analysis and report packages it calls at the end of a run. Scorers are reached through
the registry (:data:`harness.core.scoring.SCORERS`), never imported directly.
"""
