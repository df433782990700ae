#!/usr/bin/env bash
# Every GPU figure of this project in one prepared run, for a lent GPU machine (H100/H200).
#
# The machine's image has torch, but transformers 5.17 (below our 5.18 floor), no pydantic,
# no langchain-core, no pypdfium2 and no pytest plugins, and it cannot reach a registry. So:
#
#   1. here (a machine with a registry), once, in the repo root, ~23 MB into .whl/
#      (ignored by git):
#        bash benchmarks/device_run.sh --fetch-wheels
#   2. the device call (one call; about 5 min of run, 6-8 min of device time with the start):
#        run(command="bash benchmarks/device_run.sh", carry=[".whl"], timeout_s=560)
#      then give_back() unless you rerun at once.
#   3. the JSON comes back as gpu_suite.json (and the progress log as gpu_suite.log) under
#      the reply's files_at; stdout is that same JSON, and the last stderr line its headline.
#
# To rerun some sections only (each skipped one says so in the JSON):
#   run(command="bash benchmarks/device_run.sh --only views forwarding --budget-s 200",
#       carry=[".whl"], timeout_s=400)
# Other options are gpu_suite.py's (--quick, --compile, --budget-s; see its docstring).
#
# The wheels (Python 3.12, manylinux x86-64, --no-deps, exact versions checked together on
# the CPU; the set was found by running the suite with only the machine's packages
# importable, plus these):
WHEELS=(
  transformers==5.24.0 regex==2026.12.2
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
  typing-extensions==4.16.0
  langchain-core==1.8.3 langsmith==0.15.1 langchain-protocol==0.0.20 jsonpatch==1.48
  jsonpointer==3.12 tenacity==9.2.1 uuid-utils==0.19.0 sniffio==1.3.1 distro==1.9.0
  requests-toolbelt==1.0.0
  pypdfium2==5.15.2 pytest-socket==0.8.1 pytest-asyncio==1.5.0
)
set -uo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--fetch-wheels" ]]; then
  rm -rf .whl && mkdir -p .whl
  "${PYTHON:-python3}" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d .whl "${WHEELS[@]}" || exit 1
  git check-ignore -q .whl/x.whl || echo "warning: .whl/ is not ignored by git" >&2
  echo "$(ls .whl/*.whl | wc -l) wheels, $(du -sh .whl | cut -f1) in .whl/" >&2
  exit 0
fi

if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl >&2 || exit 1
  export PYTHONPATH="/tmp/site:${PWD}${PYTHONPATH:+:$PYTHONPATH}"
else
  echo "no .whl/*.whl: run 'bash benchmarks/device_run.sh --fetch-wheels' here first and" \
       "carry .whl (the machine's transformers is too old for this library)" >&2
  export PYTHONPATH="${PWD}${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
out=${OUT:-/tmp/safeclip_device}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2
# The suite keeps to --budget-s (330 s by default) and stops a section that overruns; the
# outer limit only catches the process itself hanging (the JSON is rewritten under $out
# after every section either way).
timeout -k 10 480 python3 benchmarks/gpu_suite.py --out "$out" "$@" \
  2> >(tee "$out/gpu_suite.log" >&2)
