#!/usr/bin/env bash
# GPU acceptance run: 3 GRPO steps of a Qwen3-0.6B-shaped random model with 4k-token responses through
# Ray + vLLM + DeepSpeed on one GPU (the rollout engine and the learner share it); prints per-step
# generation tokens/s, learner tokens/s and MFU, weight-sync seconds and share of the step, and peak GPU
# memory, and writes benchmarks/results/gpu_check.json (details: benchmarks/gpu_check.py). < 10 minutes.
#
#   bash benchmarks/gpu_check.sh                               # on a machine with an NVIDIA GPU
#   bash benchmarks/gpu_check.sh --sync-method collective --out /tmp/gpu.json
#   bash benchmarks/gpu_check.sh --device cpu                  # no GPU: the same run at tiny sizes (CI)
#
# Python: $PYTHON, else the repo's .venv, else python3 (it needs a CUDA build of torch, vllm, deepspeed).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
  if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
if [[ " $* " != *" --device cpu "* && " $* " != *" --device=cpu "* ]] && ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "gpu_check: no NVIDIA GPU here (nvidia-smi not found). Run this on a CUDA machine, or check the" \
       "script on CPU with: bash benchmarks/gpu_check.sh --device cpu" >&2
  exit 2
fi
exec "$PY" benchmarks/gpu_check.py "$@"
