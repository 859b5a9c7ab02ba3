"""Models: loading a causal LM by hub id, folder or embedded alias (:mod:`.loading`), the
one device and dtype picker (:mod:`.device`), chat rendering (:mod:`.chat`) and the table
of where each architecture keeps its decoder layers (:mod:`.layers`).

It may import :mod:`harness.config` and :mod:`harness.core`; steering, judges and the run
build on it.
"""
