"""RETENTION_REDIS_URL: the three deployment forms, what a bad one says, and which redis-py
client the factory makes of each (no server needed: these clients connect on first use)."""

from __future__ import annotations

import asyncio
import subprocess

import pytest
import redis
import redis.asyncio
from pydantic import ValidationError
from redis.exceptions import RedisClusterException, SlotNotCoveredError

from core.redis_client import (
    AsyncSentinelPrimary,
    SyncSentinelPrimary,
    async_client,
    is_outage,
    sync_client,
)
from core.redis_url import RedisDeployment, Topology, parse_redis_url
from core.settings import Settings
from tests.cli_fixtures import closed_port
from tests.services import RETENTION_BIN, ROOT


@pytest.mark.parametrize(
    ("url", "topology", "nodes", "db", "service"),
    [
        ("redis://127.0.0.1:16379/0", Topology.STANDALONE, (("127.0.0.1", 16379),), 0, ""),
        ("rediss://cache.example:6380/3", Topology.STANDALONE, (("cache.example", 6380),), 3, ""),
        ("redis://h", Topology.STANDALONE, (("h", 6379),), 0, ""),
        ("unix:///run/redis.sock?db=2", Topology.STANDALONE, (), 2, ""),
        (
            "redis+cluster://10.0.0.1:7000,10.0.0.2:7001,n3",
            Topology.CLUSTER,
            (("10.0.0.1", 7000), ("10.0.0.2", 7001), ("n3", 6379)),
            0,
            "",
        ),
        ("redis+cluster://[::1]:7000/0", Topology.CLUSTER, (("::1", 7000),), 0, ""),
        (
            "redis+sentinel://s1:26380,s2/mymaster/4",
            Topology.SENTINEL,
            (("s1", 26380), ("s2", 26379)),
            4,
            "mymaster",
        ),
        ("redis+sentinel://s1/retention", Topology.SENTINEL, (("s1", 26379),), 0, "retention"),
    ],
)
def test_each_form_names_its_deployment(
    url: str, topology: Topology, nodes: tuple[tuple[str, int], ...], db: int, service: str
) -> None:
    got = parse_redis_url(url)
    assert (got.topology, got.nodes, got.db, got.service) == (topology, nodes, db, service)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://h:6379", "unknown scheme http://"),
        ("h:6379", "unknown scheme"),
        ("redis+cluster://a:1,b:2/3", "only database 0"),
        ("redis+cluster://a:1?read_from_replicas=1", "take no options"),
        ("redis+cluster://a:1,a:1", "listed twice"),
        ("redis+cluster://a:1,,b:2", "without a host"),
        ("redis+cluster://a:70000", "not between 1 and 65535"),
        ("redis+cluster://a:port", "port 'port' is not a number"),
        ("redis+cluster://[::1:7000", "IPv6"),
        ("redis+sentinel://s1:26379", "names the service"),
        ("redis+sentinel://s1:26379/", "names the service"),
        ("redis+sentinel://s1:26379/svc/one", "database 'one' is not a number"),
        ("redis+sentinel://s1:26379/svc/0/x", "names the service"),
        ("redis://h:port/0", "Port could not be cast"),
    ],
)
def test_a_bad_url_says_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_redis_url(url)


def test_a_login_is_read_and_never_described() -> None:
    cluster = parse_redis_url("redis+cluster://app:s%40cret@a:1,b:2")
    assert (cluster.username, cluster.password) == ("app", "s@cret")
    sentinel = parse_redis_url("redis+sentinel://:s3cret@s1:26379/svc")
    assert (sentinel.username, sentinel.password) == (None, "s3cret")
    standalone = parse_redis_url("redis://app:s3cret@h:1/0")
    described = [d.describe() for d in (cluster, sentinel, standalone)]
    assert described == [
        "cluster via seeds a:1,b:2",
        "sentinel service 'svc' via s1:26379, db 0",
        "standalone redis://h:1/0",
    ]
    for text in [*described, repr(cluster), repr(sentinel), repr(standalone)]:
        assert "cret" not in text
    with pytest.raises(ValueError) as bad:
        parse_redis_url("bogus://app:s3cret@h:1")
    assert "s3cret" not in str(bad.value)


