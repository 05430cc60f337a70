"""State on a real Redis Cluster equals state on a standalone Redis, and the oracle.

The worker's writer and lifecycle sweep run unchanged on redis-py's RedisCluster client:
each shard's script call goes to the node owning the shard's hash slot (a cluster
pipeline per node), and a node whose script cache was flushed, as after a restart or a
failover, answers NOSCRIPT and is given the scripts again without losing a batch.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest
import redis
from prometheus_client import generate_latest
from redis.asyncio import RedisCluster

from core.redis_client import async_client, sync_client
from core.redis_types import AsyncRedis, SyncRedis
from core.settings import Settings
from metrics.aggregates import AggregateReader
from metrics.collector import RetentionCollector
from metrics.exporter import build_registry
from metrics.snapshot import Snapshot
from retention.rebuild import clear_namespace
from streams.guard import check_state, stored_positions
from streams.lifecycle import LifecyclePublisher
from streams.state import Record, StateWriter, spans_of
from tests.cluster_fixtures import (
    CLUSTER_URL,
    async_cluster,
    cluster,
    outboxes,
    per_customer,
    records_of,
    sweep,
)
from tests.history import generate_history
from tests.oracle import OracleSettings, compute, diff, flatten
from tests.services import REDIS_URL

pytestmark = pytest.mark.integration
__all__ = ["cluster"]  # the fixture

PARTITIONS = 3
BATCH = 500
# Before which batch a cluster node loses its scripts: one before a batch is applied,
# one before the sweep that follows a batch.
FORGET_BEFORE_APPLY, FORGET_BEFORE_SWEEP = 2, 4


@dataclass
class Run:
    """What one run left: per-shard lifecycle outboxes, applied counts, positions."""

    outboxes: list[list[bytes]] = field(default_factory=list)
    applied: int = 0
    duplicates: int = 0
    positions: dict[int, int | None] = field(default_factory=dict)


Forget = Callable[[str, int], Awaitable[None]]
Outcome = tuple[Run, Snapshot, str]


async def run(client: AsyncRedis, settings: Settings, records: list[Record], forget: Forget) -> Run:
    """Apply the records batch by batch, sweeping up to the watermark after each, as the
    worker does; forget(stage, batch) may empty a node's script cache first."""
    await check_state(client, settings, record=True)
    writer = StateWriter(client, settings)
    publisher = LifecyclePublisher(client, settings)
    out = Run()
    for n, start in enumerate(range(0, len(records), BATCH)):
        batch = records[start : start + BATCH]
        await forget("apply", n)
        prepared = await writer.prepare(batch)
        result = await writer.send(prepared, "test", spans_of(batch))
        assert not result.holes
        out.applied += result.applied
        out.duplicates += result.duplicates
        await forget("sweep", n)
        await sweep(publisher)
    out.outboxes = await outboxes(client, publisher)
    out.positions = await stored_positions(client, publisher.keys, "test", list(range(PARTITIONS)))
    return out


async def nothing(stage: str, batch: int) -> None:
    return None


def flush_one_node(client: RedisCluster, settings: Settings, scripts: list[str]) -> Forget:
    """SCRIPT FLUSH on the node of shard 0 before a batch, and on the node of the last
    shard before a sweep; checks that the node really lost the scripts."""
    writer = StateWriter(client, settings)

    async def forget(stage: str, batch: int) -> None:
        shard = {("apply", FORGET_BEFORE_APPLY): 0, ("sweep", FORGET_BEFORE_SWEEP): -1}.get(
            (stage, batch)
        )
        if shard is None:
            return
        node = client.get_node_from_key(writer.keys.totals(shard % settings.shards))
        await client.execute_command("SCRIPT FLUSH", target_nodes=node)
        exists = await client.execute_command("SCRIPT EXISTS", *scripts, target_nodes=node)
        assert exists == [False] * len(scripts)

    return forget


def snapshot_and_scrape(client: SyncRedis, settings: Settings) -> tuple[Snapshot, str]:
    reader = AggregateReader(client, settings)
    registry = build_registry(settings, RetentionCollector(reader, settings))
    return reader.read(), generate_latest(registry).decode()


def test_cluster_state_equals_standalone_and_oracle(cluster: redis.RedisCluster) -> None:
    events = generate_history(seed=13, customers=300, days=60)
    namespace = f"k{uuid.uuid4().hex[:8]}"
    # eight shards over three primaries, a few customers per bucket
    layout = {"namespace": namespace, "shards": 8, "customer_buckets": 64}
    on_cluster = Settings(redis_url=CLUSTER_URL, **layout)  # type: ignore[arg-type]
    standalone = Settings(redis_url=REDIS_URL, **layout)  # type: ignore[arg-type]
    records = records_of(events, standalone, PARTITIONS)

    single_sync = sync_client(standalone, timeout=30)

    async def both() -> tuple[Outcome, Outcome]:
        clustered = async_cluster(on_cluster)
        single = async_client(standalone, timeout=30)
        try:
            scripts = [
                StateWriter(clustered, on_cluster).script.sha,
                LifecyclePublisher(clustered, on_cluster).script.sha,
            ]
            forget = flush_one_node(clustered, on_cluster, scripts)
            got = await run(clustered, on_cluster, records, forget)
            # every primary holds the scripts again
            assert await clustered.script_exists(*scripts) == [True] * len(scripts)
            clean = await run(single, standalone, records, nothing)
            return (
                (got, *snapshot_and_scrape(cluster, on_cluster)),
                (clean, *snapshot_and_scrape(single_sync, standalone)),
            )
        finally:
            await clear_namespace(clustered, namespace)
            await clear_namespace(single, namespace)
            await clustered.aclose()
            await single.aclose()

    try:
        (got, got_snap, got_text), (clean, clean_snap, _) = asyncio.run(both())
    finally:
        single_sync.close()
    # clearing the namespace scanned and emptied every primary
    for node in cluster.get_primaries():
        assert cluster.get_redis_connection(node).keys(f"{namespace}:*") == [], node.name
    # Kafka keeps the order per customer (the record key); customers of one bucket may
    # come in another order, as Lua's table order differs between server processes.
    changes = per_customer(got.outboxes)
    assert changes == per_customer(clean.outboxes)
    assert len(changes) > 250 and sum(map(len, changes.values())) > 1000
    assert (got.applied, got.duplicates) == (clean.applied, clean.duplicates)
    assert got.positions == clean.positions
    assert got_snap == clean_snap
    assert got_snap.customers == 300
    problems = diff(compute(events, OracleSettings()), flatten(got_text))
    assert not problems, problems
