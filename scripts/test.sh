#!/usr/bin/env bash
# test.sh — the README's test command: set up everything on a bare machine, then run the suite.
#   bash scripts/test.sh [pytest args...]
# Installs Debian packages, the Kafka jars and the venv as needed, starts the stack
# (scripts/stack.sh), runs lint, type checks and pytest, and stops the stack again
# if this script was the one that started it.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

bash scripts/venv.sh
started_here=0
if ! bash scripts/stack.sh status >/dev/null 2>&1; then
  started_here=1
fi
bash scripts/stack.sh up
if [ "$started_here" = 1 ] && [ -z "${KEEP_STACK:-}" ]; then
  trap 'bash scripts/stack.sh down' EXIT
fi

# The Compose CLI (for `docker compose config`) is built once from its Go module.
bash scripts/compose.sh install

echo "== ruff"; .venv/bin/ruff check .
echo "== mypy"; .venv/bin/mypy
echo "== pytest"; .venv/bin/pytest "$@"
