#!/usr/bin/env bash
# Every GPU figure of this project in one prepared run, for a lent GPU machine (H100/H200).
# Prints JSON and, when $OUT is set, leaves gpu_suite.json, llava_overhead.json and the
# CUDA test log there. Budget: about 8-10 minutes on one H100.
#
# That machine has torch but transformers 5.17 and no langchain-core: carry wheels (Python
# 3.12, manylinux x86-64) in .whl/ first, from the repo root on this machine:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl \
#     "transformers>=5.18" "langchain-core>=1.0" "pydantic>=2.7" pytest-socket pytest-asyncio
# then run with carry [".whl"]:  bash benchmarks/device_run.sh
set -uo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-compile --no-cache-dir --upgrade --target /tmp/site \
    --find-links .whl .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site:${PWD}${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="${PWD}${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
out=${OUT:-/tmp/safeclip_device}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
timeout 300 python3 benchmarks/gpu_suite.py | tee "$out/gpu_suite.json"
timeout 300 python3 benchmarks/bench_llava_overhead.py --device cuda --dtype bfloat16 --repeats 5 \
  --warmup 2 | tee "$out/llava_overhead.json"
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_fast_paths.py 2>&1 | tail -5 \
  | tee "$out/cuda_tests.log"
