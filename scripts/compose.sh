#!/usr/bin/env bash
# compose.sh — run `docker compose` (Compose v2) on machines that have the docker CLI
# but no Compose plugin and no engine, e.g. CI, to check docker-compose.yml.
#
#   bash scripts/compose.sh install      build the plugin once (cached; needs Go)
#   bash scripts/compose.sh ARGS...      install if needed, then `docker compose ARGS...`
#                                        e.g. `bash scripts/compose.sh config -q`
#
# The plugin is the official Compose CLI (github.com/docker/compose/v2), built from
# its Go module at a pinned version through the Go module proxy (about 2 minutes
# and ~500 MB of module cache the first time), into
# $RETENTION_CACHE/compose-<version>/docker-config/cli-plugins/docker-compose.
# It is run as `docker compose` with DOCKER_CONFIG pointing there, so the user's
# ~/.docker is neither read nor changed. Without a docker CLI the same binary runs
# standalone (`docker-compose ARGS...`), which accepts the same arguments.
#
#   COMPOSE_VERSION (v2.40.3)   RETENTION_CACHE (~/.cache/retention-tracker)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
COMPOSE_VERSION="${COMPOSE_VERSION:-v2.40.3}"
RETENTION_CACHE="${RETENTION_CACHE:-$HOME/.cache/retention-tracker}"
COMPOSE_HOME="$RETENTION_CACHE/compose-$COMPOSE_VERSION"
DOCKER_CONFIG_DIR="$COMPOSE_HOME/docker-config"
PLUGIN="$DOCKER_CONFIG_DIR/cli-plugins/docker-compose"

say() { printf 'compose: %s\n' "$*" >&2; }
die() { printf 'compose: ERROR: %s\n' "$*" >&2; exit 1; }

cmd_install() {
    if [[ -x "$PLUGIN" ]]; then
        return 0
    fi
    command -v go >/dev/null 2>&1 || die "go not found: it is needed once to build Compose $COMPOSE_VERSION"
    mkdir -p "$COMPOSE_HOME"
    local work log t0=$SECONDS
    work="$(mktemp -d "$COMPOSE_HOME/.build.XXXXXX")"
    log="$work/build.log"
    say "building the Compose $COMPOSE_VERSION CLI plugin from its Go module (one-off, ~2 min) ..."
    # A throwaway main module: `go install pkg@version` refuses Compose's go.mod
    # (it has exclude directives), requiring it from a module of our own does not.
    printf 'module local/retention-tracker/compose\n\ngo 1.24\n' >"$work/go.mod"
    if ! (cd "$work" && export GOFLAGS=-mod=mod GOTOOLCHAIN=local &&
            go get "github.com/docker/compose/v2/cmd@$COMPOSE_VERSION" &&
            go build -trimpath \
                -ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$COMPOSE_VERSION" \
                -o "$work/docker-compose" github.com/docker/compose/v2/cmd) >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        die "building Compose $COMPOSE_VERSION failed (log: $log)"
    fi
    mkdir -p "$(dirname "$PLUGIN")"
    mv "$work/docker-compose" "$PLUGIN"
    rm -rf "$work"
    say "installed $PLUGIN ($((SECONDS - t0))s)"
}

main() {
    case "${1:-}" in
        install) cmd_install; return ;;
        "" | -h | --help) sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    esac
    cmd_install
    cd "$REPO_ROOT"
    if command -v docker >/dev/null 2>&1; then
        DOCKER_CONFIG="$DOCKER_CONFIG_DIR" exec docker compose "$@"
    fi
    exec "$PLUGIN" "$@"
}

main "$@"
