#!/usr/bin/env bash
# One command that sets up everything for development and CI:
#   a virtual env in .venv, the package with every extra, the four integration packages
#   (the LiteLLM one with its proxy extra, so `litellm --config` runs in the tests),
#   and the pinned torch/torchvision (one pip command, so pip cannot swap torch later).
# Usage: bash scripts/setup.sh        (PYTHON=python3.11 bash scripts/setup.sh to pick one)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt \
    "torch==2.14.1" "torchvision==0.29.1" \
    -e ".[all,dev]" \
    -e integrations/langchain -e integrations/llamaindex -e integrations/nemo \
    -e "integrations/litellm[proxy]"
.venv/bin/python -c "import torch, torchvision, transformers, open_clip, safeclip_guardrail; \
print('ok: torch', torch.__version__, 'torchvision', torchvision.__version__, \
'transformers', transformers.__version__)"
