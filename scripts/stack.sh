#!/usr/bin/env bash
# stack.sh — the ONE place that installs, starts and stops the local service stack
# (Apache Kafka in KRaft mode, Redis, Prometheus, Alertmanager) for development, tests and CI.
#
#   bash scripts/stack.sh install          install missing packages / Kafka jars (idempotent)
#   bash scripts/stack.sh up               install, then start everything and wait until READY
#   bash scripts/stack.sh down [--purge]   stop what we started; --purge also deletes the state dir
#   bash scripts/stack.sh restart SERVICE  stop and start one service (kafka, redis, ...) on its data
#   bash scripts/stack.sh status           one line per service; exit 0 if all running, 3 otherwise
#   bash scripts/stack.sh env              print `export ...` lines (eval "$(bash scripts/stack.sh env)")
#
# Everything listens on 127.0.0.1 only, on non-default ports so that a system
# redis/prometheus (if any) never collides with ours. Configuration via env vars:
#   KAFKA_VERSION (4.4.0)  KAFKA_PORT (19092)  KAFKA_CONTROLLER_PORT (19093)
#   REDIS_PORT (16379)     PROMETHEUS_PORT (19090)  EXPORTER_PORT (18000)
#   WORKER_METRICS_PORT (18001)  scraped by Prometheus (the worker's RETENTION_WORKER_METRICS_PORT)
#   ALERTMANAGER_PORT (19095)    ALERTMANAGER_WEBHOOK_URL (http://127.0.0.1:19096/alerts)
#   PROMETHEUS_SCRAPE_INTERVAL (5s)
#   RETENTION_CACHE (~/.cache/retention-tracker)  jar cache, survives `down --purge`
#   RETENTION_STATE (<repo>/.stack)               pid files, logs, data
#   STACK_START_TIMEOUT (90)  seconds to wait for each service to become ready
#   STACK_STOP_TIMEOUT (20)   seconds between SIGTERM and SIGKILL on `down`
set -euo pipefail

# ---------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------
# Resolve the repo root from the script's own path so it works from any cwd.
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"

# 4.4.0: newest release on Maven Central; verified with aiokafka 0.14.0 and
# faust-streaming 0.15.3 (produce/consume with a committed consumer group,
# transactions, a faust worker with a table). 4.3.1, 4.0.2 and 3.9.2 also pass
# the same checks and can be selected with KAFKA_VERSION=...
KAFKA_VERSION="${KAFKA_VERSION:-4.4.0}"
KAFKA_PORT="${KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-19093}"
REDIS_PORT="${REDIS_PORT:-16379}"
PROMETHEUS_PORT="${PROMETHEUS_PORT:-19090}"
EXPORTER_PORT="${EXPORTER_PORT:-18000}"
WORKER_METRICS_PORT="${WORKER_METRICS_PORT:-18001}"
# 19093 is Kafka's controller port and 9094 Alertmanager's cluster port, hence 19095.
ALERTMANAGER_PORT="${ALERTMANAGER_PORT:-19095}"
# Where Alertmanager POSTs alerts (`python3 prometheus/alert_log.py --port 19096` prints them).
ALERTMANAGER_WEBHOOK_URL="${ALERTMANAGER_WEBHOOK_URL:-http://127.0.0.1:19096/alerts}"
PROMETHEUS_SCRAPE_INTERVAL="${PROMETHEUS_SCRAPE_INTERVAL:-5s}"
RETENTION_CACHE="${RETENTION_CACHE:-$HOME/.cache/retention-tracker}"
RETENTION_STATE="${RETENTION_STATE:-$REPO_ROOT/.stack}"
STACK_START_TIMEOUT="${STACK_START_TIMEOUT:-90}"
STACK_STOP_TIMEOUT="${STACK_STOP_TIMEOUT:-20}"

KAFKA_HOME="$RETENTION_CACHE/kafka-$KAFKA_VERSION"
KAFKA_LIBS="$KAFKA_HOME/libs"
KAFKA_MARKER="$KAFKA_HOME/.installed"   # written only after a complete download

RUN_DIR="$RETENTION_STATE/run"   # pid files
LOG_DIR="$RETENTION_STATE/logs"  # one log per service
STATE_MARKER="$RETENTION_STATE/.retention-stack"  # guards `rm -rf` on --purge

SERVICES=(kafka redis alertmanager prometheus)   # start order; stop order is reversed
APT_PACKAGES=(redis-server prometheus prometheus-alertmanager)

# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------
say() { printf 'stack: %s\n' "$*"; }
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

# True if something accepts TCP connections on 127.0.0.1:$1. Pure bash, no nc/ss needed.
port_open() {
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

pid_file() { printf '%s/%s.pid\n' "$RUN_DIR" "$1"; }
svc_dir()  { printf '%s/%s\n' "$RETENTION_STATE" "$1"; }
svc_log()  { printf '%s/%s.log\n' "$LOG_DIR" "$1"; }

svc_ports() {
    case "$1" in
        kafka)      echo "$KAFKA_PORT $KAFKA_CONTROLLER_PORT" ;;
        redis)      echo "$REDIS_PORT" ;;
        prometheus) echo "$PROMETHEUS_PORT" ;;
        alertmanager) echo "$ALERTMANAGER_PORT" ;;
    esac
}

# Pid of our running instance of a service, or nothing. A pid only counts as
# ours if the process is alive AND its cwd is the service's state dir (we start
# every service from there). This guards against pid reuse after a reboot or a
# crash; cmdline can't be used because redis rewrites its process title.
svc_pid() {
    local f pid cwd
    f="$(pid_file "$1")"
    [[ -f "$f" ]] || return 0
    pid="$(cat "$f" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    cwd="$(readlink "/proc/$pid/cwd" 2>/dev/null || true)"
    [[ "$cwd" == "$(svc_dir "$1")" ]] || return 0
    echo "$pid"
}

# ---------------------------------------------------------------------------
# install
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
    command -v curl >/dev/null 2>&1 || missing+=(curl)
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

# Download the broker's runtime jars (+ an SLF4J logging binding, which Kafka's
# POM does not include: it only ships in the release tarball) from Maven Central
# into $KAFKA_LIBS. Skipped when the marker from a previous complete run exists.
install_kafka_jars() {
    if [[ -f "$KAFKA_MARKER" && -d "$KAFKA_LIBS" ]]; then
        say "kafka $KAFKA_VERSION jars cached in $KAFKA_LIBS"
        return 0
    fi
    command -v mvn >/dev/null 2>&1 || die "mvn not found (install 'maven')"
    say "downloading kafka $KAFKA_VERSION jars from Maven Central (one-off, ~1 min) ..."

    local work tmp log
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
    if ! mvn -B -q -f "$work/pom.xml" dependency:copy-dependencies \
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
        if ! mvn -B -q -f "$work/pom.xml" dependency:copy -Dartifact="$a" \
                -DoutputDirectory="$tmp" >>"$log" 2>&1; then
            tail_log "$log" 30
            die "maven could not fetch $a (log: $log)"
        fi
    done

    # Swap the finished folder in, then write the marker: an interrupted run
    # leaves no marker and is simply redone next time.
    rm -rf "$KAFKA_LIBS"
    mv "$tmp" "$KAFKA_LIBS"
    rm -rf "$work"
    printf 'kafka_2.13 %s\nslf4j-api %s\nbackend %s %s\nbinding %s\n' \
        "$KAFKA_VERSION" "$slf4j" "$backend" "$log4j" "${artifacts[0]}" >"$KAFKA_MARKER"
    say "kafka $KAFKA_VERSION: $(find "$KAFKA_LIBS" -name '*.jar' | wc -l) jars (binding ${artifacts[0]})"
}

cmd_install() {
    install_apt_packages
    install_kafka_jars
}

# ---------------------------------------------------------------------------
# Starting services
# ---------------------------------------------------------------------------
# Start "$@" detached from this shell (new session, ignores SIGHUP, no stdin) so
# it survives the caller exiting, with its cwd = the service's state dir (which
# svc_pid uses to recognise it). Records the pid.
spawn() {
    local name="$1"; shift
    local dir log pid
    dir="$(svc_dir "$name")"
    log="$(svc_log "$name")"
    # bash's background child is not a process-group leader, so setsid doesn't
    # fork and nohup execs: $! is the pid of the real server process.
    # fd 9 (our lock, see take_lock) must not leak into the daemon, or it would
    # hold the lock for its whole life.
    (cd "$dir" && exec setsid nohup "$@" >>"$log" 2>&1 </dev/null 9>&-) &
    pid=$!
    echo "$pid" >"$(pid_file "$name")"
    # svc_pid knows the process by its working directory, which the child enters only
    # after the fork: on a busy machine a check right away could take it for dead.
    local _
    for _ in $(seq 1 100); do
        [[ "$(readlink "/proc/$pid/cwd" 2>/dev/null || true)" == "$dir" ]] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.02
    done
}

