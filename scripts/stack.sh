#!/usr/bin/env bash
# stack.sh — the bootstrap of the local service stack (Kafka in KRaft mode, Redis, a
# Redis Sentinel, a 3-master Redis Cluster, Prometheus, Alertmanager): what has to happen
# before Python can run it.
#
#   bash scripts/stack.sh install          install missing packages / Kafka jars (idempotent)
#   bash scripts/stack.sh up               install, then start everything and wait until READY
#   bash scripts/stack.sh down [--purge]   stop what we started; --purge also deletes the state dir
#   bash scripts/stack.sh restart SERVICE  stop and start one service (kafka, redis-cluster-1, ...)
#   bash scripts/stack.sh status           one line per service; exit 0 if all running, 3 otherwise
#   bash scripts/stack.sh env              print `export ...` lines (eval "$(bash scripts/stack.sh env)")
#   bash scripts/stack.sh pin-kafka        download the Kafka jars afresh and pin their SHA-512s
#
# This script installs the Debian packages (redis-server, prometheus,
# prometheus-alertmanager) and the Kafka broker jars from Maven Central when they are
# missing, makes sure the venv exists (scripts/venv.sh), then runs
# `python -m retention.stack COMMAND`, which starts, stops and checks the services.
# Ports, places and the Kafka version are RETENTION_* variables read by
# core/settings.py and retention/stack/settings.py; `env` prints them all.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${RETENTION_VENV:-$REPO_ROOT/.venv}"
APT_PACKAGES=(redis-server prometheus prometheus-alertmanager)

say() { printf 'stack: %s\n' "$*" >&2; }
die() { printf 'stack: ERROR: %s\n' "$*" >&2; exit 1; }

# Print the last lines of a file to stderr (used on every failure path).
tail_log() {
    local f="$1" n="${2:-40}"
    if [[ -s "$f" ]]; then
        printf -- '----- last %s lines of %s -----\n' "$n" "$f" >&2
        tail -n "$n" "$f" >&2
        printf -- '-----\n' >&2
    fi
}

# ---------------------------------------------------------------------------
# Debian packages
# ---------------------------------------------------------------------------
pkg_installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

