"""A real Redis Cluster for the tests, and helpers that run state through it.

The cluster is the local stack's (`scripts/stack.sh up` starts three masters);
RETENTION_TEST_REDIS_CLUSTER_URL names another one, in RETENTION_REDIS_URL's cluster
form. The clients come from the factory (core/redis_client.py) like everyone's.
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

from core.redis_client import REDIS_ERRORS, async_client, sync_client
from core.redis_types import AsyncRedis
from core.settings import Settings
from retention.stack.settings import StackSettings
from streams.events import EventDecoder, Rejected
from streams.lifecycle import LifecyclePublisher
from streams.state import Record

CLUSTER_URL = (
    os.environ.get("RETENTION_TEST_REDIS_CLUSTER_URL") or StackSettings().redis_cluster_url
)


def async_cluster(settings: Settings) -> redis.asyncio.RedisCluster:
    """A client of the test cluster; make it inside the event loop that uses it."""
    client = async_client(settings, timeout=30)
    assert isinstance(client, redis.asyncio.RedisCluster), f"{settings.redis_url} is no cluster"
    return client


@pytest.fixture(scope="module")
def cluster(stack: None) -> Iterator[redis.RedisCluster]:
    """The test cluster, known to answer with every slot covered."""
    try:
        client = sync_client(Settings(redis_url=CLUSTER_URL), timeout=30)
        state = client.cluster_info()
    except REDIS_ERRORS as exc:
        pytest.fail(f"no Redis Cluster at {CLUSTER_URL} ({exc})", pytrace=False)
    assert isinstance(client, redis.RedisCluster), f"{CLUSTER_URL} is no cluster"
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