# Fail early and clearly if a port we need is taken by a process we didn't start.
check_ports_free() {
    local name="$1" p
    for p in $(svc_ports "$name"); do
        if port_open "$p"; then
            local who=""
            command -v ss >/dev/null 2>&1 && who="$(ss -Hltnp "sport = :$p" 2>/dev/null | head -n3 || true)"
            die "$name: port $p on 127.0.0.1 is already in use by something not started by stack.sh${who:+:
$who}
Stop it, or pick other ports (e.g. ${name^^}_PORT=...)."
        fi
    done
}

write_kafka_config() {
    local dir="$1"
    # Single node acting as broker AND controller (KRaft, no ZooKeeper).
    # Every replication factor / min ISR must be 1, otherwise the internal
    # topics (__consumer_offsets, transactions, share groups) can never be
    # created and consumer groups hang forever in FindCoordinator.
    cat >"$dir/server.properties" <<EOF
# generated by scripts/stack.sh — edits are overwritten on every 'up'
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data

num.partitions=4
default.replication.factor=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
min.insync.replicas=1
# a new consumer group would otherwise wait 3 s for more members before the first rebalance
group.initial.rebalance.delay.ms=0

# small footprint for a test box
num.network.threads=2
num.io.threads=4
log.retention.hours=24
log.segment.bytes=67108864
EOF

    # Logging to a file under the state dir. Kafka >= 4 uses log4j2, 3.x uses
    # log4j 1 (reload4j) — see install_kafka_jars; both configs are written.
    cat >"$dir/log4j2.properties" <<EOF
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = $LOG_DIR/kafka.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka-request.name = kafka.request.logger
logger.kafka-request.level = WARN
logger.state-change.name = state.change.logger
logger.state-change.level = WARN
EOF
    cat >"$dir/log4j.properties" <<EOF
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$LOG_DIR/kafka.log
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
EOF
}

# The JVM command line for Kafka's main classes (as bin/kafka-run-class.sh builds
# it). An array, not a function, because spawn() has to `exec` a real program.
kafka_java_cmd() {
    KAFKA_JAVA=(java -Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20
        -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true
        -Dkafka.logs.dir="$LOG_DIR"
        -Dlog4j2.configurationFile="$(svc_dir kafka)/log4j2.properties"
        -Dlog4j.configuration="file:$(svc_dir kafka)/log4j.properties"
        -cp "$KAFKA_LIBS/*")
}

start_kafka() {
    local dir cid
    dir="$(svc_dir kafka)"
    mkdir -p "$dir/data"
    write_kafka_config "$dir"
    kafka_java_cmd
    # Format the log dir once per fresh data dir; the cluster id is kept next to
    # it (re-formatting an existing dir with another id fails).
    if [[ ! -f "$dir/data/meta.properties" ]]; then
        if [[ ! -s "$dir/cluster.id" ]]; then
            # Kafka's Uuid: 16 random bytes, base64url without padding (22 chars).
            # Generated here to save a JVM start; avoid a leading '-' (CLI parsing).
            cid="-"
            while [[ "$cid" == -* ]]; do
                cid="$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
            done
            echo "$cid" >"$dir/cluster.id"
        fi
        cid="$(cat "$dir/cluster.id")"
        say "kafka: formatting storage (cluster id $cid)"
        if ! "${KAFKA_JAVA[@]}" kafka.tools.StorageTool format -t "$cid" -c "$dir/server.properties" \
                >>"$(svc_log kafka)" 2>&1; then
            tail_log "$(svc_log kafka)"
            die "kafka: storage format failed"
        fi
    fi
    spawn kafka "${KAFKA_JAVA[@]}" kafka.Kafka "$dir/server.properties"
}

