#!/usr/bin/env bash
# Install Lethe and its pinned dependencies into .venv/ at the repository root.
# Idempotent: a second run only re-syncs what changed. Needs Python 3.11-3.14 and access to PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

pick_python() {
  for py in "${LETHE_PYTHON:-}" python3.11 python3.12 python3.13 python3; do
    [ -n "$py" ] || continue
    command -v "$py" >/dev/null 2>&1 || continue
    if "$py" -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] < (3, 15) else 1)' 2>/dev/null; then
      echo "$py"; return 0
    fi
  done
  return 1
}

if [ ! -x .venv/bin/python ]; then
  py=$(pick_python) || { echo "bootstrap: need Python 3.11 to 3.14 (set LETHE_PYTHON to its path)" >&2; exit 1; }
  echo "bootstrap: creating .venv with $py" >&2
  "$py" -m venv .venv
fi
if [ ! -x .venv/bin/uv ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check uv
fi
# The lock pins every package (Airflow's constraints file cannot be fetched offline).
# --compile-bytecode: imports stay fast even where PYTHONDONTWRITEBYTECODE is set (CI, subprocess tests)
.venv/bin/uv pip sync --quiet --compile-bytecode --python .venv/bin/python requirements.lock
.venv/bin/uv pip install --quiet --python .venv/bin/python --no-deps -e .


echo "bootstrap: .venv ready" >&2
