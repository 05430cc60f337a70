"""The stack's commands: up, down, restart, status, env and install, on top of the parts."""

from __future__ import annotations

import shlex
import shutil
import time
from pathlib import Path

from retention.stack import certs, cluster, launch, process, readiness, scram, secure_redis
from retention.stack.process import say
from retention.stack.settings import CLUSTER_NODES, SERVICE_NAMES, StackError, StackSettings
from retention.status import Check


def install(stack: StackSettings) -> None:
    """Check that what scripts/stack.sh installs is here: the servers and the Kafka jars."""
    missing = launch.missing_programs()
    if not stack.kafka_installed.is_file():
        missing.append(f"kafka {stack.kafka_version} jars in {stack.kafka_libs}")
    if missing:
        raise StackError(f"missing: {', '.join(missing)}; `bash scripts/stack.sh install`")
    jars = len(list(stack.kafka_libs.glob("*.jar")))
    say(f"servers present; kafka {stack.kafka_version}: {jars} jars in {stack.kafka_libs}")


def _make_state_dir(stack: StackSettings) -> None:
    for where in (stack.state, stack.state / "run", stack.log_dir):
        where.mkdir(parents=True, exist_ok=True)
    if not stack.marker.exists():
        stack.marker.write_text("state directory of the retention-tracker local stack\n")


def start(stack: StackSettings, name: str) -> None:
    """Start a service that is not running and wait until it is ready."""
    began = time.monotonic()
    stack.pid_file(name).unlink(missing_ok=True)
    process.check_ports_free(stack, name)
    child = process.spawn(stack, name, launch.prepare(stack, name))
    readiness.wait_ready(stack, name, child, readiness.started)
    if name == "kafka":
        scram.create_users(stack)
    pid, port = process.running_pid(stack, name), stack.service(name).port
    say(f"{name} ready (pid {pid}, port {port}, {time.monotonic() - began:.0f} s)")


def up(stack: StackSettings) -> None:
    """Start whatever is not running; a running service is only waited for, so `up` is
    safe to call again (and from any checkout that points RETENTION_STATE at it)."""
    install(stack)
    _make_state_dir(stack)
    with process.state_lock(stack):
        for name in SERVICE_NAMES:
            pid = process.running_pid(stack, name)
            if pid is None:
                start(stack, name)
            else:
                readiness.wait_ready(stack, name, probe=readiness.started)
                if name == "kafka":
                    _users_of_running_broker(stack)
                say(f"{name} already running (pid {pid}, port {stack.service(name).port})")
            if name == CLUSTER_NODES[-1]:
                cluster.form(stack)


def _users_of_running_broker(stack: StackSettings) -> None:
    """A running broker gets its SASL user too (its data directory may predate it); one
    started by an older stack has no SASL_SSL listener yet, which is said, not fatal:
    everything on the PLAINTEXT port goes on working."""
    if not process.port_in_use(stack.kafka_sasl_ssl_port):
        say(
            f"kafka: no SASL_SSL listener on port {stack.kafka_sasl_ssl_port} (started by an "
            "older stack); `bash scripts/stack.sh restart kafka` adds it"
        )
        return
    scram.create_users(stack)


def restart(stack: StackSettings, name: str) -> None:
    """Stop one service and start it again on its data; the others keep running (a
    worker can be made to ride out the restart)."""
    if name not in SERVICE_NAMES:
        raise StackError(f"unknown service {name!r} (one of {', '.join(SERVICE_NAMES)})")
    _make_state_dir(stack)
    with process.state_lock(stack):
        _stop(stack, name)
        start(stack, name)
        if name in CLUSTER_NODES:
            cluster.form(stack)


def _stop(stack: StackSettings, name: str) -> None:
    pid = process.stop(stack, name)
    if pid is not None:
        say(f"{name} stopped (pid {pid})")


def down(stack: StackSettings, purge: bool) -> None:
    """Stop what the stack started, last started first; with `purge`, delete its state
    directory too, but only one that carries the stack's marker (never, say, $HOME)."""
    if not stack.state.is_dir():
        say(f"nothing to stop ({stack.state} does not exist)")
        return
    with process.state_lock(stack):
        for name in reversed(SERVICE_NAMES):
            _stop(stack, name)
        if purge:
            if not stack.marker.is_file():
                raise StackError(f"refusing to delete {stack.state}: no {stack.marker.name}")
            shutil.rmtree(stack.state)
            say(f"purged {stack.state}")


def status(stack: StackSettings) -> list[tuple[str, int | None, Check | None]]:
    """Each service's pid (None when stopped) and, when running, its readiness."""
    rows: list[tuple[str, int | None, Check | None]] = []
    for name in SERVICE_NAMES:
        pid = process.running_pid(stack, name)
        rows.append((name, pid, None if pid is None else readiness.check(stack, name)))
    return rows


def env(stack: StackSettings, sasl_ssl: bool = False, redis_secure: bool = False) -> str:
    """`export` lines for a shell: eval "$(bash scripts/stack.sh env)"; with `sasl_ssl`,
    the clients' settings for the SASL_SSL listener, with `redis_secure` those for the
    secured Redis's TLS port; passwords as `$(cat FILE)`, never printed."""
    exports = stack.exports()
    if sasl_ssl:
        exports |= scram.client_env(stack, certs.Certificates(certs.certs_dir(stack)).ca)
    if redis_secure:
        exports |= secure_redis.client_env(stack)
    lines = [f"export {name}={shlex.quote(value)}" for name, value in exports.items()]
    if sasl_ssl:
        lines.append(f"export RETENTION_KAFKA_SASL_PASSWORD={_read(scram.password_file(stack))}")
    if redis_secure:
        file = secure_redis.password_file(stack)
        lines.append(f"export RETENTION_REDIS_PASSWORD={_read(file)}")
    return "\n".join(lines)


def _read(file: Path) -> str:
    """A shell expression for the content of `file`, read when the line is evaluated."""
    return f'"$(cat {shlex.quote(str(file))})"'
