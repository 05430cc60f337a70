"""When is a service usable: the same checks as `retention status`, pointed at the stack.

Kafka is ready once clients can join consumer groups, Redis once it answers, Prometheus
and Alertmanager once /-/ready says so (retention/status.py has the checks).
"""

from __future__ import annotations

import asyncio
import subprocess
import time

from retention.stack.process import running_pid, tail
from retention.stack.settings import StackError, StackSettings
from retention.status import Check, http_ready_check, kafka_check, redis_check

POLL_SECONDS = 0.3


def check(stack: StackSettings, name: str) -> Check:
    """One look at the stack's own `name`, on its ports (not wherever RETENTION_*_URL
    may point the tracker)."""
    if name == "kafka":
        # the PLAINTEXT listener, whatever security RETENTION_KAFKA_* give the clients
        plain = {"kafka_bootstrap": f"127.0.0.1:{stack.kafka_port}"}
        plain["kafka_security_protocol"] = "PLAINTEXT"
        return asyncio.run(kafka_check(stack.model_copy(update=plain)))
    if name == "redis":
        local = stack.model_copy(update={"redis_url": f"redis://127.0.0.1:{stack.redis_port}/0"})
        return redis_check(local)
    if name == "prometheus":
        return http_ready_check(name, stack.prometheus_url)
    if name == "alertmanager":
        return http_ready_check(name, stack.alertmanager_url)
    raise ValueError(f"no readiness check for {name!r}")


def wait_ready(
    stack: StackSettings, name: str, child: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll until `name` is ready; fail early with its log if the process exits, or
    after the start timeout. A process this command started (`child`) is watched through
    its own handle, which cannot mistake a starting JVM for a dead one."""
    deadline = time.monotonic() + stack.stack_start_timeout
    while not check(stack, name).ok:
        exited = child.poll() is not None if child else running_pid(stack, name) is None
        if exited:
            raise StackError(
                f"{name}: the process exited during start-up\n{tail(stack.log_file(name))}"
            )
        if time.monotonic() > deadline:
            raise StackError(
                f"{name}: not ready after {stack.stack_start_timeout:g} s\n"
                f"{tail(stack.log_file(name))}"
            )
        time.sleep(POLL_SECONDS)
