"""Analysis: from score records to ``analysis.json``. The score table (:mod:`.table`),
the comparisons of every condition with the baseline (:mod:`.analyze`), and the further
analyses each adding one key: agreement between scorers, coherence next to the trait
effect, per-prompt steerability; plus power and planning (:mod:`.power`).

It reads typed records and artefacts only and computes with :mod:`harness.stats`; it may
import :mod:`harness.core` and :mod:`harness.stats`, nothing that loads a model.
"""
