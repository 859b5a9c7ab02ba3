"""Reports: the run report's data (:mod:`.data`), the one formatter (:mod:`.format`), its
sections, figures (:mod:`.figures`, :mod:`.plots`) and renderer (:mod:`.markdown`); the
side-by-side comparison of runs (:mod:`.compare`); the scorer-validation markdown
(:mod:`.validation`).

A report reads stored artefacts only (analysis.json, the stores, spec.json, the
manifest), never the model: it may import :mod:`harness.analysis`, :mod:`harness.stats`
and :mod:`harness.core`, nothing that generates.
"""
