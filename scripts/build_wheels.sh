#!/usr/bin/env bash
# Build a wheel of the core and of every integration into dist/ (or the folder given):
#   bash scripts/build_wheels.sh [OUTDIR]
# then, on any machine: pip install dist/*.whl   (or only the wheels you need).
# Needs the 'build' package (pip install build); each build runs in an isolated env
# (SAFECLIP_BUILD_ARGS=--no-isolation builds with the current env's setuptools, offline).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=$(realpath -m "${1:-dist}")
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python
for src in . integrations/*/; do
    [ -f "$src/pyproject.toml" ] || continue
    # shellcheck disable=SC2086
    "$PY" -m build --wheel ${SAFECLIP_BUILD_ARGS:-} --outdir "$OUT" "$src" >/dev/null
done
ls -1 "$OUT"/*.whl