install_apt_packages() {
    local missing=() p
    for p in "${APT_PACKAGES[@]}"; do pkg_installed "$p" || missing+=("$p"); done
    # Toolchain needed for the Kafka jars; the project machine has them, a bare Debian doesn't.
    command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
    command -v mvn  >/dev/null 2>&1 || missing+=(maven)
    # The stack's CA and TLS certificates (retention/stack/certs.py) are made by openssl.
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)
    if ((${#missing[@]} == 0)); then
        say "apt packages present (${APT_PACKAGES[*]})"
        return 0
    fi
    [[ "$(id -u)" == 0 ]] || die "need root to apt-get install: ${missing[*]}"

    # Debian's maintainer scripts would start system redis/prometheus/alertmanager
    # on their default ports. A policy-rc.d that exits 101 tells invoke-rc.d /
    # deb-systemd-invoke "not allowed", so nothing is started. Only add (and later
    # remove) one if the machine doesn't already have its own.
    local policy=/usr/sbin/policy-rc.d added_policy=0
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\n# temporary, added by retention-tracker scripts/stack.sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
        added_policy=1
    fi

    local log rc=0
    log="$(mktemp -t stack-apt.XXXXXX.log)"
    say "apt-get update (missing: ${missing[*]}) ..."
    if DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$log" 2>&1; then
        say "apt-get install ${missing[*]} ..."
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
            "${missing[@]}" >>"$log" 2>&1 || rc=$?
    else
        rc=$?
    fi
    ((added_policy)) && rm -f "$policy"
    if ((rc != 0)); then
        tail_log "$log" 30
        die "apt-get failed (exit $rc), full log: $log"
    fi
    rm -f "$log"
    say "apt packages installed"
}

# ---------------------------------------------------------------------------
# Kafka jars
# ---------------------------------------------------------------------------
# The version and the cache come from the Python settings (RETENTION_KAFKA_VERSION,
# RETENTION_CACHE), so this download and the broker the stack starts always agree.
load_stack_env() {
    local exports
    exports="$("$VENV/bin/python" -m retention.stack env)" || die "cannot read the stack's settings"
    eval "$exports"
    KAFKA_VERSION="$RETENTION_KAFKA_VERSION"
    KAFKA_HOME="$RETENTION_CACHE/kafka-$KAFKA_VERSION"
    KAFKA_LIBS="$KAFKA_HOME/libs"
    KAFKA_MARKER="$KAFKA_HOME/.installed"   # written only after a complete download
    KAFKA_PINS="$REPO_ROOT/scripts/kafka-$KAFKA_VERSION.sha512"
}

# The jars of a folder against the pinned SHA-512s: the same names, the same sums.
# Prints one line per difference (nothing when they agree).
kafka_jar_differences() {
    local dir="$1"
    awk 'NR == FNR { want[$2] = $1; next }
         { seen[$2] = 1
           if (!($2 in want)) print "  not pinned: " $2
           else if (want[$2] != $1) print "  SHA-512 mismatch: " $2 }
         END { for (name in want) if (!(name in seen)) print "  missing: " name }' \
        <(grep -v '^#' "$KAFKA_PINS" | grep .) <(cd "$dir" && sha512sum -- *.jar) | sort
}

require_kafka_pins() {
    [[ -f "$KAFKA_PINS" ]] || die "no pinned SHA-512 sums for Kafka $KAFKA_VERSION ($KAFKA_PINS):
refusing unverified jars. After reviewing the release, \`bash scripts/stack.sh pin-kafka\`
downloads them and writes that file (commit it)."
}

# Refuse the jars of a folder unless each one matches its pinned SHA-512.
verify_kafka_jars() {
    local dir="$1" what="$2" differences
    require_kafka_pins
    differences="$(kafka_jar_differences "$dir")"
    if [[ -n "$differences" ]]; then
        die "kafka $KAFKA_VERSION jars $what $dir do not match $KAFKA_PINS:
$differences
$3"
    fi
}

# Download the broker's runtime jars (+ an SLF4J logging binding, which Kafka's
# POM does not include: it only ships in the release tarball) from Maven Central
# into $KAFKA_LIBS. Skipped when the marker from a previous complete run exists.
# Every jar is then checked against scripts/kafka-$KAFKA_VERSION.sha512, cached or new;
# with pin=1 (`stack.sh pin-kafka`) they are downloaded afresh and that file is written.
install_kafka_jars() {
    local pin="${1:-0}"
    if [[ "$pin" == 0 && -f "$KAFKA_MARKER" && -d "$KAFKA_LIBS" ]]; then
        verify_kafka_jars "$KAFKA_LIBS" "cached in" \
            "Something changed them since they were downloaded: delete $KAFKA_HOME to download again."
        say "kafka $KAFKA_VERSION jars cached in $KAFKA_LIBS (SHA-512 pinned)"
        return 0
    fi
    [[ "$pin" == 1 ]] || require_kafka_pins
    command -v mvn >/dev/null 2>&1 || die "mvn not found (install 'maven')"
    say "downloading kafka $KAFKA_VERSION jars from Maven Central (one-off, ~1 min) ..."

    local work tmp log differences
    mkdir -p "$KAFKA_HOME"
    work="$(mktemp -d "$KAFKA_HOME/.work.XXXXXX")"
    tmp="$work/libs"
    log="$work/mvn.log"
    # A throwaway pom is the simplest way to get Maven to resolve + copy a whole
    # runtime dependency closure into one flat folder.
    cat >"$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.retention-tracker</groupId>
  <artifactId>kafka-broker-libs</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
  </dependencies>
</project>
EOF
    if ! mvn -B -q -C -f "$work/pom.xml" dependency:copy-dependencies \
            -DincludeScope=runtime -DoutputDirectory="$tmp" >"$log" 2>&1; then
        tail_log "$log" 30
        die "maven could not resolve org.apache.kafka:kafka_2.13:$KAFKA_VERSION (log: $log)"
    fi

    # Pick the logging backend + SLF4J binding that match what Kafka's deps pulled in:
    #  - Kafka >= 4.0 logs through log4j2 (KIP-653). 4.1+ depends on log4j-core
    #    itself, 4.0.x doesn't (then use $LOG4J2_VERSION, 2.24.3 = what 4.0 ships).
    #    The SLF4J bridge must match the slf4j-api major found: 1.7.x ->
    #    log4j-slf4j-impl, 2.x -> log4j-slf4j2-impl.
    #  - Kafka 3.x logs through log4j 1 (reload4j) and depends on no backend at
    #    all: add slf4j-reload4j + reload4j.
    local slf4j log4j backend artifacts=()
    slf4j="$(find "$tmp" -name 'slf4j-api-*.jar' -printf '%f\n' | sed 's/^slf4j-api-//; s/\.jar$//' | head -n1)"
    log4j="$(find "$tmp" -name 'log4j-core-*.jar' -printf '%f\n' | sed 's/^log4j-core-//; s/\.jar$//' | head -n1)"
    [[ -n "$slf4j" ]] || die "no slf4j-api jar among kafka's dependencies; cannot choose a logging binding"
    case "$KAFKA_VERSION" in
        2.* | 3.*) backend=reload4j ;;
        *)         backend=log4j2 ;;
    esac
    if [[ "$backend" == log4j2 ]]; then
        log4j="${log4j:-${LOG4J2_VERSION:-2.24.3}}"
        case "$slf4j" in
            1.*) artifacts+=("org.apache.logging.log4j:log4j-slf4j-impl:$log4j") ;;
            *)   artifacts+=("org.apache.logging.log4j:log4j-slf4j2-impl:$log4j") ;;
        esac
        artifacts+=("org.apache.logging.log4j:log4j-api:$log4j" "org.apache.logging.log4j:log4j-core:$log4j")
    else
        log4j=""
        artifacts+=("org.slf4j:slf4j-reload4j:$slf4j" "ch.qos.reload4j:reload4j:1.2.25")
    fi
    local a
    for a in "${artifacts[@]}"; do
        if ! mvn -B -q -C -f "$work/pom.xml" dependency:copy -Dartifact="$a" \
                -DoutputDirectory="$tmp" >>"$log" 2>&1; then
            tail_log "$log" 30
            die "maven could not fetch $a (log: $log)"
        fi
    done

    if [[ "$pin" == 1 ]]; then
        { printf '# SHA-512 of every jar scripts/stack.sh installs for Kafka %s (broker, its runtime\n' "$KAFKA_VERSION"
          printf '# dependencies from Maven Central and the logging binding), in sha512sum format.\n'
          printf '# Checked on every `stack.sh install|up`; refresh with `bash scripts/stack.sh pin-kafka`.\n'
          (cd "$tmp" && sha512sum -- *.jar | sort -k2); } >"$KAFKA_PINS"
        say "pinned $(grep -vc '^#' "$KAFKA_PINS") jars in $KAFKA_PINS: review and commit it"
    elif ! differences="$(kafka_jar_differences "$tmp")" || [[ -n "$differences" ]]; then
        rm -rf "$work"
        die "the kafka $KAFKA_VERSION jars just downloaded do not match $KAFKA_PINS:
$differences
Refused: nothing was installed. A changed dependency or a tampered download; if a new
pin is intended, review the release and run \`bash scripts/stack.sh pin-kafka\`."
    fi

    # Swap the finished folder in, then write the marker: an interrupted run
    # leaves no marker and is simply redone next time.
    rm -rf "$KAFKA_LIBS"
    mv "$tmp" "$KAFKA_LIBS"
    rm -rf "$work"
    printf 'kafka_2.13 %s\nslf4j-api %s\nbackend %s %s\nbinding %s\n' \
        "$KAFKA_VERSION" "$slf4j" "$backend" "$log4j" "${artifacts[0]}" >"$KAFKA_MARKER"
    say "kafka $KAFKA_VERSION: $(find "$KAFKA_LIBS" -name '*.jar' | wc -l) jars (binding ${artifacts[0]})"
}

# ---------------------------------------------------------------------------
# Python
# ---------------------------------------------------------------------------
# The venv's progress goes to stderr: `env` must print nothing but its exports.
ensure_venv() {
    bash "$REPO_ROOT/scripts/venv.sh" >&2
}

usage() {
    sed -n '6,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

main() {
    local cmd="${1:-}"
    case "$cmd" in
        install | up)
            install_apt_packages
            ensure_venv
            load_stack_env
            install_kafka_jars
            ;;
        pin-kafka)
            install_apt_packages
            ensure_venv
            load_stack_env
            install_kafka_jars 1
            exit 0
            ;;
        down | restart | status | env) ensure_venv ;;
        *) usage ;;
    esac
    exec "$VENV/bin/python" -m retention.stack "$@"
}

main "$@"
