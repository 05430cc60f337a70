#!/usr/bin/env bash
# demo.sh — the README's quick start: set up everything, then run the stack, worker,
# exporter and a feed from `retention simulate`'s generator, and print where to look.
# Ctrl-C stops it.
#   bash scripts/demo.sh [retention demo options, see --help]
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
bash scripts/venv.sh
exec .venv/bin/retention demo "$@"
