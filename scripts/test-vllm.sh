#!/usr/bin/env bash
# The vLLM backend's tests (tests/vllm/), through its own virtualenv (scripts/install-vllm.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-1}"
.venv-vllm/bin/python -m pytest -q -o addopts=-ra -p no:cacheprovider tests/vllm "$@"