start_redis() {
    local dir
    dir="$(svc_dir redis)"
    mkdir -p "$dir"
    # daemonize no: we background it ourselves and keep the real pid.
    cat >"$dir/redis.conf" <<EOF
# generated by scripts/stack.sh
port $REDIS_PORT
bind 127.0.0.1
protected-mode yes
daemonize no
pidfile $dir/redis-server.pid
# Redis chdirs into its dir, and svc_pid recognises our process by its cwd: keep it the
# service dir. The append-only files go to $dir/appendonlydir (purged with the rest).
dir $dir
logfile ""
# Durable: every write is appended to the AOF and fsynced once a second, so a crash
# loses at most the last second and a stop or restart loses nothing. The AOF rewrite
# keeps an RDB preamble, so no separate RDB snapshots.
save ""
appendonly yes
appendfsync everysec
# When full, refuse writes (the worker retries) rather than evict customer state.
maxmemory-policy noeviction
# Customers live many to a hash, each one binary value (streams/customer.lua): keep
# those buckets compact listpacks. RETENTION_CUSTOMER_BUCKETS is sized for at most 512
# customers per bucket; a value over the limit (a customer with years of day bitmaps)
# would turn its whole bucket into a hashtable of ~2.5x the memory, so allow large ones.
hash-max-listpack-entries 512
hash-max-listpack-value 2048
EOF
    spawn redis /usr/bin/redis-server "$dir/redis.conf"
}

render_prometheus_config() {
    local dir="$1" tmpl="$REPO_ROOT/prometheus/prometheus.yml"
    [[ -f "$tmpl" ]] || die "prometheus: template $tmpl missing"
    # Replace only our own placeholders; any other '$' in the file is left alone.
    sed -e "s|\${PROMETHEUS_SCRAPE_INTERVAL}|$PROMETHEUS_SCRAPE_INTERVAL|g" \
        -e "s|\${EXPORTER_PORT}|$EXPORTER_PORT|g" \
        -e "s|\${WORKER_METRICS_PORT}|$WORKER_METRICS_PORT|g" \
        -e "s|\${ALERTMANAGER_PORT}|$ALERTMANAGER_PORT|g" \
        -e "s|\${PROMETHEUS_PORT}|$PROMETHEUS_PORT|g" \
        "$tmpl" >"$dir/prometheus.yml"
    # rule_files are relative to the rendered config: point rules/ at the repo's.
    ln -sfn "$REPO_ROOT/prometheus/rules" "$dir/rules"
}

start_prometheus() {
    local dir
    dir="$(svc_dir prometheus)"
    mkdir -p "$dir/data"
    render_prometheus_config "$dir"
    # Validate first: a broken config/rule file is reported precisely instead of
    # surfacing as a start-up timeout.
    if command -v promtool >/dev/null 2>&1; then
        local out
        if ! out="$(promtool check config "$dir/prometheus.yml" 2>&1)"; then
            printf '%s\n' "$out" >&2
            die "prometheus: config check failed ($dir/prometheus.yml)"
        fi
    fi
    spawn prometheus /usr/bin/prometheus \
        --config.file="$dir/prometheus.yml" \
        --storage.tsdb.path="$dir/data" \
        --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" \
        --web.enable-lifecycle
}

# The repo's alertmanager.yml is the compose config; locally only its webhook URL
# (the compose service `alert-log`) is replaced by $ALERTMANAGER_WEBHOOK_URL.
render_alertmanager_config() {
    local dir="$1" src="$REPO_ROOT/prometheus/alertmanager.yml"
    [[ -f "$src" ]] || die "alertmanager: config $src missing"
    grep -q 'http://alert-log:5001/alerts' "$src" \
        || die "alertmanager: $src has no 'http://alert-log:5001/alerts' webhook URL to replace"
    sed -e "s|http://alert-log:5001/alerts|$ALERTMANAGER_WEBHOOK_URL|g" "$src" >"$dir/alertmanager.yml"
}

start_alertmanager() {
    local dir out
    dir="$(svc_dir alertmanager)"
    mkdir -p "$dir/data"
    render_alertmanager_config "$dir"
    if command -v amtool >/dev/null 2>&1; then
        if ! out="$(amtool check-config "$dir/alertmanager.yml" 2>&1)"; then
            printf '%s\n' "$out" >&2
            die "alertmanager: config check failed ($dir/alertmanager.yml)"
        fi
    fi
    # --cluster.listen-address= (empty) turns off HA gossip, which would otherwise
    # listen on 0.0.0.0:9094.
    spawn alertmanager /usr/bin/prometheus-alertmanager \
        --config.file="$dir/alertmanager.yml" \
        --storage.path="$dir/data" \
        --web.listen-address="127.0.0.1:$ALERTMANAGER_PORT" \
        --cluster.listen-address=
}

# ---------------------------------------------------------------------------
# Readiness checks (each returns 0 when the service can really be used)
# ---------------------------------------------------------------------------
ready_redis() {
    [[ "$(timeout 3 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null || true)" == "PONG" ]]
}

