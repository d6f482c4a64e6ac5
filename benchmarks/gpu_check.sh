#!/usr/bin/env bash
# GPU check: rl.learner.Learner on CUDA for a Qwen3-0.6B-sized random model; prints tokens/s and MFU
# and writes benchmarks/results/gpu_check.json (details: benchmarks/gpu_check.py).
#
#   bash benchmarks/gpu_check.sh                      # on a machine with an NVIDIA GPU
#   bash benchmarks/gpu_check.sh --steps 10 --out /tmp/gpu.json
#   bash benchmarks/gpu_check.sh --device cpu         # no GPU: run the same code with a tiny model on CPU
#
# Python: $PYTHON, else the repo's .venv, else python3 (it needs a CUDA build of torch + deepspeed).
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
