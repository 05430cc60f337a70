"""Where each partition's next batch starts: from the offset markers in Redis, never the group.

On every assignment, and whenever a batch finds Redis behind it (restarted without its
last writes, emptied, restored from an older copy), a partition is sought back to the
offset Redis says its applied records end at. The group's committed offsets follow
for lag monitoring only.
"""

from __future__ import annotations

import logging
from typing import Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from core.redis_types import AsyncRedis
from core.settings import Settings
from streams.guard import StateRefused, record_fingerprint, start_position, stored_positions
from streams.pipeline.outages import Retrying
from streams.state import BEGINNING, StateWriter
from streams.topic_identity import source_name

log = logging.getLogger(__name__)


class Positions:
    """The offset each partition continues from, kept equal to Redis's markers."""

    def __init__(
        self, settings: Settings, redis: AsyncRedis, writer: StateWriter, retrying: Retrying
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.writer = writer
        self.retrying = retrying
        self.source = settings.events_topic  # with the topic id once known
        self.next: dict[int, int] = {}  # partition -> offset the next batch continues from
        self.refused: StateRefused | None = None  # set on assignment; stops the worker
        # bumped when partitions are revoked or sought to the markers: a batch polled
        # before is not sent (BatchPipeline.send), as it may no longer continue them
        self.generation = 0

    async def identify_source(self, consumer: AIOKafkaConsumer) -> None:
        """Offset markers name the topic and its id, so a recreated topic of the same name
        is never mistaken for the one the state was built from."""
        topic = self.settings.events_topic
        self.source = await self.retrying(
            "kafka", "reading the topic id", lambda: source_name(consumer._client, topic)
        )
        log.info("offset markers are kept for %s", self.source)

    async def reposition(self, consumer: AIOKafkaConsumer, partitions: set[TopicPartition]) -> None:
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
            "kafka", "reading log starts", lambda: consumer.beginning_offsets(tps)
        )
        ends = await self.retrying("kafka", "reading log ends", lambda: consumer.end_offsets(tps))
        positions = {}
        for tp in tps:
            at = start_position(tp.topic, tp.partition, stored[tp.partition], starts[tp], ends[tp])
            self.next[tp.partition] = at
            positions[tp] = starts[tp] if at == BEGINNING else at
            consumer.seek(tp, positions[tp])
            where = "the beginning" if at == BEGINNING else f"offset {at}"
            log.info("partition %d resumes from %s (as applied in Redis)", tp.partition, where)
        self.generation += 1  # in the same step as the seeks: nothing polled before is sent
        await commit_positions(consumer, positions)

    async def on_holes(self, consumer: AIOKafkaConsumer, holes: dict[int, int]) -> None:
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
        lost = {tp for tp in consumer.assignment() if tp.partition in holes}
        await self.reposition(consumer, lost)


async def commit_positions(consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
    """Commit for lag monitoring only: positions come from Redis, so a failed commit
    (a rebalance, the broker restarting) loses nothing. Partitions the group has taken
    away meanwhile are left to their new owner."""
    assigned = consumer.assignment()
    held = {tp: offset for tp, offset in offsets.items() if tp in assigned}
    if len(held) < len(offsets):
        gone = sorted(tp.partition for tp in offsets.keys() - held.keys())
        log.info("not committing partitions %s: no longer assigned to this worker", gone)
    if not held:
        return
    try:
        await consumer.commit(held)
    except KafkaError as exc:
        # IllegalStateError: revoked since the check above; CommitFailedError: the group
        # rebalanced (RebalanceInProgress and unknown member end up as this one)
        log.warning(
            "offset commit failed (%s: %s); positions are kept in Redis", type(exc).__name__, exc
        )


class Rebalancing(Protocol):
    """What the batch loop does around a rebalance (streams/pipeline/stages.py)."""

    async def before_revocation(self) -> None: ...

    def after_assignment(self) -> None: ...


class Repositioner(ConsumerRebalanceListener):  # type: ignore[misc]
    """Settles the batches of partitions being revoked, and seeks newly assigned
    partitions to the offsets stored with the state."""

    def __init__(
        self, positions: Positions, consumer: AIOKafkaConsumer, batches: Rebalancing
    ) -> None:
        self.positions = positions
        self.consumer = consumer
        self.batches = batches

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.batches.before_revocation()
        for tp in revoked:
            self.positions.next.pop(tp.partition, None)  # the next owner continues

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        try:
            await self.positions.reposition(self.consumer, assigned)
        except StateRefused as exc:
            self.positions.refused = exc
            self.consumer.pause(*assigned)
        self.batches.after_assignment()
