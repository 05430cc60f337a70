"""A real Redis Cluster for the tests, and helpers that run state through it.

RETENTION_TEST_REDIS_CLUSTER_URL names a seed node of the cluster (default: the local
stack's first cluster node). The clients are redis-py's RedisCluster, which finds the
other primaries from the seed.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio
from redis.exceptions import RedisClusterException, RedisError

from core.redis_types import AsyncRedis
from core.settings import Settings
from streams.events import EventDecoder, Rejected
from streams.lifecycle import LifecyclePublisher
from streams.state import Record

CLUSTER_URL = os.environ.get("RETENTION_TEST_REDIS_CLUSTER_URL", "redis://127.0.0.1:17001")


def async_cluster() -> redis.asyncio.RedisCluster:
    """A client of the test cluster; make it inside the event loop that uses it."""
    return redis.asyncio.RedisCluster.from_url(CLUSTER_URL)


def sync_cluster() -> redis.RedisCluster:
    return redis.RedisCluster.from_url(CLUSTER_URL)


@pytest.fixture(scope="module")
def cluster() -> Iterator[redis.RedisCluster]:
    """The test cluster, known to answer with every slot covered."""
    try:
        client = sync_cluster()
        state = client.cluster_info()
    except (RedisError, RedisClusterException) as exc:
        pytest.fail(
            f"no Redis Cluster at RETENTION_TEST_REDIS_CLUSTER_URL={CLUSTER_URL} ({exc})",
            pytrace=False,
        )
    assert state["cluster_state"] == "ok", state
    yield client
    client.close()


def records_of(events: list[dict[str, Any]], settings: Settings, partitions: int) -> list[Record]:
    """The events as the worker decodes them, spread over partitions in turn."""
    decoder = EventDecoder(settings)
    records = []
    for n, event in enumerate(events):
        partition, offset = n % partitions, n // partitions
        try:
            decoded = decoder.decode(json.dumps(event).encode())
            records.append(Record(partition, offset, event=decoded))
        except Rejected as exc:
            records.append(Record(partition, offset, reason=exc.reason))
    return records


async def outboxes(redis: AsyncRedis, publisher: LifecyclePublisher) -> list[list[bytes]]:
    """Every shard's queued lifecycle changes, in order."""
    keys = publisher.keys
    return [await redis.lrange(keys.outbox(shard), 0, -1) for shard in range(keys.shards)]


def per_customer(outboxes: list[list[bytes]]) -> dict[str, list[bytes]]:
    """Each customer's queued changes, in the order they were queued: Kafka keeps the
    order per customer (the record key), not across the customers of a bucket."""
    changes: defaultdict[str, list[bytes]] = defaultdict(list)
    for outbox in outboxes:
        for raw in outbox:
            changes[json.loads(raw)["customer"]].append(raw)
    return dict(changes)


async def sweep(publisher: LifecyclePublisher) -> None:
    """One publishing round without Kafka: sweep every shard up to the watermark and
    release the locks, the changes staying in the outboxes."""
    mark = await publisher.watermark("test")
    assert mark.day is not None
    hold = await publisher.acquire()
    assert hold.busy == 0
    await publisher.sweep(mark, hold)
    await publisher.release(hold)
