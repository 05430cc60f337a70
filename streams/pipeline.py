"""The hot path: poll a batch, decode it, dead-letter the bad records, apply, then commit.

Offsets are committed only after Redis has the batch and the dead-letter topic has
its records, so a crash anywhere in between replays the batch, and the offsets
stored in Redis make that replay change nothing.

Three stages overlap, so Redis and the worker's CPU work side by side: batch N+1 is
polled, decoded and turned into script arguments while Redis applies batch N, and
N's tail (offset commit, lifecycle sweep and publishing) runs after it. Each stage
handles one batch at a time, in order, so applies and commits never go backwards.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections import deque
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError
from redis.asyncio import Redis

from retention.settings import Settings
from streams.events import EventDecoder, Rejected
from streams.health import WorkerHealth
from streams.lifecycle import LifecyclePublisher
from streams.state import ApplyResult, Record, ShardBatch, StateWriter

log = logging.getLogger(__name__)
MAX_TAILS = 2  # batches applied but not yet committed, before the apply stage waits
PRODUCER_BATCH_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Batch:
    """A polled batch between the stages: its records, script arguments and counts."""

    polled: dict[TopicPartition, list[ConsumerRecord]]
    shards: dict[int, ShardBatch]
    size: int
    rejected: int
    started: float


@dataclass(slots=True)
class Progress:
    """Running totals for the periodic log line."""

    batches: int = 0
    records: int = 0
    rejected: int = 0
    duplicates: int = 0
    replayed: int = 0

    def add(self, size: int, rejected: int, result: ApplyResult) -> None:
        self.batches += 1
        self.records += size
        self.rejected += rejected
        self.duplicates += result.duplicates
        self.replayed += result.replayed


class BatchPipeline:
    """Consumes the events topic with one aiokafka consumer and applies whole batches."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.decoder = EventDecoder(settings)
        self.redis = Redis.from_url(settings.redis_url)
        self.writer = StateWriter(self.redis, settings)
        self.lifecycle = LifecyclePublisher(self.redis, settings)
        self.progress = Progress()
        self.health = WorkerHealth()
        self.consumer: AIOKafkaConsumer
        self.producer: AIOKafkaProducer
        self.inflight: asyncio.Task[None] | None = None  # the batch Redis is applying
        self.tails: deque[asyncio.Task[None]] = deque()  # applied batches' commits, in order
        self.sweep_due = False  # a batch was applied since the last lifecycle sweep
        self.last_sweep = 0.0  # time.monotonic() of the last sweep

    async def run(self) -> None:
        """Consume until cancelled; clients are made here because aiokafka needs the loop."""
        self.consumer = self._consumer()
        self.producer = self._producer()
        await self.producer.start()
        await self.consumer.start()
        try:
            while True:
                polled = await self.consumer.getmany(
                    timeout_ms=self.settings.batch_timeout_ms,
                    max_records=self.settings.batch_max_events,
                )
                if polled:
                    await self.process(polled)
                else:  # idle: let the last batch land, commit and publish now
                    await self.finish(self.inflight)
                    while self.tails:  # the newest must still be listed while it runs
                        await self.tails[0]
                        self.tails.popleft()
                    await self.sweep_lifecycle()
                await self.health.update_lag(self.consumer)
        finally:
            for task in (self.inflight, *self.tails):
                if task is not None:
                    task.cancel()  # an uncommitted batch is replayed harmlessly
            await self.consumer.stop()
            await self.producer.stop()
            await self.redis.aclose()

    def _consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            self.settings.events_topic,
            bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=self.settings.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.settings.batch_max_events,
            fetch_max_bytes=64 * 1024 * 1024,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )

    def _producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            acks="all",
            enable_idempotence=True,
            # a batch's lifecycle changes go out together: with idempotence only one
            # request per partition is in flight, so the default 16 KiB batches made
            # publishing wait on dozens of round trips
            max_batch_size=PRODUCER_BATCH_BYTES,
            linger_ms=5,
            max_request_size=max(PRODUCER_BATCH_BYTES, 2 * self.settings.max_event_bytes + 4096),
        )

    async def process(self, polled: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """Decode and prepare a batch, then hand it to Redis once the previous one is in."""
        started = time.perf_counter()
        records: list[Record] = []
        dead: list[tuple[ConsumerRecord, Rejected]] = []
        for messages in polled.values():
            for message in messages:
                try:
                    event = self.decoder.decode(message.value)
                    records.append(Record(message.partition, message.offset, event=event))
                except Rejected as exc:
                    records.append(Record(message.partition, message.offset, reason=exc.reason))
                    dead.append((message, exc))
        await self.dead_letter(dead)
        shards = await self.writer.prepare(records)
        await self.finish(self.inflight)
        batch = Batch(polled, shards, len(records), len(dead), started)
        self.inflight = asyncio.create_task(self.apply(batch))

    async def apply(self, batch: Batch) -> None:
        """Apply in Redis, then queue the commit behind the previous batch's."""
        applying = time.perf_counter()
        result = await self.writer.send(batch.shards)
        applied = time.perf_counter()
        self.progress.add(batch.size, batch.rejected, result)
        self.sweep_due |= result.applied > 0
        previous = self.tails[-1] if self.tails else None
        self.tails.append(asyncio.create_task(self.after_apply(previous, batch.polled)))
        while self.tails and (self.tails[0].done() or len(self.tails) > MAX_TAILS):
            await self.tails[0]  # errors surface here; and back-pressure
            self.tails.popleft()
        self.health.batch_done(batch.size, applied - batch.started, applied - applying)

    async def after_apply(
        self,
        previous: asyncio.Task[None] | None,
        polled: dict[TopicPartition, list[ConsumerRecord]],
    ) -> None:
        """Commit a batch Redis holds, after the batch before it; then sweep and publish
        lifecycle changes, unless a newer batch is queued whose sweep will cover these or
        the last sweep was less than the lifecycle interval ago (catching up)."""
        await self.finish(previous)
        await self.commit(polled)
        newest = self.tails and self.tails[-1] is asyncio.current_task()
        interval = self.settings.lifecycle_interval_ms / 1000
        if newest and time.monotonic() - self.last_sweep >= interval:
            await self.sweep_lifecycle()

    async def sweep_lifecycle(self) -> None:
        """Sweep and publish if a batch was applied since the last sweep."""
        if self.sweep_due:
            self.sweep_due = False
            self.last_sweep = time.monotonic()
            await self.publish_lifecycle()

    @staticmethod
    async def finish(task: asyncio.Task[None] | None) -> None:
        """Wait for an earlier stage; its errors (other than commit races) surface here."""
        if task is not None:
            await task

    async def publish_lifecycle(self) -> None:
        """Lifecycle changes are retried after the next batch; a failure must not stop ingestion."""
        try:
            await self.lifecycle.run_once(self.producer)
        except Exception:
            log.exception("lifecycle sweep failed; metrics are unaffected, retrying next batch")

    async def dead_letter(self, dead: list[tuple[ConsumerRecord, Rejected]]) -> None:
        """Write rejected records with their reason and original bytes, and wait for the acks."""
        futures = [
            await self.producer.send(
                self.settings.dlq_topic, value=dead_letter_value(message, exc), key=message.key
            )
            for message, exc in dead
        ]
        for future in futures:
            await future

    async def commit(self, polled: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        offsets = {tp: messages[-1].offset + 1 for tp, messages in polled.items() if messages}
        try:
            await self.consumer.commit(offsets)
        except CommitFailedError as exc:
            # A rebalance took the partitions away; the new owner replays them harmlessly.
            log.warning("offset commit failed after a rebalance, batch will be replayed: %s", exc)


def dead_letter_value(message: ConsumerRecord, exc: Rejected) -> bytes:
    original = message.value or b""
    return json.dumps(
        {
            "reason": str(exc.reason),
            "detail": exc.detail,
            "topic": message.topic,
            "partition": message.partition,
            "offset": message.offset,
            "timestamp_ms": message.timestamp,
            "rejected_at_ms": int(time.time() * 1000),
            "original": base64.b64encode(original).decode(),
        }
    ).encode()
