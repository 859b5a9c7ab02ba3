"""vLLM backend tests: run through .venv-vllm (scripts/test-vllm.sh); skipped without vLLM."""

import importlib.util

import pytest

if importlib.util.find_spec("vllm") is None:
    pytest.skip(
        "vLLM is not installed here (it lives in .venv-vllm: scripts/install-vllm.sh, then "
        "scripts/test-vllm.sh)",
        allow_module_level=True,
    )
