"""The one place Redis clients are made, for whichever deployment the settings name.

`async_client(settings, timeout=...)` and `sync_client(...)` return redis-py's own
client for RETENTION_REDIS_URL (core/redis_url.py): `Redis` for a standalone server,
`RedisCluster` for a cluster given by seed nodes, and for a Sentinel service a `Redis`
whose connections go to the primary the sentinels name (and follow it after a failover).
Callers pass only their timeouts; every other connection option (login, TLS) comes from
the settings through `_options`, so adding one changes no caller.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.exceptions import RedisClusterException, RedisError

from core.redis_types import AsyncRedis, SyncRedis
from core.redis_url import RedisDeployment, Topology
from core.settings import Settings

# What a client raises when the deployment is down, unreachable or refusing: a cluster
# client that reaches none of its nodes raises RedisClusterException, not a RedisError
# (is_outage tells that from a call no cluster runs).
REDIS_ERRORS: tuple[type[Exception], ...] = (RedisError, RedisClusterException)

CONNECT_TIMEOUT = 5.0  # seconds to open a connection, unless the caller says otherwise


def async_client(
    settings: Settings,
    *,
    timeout: float,
    connect_timeout: float = CONNECT_TIMEOUT,
    decode_responses: bool = False,
) -> AsyncRedis:
    """An asyncio client for the configured deployment; connects on first use.
    `timeout` bounds each command's wait for its reply, in seconds."""
    deployment = settings.redis_deployment
    options = _options(settings, timeout, connect_timeout, decode_responses)
    if deployment.topology is Topology.CLUSTER:
        seeds = [redis.asyncio.cluster.ClusterNode(h, p) for h, p in deployment.nodes]
        return redis.asyncio.RedisCluster(startup_nodes=seeds, **options)
    if deployment.topology is Topology.SENTINEL:
        sentinels = redis.asyncio.Sentinel(list(deployment.nodes), **options)  # type: ignore[no-untyped-call]
        primary = sentinels.master_for(deployment.service, AsyncSentinelPrimary, db=deployment.db)
        return primary  # type: ignore[no-any-return]
    return redis.asyncio.Redis.from_url(deployment.url, **options)


def sync_client(
    settings: Settings,
    *,
    timeout: float,
    connect_timeout: float = CONNECT_TIMEOUT,
    decode_responses: bool = False,
) -> SyncRedis:
    """A blocking client for the configured deployment. A cluster client reads the
    cluster's slot map when made, so an unreachable cluster raises here (REDIS_ERRORS)."""
    deployment = settings.redis_deployment
    options = _options(settings, timeout, connect_timeout, decode_responses)
    if deployment.topology is Topology.CLUSTER:
        seeds = [redis.cluster.ClusterNode(h, p) for h, p in deployment.nodes]  # type: ignore[no-untyped-call]
        return redis.RedisCluster(startup_nodes=seeds, **options)
    if deployment.topology is Topology.SENTINEL:
        sentinels = redis.Sentinel(list(deployment.nodes), **options)  # type: ignore[no-untyped-call]
        primary = sentinels.master_for(  # type: ignore[no-untyped-call]
            deployment.service, SyncSentinelPrimary, db=deployment.db
        )
        return primary  # type: ignore[no-any-return]
    return redis.Redis.from_url(deployment.url, **options)


def is_outage(exc: BaseException) -> bool:
    """Whether an error means the deployment is down or unreachable (wait and retry) and
    not a bug. RedisCluster raises RedisClusterException both for reaching no node (with
    the connection error as its cause) or finding slots unserved, and for calls a cluster
    cannot run (keys of several slots, commands it blocks in pipelines): those surface."""
    if isinstance(exc, RedisClusterException):
        cause = exc.__cause__
        return isinstance(cause, RedisError | OSError) or "not covered" in str(exc)
    return True


def _options(
    settings: Settings, timeout: float, connect_timeout: float, decode_responses: bool
) -> dict[str, Any]:
    """Keyword arguments every client class takes: the caller's timeouts and the login a
    cluster or sentinel URL carries (a standalone URL's own login is read by from_url)."""
    deployment: RedisDeployment = settings.redis_deployment
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": connect_timeout,
        "decode_responses": decode_responses,
    }
    if deployment.topology is not Topology.STANDALONE:
        options.update(username=deployment.username, password=deployment.password)
    return options


class AsyncSentinelPrimary(redis.asyncio.Redis):
    """The primary of a Sentinel service; closing it also closes the connections to the
    sentinels, which redis-py leaves to the Sentinel object the client came from."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        await self.connection_pool.sentinel_manager.aclose()  # type: ignore[attr-defined]


class SyncSentinelPrimary(redis.Redis):
    """The blocking twin of AsyncSentinelPrimary."""

    def close(self) -> None:
        super().close()
        self.connection_pool.sentinel_manager.close()  # type: ignore[attr-defined]
