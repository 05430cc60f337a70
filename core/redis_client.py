"""The one place Redis clients are made, for whichever deployment the settings name.

`async_client(settings, timeout=...)` and `sync_client(...)` return redis-py's own
client for RETENTION_REDIS_URL (core/redis_url.py): `Redis` for a standalone server,
`RedisCluster` for a cluster given by seed nodes, and for a Sentinel service a `Redis`
whose connections go to the primary the sentinels name (and follow it after a failover).
Callers pass only their timeouts; every other connection option (login, TLS) comes from
the settings through `_options`, so adding one changes no caller.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.exceptions import (
    AuthenticationError,
    NoPermissionError,
    RedisClusterException,
    RedisError,
)

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
        sentinels = redis.asyncio.Sentinel(  # type: ignore[no-untyped-call]
            list(deployment.nodes), sentinel_kwargs=_sentinel_options(options), **options
        )
        primary = sentinels.master_for(deployment.service, AsyncSentinelPrimary, db=deployment.db)
        return primary  # type: ignore[no-any-return]
    return redis.asyncio.Redis.from_url(deployment.url, **options)


def sync_client(
    settings: Settings,
    *,
    timeout: float,
    connect_timeout: float = CONNECT_TIMEOUT,
    decode_responses: bool = False,
    max_connections: int | None = None,
) -> SyncRedis:
    """A blocking client for the configured deployment, holding at most `max_connections`
    (per node of a cluster; unlimited when None). A cluster client reads the cluster's
    slot map when made, so an unreachable cluster raises here (REDIS_ERRORS)."""
    deployment = settings.redis_deployment
    options = _options(settings, timeout, connect_timeout, decode_responses)
    if max_connections is not None:
        options["max_connections"] = max_connections
    if deployment.topology is Topology.CLUSTER:
        seeds = [redis.cluster.ClusterNode(h, p) for h, p in deployment.nodes]  # type: ignore[no-untyped-call]
        return redis.RedisCluster(startup_nodes=seeds, **options)
    if deployment.topology is Topology.SENTINEL:
        sentinels = redis.Sentinel(  # type: ignore[no-untyped-call]
            list(deployment.nodes), sentinel_kwargs=_sentinel_options(options), **options
        )
        primary = sentinels.master_for(  # type: ignore[no-untyped-call]
            deployment.service, SyncSentinelPrimary, db=deployment.db
        )
        return primary  # type: ignore[no-any-return]
    return redis.Redis.from_url(deployment.url, **options)


def is_outage(exc: BaseException) -> bool:
    """Whether an error means the deployment is down or unreachable (wait and retry) and
    not a bug. RedisCluster raises RedisClusterException both for reaching no node (with
    the connection error as its cause) or finding slots unserved, and for calls a cluster
    cannot run (keys of several slots, commands it blocks in pipelines): those surface.
    A refused login or certificate (`refusal`) is no outage either: no wait mends it."""
    if refusal(exc) is not None:
        return False
    if isinstance(exc, RedisClusterException):
        cause = exc.__cause__
        return isinstance(cause, RedisError | OSError) or "not covered" in str(exc)
    return True


@dataclass(frozen=True)
class RedisFailure:
    """Why a client could not use the deployment; `refused` when it answered but would
    not accept us (login, rights, certificate): retrying does not help, the settings must
    change (exit code 3 for commands, as for Kafka)."""

    message: str
    refused: bool


def describe_failure(settings: Settings, exc: BaseException) -> RedisFailure:
    """A message saying where and what went wrong, naming the settings to check when the
    deployment refused us; never a password (redis-py's errors carry none)."""
    where = where_text(settings)
    reason = refusal(exc)
    if reason is not None:
        return RedisFailure(f"Redis ({where}) {reason}", True)
    return RedisFailure(f"cannot reach Redis ({where}): {exc or type(exc).__name__}", False)


def where_text(settings: Settings) -> str:
    """The deployment and the user the clients log in as, for messages."""
    deployment = settings.redis_deployment
    user = deployment.username or settings.redis_username
    password = deployment.password or settings.redis_password.get_secret_value()
    if user:
        return f"{deployment.describe()}, user {user!r}"
    return f"{deployment.describe()}, with a password" if password else deployment.describe()


def refusal(exc: BaseException) -> str | None:
    """What to change when the deployment answered but refused us (a wrong user or
    password, a user without the rights, a certificate that failed verification), naming
    the settings; None for any other error. Never shows a password."""
    for error in _chain(exc):
        if isinstance(error, AuthenticationError):
            return (
                f"refused the login ({error}): check RETENTION_REDIS_USERNAME and "
                "RETENTION_REDIS_PASSWORD (or the login in RETENTION_REDIS_URL)"
            )
        if isinstance(error, NoPermissionError):
            return f"refused a command to this user ({error}): the ACL user needs +@all ~* &*"
        text = str(error)
        if isinstance(error, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in text:
            return (
                f"the server's certificate failed verification ({error}): check "
                "RETENTION_REDIS_SSL_CAFILE and RETENTION_REDIS_SSL_CHECK_HOSTNAME"
            )
        if isinstance(error, ssl.SSLError) or ("SSL" in text and "alert" in text):
            return (
                f"TLS handshake failed ({error}): does the server speak TLS on this port "
                "(rediss://), and does it require or reject the client certificate "
                "(RETENTION_REDIS_SSL_CERTFILE)?"
            )
    return None


def _chain(exc: BaseException) -> list[BaseException]:
    """The error and its causes, outermost first."""
    found: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in found:
        found.append(current)
        current = current.__cause__ or current.__context__
    return found


def _options(
    settings: Settings, timeout: float, connect_timeout: float, decode_responses: bool
) -> dict[str, Any]:
    """Keyword arguments every client class takes: the caller's timeouts, the login (a
    standalone URL's own is read by from_url; Settings refuses one given twice) and,
    for a TLS URL, the certificate files."""
    deployment: RedisDeployment = settings.redis_deployment
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": connect_timeout,
        "decode_responses": decode_responses,
    }
    username = deployment.username or settings.redis_username or None
    password = deployment.password or settings.redis_password.get_secret_value() or None
    if deployment.topology is not Topology.STANDALONE or username or password:
        options.update(username=username, password=password)
    if deployment.tls:
        options.update(_tls_options(settings))
    return options


def _tls_options(settings: Settings) -> dict[str, Any]:
    """redis-py's TLS arguments: the server verified against the CA file (the system's
    CAs without one), its name checked unless RETENTION_REDIS_SSL_CHECK_HOSTNAME=false."""
    files = settings.redis_tls
    options: dict[str, Any] = {
        "ssl_cert_reqs": "required",
        "ssl_ca_certs": str(files.cafile) if files.cafile else None,
        "ssl_check_hostname": files.check_hostname,
    }
    if files.certfile is not None:
        options.update(
            ssl_certfile=str(files.certfile),
            ssl_keyfile=str(files.keyfile),
            ssl_password=files.key_password,
        )
    if settings.redis_deployment.topology is not Topology.STANDALONE:
        options["ssl"] = True  # a standalone client takes TLS from the rediss:// scheme
    return options


def _sentinel_options(options: dict[str, Any]) -> dict[str, Any]:
    """The sentinels' own connections: the timeouts and TLS of the data connections, but
    not their login (a sentinel's password is its own, not the data nodes' ACL user)."""
    return {k: v for k, v in options.items() if k.startswith(("socket_", "ssl"))}


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
