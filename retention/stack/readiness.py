"""When is a service usable: the same checks as `retention status`, pointed at the stack.

Kafka is ready once clients can join consumer groups, Redis once it answers (the
secured one once its ACL user logs in over TLS), Prometheus
and Alertmanager once /-/ready says so (retention/status.py has the checks); the Sentinel
once it names the standalone Redis as its service's primary, and a Redis Cluster node
once its cluster is whole (retention/stack/cluster.py).
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable

import redis

from retention.stack import cluster, secure_redis
from retention.stack.process import running_pid, tail
from retention.stack.settings import CLUSTER_NODES, StackError, StackSettings
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
    if name == secure_redis.SERVICE:
        # logs in as the ACL user over TLS: both the ACL and the TLS port work
        check = redis_check(secure_redis.client_settings(stack))
        return Check(name, check.ok, check.detail, check.data)
    if name == "redis-sentinel":
        return sentinel_check(stack)
    if name in CLUSTER_NODES:
        return cluster.node_check(stack, name)
    if name == "prometheus":
        return http_ready_check(name, stack.prometheus_url)
    if name == "alertmanager":
        return http_ready_check(name, stack.alertmanager_url)
    raise ValueError(f"no readiness check for {name!r}")


def started(stack: StackSettings, name: str) -> Check:
    """Ready for what `up` does next: a cluster node only has to answer before the
    cluster is formed (cluster.form); every other service has to be ready."""
    if name in CLUSTER_NODES:
        return cluster.node_started(stack, name)
    return check(stack, name)


def sentinel_check(stack: StackSettings) -> Check:
    """The sentinel answers and names the stack's Redis as its service's primary."""
    service, port = stack.redis_sentinel_service, stack.redis_sentinel_port
    client = redis.Redis(
        port=port, socket_timeout=2, socket_connect_timeout=2, decode_responses=True
    )
    try:
        address = client.sentinel_get_master_addr_by_name(service, return_responses=True)
    except redis.RedisError as exc:
        return Check("redis-sentinel", False, f"not answering on 127.0.0.1:{port} ({exc})")
    finally:
        client.close()
    expected = ("127.0.0.1", stack.redis_port)
    if not isinstance(address, tuple) or (str(address[0]), int(address[1])) != expected:
        return Check("redis-sentinel", False, f"service {service!r}: primary {address}")
    return Check("redis-sentinel", True, f"service {service!r}: primary 127.0.0.1:{expected[1]}")


def wait_ready(
    stack: StackSettings,
    name: str,
    child: subprocess.Popen[bytes] | None = None,
    probe: Callable[[StackSettings, str], Check] = check,
) -> None:
    """Poll until `probe` says `name` is ready; fail early with its log if the process
    exits, or after the start timeout. A process this command started (`child`) is
    watched through its own handle, which cannot mistake a starting JVM for a dead one."""
    deadline = time.monotonic() + stack.stack_start_timeout
    while not probe(stack, name).ok:
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
