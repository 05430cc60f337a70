"""Publish each customer's lifecycle changes (at risk, churned, back) to Kafka once.

After every batch the worker sweeps the shards up to the watermark: a Redis script
queues the changes of the customers that are due into a per-shard outbox in the
same step that records them as published, and this module produces the outbox to
`customer-lifecycle` and trims it once Kafka has acknowledged.

With several workers each shard has one publisher at a time: a round takes the shards'
lifecycle locks (a random token, expiring after RETENTION_LIFECYCLE_LOCK_MS), and the
sweep and the trim only act while the token is still the lock's. A shard another worker
holds is left to it and tried again by the caller later.
"""

from __future__ import annotations

import asyncio
import functools
import json
import struct
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiokafka import AIOKafkaProducer

from core.calendar import Calendar, day_to_date
from core.redis_types import AsyncRedis
from core.schema import Keys, ReleaseArgs, SweepArgs, TotalsField
from core.segments import RfmKey, RfmThresholds, customer_segment, threshold_score
from core.settings import Settings
from core.totals import positions
from streams.scripts import ScriptCall, load_script, run_scripts

SCRIPT = load_script("customer.lua", "civil.lua", "base_rule.lua", "sweep_lifecycle.lua")
RELEASE_SCRIPT = load_script("release_outbox.lua")
DECODE = msgspec.json.Decoder(dict[str, Any]).decode
ENCODE = msgspec.json.Encoder().encode


@functools.lru_cache(maxsize=1 << 16)
def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partition of a keyed record, as the Java client computes it, so
    the lifecycle topic is co-partitioned with anything else keyed by customer id."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2), reading whole
    32-bit words at once: three times faster than aiokafka's byte-wise version."""
    m, mask, length = 0x5BD1E995, 0xFFFFFFFF, len(data)
    h = 0x9747B28C ^ length
    words = length // 4
    for k in struct.unpack_from(f"<{words}I", data):
        k = (k * m) & mask
        k = ((k ^ (k >> 24)) * m) & mask
        h = ((h * m) & mask) ^ k
    tail = data[words * 4 :]
    if tail:
        h ^= int.from_bytes(tail, "little")
        h = (h * m) & mask
    h = ((h ^ (h >> 13)) * m) & mask
    return h ^ (h >> 15)


YIELD_EVERY = 500  # changes formatted between turns of the event loop
SWEEP_LIMIT = 5000  # customers looked at per script call (whole buckets), so a call stays short
SWEEP_BUCKETS = 1000  # due buckets read, and named in KEYS, per shard and script call
# outbox entries produced per shard and round: a round stays far inside the lock's time
# (each sweep call extends it, the produce does not) however large a catch-up's backlog
DRAIN_LIMIT = 20_000


@dataclass
class Hold:
    """The shards whose lifecycle lock one publishing round holds, under its token."""

    token: str
    shards: list[int]  # held, in order
    busy: int = 0  # shards another worker held, or whose lock this round lost
    published: dict[int, int] = field(default_factory=dict)  # shard -> entries Kafka has
    # more to do in another round: an outbox held more than DRAIN_LIMIT entries, or a
    # partition was applied after the watermark was read
    left: bool = False


@dataclass(frozen=True)
class Watermark:
    """The day up to which changes are complete, from the partitions of `source` applied
    when it was read (None: none applied, or the shards disagree)."""

    source: str
    day: int | None
    partitions: list[int]
    agreed: bool = True


@dataclass(frozen=True)
class Published:
    """What a round did: changes produced, and whether another round is due: shards
    another worker held, entries beyond DRAIN_LIMIT, or a watermark the shards disagree
    on or that a partition applied meanwhile made stale."""

    changes: int
    busy: int
    left: bool = False

    @property
    def again(self) -> bool:
        return self.busy > 0 or self.left