ready_prometheus() {
    curl -sf -m 3 -o /dev/null "http://127.0.0.1:$PROMETHEUS_PORT/-/ready"
}

ready_alertmanager() {
    curl -sf -m 3 -o /dev/null "http://127.0.0.1:$ALERTMANAGER_PORT/-/ready"
}

# Kafka: send a real Metadata (v4) request and require >= 1 live broker and an
# elected controller. The broker only lists itself once it is unfenced, so this
# is the point where clients (and consumer groups) can work. stdlib only.
ready_kafka() {
    port_open "$KAFKA_PORT" || return 1
    if ! command -v python3 >/dev/null 2>&1; then
        # No python: fall back to "port open + log says started".
        grep -qE 'Kafka Server started|started \(kafka.server' "$(svc_log kafka)" 2>/dev/null
        return
    fi
    timeout 10 python3 - "$KAFKA_PORT" <<'PY' 2>/dev/null
import socket, struct, sys
port = int(sys.argv[1])
client = b"stack.sh"

def request(api_key, version, corr, payload):
    """One Kafka request with a v1 header; returns the response body."""
    body = struct.pack(">hhih", api_key, version, corr, len(client)) + client + payload
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(struct.pack(">i", len(body)) + body)
        def recv(n):
            buf = b""
            while len(buf) < n:
                chunk = s.recv(n - len(buf))
                if not chunk:
                    raise EOFError("connection closed")
                buf += chunk
            return buf
        (size,) = struct.unpack(">i", recv(4))
        return recv(size)

# Metadata v4: topics = null (all), allow_auto_topic_creation = false
data = request(3, 4, 42, struct.pack(">ib", -1, 0))
corr, _throttle, nbrokers = struct.unpack_from(">iii", data, 0)
off = 12
for _ in range(nbrokers):
    off += 4                                             # node_id
    (hl,) = struct.unpack_from(">h", data, off); off += 2 + hl   # host
    off += 4                                             # port
    (rl,) = struct.unpack_from(">h", data, off); off += 2 + max(rl, 0)  # rack
(cl,) = struct.unpack_from(">h", data, off); off += 2 + max(cl, 0)      # cluster_id
(controller,) = struct.unpack_from(">i", data, off)
if not (corr == 42 and nbrokers >= 1 and controller >= 0):
    sys.exit(1)
# The group coordinator comes up after the broker: the first FindCoordinator creates
# __consumer_offsets, and until it answers error 0 consumer groups fail with
# GroupCoordinatorNotAvailable. Clients should never see that from a "ready" stack.
group = b"stack.sh-ready-probe"
data = request(10, 1, 43, struct.pack(">h", len(group)) + group + struct.pack(">b", 0))
corr, _throttle, error = struct.unpack_from(">iih", data, 0)
sys.exit(0 if corr == 43 and error == 0 else 1)
PY
}

# Wait until ready_$1 succeeds; bail out early if the process died.
wait_ready() {
    local name="$1" deadline=$((SECONDS + STACK_START_TIMEOUT))
    while true; do
        if "ready_$name"; then return 0; fi
        if [[ -z "$(svc_pid "$name")" ]]; then
            tail_log "$(svc_log "$name")"
            die "$name: process exited during start-up (log: $(svc_log "$name"))"
        fi
        if ((SECONDS >= deadline)); then
            tail_log "$(svc_log "$name")"
            die "$name: not ready after ${STACK_START_TIMEOUT}s (log: $(svc_log "$name"))"
        fi
        sleep 0.3
    done
}

ensure_state_dir() {
    mkdir -p "$RETENTION_STATE" "$RUN_DIR" "$LOG_DIR"
    [[ -f "$STATE_MARKER" ]] || echo "state dir of retention-tracker scripts/stack.sh" >"$STATE_MARKER"
}

# Serialize concurrent up/down calls (e.g. two test sessions starting at once).
take_lock() {
    ensure_state_dir
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$RETENTION_STATE/.lock"
        flock -w 300 9 || die "another stack.sh is still running (lock $RETENTION_STATE/.lock)"
    fi
}

# Start a service that is not running and wait until it is ready.
start_service() {
    local name="$1" t0=$SECONDS
    rm -f "$(pid_file "$name")"
    check_ports_free "$name"
    mkdir -p "$(svc_dir "$name")"
    "start_$name"
    wait_ready "$name"
    say "$name ready (pid $(svc_pid "$name"), port $(svc_ports "$name" | cut -d' ' -f1), $((SECONDS - t0))s)"
}

