#!/usr/bin/env bash
# venv.sh — create or refresh the project's virtualenv (.venv) from the lock file:
# requirements-dev.lock (every dependency, the dev tools, pip and setuptools) installed
# with --require-hashes, so each file is checked against its pinned SHA-256, then the
# project itself, editable, with no further dependencies and no download to build it.
# Skips the install when pyproject.toml and the lock have not changed since the last
# successful one. Refresh the lock with `bash scripts/lock.sh`.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${RETENTION_VENV:-$REPO_ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
LOCK="$REPO_ROOT/requirements-dev.lock"
stamp="$VENV/.installed.sha256"
want="$(cat "$REPO_ROOT/pyproject.toml" "$LOCK" | sha256sum | cut -d' ' -f1)"
pip=("$VENV/bin/python" -m pip --quiet --disable-pip-version-check)

if [ ! -x "$VENV/bin/python" ]; then
  echo "venv: creating $VENV with $("$PYTHON" --version)"
  "$PYTHON" -m venv "$VENV"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "venv: installing the locked dependencies ($(basename "$LOCK")) and the project"
  "${pip[@]}" install --require-hashes --no-deps -r "$LOCK"
  "${pip[@]}" install --no-deps --no-build-isolation -e "$REPO_ROOT"
  "${pip[@]}" check >/dev/null || { "${pip[@]}" check; echo "venv: the lock is inconsistent" >&2; exit 1; }
  echo "$want" > "$stamp"
fi
echo "venv: ready ($VENV)"
