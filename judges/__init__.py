"""The built-in scorers, plug-ins over the harness's public API like any other.

Each module is one scorer: lexicon, embedding, classifier, fluency, and the LLM judges
under :mod:`judges.llm`. They implement the protocol of :mod:`harness.core.scoring` and
are registered as entry points in ``pyproject.toml``. A judge may import
:mod:`harness.core`, :mod:`harness.config` and :mod:`harness.model`, never the run,
steering, analysis or report (an import-linter contract).
"""
