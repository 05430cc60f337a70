"""The local stack (retention/stack): its ports come from the one Settings, its configs
are rendered from the repo's files, and it starts, restarts and purges a real service."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from core.redis_client import sync_client
from core.settings import Settings
from retention.stack.config import (
    directives,
    prometheus_yml,
    redis_cluster_conf,
    redis_conf,
    render,
    sentinel_conf,
)
from retention.stack.settings import CLUSTER_NODES, StackError, StackSettings
from tests.services import ROOT, free_port


def test_addresses_follow_the_ports_unless_given() -> None:
    moved = Settings(kafka_port=1234, redis_port=2345, webhook_port=3456)
    assert moved.kafka_bootstrap == "127.0.0.1:1234"
    assert moved.redis_url == "redis://127.0.0.1:2345/0"
    assert moved.alertmanager_webhook_url == "http://127.0.0.1:3456/alerts"
    given = Settings(kafka_port=1234, kafka_bootstrap="broker:9092")
    assert given.kafka_bootstrap == "broker:9092"


def test_env_prints_what_a_shell_can_eval(tmp_path: Path) -> None:
    env = {**os.environ, "RETENTION_REDIS_PORT": "2345", "RETENTION_STATE": str(tmp_path)}
    script = f'eval "$({sys.executable} -m retention.stack env)"; echo "$RETENTION_REDIS_URL"'
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "redis://127.0.0.1:2345/0"


def test_placeholders_name_settings_and_comments_stay() -> None:
    stack = StackSettings(exporter_port=1111, scrape_interval="7s")
    text = render(
        "# ${RETENTION_ANY}\na: ${RETENTION_EXPORTER_PORT}/${RETENTION_SCRAPE_INTERVAL}\n",
        stack,
    )
    assert text == "# ${RETENTION_ANY}\na: 1111/7s\n"
    for bad in ("${RETENTION_NO_SUCH_SETTING}", "${EXPORTER_PORT}"):
        with pytest.raises(StackError):
            render(bad, stack)
    assert "${" not in "".join(
        line for line in prometheus_yml(stack).splitlines() if not line.startswith("#")
    )


def test_redis_is_durable_and_keeps_customer_buckets_compact() -> None:
    conf = directives(redis_conf(StackSettings(redis_port=2345)))
    assert conf["port"] == "2345" and conf["bind"] == "127.0.0.1"
    assert (conf["appendonly"], conf["appendfsync"], conf["save"]) == ("yes", "everysec", "")
    assert conf["maxmemory-policy"] == "noeviction"
    assert conf["daemonize"] == "no"


@pytest.fixture
def second_stack(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Environment of a stack on free ports in a temporary state directory; purged after."""
    ports = ("KAFKA", "KAFKA_CONTROLLER", "REDIS", "REDIS_SENTINEL", "PROMETHEUS", "ALERTMANAGER")
    env = {**os.environ, "RETENTION_STATE": str(tmp_path / "stack")}
    env.update({f"RETENTION_{name}_PORT": str(free_port()) for name in ports})
    for name in ("REDIS_CLUSTER_PORTS", "REDIS_CLUSTER_BUS_PORTS"):
        env[f"RETENTION_{name}"] = ",".join(str(free_port()) for _ in CLUSTER_NODES)
    yield env
    stack(env, "down", "--purge")


