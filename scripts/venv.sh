#!/usr/bin/env bash
# venv.sh — create or refresh the project's virtualenv (.venv) with `pip install -e .[dev]`.
# Skips the install when pyproject.toml has not changed since the last successful one.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${RETENTION_VENV:-$REPO_ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
stamp="$VENV/.pyproject.sha256"
want="$(sha256sum "$REPO_ROOT/pyproject.toml" | cut -d' ' -f1)"

if [ ! -x "$VENV/bin/python" ]; then
  echo "venv: creating $VENV with $("$PYTHON" --version)"
  "$PYTHON" -m venv "$VENV"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "venv: installing the project and its dev dependencies"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -e "$REPO_ROOT[dev]"
  echo "$want" > "$stamp"
fi
echo "venv: ready ($VENV)"
