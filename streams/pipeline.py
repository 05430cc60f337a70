"""The hot path: poll a batch, decode it, dead-letter the bad records, apply, then commit.

Offsets are committed only after Redis has the batch and the dead-letter topic has
its records, so a crash anywhere in between replays the batch, and the offsets
stored in Redis make that replay change nothing.

A batch's tail (offset commit, lifecycle sweep and publishing) runs while the next
batch is polled, decoded and applied, so Redis and the worker's CPU work side by
side; tails run one at a time and in order, so commits never go backwards.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError
from redis.asyncio import Redis

from retention.settings import Settings
from streams.events import EventDecoder, Rejected
from streams.health import WorkerHealth
from streams.lifecycle import LifecyclePublisher
from streams.state import ApplyResult, Record, StateWriter

log = logging.getLogger(__name__)


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
        self.tail: asyncio.Task[None] | None = None

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
                elif self.tail is not None:
                    await self.finish_tail()  # idle: let the last commit land now
                await self.health.update_lag(self.consumer)
        finally:
            if self.tail is not None:
                self.tail.cancel()  # its batch is replayed harmlessly
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
            max_request_size=max(1024 * 1024, 2 * self.settings.max_event_bytes + 4096),
        )

    async def process(self, polled: dict[TopicPartition, list[ConsumerRecord]]) -> None:
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
        applying = time.perf_counter()
        result = await self.writer.apply(records)
        applied = time.perf_counter()
        self.progress.add(len(records), len(dead), result)
        await self.finish_tail()
        self.tail = asyncio.create_task(self.after_apply(polled, result.applied > 0))
        self.health.batch_done(len(records), time.perf_counter() - started, applied - applying)

    async def after_apply(
        self, polled: dict[TopicPartition, list[ConsumerRecord]], applied: bool
    ) -> None:
        """Commit a batch Redis holds, then sweep and publish its lifecycle changes."""
        await self.commit(polled)
        if applied:
            await self.publish_lifecycle()

    async def finish_tail(self) -> None:
        """Wait for the previous batch's tail; its errors (other than commit races) surface here."""
        tail, self.tail = self.tail, None
        if tail is not None:
            await tail

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
