"""`retention status`: is every part up, is the worker keeping up, how fresh is the data.

Each check has a short timeout, so a stopped part is reported in seconds, not hung on.
Rates come from two looks at the topic's end offsets and the group's committed offsets.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis
from rich.table import Table
from rich.text import Text

from core.calendar import Calendar, day_to_date, evaluation_day
from core.errors import CommandError
from core.kafka import client_options, explain_failure
from core.redis_client import REDIS_ERRORS, describe_failure, sync_client
from core.redis_types import SyncRedis
from core.redis_url import Topology
from core.settings import Settings
from metrics.aggregates import AggregateReader
from retention.produce import quiet_kafka_logs
from retention.scrape import exporter_url, fetch

TIMEOUT = 5.0
# The consumer group whose coordinator kafka_check asks for; nothing joins it.
COORDINATOR_PROBE = "retention-status-probe"


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Status:
    checks: list[Check]
    required: tuple[str, ...] = ("kafka", "redis", "exporter")

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks if c.name in self.required)

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [asdict(c) for c in self.checks]}


def collect(settings: Settings, exporter: str | None, prometheus: str, sample: float) -> Status:
    checks = asyncio.run(_kafka_checks(settings, sample))
    checks.append(redis_check(settings))
    checks.append(_exporter_check(exporter or exporter_url(settings)))
    checks.append(http_ready_check("prometheus", prometheus, optional=True))
    return Status(checks)


async def kafka_check(settings: Settings) -> Check:
    """Can clients use the broker: it lists itself as a live broker (it is unfenced), a
    controller is elected, and a consumer group's coordinator answers (until then groups
    fail with GroupCoordinatorNotAvailable)."""
    from aiokafka.admin import AIOKafkaAdminClient

    quiet_kafka_logs()
    bootstrap = settings.kafka_bootstrap
    admin = AIOKafkaAdminClient(**client_options(settings))
    try:
        await asyncio.wait_for(admin.start(), TIMEOUT)
        cluster = await asyncio.wait_for(admin.describe_cluster(), TIMEOUT)
        if not cluster["brokers"] or cluster["controller_id"] < 0:
            return Check("kafka", False, f"{bootstrap}: no live broker or controller yet")
        await asyncio.wait_for(admin.find_coordinator(COORDINATOR_PROBE), TIMEOUT)
        topics = await asyncio.wait_for(admin.list_topics(), TIMEOUT)
    except Exception as exc:
        failure = await explain_failure(settings, exc)
        hint = "" if failure.refused else "; `retention stack up`"
        return Check("kafka", False, failure.message + hint, {"refused": failure.refused})
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    protocol = settings.kafka_security_protocol
    data = {"bootstrap": bootstrap, "security_protocol": protocol, "topics": len(topics)}
    return Check("kafka", True, f"{bootstrap} ({protocol}), {len(topics)} topics", data)


async def _kafka_checks(settings: Settings, sample: float) -> list[Check]:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient

    kafka = await kafka_check(settings)
    if not kafka.ok:
        return [kafka, Check("worker", False, "no broker, no consumer group")]
    admin = AIOKafkaAdminClient(**client_options(settings))
    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
    try:
        await asyncio.wait_for(admin.start(), TIMEOUT)
        await asyncio.wait_for(consumer.start(), TIMEOUT)
        topics = set(await admin.list_topics())
        if settings.events_topic not in topics:
            kafka.detail += f"; topic {settings.events_topic!r} does not exist yet"
            return [kafka, Check("worker", False, "no events topic yet: nothing to consume")]
        clients = Clients(admin, consumer)
        worker = await _consumer_check(settings, clients, sample)
        dead = 0
        if settings.dlq_topic in topics:
            dead = sum((await clients.ends(settings.dlq_topic)).values())
        worker.data["dead_lettered"] = dead
        worker.detail += f"; {dead:,} dead-lettered"
        return [kafka, worker]
    finally:
        await consumer.stop()
        await admin.close()


@dataclass
class Clients:
    """The admin client knows topics and groups; a consumer knows end offsets."""

    admin: Any
    consumer: Any

    async def partitions(self, topic: str) -> list[Any]:
        from aiokafka import TopicPartition

        (described,) = await self.admin.describe_topics([topic])
        return [TopicPartition(topic, p["partition"]) for p in described["partitions"]]

    async def ends(self, topic: str) -> dict[Any, int]:
        return dict(await self.consumer.end_offsets(await self.partitions(topic)))


async def _consumer_check(settings: Settings, clients: Clients, sample: float) -> Check:
    """Lag and rates of the worker's consumer group on the events topic."""
    topic, group = settings.events_topic, settings.group_id
    parts = await clients.partitions(topic)

    async def look() -> tuple[float, int, int]:
        ends = await clients.consumer.end_offsets(parts)
        done = await clients.admin.list_consumer_group_offsets(group, partitions=parts)
        committed = sum(m.offset for m in done.values() if m is not None and m.offset >= 0)
        return time.monotonic(), int(sum(ends.values())), int(committed)

    t1, end1, done1 = await look()
    await asyncio.sleep(sample)
    t2, end2, done2 = await look()
    state, members = await _group_state(clients.admin, group)
    dt = max(t2 - t1, 1e-6)
    data = {
        "group": group,
        "state": state,
        "members": members,
        "events_in_topic": end2,
        "committed": done2,
        "lag": end2 - done2,
        "produced_per_second": (end2 - end1) / dt,
        "applied_per_second": (done2 - done1) / dt,
    }
    ok = members > 0
    detail = (
        f"group {group}: {state}, {members} member(s); lag {end2 - done2:,}; "
        f"in {data['produced_per_second']:,.0f}/s, applied {data['applied_per_second']:,.0f}/s"
    )
    if not ok:
        detail += "; no worker is consuming (`retention worker`)"
    return Check("worker", ok, detail, data)


