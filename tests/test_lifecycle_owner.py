"""Several workers publishing lifecycle changes at once: one publisher per shard at a time,
every change on the topic once, and a publisher whose lock expired trims nothing.

Real Redis and Kafka; the publishers are two LifecyclePublisher instances with their own
producers, as two workers would run them, over state applied by the real batch script.
The expected changes come from the oracle of tests/test_lifecycle_topic.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import DefaultPartitioner

from core.redis_client import async_client
from core.redis_types import AsyncRedis
from core.settings import Settings
from streams import lifecycle
from streams.events import EventDecoder
from streams.lifecycle import LifecyclePublisher
from streams.state import BEGINNING, Record, Span, StateWriter
from tests.broker import delete_marked, scratch_name
from tests.services import KAFKA, REDIS_URL
from tests.test_lifecycle_topic import (
    LATENESS_S,
    PARTITIONS,
    RISK,
    WINDOW,
    Change,
    as_changes,
    expected_changes,
    history,
    read_topic,
)

pytestmark = pytest.mark.integration

SOURCE = "events-under-test"
CHUNK = 400  # events applied between publishing rounds


@dataclass
class World:
    """A namespace and lifecycle topic of this test, the state writer and two workers'
    publishers, each with its own producer."""

    settings: Settings
    redis: AsyncRedis
    writer: StateWriter
    publishers: list[LifecyclePublisher]
    producers: list[AIOKafkaProducer]
    offsets: dict[int, int]

    async def apply(self, events: list[dict[str, object]]) -> None:
        """Apply events as the worker would, each on its customer's Kafka partition."""
        await self.writer.apply(self.records(events), SOURCE)

    def records(self, events: list[dict[str, object]]) -> list[Record]:
        """The events as the next records of their customers' Kafka partitions."""
        decoder, records = EventDecoder(self.settings), []
        for e in events:
            key = str(e["customer_id"]).encode()
            partition = DefaultPartitioner()(key, list(range(PARTITIONS)), [])
            offset = self.offsets.get(partition, 0)
            self.offsets[partition] = offset + 1
            records.append(Record(partition, offset, event=decoder.decode(json.dumps(e).encode())))
        return records

    async def send_to_first_shards(self, records: list[Record], shards: int) -> None:
        """Send a batch's scripts for the first `shards` shards only: what Redis runs when
        the worker dies while writing the batch's pipeline."""
        prepared = await self.writer.prepare(records)
        everything = self.writer.keys.shards
        self.writer.keys.shards = shards
        try:
            await self.writer.send(prepared, SOURCE, spans_of(records))
        finally:
            self.writer.keys.shards = everything

    async def outbox(self) -> list[bytes]:
        keys = self.publishers[0].keys
        out: list[bytes] = []
        for shard in range(keys.shards):
            out += await self.redis.lrange(keys.outbox(shard), 0, -1)
        return out


