"""The stack's Redis Cluster: three cluster-mode redis-servers joined into one cluster once.

Each node keeps its view of the cluster in nodes.conf, so nodes restarted on their data
find each other again by themselves. Only nodes that are all fresh (alone, no slots)
are joined, with `redis-cli --cluster create`, the tool Redis documents for it; anything
in between is reported rather than repaired.
"""

from __future__ import annotations

import subprocess
import time

import redis

from retention.stack.launch import REDIS_CLI
from retention.stack.process import running_pid, say, tail
from retention.stack.settings import CLUSTER_NODES, StackError, StackSettings
from retention.status import Check

POLL_SECONDS = 0.3
PROBE_TIMEOUT = 2.0


def cluster_info(port: int) -> dict[str, str] | None:
    """CLUSTER INFO of the node on `port` as a dict, or None when it does not answer."""
    client = redis.Redis(
        port=port,
        socket_timeout=PROBE_TIMEOUT,
        socket_connect_timeout=PROBE_TIMEOUT,
        decode_responses=True,
    )
    try:
        info = client.cluster("INFO")
    except redis.RedisError:
        return None
    finally:
        client.close()
    return {str(key): str(value) for key, value in dict(info).items()}


def node_check(stack: StackSettings, name: str) -> Check:
    """Ready once the node's cluster is whole: every slot served (cluster_state:ok) and
    every node known."""
    port = stack.service(name).port
    info = cluster_info(port)
    if info is None:
        return Check(name, False, f"not answering on 127.0.0.1:{port}")
    detail = (
        f"cluster_state:{info.get('cluster_state')}, {info.get('cluster_known_nodes')} "
        f"nodes known, {info.get('cluster_slots_assigned')} slots assigned"
    )
    return Check(name, _whole(info), detail, dict(info))


def node_started(stack: StackSettings, name: str) -> Check:
    """Ready to be joined: the node answers (in cluster mode)."""
    port = stack.service(name).port
    info = cluster_info(port)
    return Check(name, info is not None, f"127.0.0.1:{port} answers" if info else "no answer")


def form(stack: StackSettings) -> None:
    """Join fresh nodes into a cluster, then wait until every node sees it whole; nothing
    to do while a node is stopped (`restart` of one node of a stopped cluster)."""
    stopped = [name for name in CLUSTER_NODES if running_pid(stack, name) is None]
    if stopped:
        say(f"redis cluster: not formed while {', '.join(stopped)} is stopped")
        return
    infos = _infos(stack)
    if all(info is not None and _whole(info) for info in infos):
        return
    if all(info is not None and _fresh(info) for info in infos):
        _create(stack)
    deadline = time.monotonic() + stack.stack_start_timeout
    while not all(info is not None and _whole(info) for info in infos):
        if time.monotonic() > deadline:
            raise StackError(
                "the redis-cluster nodes do not form one whole cluster after "
                f"{stack.stack_start_timeout:g} s ({_summary(stack, infos)}); with its data "
                "disposable, `bash scripts/stack.sh down --purge` and `up` make a new one"
            )
        time.sleep(POLL_SECONDS)
        infos = _infos(stack)
    say(f"redis cluster ready ({len(CLUSTER_NODES)} masters, cluster_state:ok on every node)")


def _create(stack: StackSettings) -> None:
    """`redis-cli --cluster create`: the 16384 slots split among the nodes, no replicas."""
    nodes = [f"127.0.0.1:{port}" for port in stack.redis_cluster_ports]
    command = [REDIS_CLI, "--cluster", "create", *nodes, "--cluster-replicas", "0"]
    say(f"redis cluster: creating it from {', '.join(nodes)}")
    log = stack.log_file("redis-cluster-create")
    with log.open("ab") as out:
        done = subprocess.run(
            [*command, "--cluster-yes"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=stack.stack_start_timeout,
            check=False,
        )
    if done.returncode != 0:
        raise StackError(f"redis cluster: `{' '.join(command)}` failed\n{tail(log)}")


def _infos(stack: StackSettings) -> list[dict[str, str] | None]:
    return [cluster_info(port) for port in stack.redis_cluster_ports]


def _whole(info: dict[str, str]) -> bool:
    known = int(info.get("cluster_known_nodes", "0"))
    return info.get("cluster_state") == "ok" and known >= len(CLUSTER_NODES)


def _fresh(info: dict[str, str]) -> bool:
    return info.get("cluster_known_nodes") == "1" and info.get("cluster_slots_assigned") == "0"


def _summary(stack: StackSettings, infos: list[dict[str, str] | None]) -> str:
    parts = []
    for port, info in zip(stack.redis_cluster_ports, infos, strict=True):
        if info is None:
            parts.append(f"{port}: no answer")
        else:
            state, known = info.get("cluster_state"), info.get("cluster_known_nodes")
            slots = info.get("cluster_slots_assigned")
            parts.append(f"{port}: {state}, {known} known, {slots} slots")
    return "; ".join(parts)
