"""The ground floor: typed records and artefacts, content ids, the JSONL store, atomic
writes, the run-directory layout (:class:`RunDir`), the plug-in registry, the scorer
protocol, the strict-params base and the error types.

Everything else in the project may import from here; ``harness.core`` imports nothing of
the project outside itself (an import-linter contract in ``pyproject.toml``).
"""
