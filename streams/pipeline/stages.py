"""The batch loop: three overlapped stages, so Redis and the worker's CPU work side by side.

Batch N+1 is polled, decoded and turned into script arguments while Redis applies batch
N, and N's tail (offset commit, lifecycle sweep and publishing) runs after it. Each
stage handles one batch at a time, in order, so applies and commits never go backwards.

When the group moves partitions, batches polled before are never sent to Redis after
the revocation: each remembers the assignment it was polled under (a generation
number), checked right before its send, and the revocation waits for a send under way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError, NoOffsetForPartitionError, OffsetOutOfRangeError

from core.redis_client import async_client
from core.settings import Settings
from streams.deadletter import dead_letter_record
from streams.events import EventDecoder, Rejected
from streams.guard import StateRefused
from streams.health import WorkerHealth
from streams.lifecycle import LifecyclePublisher, Published
from streams.pipeline.clients import (
    REBALANCE_TIMEOUT_MS,
    make_consumer,
    make_producer,
    partitions_of,
)
from streams.pipeline.outages import Retrying, watch_kafka
from streams.pipeline.positions import Positions, Repositioner, commit_positions
from streams.state import BEGINNING, ApplyResult, Record, ShardBatch, Span, StateWriter

log = logging.getLogger(__name__)
MAX_TAILS = 2  # batches applied but not yet committed, before the apply stage waits
# How long a revocation or a shutdown waits for the send under way and the commits and
# lifecycle round behind it; within the group's rebalance timeout (REBALANCE_TIMEOUT_MS),
# so the member is not dropped meanwhile. A Redis that hangs longer cannot hold the group:
# the partitions are given up, and a send still under way then counts its records once
# (the offset markers), whichever worker's copy of them Redis runs first.
SETTLE_SECONDS = REBALANCE_TIMEOUT_MS / 1000 - 10


@dataclass(frozen=True, slots=True)
class Batch:
    """A polled batch between the stages: its records, script arguments and counts."""

    polled: dict[TopicPartition, list[ConsumerRecord]]
    spans: dict[int, Span]
    shards: dict[int, ShardBatch]
    size: int
    rejected: int
    started: float
    generation: int  # Positions.generation when it was polled


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

    Positions come from the offset markers in Redis (Positions), not the group's commits.
    Outages of Redis or Kafka are retried with backoff at the same position.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.decoder = EventDecoder(settings)
        self.redis = async_client(settings, timeout=60)
        self.writer = StateWriter(self.redis, settings)
        self.lifecycle = LifecyclePublisher(self.redis, settings)
        self.progress = Progress()
        self.health = WorkerHealth()
        self.retrying = Retrying(self.health)
        self.positions = Positions(settings, self.redis, self.writer, self.retrying)
        self.consumer: AIOKafkaConsumer
        self.producer: AIOKafkaProducer
        self.inflight: asyncio.Task[None] | None = None  # the batch Redis is applying
        self.sending = asyncio.Lock()  # held while a batch is sent to Redis
        self.publishing: asyncio.Future[Published] | None = None  # the lifecycle round
        self.tails: deque[asyncio.Task[None]] = deque()  # applied batches' commits, in order
        # a batch was applied since the last lifecycle sweep; true at the start, so that
        # changes a stopped worker left in the outbox are published
        self.sweep_due = True
        self.last_sweep = 0.0  # time.monotonic() of the last sweep
        self.target_records = 0  # records to apply when running until caught up

    async def run(self, until_caught_up: bool = False) -> None:
        """Consume until cancelled (or, for a rebuild, until the end offsets seen at the
        start are applied); clients are made here because aiokafka needs the loop."""
        self.consumer = make_consumer(self.settings)
        self.producer = make_producer(self.settings)
        await self.retrying("kafka", "starting the producer", self.producer.start)
        await self.retrying("kafka", "starting the consumer", self.consumer.start)
        watcher = asyncio.create_task(watch_kafka(self.consumer, self.health))
        try:
            await self.positions.identify_source(self.consumer)
            listener = Repositioner(self.positions, self.consumer, self)
            self.consumer.subscribe([self.settings.events_topic], listener=listener)
            targets = await self._end_offsets() if until_caught_up else None
            while not (targets is not None and self._reached(targets)):
                await self.poll_once()
            await self.drain()
            await self.sweep_lifecycle()
        finally:
            watcher.cancel()
            # leaving the group gives every partition up: nothing polled is sent any more,
            # and the send under way, its commit and the lifecycle round finish (a cut
            # round would be published again by the next worker)
            await self.before_revocation()
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
        if self.positions.refused is not None:
            raise self.positions.refused
        if polled:
            await self.process(polled)
        else:  # idle: let the last batch land, commit and publish now
            await self.drain()
            await self.sweep_lifecycle()
        await self.health.update_lag(self.consumer)

    async def drain(self) -> None:
        """Wait until every polled batch is applied and committed."""
        await self.finish(self.inflight)
        while self.tails:  # the newest must still be listed while it runs
            await self.tails[0]
            self.tails.popleft()

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
            self.positions.next.get(tp.partition, BEGINNING) >= end or end == 0
            for tp, end in targets.items()
        )

    async def process(self, polled: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """Decode and prepare a batch, then hand it to Redis once the previous one is in."""
        started = time.perf_counter()
        records: list[Record] = []
        dead: list[tuple[ConsumerRecord, Rejected]] = []
        spans: dict[int, Span] = {}
        generation = self.positions.generation  # what the records were polled under
        for tp, messages in polled.items():
            if not messages:
                continue
            spans[tp.partition] = Span(
                self.positions.next.get(tp.partition, BEGINNING), messages[-1].offset + 1
            )
            self.positions.next[tp.partition] = messages[-1].offset + 1
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
        batch = Batch(polled, spans, shards, len(records), len(dead), started, generation)
        self.inflight = asyncio.create_task(self.apply(batch))

    async def apply(self, batch: Batch) -> None:
        """Apply in Redis, then queue the commit behind the previous batch's."""
        applying = time.perf_counter()
        result = await self.retrying("redis", "applying a batch", lambda: self.send(batch))
        applied = time.perf_counter()
        if result is None:
            log.info(
                "a batch of %d records polled before a rebalance was not applied; "
                "its partitions resume from the offsets in Redis",
                batch.size,
            )
            return
        if result.holes:
            await self.positions.on_holes(self.consumer, result.holes)
            return
        self.progress.add(batch.size, batch.rejected, result)
        self.sweep_due |= result.applied > 0
        previous = self.tails[-1] if self.tails else None
        self.tails.append(asyncio.create_task(self.after_apply(previous, batch.polled)))
        while self.tails and (self.tails[0].done() or len(self.tails) > MAX_TAILS):
            await self.tails[0]  # errors surface here; and back-pressure
            self.tails.popleft()
        self.health.batch_done(batch.size, applied - batch.started, applied - applying)

    async def send(self, batch: Batch) -> ApplyResult | None:
        """Send the batch to Redis, unless the group moved partitions since it was polled
        (then None): the partitions resume from Redis's offset markers, wherever they went."""
        async with self.sending:
            if batch.generation != self.positions.generation:
                return None
            return await self.writer.send(batch.shards, self.positions.source, batch.spans)

    async def before_revocation(self) -> None:
        """The group is taking partitions away: no batch polled so far is sent from now
        on, and the send under way, its commit and lifecycle round finish first."""
        self.positions.generation += 1
        self.retrying.wake()  # a batch waiting to retry its send drops out now
        await self.settle()

    def after_assignment(self) -> None:
        """Partitions were assigned (and sought to Redis's markers): sweep the lifecycle,
        as their previous owner may have left changes unpublished."""
        self.sweep_due = True

    async def settle(self) -> None:
        """Wait, up to SETTLE_SECONDS, for the batch being sent and for the applied
        batches' commits and lifecycle rounds."""
        waiting = asyncio.ensure_future(self._settled())
        done, _ = await asyncio.wait([waiting], timeout=SETTLE_SECONDS)
        if not done:
            waiting.cancel()
            log.warning(
                "the batch sent to Redis or its commit did not finish within %.0f s; "
                "going on without it (its records count once whenever Redis runs it)",
                SETTLE_SECONDS,
            )

    async def _settled(self) -> None:
        async with self.sending:
            pass
        if self.inflight is not None:
            await asyncio.wait([self.inflight])  # its errors surface in the batch loop
        while pending := [task for task in self.tails if not task.done()]:
            await asyncio.wait(pending)
        if self.publishing is not None:
            await asyncio.wait([self.publishing])

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
        after the next batch and never stops ingestion. Shards another worker is
        publishing, or a backlog beyond one round, are tried again at the next batch or
        idle poll."""
        # a round cut between Kafka's acks and the trim would be published again: a stop
        # cancels the caller, not the round, and settle() waits for it
        self.publishing = asyncio.ensure_future(
            self.lifecycle.run_once(self.producer, self.positions.source)
        )
        try:
            published = await asyncio.shield(self.publishing)
        except Exception:
            self.sweep_due = True
            log.exception("lifecycle sweep failed; metrics are unaffected, retrying next batch")
            return
        if published.again:
            self.sweep_due = True

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
        await commit_positions(self.consumer, offsets)
