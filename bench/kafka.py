"""Kafka helpers: topics, fast bulk production, offsets, cleanup.

Bulk production builds record batches per partition (aiokafka `create_batch` /
`send_batch`) from pre-serialized bytes, with the default partitioner's murmur2 of
the key, so a customer's records land on one partition in order, exactly as the
keyed sends of a real producer would place them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import murmur2
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.protocol.admin import DeleteGroupsRequest

from core.kafka import security_options
from core.settings import Settings

MAX_BATCH_BYTES = 512 * 1024
IN_FLIGHT_BATCHES = 64


@functools.cache
def _security() -> dict[str, Any]:
    return security_options(Settings())


def connect(bootstrap: str) -> dict[str, Any]:
    """A client's address and the RETENTION_KAFKA_* security, as the tracker's own clients."""
    return {"bootstrap_servers": bootstrap, **_security()}


def partition_of(key: bytes, partitions: int) -> int:
    """The partition aiokafka's (and the Java client's) default partitioner picks."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


@dataclass(frozen=True, slots=True)
class Produced:
    records: int
    seconds: float
    end_offsets: dict[int, int]

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


async def create_topics(bootstrap: str, topics: dict[str, int]) -> None:
    admin = AIOKafkaAdminClient(**connect(bootstrap))
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name, num_partitions=n, replication_factor=1) for name, n in topics.items()]
        )
    finally:
        await admin.close()


async def delete_topics_containing(bootstrap: str, tag: str) -> list[str]:
    """Delete every topic whose name contains `tag` (ours, and what Faust made for our apps)."""
    admin = AIOKafkaAdminClient(**connect(bootstrap))
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if tag in t]
        if names:
            await admin.delete_topics(names)
        return names
    finally:
        await admin.close()


async def delete_groups_containing(bootstrap: str, tag: str) -> list[str]:
    """Delete the (empty) consumer groups whose id contains `tag`."""
    admin = AIOKafkaAdminClient(**connect(bootstrap))
    await admin.start()
    deleted: list[str] = []
    try:
        for group, _ in await admin.list_consumer_groups():
            if tag not in group:
                continue
            with contextlib.suppress(Exception):  # a group still closing is left to expire
                node = await admin.find_coordinator(group)
                await admin._send_request_to_node(node, DeleteGroupsRequest([group]))
                deleted.append(group)
    finally:
        await admin.close()
    return deleted


class BulkProducer:
    """Sends pre-serialized (key, value) records as fast as the broker takes them."""

    def __init__(self, bootstrap: str, partitions: int) -> None:
        self.bootstrap = bootstrap
        self.partitions = partitions
        self._partition_cache: dict[bytes, int] = {}

    def partition(self, key: bytes) -> int:
        p = self._partition_cache.get(key)
        if p is None:
            p = self._partition_cache[key] = partition_of(key, self.partitions)
        return p

    async def produce(self, topic: str, records: Iterable[tuple[bytes, bytes]]) -> Produced:
        producer = AIOKafkaProducer(
            **connect(self.bootstrap),
            acks=1,
            linger_ms=5,
            max_batch_size=MAX_BATCH_BYTES,
            max_request_size=4 * MAX_BATCH_BYTES,
        )
        await producer.start()
        started = time.perf_counter()
        count = 0
        pending: list[asyncio.Future[object]] = []
        try:
            batches = [producer.create_batch() for _ in range(self.partitions)]
            for key, value in records:
                p = self.partition(key)
                if batches[p].append(key=key, value=value, timestamp=None) is None:
                    pending.append(await self._send(producer, batches[p], topic, p))
                    batches[p] = producer.create_batch()
                    batches[p].append(key=key, value=value, timestamp=None)
                    if len(pending) >= IN_FLIGHT_BATCHES:
                        await asyncio.gather(*pending)
                        pending.clear()
                count += 1
            for p, batch in enumerate(batches):
                if batch.record_count():
                    pending.append(await self._send(producer, batch, topic, p))
            await asyncio.gather(*pending)
            seconds = time.perf_counter() - started
        finally:
            await producer.stop()
        return Produced(count, seconds, await end_offsets(self.bootstrap, topic, self.partitions))

    @staticmethod
    async def _send(
        producer: AIOKafkaProducer, batch: BatchBuilder, topic: str, partition: int
    ) -> asyncio.Future[object]:
        batch.close()
        future: asyncio.Future[object] = await producer.send_batch(
            batch, topic, partition=partition
        )
        return future


async def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = AIOKafkaConsumer(**connect(bootstrap), enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    return {tp.partition: int(off) for tp, off in ends.items()}


class CommitWatcher:
    """Reads a consumer group's committed offsets of one topic (one admin connection)."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self.admin = AIOKafkaAdminClient(**connect(bootstrap))
        self.parts = [TopicPartition(topic, p) for p in range(partitions)]

    async def __aenter__(self) -> CommitWatcher:
        await self.admin.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.admin.close()

    async def committed(self, group: str) -> dict[int, int]:
        try:
            meta = await self.admin.list_consumer_group_offsets(group, partitions=self.parts)
        except Exception:  # the group does not exist yet, or its coordinator is moving
            return {tp.partition: 0 for tp in self.parts}
        return {
            tp.partition: (m.offset if m is not None and m.offset >= 0 else 0)
            for tp, m in meta.items()
        }


async def group_members(options: dict[str, Any], group: str) -> tuple[str, int]:
    """(state, number of members) of a consumer group, e.g. ('Stable', 3); `options` are
    the admin client's connection options (connect())."""
    admin = AIOKafkaAdminClient(**options)
    await admin.start()
    try:
        (resp,) = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    # Raw DescribeGroups: (error_code, group_id, state, protocol_type, protocol, members, ...)
    _, _, state, _, _, members, *_ = resp.groups[0]
    return str(state), len(members)