async def _group_state(admin: Any, group: str) -> tuple[str, int]:
    try:
        (response,) = await admin.describe_consumer_groups([group])
        _, _, state, _, _, members, *_ = response.groups[0]
        return str(state), len(members)
    except Exception:
        return "unknown", 0


def redis_check(settings: Settings) -> Check:
    """Which deployment the tracker talks to, and how much of the namespace it holds."""
    try:
        client = sync_client(settings, timeout=TIMEOUT, connect_timeout=TIMEOUT)
        try:
            deployment = describe_deployment(settings, client)
            newest, customers = AggregateReader(client, settings).headline()
            memory = used_memory(client)
        finally:
            client.close()
    except REDIS_ERRORS as exc:
        failure = describe_failure(settings, exc)
        if failure.refused:
            return Check("redis", False, failure.message, {"refused": True})
        return Check("redis", False, f"{failure.message}; `retention stack up`")
    data: dict[str, Any] = {
        **deployment,
        "tls": settings.redis_deployment.tls,
        "user": settings.redis_deployment.username or settings.redis_username or None,
        "namespace": settings.namespace,
        "customers": customers,
        "memory": f"{memory / 2**20:.2f}M",
    }
    detail = (
        f"{deployment['deployment']}; namespace {settings.namespace}: {customers:,} customers, "
        f"{data['memory']} used"
    )
    if newest is not None:
        watermark = newest - settings.allowed_lateness_seconds * 1000
        data["watermark_ms"] = watermark
        calendar = Calendar(settings.zone, settings.week_start_index)
        day = day_to_date(evaluation_day(calendar.day(watermark))).isoformat()
        data["evaluation_day"] = day
        detail += f"; watermark {_when(watermark)}; gauges as of the end of {day}"
    else:
        detail += "; no events applied yet"
    return Check("redis", True, detail, data)


def describe_deployment(settings: Settings, client: SyncRedis) -> dict[str, Any]:
    """`deployment`: what RETENTION_REDIS_URL names, as found: a standalone server, a
    cluster with its number of masters, or a Sentinel service with its current primary."""
    deployment = settings.redis_deployment
    if isinstance(client, redis.RedisCluster):
        masters = len(client.get_primaries())  # type: ignore[no-untyped-call]
        text = f"cluster of {masters} masters via seeds {deployment.addresses()}"
        return {"deployment": text, "topology": "cluster", "masters": masters}
    client.ping()
    if deployment.topology is Topology.SENTINEL:
        host, port = client.connection_pool.get_master_address()  # type: ignore[attr-defined]
        text = f"{deployment.describe()}: primary {host}:{port}"
        return {"deployment": text, "topology": "sentinel", "primary": f"{host}:{port}"}
    return {"deployment": deployment.describe(), "topology": "standalone"}


def used_memory(client: SyncRedis) -> int:
    """Bytes used by the server, or by every master of a cluster together."""
    if isinstance(client, redis.RedisCluster):
        per_node = client.info("memory", target_nodes=redis.RedisCluster.PRIMARIES)
        return sum(int(info["used_memory"]) for info in per_node.values())
    return int(client.info("memory")["used_memory"])


def _when(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    behind = time.time() - ms / 1000
    ago = f"{behind / 86400:.1f} days" if behind > 2 * 86400 else f"{behind:,.0f} s"
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC ({ago} behind the wall clock)"


def _exporter_check(url: str) -> Check:
    try:
        scrape = fetch(url, timeout=TIMEOUT)
    except CommandError:
        return Check("exporter", False, f"unreachable at {url}; `retention exporter`")
    series = sum(len(f.samples) for f in scrape.families.values())
    customers = scrape.get("retention_customers")
    data = {"url": url, "series": series, "scrape_seconds": scrape.seconds, "customers": customers}
    detail = f"{url}: {series} series in {scrape.seconds * 1000:.0f} ms"
    return Check("exporter", True, detail, data)


def http_ready_check(name: str, url: str, optional: bool = False) -> Check:
    """A Prometheus or Alertmanager server answers 200 on /-/ready once it can serve."""
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=TIMEOUT) as response:
            ready = response.status == 200
    except OSError as exc:
        note = " — optional" if optional else ""
        return Check(name, False, f"not ready at {url} ({exc}){note}")
    return Check(name, ready, f"{url} ready" if ready else f"{url} not ready")


def table(status: Status) -> Table:
    out = Table(title="retention status", title_justify="left")
    out.add_column("part", style="bold")
    out.add_column("")
    out.add_column("details")
    for check in status.checks:
        mark = Text("up", style="green") if check.ok else Text("DOWN", style="bold red")
        if check.name == "worker" and not check.ok:
            mark = Text("idle", style="yellow")
        out.add_row(check.name, mark, check.detail)
    return out
