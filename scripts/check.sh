#!/usr/bin/env bash
# The test command of README "Development" (and of .ci/run): lint, types, then the suite.
# Stops at the first failure. Extra arguments go to pytest: bash scripts/check.sh -x -k scan
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
echo "== ruff"
"$PY" -m ruff check .
echo "== mypy: the core (strict, settings in pyproject.toml)"
"$PY" -m mypy
# Each integration by package name, found through MYPYPATH: a glob over the folders would
# also pick up build leftovers such as *.egg-info (and fail on them).
packages=()
mypypath=()
for d in integrations/*/; do
    for pkg in "$d"safeclip_guardrail_*/; do
        [ -f "$pkg/__init__.py" ] || continue
        packages+=(-p "$(basename "$pkg")")
        mypypath+=("${d%/}")
    done
done
if [ ${#packages[@]} -gt 0 ]; then
    echo "== mypy: the integrations (strict)"
    MYPYPATH="$(IFS=:; echo "${mypypath[*]}")" \
        "$PY" -m mypy --strict --follow-imports=silent "${packages[@]}"
fi
echo "== pytest"
"$PY" -m pytest "$@"
