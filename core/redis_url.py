"""What RETENTION_REDIS_URL names: a standalone server, a Redis Cluster or a Sentinel service.

Three URL forms, one per deployment:

    redis://host:port/db   rediss://...   unix:///path?db=0     a standalone server
    redis+cluster://host1:port1,host2:port2,...                  a cluster, by seed nodes
    redis+sentinel://host1:port1,host2:port2/service[/db]        the primary Sentinel names

`rediss`, `rediss+cluster` and `rediss+sentinel` are the same over TLS (for Sentinel: to
the sentinels and to the primary alike).

Standalone URLs are redis-py's own (`Redis.from_url`, query options included). The other
two list several addresses, which no single-host URL can carry, so they are parsed here;
`user:password@` before the addresses is the data nodes' login, as in a standalone URL.
Parsing is pure (no connection), so Settings can reject a bad URL before anything starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

from redis.connection import parse_url

DEFAULT_REDIS_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379
FORMS = (
    "redis://host:port/db, rediss://host:port/db, unix:///path, "
    "redis+cluster://host:port,host:port,... or redis+sentinel://host:port,.../service[/db] "
    "(rediss+cluster:// and rediss+sentinel:// over TLS)"
)
REDACTED = "****"


class Topology(StrEnum):
    STANDALONE = "standalone"
    CLUSTER = "cluster"
    SENTINEL = "sentinel"


Address = tuple[str, int]


@dataclass(frozen=True)
class RedisDeployment:
    """A parsed RETENTION_REDIS_URL. `nodes` are the server (standalone), the seed nodes
    (cluster) or the sentinels; `url` is kept whole for redis-py's own standalone parser."""

    topology: Topology
    url: str = field(repr=False)
    nodes: tuple[Address, ...]
    db: int = 0
    service: str = ""
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    tls: bool = False

    def describe(self) -> str:
        """Where the deployment is, for messages and `retention status`; never a password."""
        tls = " over TLS" if self.tls else ""
        if self.topology is Topology.CLUSTER:
            return f"cluster via seeds {self.addresses()}{tls}"
        if self.topology is Topology.SENTINEL:
            return f"sentinel service {self.service!r} via {self.addresses()}, db {self.db}{tls}"
        if not self.nodes:
            return f"standalone unix socket {_redis_py_options(self.url)['path']}"
        return f"standalone {urlsplit(self.url).scheme}://{self.addresses()}/{self.db}"

    def addresses(self) -> str:
        """`host:port,...` of the nodes (IPv6 hosts in brackets)."""
        return ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.nodes)


def parse_redis_url(url: str) -> RedisDeployment:
    """The deployment a URL names; ValueError saying what is wrong and which forms exist."""
    parts = urlsplit(url.strip())
    if parts.scheme in ("redis", "rediss", "unix"):
        return _standalone(url.strip())
    if parts.scheme in ("redis+cluster", "rediss+cluster"):
        return _cluster(parts)
    if parts.scheme in ("redis+sentinel", "rediss+sentinel"):
        return _sentinel(parts)
    scheme = f"{parts.scheme}://" if parts.scheme else "(none)"
    raise ValueError(f"unknown scheme {scheme} in {_without_login(url)!r}; use {FORMS}")


def _standalone(url: str) -> RedisDeployment:
    try:
        options = _redis_py_options(url)
    except ValueError as exc:
        raise ValueError(f"{exc} ({_without_login(url)!r}); use {FORMS}") from None
    db = int(options.get("db") or 0)
    user, password = options.get("username"), options.get("password")
    if "path" in options:  # a unix socket
        return RedisDeployment(Topology.STANDALONE, url, (), db, "", user, password)
    host, port = options.get("host", "localhost"), int(options.get("port", DEFAULT_REDIS_PORT))
    tls = urlsplit(url).scheme == "rediss"
    return RedisDeployment(Topology.STANDALONE, url, ((host, port),), db, "", user, password, tls)


def _redis_py_options(url: str) -> dict[str, Any]:
    """redis-py's reading of a standalone URL (host, port, db, path, query options)."""
    return parse_url(url)  # type: ignore[no-untyped-call,no-any-return]


def _cluster(parts: SplitResult) -> RedisDeployment:
    _no_query(parts)
    if parts.path.strip("/") not in ("", "0"):
        raise ValueError(f"a Redis Cluster has only database 0, not {parts.path.strip('/')!r}")
    username, password, hosts = _login(parts.netloc)
    nodes = _nodes(hosts, DEFAULT_REDIS_PORT)
    tls = parts.scheme.startswith("rediss")
    return RedisDeployment(Topology.CLUSTER, parts.geturl(), nodes, 0, "", username, password, tls)


def _sentinel(parts: SplitResult) -> RedisDeployment:
    _no_query(parts)
    path = [unquote(p) for p in parts.path.strip("/").split("/") if p]
    if not 1 <= len(path) <= 2:
        raise ValueError(
            "a Sentinel URL names the service after the addresses: "
            "redis+sentinel://host:port,host:port/service[/db]"
        )
    db = _number(path[1], "database") if len(path) == 2 else 0
    username, password, hosts = _login(parts.netloc)
    nodes = _nodes(hosts, DEFAULT_SENTINEL_PORT)
    url, tls = parts.geturl(), parts.scheme.startswith("rediss")
    return RedisDeployment(Topology.SENTINEL, url, nodes, db, path[0], username, password, tls)


def _no_query(parts: SplitResult) -> None:
    if parts.query or parts.fragment:
        raise ValueError(f"{parts.scheme}:// URLs take no options after the path")


def _login(netloc: str) -> tuple[str | None, str | None, str]:
    """(username, password, the address list) of `user:password@host:port,...`."""
    login, at, hosts = netloc.rpartition("@")
    if not at:
        return None, None, hosts
    user, colon, password = login.partition(":")
    return unquote(user) or None, unquote(password) if colon else None, hosts


def _nodes(hosts: str, default_port: int) -> tuple[Address, ...]:
    nodes = tuple(_address(text.strip(), default_port) for text in hosts.split(","))
    if len(set(nodes)) != len(nodes):
        raise ValueError(f"an address is listed twice in {hosts!r}")
    return nodes


def _address(text: str, default_port: int) -> Address:
    """`host`, `host:port` or `[ipv6]:port`."""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"bad address {text!r}: write IPv6 hosts as [::1]:port")
        port_text = rest[1:]
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise ValueError(f"an address without a host in the list ({text!r})")
    port = _number(port_text, "port") if port_text else default_port
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} of {text!r} is not between 1 and 65535")
    return host, port


def _number(text: str, what: str) -> int:
    if not text.isdigit():
        raise ValueError(f"{what} {text!r} is not a number")
    return int(text)


def redact(url: str) -> str:
    """A URL as it may be printed or recorded: the user kept, a password replaced by
    ****, everything else as given."""
    scheme, sep, rest = url.partition("://")
    login, at, hosts = rest.rpartition("@")
    if not sep or not at or ":" not in login:
        return url
    return f"{scheme}{sep}{login.partition(':')[0]}:{REDACTED}@{hosts}"


def _without_login(url: str) -> str:
    """A URL as it may be printed: the part before the addresses (a password) cut out."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else url.rpartition("@")[2]
