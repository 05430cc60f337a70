"""The hot path: poll a batch, decode it, dead-letter the bad records, apply, then commit.

Redis stores each partition's applied offset in the same script that applies a batch,
and consumption always resumes from there: a crash anywhere replays at most what Redis
does not hold yet, and a Redis that lost writes is noticed and read again. The group's
committed offsets only serve lag monitoring.

Three stages overlap, so Redis and the worker's CPU work side by side: batch N+1 is
polled, decoded and turned into script arguments while Redis applies batch N, and
N's tail (offset commit, lifecycle sweep and publishing) runs after it. Each stage
handles one batch at a time, in order, so applies and commits never go backwards.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.errors import KafkaError, NoOffsetForPartitionError, OffsetOutOfRangeError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.settings import Settings
from streams.deadletter import dead_letter_record
from streams.events import EventDecoder, Rejected
from streams.guard import StateRefused, record_fingerprint, start_position, stored_positions
from streams.health import WorkerHealth
from streams.lifecycle import LifecyclePublisher
from streams.state import BEGINNING, ApplyResult, Record, ShardBatch, Span, StateWriter
from streams.topic_identity import source_name

log = logging.getLogger(__name__)
MAX_TAILS = 2  # batches applied but not yet committed, before the apply stage waits
PRODUCER_BATCH_BYTES = 1024 * 1024
FIRST_BACKOFF, MAX_BACKOFF = 0.2, 30.0  # seconds between retries of a failed backend
KAFKA_PROBE_SECONDS = 2.0  # how often the health metrics check that the broker answers
# what each backend raises for an outage; everything else is a bug and surfaces
BACKEND_ERRORS: dict[str, tuple[type[BaseException], ...]] = {
    "redis": (RedisError, OSError),
    "kafka": (KafkaError, OSError, asyncio.TimeoutError),
    "dead_letter": (KafkaError, OSError, asyncio.TimeoutError),
}
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Batch:
    """A polled batch between the stages: its records, script arguments and counts."""

    polled: dict[TopicPartition, list[ConsumerRecord]]
    spans: dict[int, Span]
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
    """Consumes the events topic with one aiokafka consumer and applies whole batches.

    Positions come from the offset markers in Redis, not the group's commits: on every
    assignment, and whenever a batch finds Redis behind it (restarted without its last
    writes, emptied, restored from an older copy), consumption goes back to the marker.
    Outages of Redis or Kafka are retried with backoff at the same position.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.decoder = EventDecoder(settings)
        self.redis = Redis.from_url(settings.redis_url, socket_connect_timeout=5, socket_timeout=60)
        self.writer = StateWriter(self.redis, settings)
        self.lifecycle = LifecyclePublisher(self.redis, settings)
        self.progress = Progress()
        self.health = WorkerHealth()
        self.consumer: AIOKafkaConsumer
        self.producer: AIOKafkaProducer
        self.source = settings.events_topic  # with the topic id once known
        self.next: dict[int, int] = {}  # partition -> offset the next batch continues from
        self.refused: StateRefused | None = None  # set on assignment; stops the worker
        self.inflight: asyncio.Task[None] | None = None  # the batch Redis is applying
        self.tails: deque[asyncio.Task[None]] = deque()  # applied batches' commits, in order
        # a batch was applied since the last lifecycle sweep; true at the start, so that
        # changes a stopped worker left in the outbox are published
        self.sweep_due = True
        self.last_sweep = 0.0  # time.monotonic() of the last sweep
        self.target_records = 0  # records to apply when running until caught up
        self.kafka_up = True  # as the last probe of the broker found it

    async def run(self, until_caught_up: bool = False) -> None:
        """Consume until cancelled (or, for a rebuild, until the end offsets seen at the
        start are applied); clients are made here because aiokafka needs the loop."""
        self.consumer = self._consumer()
        self.producer = self._producer()
        await self.retrying("kafka", "starting the producer", self.producer.start)
        await self.retrying("kafka", "starting the consumer", self.consumer.start)
        watcher = asyncio.create_task(self.watch_kafka())
        try:
            await self._identify_source()
            self.consumer.subscribe([self.settings.events_topic], listener=Repositioner(self))
            targets = await self._end_offsets() if until_caught_up else None
            while not (targets is not None and self._reached(targets)):
                await self.poll_once()
            await self.drain()
            await self.sweep_lifecycle()
        finally:
            watcher.cancel()
            for task in (self.inflight, *self.tails):
                if task is not None:
                    task.cancel()  # an uncommitted batch is replayed harmlessly
            await self.consumer.stop()
            await self.producer.stop()
            await self.redis.aclose()

    async def poll_once(self) -> None:
        try:
            polled = await self.consumer.getmany(
                timeout_ms=self.settings.batch_timeout_ms,
                max_records=self.settings.batch_max_events,
            )
        except NoOffsetForPartitionError:
            # polled before the assignment's seek to the Redis markers completed
            await asyncio.sleep(0.05)
            return
        except OffsetOutOfRangeError as exc:
            raise StateRefused(
                f"Kafka deleted records this worker has not applied yet ({exc}): the "
                "events topic's retention is shorter than the worker's lag. The state "
                "cannot be completed exactly; keep the topic's history "
                "(RETENTION_EVENTS_RETENTION_MS=-1) and run `retention rebuild`."
            ) from None
        except KafkaError as exc:
            self.health.backend_failed("kafka")
            log.warning("polling Kafka failed (%s); retrying in 1 s", exc)
            await asyncio.sleep(1)
            return
        if self.refused is not None:
            raise self.refused
        if polled:
            await self.process(polled)
        else:  # idle: let the last batch land, commit and publish now
            await self.drain()
            await self.sweep_lifecycle()
        await self.health.update_lag(self.consumer)

    async def watch_kafka(self) -> None:
        """Tell the health metrics whether the broker answers. The consuming loop cannot:
        during an outage aiokafka retries fetches and commits inside its own calls, so
        the loop just waits; a metadata round trip every few seconds tells."""
        while True:
            await asyncio.sleep(KAFKA_PROBE_SECONDS)
            try:
                fetch = self.consumer._client.fetch_all_metadata()
                await asyncio.wait_for(fetch, KAFKA_PROBE_SECONDS)
            except (TimeoutError, KafkaError) as exc:
                if self.kafka_up:
                    log.warning("Kafka unreachable (%s); the worker waits at its position", exc)
                self.kafka_up = False
                self.health.backend_failed("kafka")
                continue
            if not self.kafka_up:
                log.info("Kafka answers again")
            self.kafka_up = True
            self.health.backend_ok("kafka")

    async def drain(self) -> None:
        """Wait until every polled batch is applied and committed."""
        await self.finish(self.inflight)
        while self.tails:  # the newest must still be listed while it runs
            await self.tails[0]
            self.tails.popleft()

    async def _identify_source(self) -> None:
        """Offset markers name the topic and its id, so a recreated topic of the same name
        is never mistaken for the one the state was built from."""
        topic = self.settings.events_topic
        self.source = await self.retrying(
            "kafka", "reading the topic id", lambda: source_name(self.consumer._client, topic)
        )
        log.info("offset markers are kept for %s", self.source)

    async def _end_offsets(self) -> dict[TopicPartition, int]:
        """The end of every partition now, and the number of records up to there."""
        topic = self.settings.events_topic
        parts = await self.retrying(
            "kafka", "reading partitions", lambda: partitions_of(self.consumer, topic)
        )
        tps = [TopicPartition(topic, p) for p in parts]
        starts = await self.retrying(
            "kafka", "reading log starts", lambda: self.consumer.beginning_offsets(tps)
        )
        ends: dict[TopicPartition, int] = await self.retrying(
            "kafka", "reading end offsets", lambda: self.consumer.end_offsets(tps)
        )
        self.target_records = sum(ends[tp] - starts[tp] for tp in tps)
        return ends

    def _reached(self, targets: dict[TopicPartition, int]) -> bool:
        """Every partition applied up to its target, and nothing in flight."""
        if (self.inflight is not None and not self.inflight.done()) or self.tails:
            return False
        return all(
            self.next.get(tp.partition, BEGINNING) >= end or end == 0 for tp, end in targets.items()
        )

    async def reposition(self, partitions: set[TopicPartition]) -> None:
        """Seek each partition to where Redis says its applied records end."""
        if not partitions:
            return
        numbers = sorted(tp.partition for tp in partitions)
        keys = self.writer.keys
        stored = await self.retrying(
            "redis",
            "reading offset markers",
            lambda: stored_positions(self.redis, keys, self.source, numbers),
        )
        tps = sorted(partitions)
        starts = await self.retrying(
            "kafka", "reading log starts", lambda: self.consumer.beginning_offsets(tps)
        )
        ends = await self.retrying(
            "kafka", "reading log ends", lambda: self.consumer.end_offsets(tps)
        )
        positions = {}
        for tp in tps:
            at = start_position(tp.topic, tp.partition, stored[tp.partition], starts[tp], ends[tp])
            self.next[tp.partition] = at
            positions[tp] = starts[tp] if at == BEGINNING else at
            self.consumer.seek(tp, positions[tp])
            where = "the beginning" if at == BEGINNING else f"offset {at}"
            log.info("partition %d resumes from %s (as applied in Redis)", tp.partition, where)
        await self.commit_positions(positions)

    async def on_holes(self, holes: dict[int, int]) -> None:
        """Redis is behind the batch: it lost writes or was emptied. Read again from what
        it holds, with a fresh breakdown-code cache (an emptied Redis forgot the codes)."""
        log.warning(
            "Redis holds less than this worker applied (partition -> offset it holds: %s); "
            "re-reading from there",
            holes,
        )
        self.writer.dimensions.cache.clear()
        await self.retrying(
            "redis",
            "restoring the settings fingerprint",
            lambda: record_fingerprint(self.redis, self.settings),
        )
        lost = {tp for tp in self.consumer.assignment() if tp.partition in holes}
        await self.reposition(lost)

    def _consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=self.settings.group_id,
            enable_auto_commit=False,
            # positions always come from Redis (Repositioner); never jump silently
            auto_offset_reset="none",
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
            max_request_size=max(PRODUCER_BATCH_BYTES, 2 * self.settings.max_event_bytes + 65536),
        )

    async def retrying(self, backend: str, what: str, op: Callable[[], Awaitable[T]]) -> T:
        """Run op until it succeeds, waiting longer after each failure: an outage holds
        the worker at its position instead of stopping it."""
        delay = FIRST_BACKOFF
        while True:
            try:
                result = await op()
            except BACKEND_ERRORS[backend] as exc:
                self.health.backend_failed(backend)
                log.warning(
                    "%s failed (%s: %s); retrying in %.1f s, position kept",
                    what,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)
                continue
            if delay > FIRST_BACKOFF:
                log.info("%s succeeded again", what)
            self.health.backend_ok(backend)
            return result

    async def process(self, polled: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """Decode and prepare a batch, then hand it to Redis once the previous one is in."""
        started = time.perf_counter()
        records: list[Record] = []
        dead: list[tuple[ConsumerRecord, Rejected]] = []
        spans: dict[int, Span] = {}
        for tp, messages in polled.items():
            if not messages:
                continue
            spans[tp.partition] = Span(
                self.next.get(tp.partition, BEGINNING), messages[-1].offset + 1
            )
            self.next[tp.partition] = messages[-1].offset + 1
            for message in messages:
                try:
                    event = self.decoder.decode(message.value)
                    records.append(Record(message.partition, message.offset, event=event))
                except Rejected as exc:
                    records.append(Record(message.partition, message.offset, reason=exc.reason))
                    dead.append((message, exc))
        await self.dead_letter(dead)
        shards = await self.retrying(
            "redis", "preparing a batch", lambda: self.writer.prepare(records)
        )
        await self.finish(self.inflight)
        batch = Batch(polled, spans, shards, len(records), len(dead), started)
        self.inflight = asyncio.create_task(self.apply(batch))

    async def apply(self, batch: Batch) -> None:
        """Apply in Redis, then queue the commit behind the previous batch's."""
        applying = time.perf_counter()
        result = await self.retrying(
            "redis",
            "applying a batch",
            lambda: self.writer.send(batch.shards, self.source, batch.spans),
        )
        applied = time.perf_counter()
        if result.holes:
            await self.on_holes(result.holes)
            return
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
        """Wait for an earlier stage; its errors surface here."""
        if task is not None:
            await task

    async def publish_lifecycle(self) -> None:
        """Lifecycle changes stay in the outbox until Kafka has them; a failure is retried
        after the next batch and never stops ingestion."""
        try:
            await self.lifecycle.run_once(self.producer, self.source)
        except Exception:
            self.sweep_due = True
            log.exception("lifecycle sweep failed; metrics are unaffected, retrying next batch")

    async def dead_letter(self, dead: list[tuple[ConsumerRecord, Rejected]]) -> None:
        """Write rejected records with their reason and original bytes, and wait for the
        acks; while the topic refuses writes the worker keeps its position and retries."""
        if dead:
            await self.retrying(
                "dead_letter", "writing to the dead-letter topic", lambda: self._send_dead(dead)
            )

    async def _send_dead(self, dead: list[tuple[ConsumerRecord, Rejected]]) -> None:
        limit = self.settings.max_event_bytes
        futures = []
        for message, exc in dead:
            key, value = dead_letter_record(message, str(exc.reason), exc.detail, limit)
            futures.append(await self.producer.send(self.settings.dlq_topic, value=value, key=key))
        await asyncio.gather(*futures)

    async def commit(self, polled: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        offsets = {tp: messages[-1].offset + 1 for tp, messages in polled.items() if messages}
        await self.commit_positions(offsets)

    async def commit_positions(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit for lag monitoring only: positions come from Redis, so a failed commit
        (a rebalance, the broker restarting) loses nothing."""
        try:
            await self.consumer.commit(offsets)
        except KafkaError as exc:
            log.warning("offset commit failed (%s); positions are kept in Redis", exc)


async def partitions_of(consumer: AIOKafkaConsumer, topic: str) -> list[int]:
    """The topic's partition numbers from fresh metadata (empty when it does not exist)."""
    metadata = await consumer._client.fetch_all_metadata()
    return sorted(metadata.partitions_for_topic(topic) or ())


class Repositioner(ConsumerRebalanceListener):  # type: ignore[misc]
    """Seeks newly assigned partitions to the offsets stored with the state."""

    def __init__(self, pipeline: BatchPipeline) -> None:
        self.pipeline = pipeline

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        try:
            await self.pipeline.reposition(assigned)
        except StateRefused as exc:
            self.pipeline.refused = exc
            self.pipeline.consumer.pause(*assigned)