cmd_up() {
    cmd_install
    take_lock
    local name pid
    for name in "${SERVICES[@]}"; do
        pid="$(svc_pid "$name")"
        if [[ -n "$pid" ]]; then
            wait_ready "$name"
            say "$name already running (pid $pid, port $(svc_ports "$name" | cut -d' ' -f1))"
            continue
        fi
        start_service "$name"
    done
}

# Stop one service and start it again on the data it has (a stopped one is just
# started). The others keep running, e.g. a worker that has to ride out the restart.
cmd_restart() {
    (($# == 1)) || die "restart: name one service (${SERVICES[*]})"
    local name="$1"
    [[ " ${SERVICES[*]} " == *" $name "* ]] || die "restart: unknown service '$name' (${SERVICES[*]})"
    take_lock
    stop_service "$name"
    start_service "$name"
}

# ---------------------------------------------------------------------------
# down / status / env
# ---------------------------------------------------------------------------
stop_service() {
    local name="$1" pid deadline
    pid="$(svc_pid "$name")"
    if [[ -z "$pid" ]]; then
        rm -f "$(pid_file "$name")"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + STACK_STOP_TIMEOUT))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
        say "$name (pid $pid) ignored SIGTERM for ${STACK_STOP_TIMEOUT}s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
    rm -f "$(pid_file "$name")"
    say "$name stopped (pid $pid)"
}

cmd_down() {
    local purge=0 arg i
    for arg in "$@"; do
        case "$arg" in
            --purge) purge=1 ;;
            *) die "down: unknown option $arg" ;;
        esac
    done
    if [[ ! -d "$RETENTION_STATE" ]]; then
        say "nothing to stop ($RETENTION_STATE does not exist)"
        return 0
    fi
    take_lock
    for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do stop_service "${SERVICES[i]}"; done
    if ((purge)); then
        # Only delete a directory that we created (marker file), never e.g. $HOME.
        [[ -f "$STATE_MARKER" ]] || die "refusing to purge $RETENTION_STATE: no $STATE_MARKER"
        rm -rf "$RETENTION_STATE"
        say "purged $RETENTION_STATE"
    fi
}

cmd_status() {
    local name pid state ready all=0
    for name in "${SERVICES[@]}"; do
        pid="$(svc_pid "$name")"
        if [[ -n "$pid" ]]; then
            state=running
            if "ready_$name"; then ready=ready; else ready=not-ready; fi
        else
            state=stopped; pid=-; ready=not-ready; all=3
        fi
        printf '%-12s %-8s pid=%-8s port=%-6s %s\n' \
            "$name" "$state" "$pid" "$(svc_ports "$name" | cut -d' ' -f1)" "$ready"
    done
    return "$all"
}

cmd_env() {
    cat <<EOF
export KAFKA_VERSION=$KAFKA_VERSION
export KAFKA_PORT=$KAFKA_PORT
export KAFKA_CONTROLLER_PORT=$KAFKA_CONTROLLER_PORT
export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_PORT
export REDIS_PORT=$REDIS_PORT
export REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
export PROMETHEUS_PORT=$PROMETHEUS_PORT
export PROMETHEUS_URL=http://127.0.0.1:$PROMETHEUS_PORT
export EXPORTER_PORT=$EXPORTER_PORT
export WORKER_METRICS_PORT=$WORKER_METRICS_PORT
export ALERTMANAGER_PORT=$ALERTMANAGER_PORT
export ALERTMANAGER_URL=http://127.0.0.1:$ALERTMANAGER_PORT
export ALERTMANAGER_WEBHOOK_URL=$ALERTMANAGER_WEBHOOK_URL
export PROMETHEUS_SCRAPE_INTERVAL=$PROMETHEUS_SCRAPE_INTERVAL
export RETENTION_STATE=$RETENTION_STATE
export RETENTION_CACHE=$RETENTION_CACHE
EOF
}

usage() {
    sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

main() {
    local cmd="${1:-}"
    (($#)) && shift
    case "$cmd" in
        install) cmd_install ;;
        up)      cmd_up ;;
        down)    cmd_down "$@" ;;
        restart) cmd_restart "$@" ;;
        status)  cmd_status ;;
        env)     cmd_env ;;
        *)       usage ;;
    esac
}

main "$@"
