#!/usr/bin/env bash
# lock.sh — refresh the Python lock files from pyproject.toml (commit both afterwards):
#   requirements-dev.lock   the dependencies, the dev extra, and pip/setuptools to build
#                           the project: what scripts/venv.sh (so CI) installs, exactly
#   requirements.lock       the dependencies (and pip/setuptools) alone, at the same
#                           versions: what the Docker image installs
#
#   bash scripts/lock.sh              re-resolve every pin to the newest allowed version
#   bash scripts/lock.sh --upgrade-package redis    move one package (others stay put)
#
# Both are made by `uv pip compile --universal --generate-hashes` for Python 3.11+, so
# every pinned file carries its SHA-256 and pip installs with --require-hashes. uv
# itself is installed from PyPI at a pinned version into $RETENTION_CACHE/uv-<version>.
#
#   UV_VERSION (0.13.8)   RETENTION_CACHE (~/.cache/retention-tracker)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
UV_VERSION="${UV_VERSION:-0.13.8}"
RETENTION_CACHE="${RETENTION_CACHE:-$HOME/.cache/retention-tracker}"
TOOL="$RETENTION_CACHE/uv-$UV_VERSION"
PYTHON="${PYTHON:-python3}"

if [[ ! -x "$TOOL/bin/uv" ]]; then
    echo "lock: installing uv $UV_VERSION into $TOOL" >&2
    "$PYTHON" -m venv "$TOOL"
    "$TOOL/bin/pip" install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi

cd "$REPO_ROOT"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# What building the project needs (pyproject's build-system.requires) and pip itself,
# so that the venv is exact down to its installer.
"$PYTHON" - >"$work/build.in" <<'PY'
import tomllib

for requirement in tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]:
    print(requirement)
print("pip")
PY

compile() {
    "$TOOL/bin/uv" pip compile --quiet --universal --python-version 3.11 --generate-hashes \
        --no-strip-markers --custom-compile-command "bash scripts/lock.sh" "$@"
}
compile pyproject.toml - --extra dev -o requirements-dev.lock "$@" <"$work/build.in"
# the image's lock: a subset of the dev lock, at its versions
compile pyproject.toml - -c requirements-dev.lock -o requirements.lock <"$work/build.in"
echo "lock: requirements-dev.lock ($(grep -c '==' requirements-dev.lock) pins)," \
    "requirements.lock ($(grep -c '==' requirements.lock) pins)" >&2