class LifecyclePublisher:
    """Sweeps due customers and produces their changes, at least once and normally once."""

    def __init__(self, redis: AsyncRedis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = Keys(settings.namespace, settings.shards, settings.customer_buckets)
        self.calendar = Calendar(settings.zone, settings.week_start_index)
        self.script = redis.register_script(SCRIPT)
        self.release_script = redis.register_script(RELEASE_SCRIPT)

    async def run_once(self, producer: AIOKafkaProducer, source: str) -> Published:
        """Sweep the shards no other worker is publishing up to the current watermark of
        the events topic `source`, and publish their outboxes."""
        mark = await self.watermark(source)
        if mark.day is None:
            return Published(0, 0, left=not mark.agreed)  # disagreeing shards: try later
        hold = await self.acquire()
        try:
            await self.sweep(mark, hold)
            changes = await self._drain(producer, hold)
        finally:
            await self.release(hold)  # trims only what Kafka acknowledged
        return Published(changes, hold.busy, hold.left)

    async def acquire(self) -> Hold:
        """Take every shard's lifecycle lock that no other worker holds, with a new token."""
        hold = Hold(uuid.uuid4().hex, [])
        ttl = self.settings.lifecycle_lock_ms
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard in range(self.keys.shards):
                pipe.set(self.keys.lifecycle_lock(shard), hold.token, nx=True, px=ttl)
            taken = await pipe.execute()
        hold.shards = [shard for shard, ok in enumerate(taken) if ok]
        hold.busy = self.keys.shards - len(hold.shards)
        return hold

    async def release(self, hold: Hold) -> None:
        """Trim what Kafka acknowledged and give the locks back, where still held."""
        if not hold.shards:
            return
        held = await run_scripts(self.redis, self.release_calls(hold))
        hold.busy += held.count(0)

    def release_calls(self, hold: Hold) -> list[ScriptCall]:
        """One release script call per held shard, with the entries Kafka acknowledged."""
        return [
            ScriptCall(
                self.release_script,
                self.keys.release_keys(shard),
                [*ReleaseArgs(hold.token, hold.published.get(shard, 0))],
            )
            for shard in hold.shards
        ]

    async def watermark_day(self, source: str) -> int | None:
        """Local day of the slowest partition's newest event time, less the lateness.

        Unlike the metrics' watermark this waits for every partition seen so far, so a
        partition that is consumed behind the others never has its days published early.
        """
        return (await self.watermark(source)).day

    async def watermark(self, source: str) -> Watermark:
        """The watermark day, the partitions it was taken from, and whether the shards
        agree on where each partition's applied records end. A batch that reached only
        some shards (a worker died while sending it) leaves them disagreeing until the
        partition is read again from the lowest marker; meanwhile the newest event time
        of a shard ahead would publish the other shards' customers early, so there is no
        watermark."""
        pipe = self.redis.pipeline(transaction=False)
        for shard in range(self.keys.shards):
            pipe.hgetall(self.keys.totals(shard))
        newest: dict[int, int] = {}
        applied: dict[int, list[int]] = {}
        for totals in await pipe.execute():
            marks = positions(totals, TotalsField.PARTITION_MARK)
            for (mark_source, partition), ts in marks.items():
                if mark_source == source:
                    newest[partition] = max(newest.get(partition, 0), ts)
            for (mark_source, partition), offset in positions(totals).items():
                if mark_source == source:
                    applied.setdefault(partition, []).append(offset)
        shards = self.keys.shards
        if any(len(ends) < shards or len(set(ends)) > 1 for ends in applied.values()):
            return Watermark(source, None, [], agreed=False)
        if not newest:
            return Watermark(source, None, [])
        lateness_ms = self.settings.allowed_lateness_seconds * 1000
        day = self.calendar.day(min(newest.values()) - lateness_ms)
        return Watermark(source, day, sorted(applied))

    async def sweep(self, mark: Watermark, hold: Hold) -> None:
        """Sweep the held shards until none has due customers left; a shard whose lock
        expired meanwhile is dropped from the hold (its new holder sweeps it). A shard that
        has meanwhile applied a partition the watermark did not know stops the sweep: that
        partition's first events can be older than the watermark, so the next round
        takes it from a fresh one."""
        shards = list(hold.shards)
        while shards and not hold.left:
            shards = await self._sweep(mark, hold, shards)

    async def _sweep(self, mark: Watermark, hold: Hold, shards: list[int]) -> list[int]:
        """One pass over the shards; returns those with due customers left."""
        results = await run_scripts(self.redis, await self.sweep_calls(mark, hold.token, shards))
        more = []
        for shard, (_, _, due_left, held, newer) in zip(shards, results, strict=True):
            if not held:
                hold.shards.remove(shard)
                hold.busy += 1
            elif newer:
                hold.left = True  # sweep again from a fresh watermark
            elif due_left:
                more.append(shard)
        return more

    async def sweep_calls(self, mark: Watermark, token: str, shards: list[int]) -> list[ScriptCall]:
        """One sweep script call per shard, naming in its KEYS the shard's buckets due
        before the watermark day, read from its due set first (every shard is called,
        as each call also extends the caller's lock and checks for newer partitions)."""
        if mark.day is None:
            raise ValueError("a sweep needs a watermark day")
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard in shards:
                pipe.zrangebyscore(self.keys.due(shard), "-inf", mark.day - 1, 0, SWEEP_BUCKETS)
            due: list[list[bytes]] = await pipe.execute()
        config = json.dumps(
            {
                "T": mark.day,
                "source": mark.source,
                "parts": mark.partitions,
                "W": self.settings.churn_window_days,
                "grace": self.settings.subscription_grace_days,
                "risk": list(self.settings.at_risk_days),
                "limit": SWEEP_LIMIT,
                "lock_ms": self.settings.lifecycle_lock_ms,
            }
        )
        calls = []
        for shard, numbers in zip(shards, due, strict=True):
            buckets = [self.keys.bucket(shard, int(n)) for n in numbers]
            keys = [*self.keys.sweep_keys(shard), *buckets]
            calls.append(ScriptCall(self.script, keys, [*SweepArgs(config, token)]))
        return calls

    async def _drain(self, producer: AIOKafkaProducer, hold: Hold) -> int:
        """Produce the held shards' outboxes (up to DRAIN_LIMIT entries each) and wait for
        Kafka's acks; the counts sent are recorded in the hold for release() to trim."""
        outboxes = [self.keys.outbox(shard) for shard in hold.shards]
        async with self.redis.pipeline(transaction=False) as pipe:
            for outbox in outboxes:
                pipe.lrange(outbox, 0, DRAIN_LIMIT - 1)
            pending: list[list[bytes]] = await pipe.execute()
        hold.left |= any(len(entries) == DRAIN_LIMIT for entries in pending)
        messages = []
        for entries in pending:
            for raw in entries:
                messages.append(self.message(DECODE(raw)))
                if len(messages) % YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # let the next batch's apply be sent meanwhile
        if not messages:
            return 0
        await self._produce(producer, messages)
        for shard, entries in zip(hold.shards, pending, strict=True):
            hold.published[shard] = len(entries)
        return len(messages)

    async def _produce(
        self, producer: AIOKafkaProducer, messages: list[tuple[bytes, bytes]]
    ) -> None:
        """Kafka's default (murmur2) key partitioning, one record batch per partition.

        A batch's changes go out together, and appending to a record batch costs a
        fraction of a send() per message; order per partition, so per customer, is kept.
        """
        topic = self.settings.lifecycle_topic
        partitions = sorted(await producer.partitions_for(topic))
        by_partition: defaultdict[int, list[tuple[bytes, bytes]]] = defaultdict(list)
        for key, value in messages:
            by_partition[partition_for(key, len(partitions))].append((key, value))
        acks = []
        for partition, records in by_partition.items():
            batch = producer.create_batch()
            for key, value in records:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    acks.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        raise ValueError(f"lifecycle record of {len(value)} B exceeds a batch")
            batch.close()
            acks.append(await producer.send_batch(batch, topic, partition=partition))
        for ack in acks:
            await ack

    def message(self, change: dict[str, Any]) -> tuple[bytes, bytes]:
        """Kafka key and JSON value of one queued change."""
        customer = change["customer"]
        day = change["day"]
        body = {
            "customer_id": customer,
            "from": change["from"],
            "to": change["to"],
            "at": day_to_date(day).isoformat(),
            "reason": change["reason"],
            "segment": self._segment(change, day),
        }
        return customer.encode(), ENCODE(body)

    def _segment(self, change: dict[str, Any], day: int) -> str:
        """The customer's RFM segment on the day of the change, by the exporter's rule,
        with the purchases known when the change was queued."""
        s = self.settings
        key = RfmKey(
            last_purchase=change.get("purchased"),  # absent: no purchase
            frequency=threshold_score(change["purchases"], s.rfm_frequency),
            monetary=threshold_score(change["net_milli"] / 1000, s.rfm_monetary),
            first=change["first"],
        )
        return customer_segment(key, day, RfmThresholds(s.rfm_recency_days, s.rfm_new_days))