def stack(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "retention.stack", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.integration
def test_restart_keeps_redis_data_and_purge_removes_it(second_stack: dict[str, str]) -> None:
    """A real redis-server started by `restart` (which starts a stopped service) in its
    own state directory: the data survives a restart, `down --purge` removes all of it."""
    env = second_stack
    state = Path(env["RETENTION_STATE"])
    started = stack(env, "restart", "redis")
    assert started.returncode == 0, started.stdout + started.stderr
    client = redis.Redis(port=int(env["RETENTION_REDIS_PORT"]), decode_responses=True)
    assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
    client.set("kept", "yes")
    pid = int((state / "run" / "redis.pid").read_text())

    status = stack(env, "status")
    assert status.returncode == 3, status.stdout  # kafka, prometheus, alertmanager stopped
    assert str(pid) in status.stdout

    again = stack(env, "restart", "redis")
    assert again.returncode == 0, again.stdout + again.stderr
    assert int((state / "run" / "redis.pid").read_text()) != pid
    assert not Path(f"/proc/{pid}/cwd").exists()  # the old server is gone
    assert client.get("kept") == "yes"

    purged = stack(env, "down", "--purge")
    assert purged.returncode == 0, purged.stderr
    assert not state.exists()


def test_cluster_nodes_and_sentinel_have_their_own_ports_and_configs() -> None:
    stack = StackSettings(
        redis_port=2345,
        redis_sentinel_port=5000,
        redis_cluster_ports="3001,3002,3003",
        redis_cluster_bus_ports=(4001, 4002, 4003),
    )
    node = directives(redis_cluster_conf(stack, 1))
    assert (node["port"], node["cluster-port"], node["cluster-enabled"]) == ("3002", "4002", "yes")
    assert node["dir"] == str(stack.state / "redis-cluster-2")
    assert (node["appendonly"], node["maxmemory-policy"]) == ("yes", "noeviction")
    sentinel = sentinel_conf(stack)
    assert "sentinel monitor retention 127.0.0.1 2345 1\n" in sentinel
    assert stack.redis_cluster_url == "redis+cluster://127.0.0.1:3001,127.0.0.1:3002,127.0.0.1:3003"
    assert stack.redis_sentinel_url == "redis+sentinel://127.0.0.1:5000/retention/0"
    assert stack.service("redis-cluster-3").ports == (3003, 4003)
    exported = stack.exports()
    assert exported["RETENTION_REDIS_CLUSTER_PORTS"] == "3001,3002,3003"
    again = StackSettings(redis_cluster_ports=exported["RETENTION_REDIS_CLUSTER_PORTS"])
    assert again.redis_cluster_ports == (3001, 3002, 3003)


def test_a_cluster_needs_three_ports() -> None:
    with pytest.raises(ValueError, match="redis_cluster_ports"):
        StackSettings(redis_cluster_ports="3001,3002")


def started(env: dict[str, str], name: str) -> str:
    """`restart` a (stopped) service of the second stack; its output."""
    done = stack(env, "restart", name)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.integration
def test_cluster_is_created_once_and_rejoins_after_restarts(second_stack: dict[str, str]) -> None:
    """Three real cluster-mode redis-servers: joined into one cluster when fresh, their
    keys kept and the cluster whole again after a node's restart and after `down`."""
    env = second_stack
    assert "creating it" in "".join(started(env, name) for name in CLUSTER_NODES)
    seeds = ",".join(f"127.0.0.1:{p}" for p in env["RETENTION_REDIS_CLUSTER_PORTS"].split(","))
    settings = Settings(redis_url=f"redis+cluster://{seeds}")
    client = sync_client(settings, timeout=5, decode_responses=True)
    assert len(client.get_primaries()) == 3
    for i in range(100):  # keys in slots of every node
        client.set(f"k{i}", i)
    assert {client.keyslot(f"k{i}") * 3 // 16384 for i in range(100)} == {0, 1, 2}
    client.close()

    listed = stack(env, "status")
    for name in CLUSTER_NODES:
        assert re.search(rf"{name} +│ ready .*cluster_state:ok", listed.stdout), listed.stdout

    assert "creating" not in started(env, "redis-cluster-2")
    assert stack(env, "down").returncode == 0
    assert "stopped" in stack(env, "status").stdout
    assert "creating" not in "".join(started(env, name) for name in CLUSTER_NODES)
    client = sync_client(settings, timeout=5, decode_responses=True)
    assert [client.get(f"k{i}") for i in range(100)] == [str(i) for i in range(100)]
    client.close()


@pytest.mark.integration
def test_sentinel_names_the_standalone_redis(second_stack: dict[str, str]) -> None:
    """A client of the Sentinel URL writes to the stack's standalone Redis."""
    env = second_stack
    started(env, "redis")
    assert "ready" in started(env, "redis-sentinel")
    sentinel = f"127.0.0.1:{env['RETENTION_REDIS_SENTINEL_PORT']}"
    client = sync_client(Settings(redis_url=f"redis+sentinel://{sentinel}/retention/0"), timeout=5)
    client.set("through-sentinel", "yes")
    client.close()
    direct = redis.Redis(port=int(env["RETENTION_REDIS_PORT"]), decode_responses=True)
    assert direct.get("through-sentinel") == "yes"
    direct.close()