@asynccontextmanager
async def world(lock_ms: int = 60_000) -> AsyncIterator[World]:
    mark = scratch_name("lo")
    settings = Settings(
        namespace=mark,
        redis_url=REDIS_URL,
        kafka_bootstrap=KAFKA,
        lifecycle_topic=f"customer-lifecycle-{mark}",
        churn_window_days=WINDOW,
        at_risk_days=RISK,
        allowed_lateness_seconds=LATENESS_S,
        lifecycle_lock_ms=lock_ms,
    )
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(settings.lifecycle_topic, PARTITIONS, 1)])
    finally:
        await admin.close()
    redis = async_client(settings, timeout=30)
    producers = [AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all") for _ in range(2)]
    for producer in producers:
        await producer.start()
    publishers = [LifecyclePublisher(redis, settings) for _ in producers]
    try:
        yield World(settings, redis, StateWriter(redis, settings), publishers, producers, {})
    finally:
        for producer in producers:
            await producer.stop()
        found = [k async for k in redis.scan_iter(f"{mark}:*", count=1000)]
        if found:
            await redis.delete(*found)
        await redis.aclose()
        await delete_marked(KAFKA, mark)


def test_two_workers_publishing_at_once_put_every_change_on_the_topic_once() -> None:
    """Both workers run a round after every chunk of events, at the same moment; each
    shard is published by one of them, and nothing is published twice or lost."""
    events = history(seed=11, customers=240)
    expected = expected_changes(events)

    async def run() -> tuple[list[Change], int]:
        async with world() as w:
            busy = 0
            for start in range(0, len(events), CHUNK):
                await w.apply(events[start : start + CHUNK])
                rounds = await asyncio.gather(
                    *(
                        p.run_once(pr, SOURCE)
                        for p, pr in zip(w.publishers, w.producers, strict=True)
                    )
                )
                busy += sum(r.busy for r in rounds)
            # the shards a worker found busy are tried again (as the worker does later)
            for p, pr in zip(w.publishers, w.producers, strict=True):
                assert (await p.run_once(pr, SOURCE)).busy == 0
            assert await w.outbox() == []
            messages = await read_topic(w.settings.lifecycle_topic, len(expected))
            return as_changes(messages), busy

    got, busy = asyncio.run(run())
    assert busy > 0, "the two workers never met at a shard: the test proves nothing"
    assert len(got) == len(set(got)), f"{len(got) - len(set(got))} changes published twice"
    assert got == expected


def test_a_worker_whose_lock_expired_trims_nothing_and_the_next_publishes_all() -> None:
    """Worker A stalls past its lock after Kafka took its changes; B takes the shards
    over and queues more. A's trim must not drop B's entries: A's changes are published
    again (the stall window), and none is lost."""
    events = history(seed=12, customers=120)
    half = len(events) // 2

    async def run() -> tuple[list[Change], int, int]:
        async with world(lock_ms=1000) as w:
            a, b = w.publishers
            await w.apply(events[:half])
            mark = await a.watermark(SOURCE)
            assert mark.day is not None
            hold = await a.acquire()
            assert len(hold.shards) == w.settings.shards
            await a.sweep(mark, hold)
            first = len(await w.outbox())
            assert first > 0
            await a._drain(w.producers[0], hold)  # Kafka has A's changes
            time.sleep(1.2)  # A stalls: its locks expire
            taken = await b.acquire()
            assert len(taken.shards) == w.settings.shards
            await b.release(taken)
            await w.apply(events[half:])
            assert (await b.run_once(w.producers[1], SOURCE)).busy == 0
            # meanwhile B published everything; now A wakes up: it sweeps nothing and
            # trims nothing
            await a.sweep(await a.watermark(SOURCE), hold)
            assert hold.shards == [] and hold.busy == w.settings.shards
            await a.release(hold)
            assert await w.outbox() == []
            messages = await read_topic(w.settings.lifecycle_topic, first)
            return as_changes(messages), first, len(expected_changes(events))

    got, first, total = asyncio.run(run())
    assert sorted(set(got)) == expected_changes(events), "a change was lost"
    assert len(got) == total + first, "only the stalled round's changes may repeat"


def test_a_trim_after_the_lock_moved_on_keeps_the_new_holders_entries() -> None:
    """A stalls between reading its outbox and trimming it while B holds the shard and
    appends more: A's release trims nothing, B's trims exactly what B published."""
    events = history(seed=13, customers=120)
    half = len(events) // 2

    async def run() -> None:
        async with world(lock_ms=1000) as w:
            a, b = w.publishers
            await w.apply(events[:half])
            mark = await a.watermark(SOURCE)
            assert mark.day is not None
            hold = await a.acquire()
            await a.sweep(mark, hold)
            await a._drain(w.producers[0], hold)
            read_by_a = len(await w.outbox())
            time.sleep(1.2)
            await w.apply(events[half:])
            later = await b.watermark(SOURCE)
            assert later.day is not None
            b_hold = await b.acquire()
            await b.sweep(later, b_hold)
            queued = await w.outbox()
            assert len(queued) > read_by_a, "B queued nothing new: the test proves nothing"
            await a.release(hold)  # A's late trim
            assert await w.outbox() == queued, "a trim without the lock removed entries"
            await b._drain(w.producers[1], b_hold)
            await b.release(b_hold)
            assert await w.outbox() == []

    asyncio.run(run())


def test_a_backlog_beyond_one_round_is_published_over_several(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A round produces at most DRAIN_LIMIT entries per shard (so it stays inside the
    lock's time) and says more is left; the next rounds publish the rest, once each."""
    monkeypatch.setattr(lifecycle, "DRAIN_LIMIT", 50)
    events = history(seed=14, customers=120)
    expected = expected_changes(events)

    async def run() -> tuple[list[Change], int]:
        async with world() as w:
            await w.apply(events)
            publisher, producer = w.publishers[0], w.producers[0]
            rounds = 1
            while (await publisher.run_once(producer, SOURCE)).again:
                rounds += 1
            assert await w.outbox() == []
            return as_changes(await read_topic(w.settings.lifecycle_topic, len(expected))), rounds

    got, rounds = asyncio.run(run())
    assert rounds > len(expected) // (50 * 4), f"{len(expected)} changes in {rounds} rounds"
    assert got == expected


def test_no_sweep_while_a_batch_reached_only_some_shards() -> None:
    """A worker dies while writing a batch: Redis ran it for two of the four shards. Until
    the batch is applied everywhere there is no watermark (the newest event time of the
    shards ahead would publish the other shards' customers early); then every change
    comes out as the oracle says."""
    events = history(seed=15, customers=240)
    expected = expected_changes(events)
    cut = [0, len(events) // 4, len(events) // 2, len(events)]

    async def run() -> list[Change]:
        async with world() as w:
            publisher, producer = w.publishers[0], w.producers[0]
            await w.apply(events[cut[0] : cut[1]])
            assert (await publisher.run_once(producer, SOURCE)).again is False
            torn = w.records(events[cut[1] : cut[2]])
            await w.send_to_first_shards(torn, 2)
            assert await publisher.watermark_day(SOURCE) is None
            published = await publisher.run_once(producer, SOURCE)
            assert published.changes == 0 and published.again
            # the next worker reads the partitions again: the batch reaches every shard
            await w.writer.send(await w.writer.prepare(torn), SOURCE, spans_of(torn))
            await publisher.run_once(producer, SOURCE)
            await w.apply(events[cut[2] : cut[3]])
            await publisher.run_once(producer, SOURCE)
            return as_changes(await read_topic(w.settings.lifecycle_topic, len(expected)))

    assert asyncio.run(run()) == expected


def spans_of(records: list[Record]) -> dict[int, Span]:
    """Each partition's span of a batch, as the worker sends it (offset 0: BEGINNING)."""
    spans: dict[int, Span] = {}
    for r in records:
        start = spans[r.partition].start if r.partition in spans else r.offset
        spans[r.partition] = Span(BEGINNING if start == 0 else start, r.offset + 1)
    return spans


def test_a_partition_applied_after_the_watermark_was_read_stops_the_sweep() -> None:
    """The watermark is read from the partitions applied so far; before the sweep runs,
    another batch brings a partition's first records, whose events are older than the
    watermark. Sweeping with it would publish that partition's customers from their
    first few days only; the sweep stops instead and the next round, from a fresh
    watermark, publishes what the oracle says."""
    events = history(seed=16, customers=240)
    expected = expected_changes(events)

    def partition(e: dict[str, object]) -> int:
        key = str(e["customer_id"]).encode()
        return int(DefaultPartitioner()(key, list(range(PARTITIONS)), []))

    early = [e for e in events if partition(e) != 3]
    late = [e for e in events if partition(e) == 3]

    async def run() -> list[Change]:
        async with world() as w:
            publisher, producer = w.publishers[0], w.producers[0]
            await w.apply(early)  # partitions 0-2 to the end; 3 not started
            mark = await publisher.watermark(SOURCE)
            assert mark.partitions == [0, 1, 2]
            first = len(late) // 5
            await w.apply(late[:first])  # meanwhile partition 3's first records
            hold = await publisher.acquire()
            await publisher.sweep(mark, hold)
            assert hold.left and await w.outbox() == []
            await publisher.release(hold)
            await w.apply(late[first:])
            while (await publisher.run_once(producer, SOURCE)).again:
                pass
            return as_changes(await read_topic(w.settings.lifecycle_topic, len(expected)))

    assert asyncio.run(run()) == expected