def test_settings_check_the_url_and_name_the_variable() -> None:
    with pytest.raises(ValidationError, match="only database 0") as bad:
        Settings(redis_url="redis+cluster://a:1/2")
    assert bad.value.errors()[0]["loc"] == ("redis_url",)
    cluster = Settings(redis_url="redis+cluster://a:1")
    assert cluster.redis_deployment == RedisDeployment(
        Topology.CLUSTER, "redis+cluster://a:1", (("a", 1),)
    )
    assert Settings(redis_port=2345).redis_deployment.nodes == (("127.0.0.1", 2345),)


def test_a_command_refuses_a_bad_url_with_exit_code_2() -> None:
    done = subprocess.run(
        [str(RETENTION_BIN), "status"],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "COLUMNS": "300",
            "RETENTION_REDIS_URL": "redis+sentinel://s1",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "RETENTION_REDIS_URL" in done.stderr and "names the service" in done.stderr


def test_the_factory_makes_redis_pys_own_clients() -> None:
    """Timeouts reach every connection; a cluster and a Sentinel primary get their own
    client classes (made without connecting: they connect on first use)."""

    async def made() -> None:
        standalone = async_client(Settings(redis_url="redis://h:1/2"), timeout=7)
        assert isinstance(standalone, redis.asyncio.Redis)
        kwargs = standalone.connection_pool.connection_kwargs
        assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("h", 1, 2)
        assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (7, 5.0)
        await standalone.aclose()

        cluster = async_client(
            Settings(redis_url="redis+cluster://u:pw@node1:7001,node2:7002"),
            timeout=7,
            connect_timeout=3,
        )
        assert isinstance(cluster, redis.asyncio.RedisCluster)
        seeds = cluster.nodes_manager.startup_nodes
        assert sorted(seeds) == ["node1:7001", "node2:7002"]
        node_kwargs = seeds["node1:7001"].connection_kwargs
        assert (node_kwargs["socket_timeout"], node_kwargs["socket_connect_timeout"]) == (7, 3)
        assert (node_kwargs["username"], node_kwargs["password"]) == ("u", "pw")
        await cluster.aclose()

        primary = async_client(Settings(redis_url="redis+sentinel://s:1/svc/3"), timeout=7)
        assert isinstance(primary, AsyncSentinelPrimary)
        assert primary.connection_pool.service_name == "svc"
        assert primary.connection_pool.connection_kwargs["db"] == 3
        await primary.aclose()

    asyncio.run(made())
    primary = sync_client(Settings(redis_url="redis+sentinel://s:1/svc"), timeout=7)
    assert isinstance(primary, SyncSentinelPrimary)
    sentinels = primary.connection_pool.sentinel_manager.sentinels
    assert [s.connection_pool.connection_kwargs["port"] for s in sentinels] == [1]
    assert sentinels[0].connection_pool.connection_kwargs["socket_timeout"] == 7
    primary.close()


def test_an_unreachable_cluster_is_an_outage_and_a_refused_call_a_bug() -> None:
    """A worker waits out the first (no node answers) and surfaces the second."""
    nowhere = Settings(redis_url=f"redis+cluster://127.0.0.1:{closed_port()}")

    async def unreachable() -> BaseException:
        client = async_client(nowhere, timeout=1, connect_timeout=1)
        try:
            await client.get("k")
        except RedisClusterException as exc:
            return exc
        finally:
            await client.aclose()
        raise AssertionError("a cluster on a closed port answered")

    assert is_outage(asyncio.run(unreachable()))
    with pytest.raises(RedisClusterException) as refused:
        sync_client(nowhere, timeout=1, connect_timeout=1)
    assert is_outage(refused.value)
    assert is_outage(SlotNotCoveredError('Slot "7" is not covered by the cluster.'))
    assert not is_outage(RedisClusterException("Keys in request don't hash to the same slot"))
    assert is_outage(redis.ConnectionError("Connection refused"))


def test_a_copy_with_another_url_names_the_other_deployment() -> None:
    """The stack's readiness check copies the settings with its own Redis's URL."""
    cluster = Settings(redis_url="redis+cluster://a:1")
    assert cluster.redis_deployment.topology is Topology.CLUSTER
    local = cluster.model_copy(update={"redis_url": "redis://h:2/0"})
    assert local.redis_deployment.nodes == (("h", 2),)
