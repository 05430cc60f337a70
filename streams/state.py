"""Write batches of decoded records to Redis: one script call per shard, one round trip.

The key layout is in core/schema.py."""

from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict
from dataclasses import dataclass, field

from core.calendar import Calendar
from core.redis_types import AsyncRedis
from core.rules import ACTIVITY_WINDOWS
from core.schema import BATCH_KEYS, BatchArgs, EventArgs, Flag, Keys, SpanArgs
from core.settings import Settings
from streams.dimensions import DimensionRegistry
from streams.events import Event, Reason
from streams.scripts import ScriptCall, load_script, run_scripts

# Plain ints: `int & IntFlag` builds a Flag member (~4 µs), far too slow per event.
MONEY_FLAGS = int(Flag.PURCHASE | Flag.REFUND | Flag.SUBSCRIPTION_ON)
ACTIVITY = int(Flag.ACTIVITY)
# Events whose ts ties are broken by their event id (the latest subscription amount, a
# customer's latest NPS answer of a day).
TIED = int(Flag.SUBSCRIPTION_ON | Flag.NPS)
SUBSCRIPTION_ON, ANNUAL, NO_AMOUNT = (
    int(Flag.SUBSCRIPTION_ON),
    int(Flag.ANNUAL),
    int(Flag.NO_AMOUNT),
)
# Bytes of an event-id hash in a customer's id set: a new event is taken for a duplicate
# with probability <= n / 2**48 for a customer with n remembered ids (1e3 ids: 3.6e-12).
EVENT_HASH_BYTES = 6
FIXED_FLAGS = {
    "subscription_start": Flag.SUBSCRIPTION_ON,
    "subscription_renew": Flag.SUBSCRIPTION_ON,
    "subscription_cancel": Flag.SUBSCRIPTION_OFF,
    "install": Flag.INSTALL,
    "nps": Flag.NPS,
}
# The batch script's modules, each using what the ones before it define.
BATCH_MODULES = (
    "customer.lua",
    "civil.lua",
    "base_rule.lua",
    "batch_config.lua",
    "batch_calendar.lua",
    "batch_days.lua",
    "batch_runs.lua",
    "batch_counters.lua",
    "batch_membership.lua",
    "batch_cohorts.lua",
    "batch_value.lua",
    "batch_contributions.lua",
    "batch_scopes.lua",
    "apply_batch.lua",
)
SCRIPT = load_script(*BATCH_MODULES)


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka record after decoding: an event, or the reason it was rejected."""

    partition: int
    offset: int
    event: Event | None = None
    reason: Reason | None = None


@dataclass(slots=True)
class ApplyResult:
    """What the shards' scripts did; holes maps a partition to the offset Redis holds when
    Redis is behind the batch (nothing of the batch was applied on that shard)."""

    applied: int = 0
    duplicates: int = 0
    replayed: int = 0
    holes: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Span:
    """Where a batch's records of one partition continue from (BEGINNING: the partition's
    start) and the offset after its last record."""

    start: int
    end: int


BEGINNING = -1


class StateWriter:
    """Applies batches atomically per shard; replays and duplicates change nothing."""

    def __init__(self, redis: AsyncRedis, settings: Settings) -> None:
        self.redis = redis
        self.keys = Keys(settings.namespace, settings.shards, settings.customer_buckets)
        self.calendar = Calendar(settings.zone, settings.week_start_index)
        self.script = redis.register_script(SCRIPT)
        self.config = json.dumps(
            {
                "W": settings.churn_window_days,
                "win": list(ACTIVITY_WINDOWS),
                "ws": settings.week_start_index,
                "K": settings.cohorts_kept,
                "grace": settings.subscription_grace_days,
                "quick": settings.quick_churn_days,
                "newkey": settings.rfm_new_days + evaluation_lag_days(settings),
                "nps": settings.nps_window_days,
                "lag": evaluation_lag_days(settings),
                "freq": list(settings.rfm_frequency),
                "money": [1000 * t for t in settings.rfm_monetary],
                "pure": sorted(settings.pure_activity_types),
            }
        )
        self.flags = _flag_table(settings)
        self.max_skew_ms = settings.max_clock_skew_seconds * 1000
        self.dimensions = DimensionRegistry(redis, settings.namespace, settings.dimension_cap)

    async def apply(self, records: list[Record], source: str = "test") -> ApplyResult:
        """Apply records outside the worker (tests, benchmarks): spans are taken from the
        records themselves, a partition's offset 0 being its beginning."""
        return await self.send(await self.prepare(records), source, spans_of(records))

    async def prepare(self, records: list[Record]) -> dict[int, ShardBatch]:
        """The script arguments of each shard's part of the batch (the CPU-bound half)."""
        shards: dict[int, ShardBatch] = {}
        for record in records:
            await self._add(record, shards)
        return shards

    async def send(
        self, shards: dict[int, ShardBatch], source: str, spans: dict[int, Span]
    ) -> ApplyResult:
        """Run every shard's script in one pipeline and sum what the scripts did."""
        result = ApplyResult()
        for applied, duplicates, replayed, *holes in await run_scripts(
            self.redis, self.script_calls(shards, source, spans)
        ):
            result.applied += applied
            result.duplicates += duplicates
            result.replayed += replayed
            for partition, stored in zip(holes[::2], holes[1::2], strict=True):
                result.holes[partition] = min(stored, result.holes.get(partition, stored))
        return result

    def script_calls(
        self, shards: dict[int, ShardBatch], source: str, spans: dict[int, Span]
    ) -> list[ScriptCall]:
        """One batch script call per shard, keys of that shard only. Every shard gets the
        batch's spans, so all shards' offset markers move together."""
        if not spans:
            return []
        ceiling = int(time.time() * 1000) + self.max_skew_ms
        header: list[str | int | bytes] = [*BatchArgs(self.config, source, ceiling, len(spans))]
        for partition, span in spans.items():
            header += SpanArgs(partition, span.start, span.end)
        empty = ShardBatch()
        calls = []
        for shard in range(self.keys.shards):
            batch = shards.get(shard, empty)
            keys = [*self.keys.batch_keys(shard), *batch.bucket_keys]
            calls.append(ScriptCall(self.script, keys, [*header, *batch.args]))
        return calls

    async def _add(self, record: Record, shards: dict[int, ShardBatch]) -> None:
        event = record.event
        if event is None:
            batch = shards.setdefault(record.partition % self.keys.shards, ShardBatch())
            invalid = EventArgs(0, record.partition, record.offset, "", str(record.reason))
            batch.args += invalid
            return
        batch = shards.setdefault(self.keys.shard_of(event.customer_id), ShardBatch())
        flags = self.flags.get(event.type, 0)
        if flags & SUBSCRIPTION_ON:
            # the plan's billing period, and whether the event says what it costs
            flags |= (ANNUAL if event.annual else 0) | (NO_AMOUNT if event.amount is None else 0)
        amount = round((event.amount or 0.0) * 1000) if flags & MONEY_FLAGS else 0
        bucket, member = self.keys.customer(event.customer_id)
        batch.args += EventArgs(
            bucket_key=batch.key_index(bucket),
            partition=record.partition,
            offset=record.offset,
            event_hash=hashlib.blake2b(
                event.event_id.encode(), digest_size=EVENT_HASH_BYTES
            ).digest(),
            kind=event.type,
            flags=flags,
            day=self.calendar.day(event.ts_ms),
            ts_ms=event.ts_ms,
            amount_milli=amount,
            nps_score=-1 if event.score is None else event.score,
            codes=await self.dimensions.codes(
                event.platform, event.channel, activity=bool(flags & ACTIVITY)
            ),
            tie_id=event.event_id if flags & TIED else "",
            customer_field=member,
        )


@dataclass(slots=True)
class ShardBatch:
    """The script arguments for one shard; bucket keys follow the shard's BATCH_KEYS."""

    bucket_keys: list[str] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)
    args: list[str | int | bytes] = field(default_factory=list)

    def key_index(self, key: str) -> int:
        if key not in self.index:
            self.bucket_keys.append(key)
            self.index[key] = len(BATCH_KEYS) + len(self.bucket_keys)
        return self.index[key]


def spans_of(records: list[Record]) -> dict[int, Span]:
    """Each partition's span in records applied outside the worker: from the first
    record's offset (offset 0: the partition's beginning) to after the last one."""
    spans: dict[int, Span] = {}
    for r in records:
        span = spans.get(r.partition)
        start = span.start if span else (BEGINNING if r.offset == 0 else r.offset)
        spans[r.partition] = Span(start, r.offset + 1)
    return spans


def _flag_table(settings: Settings) -> dict[str, int]:
    table: dict[str, int] = defaultdict(int, FIXED_FLAGS)
    for name in settings.activity_types:
        table[name] |= Flag.ACTIVITY
    for name in settings.churn_types:
        table[name] |= Flag.CHURN
    for name in settings.purchase_types:
        table[name] |= Flag.PURCHASE
    for name in settings.refund_types:
        table[name] |= Flag.REFUND
    return {name: int(flags) for name, flags in table.items()}  # Redis takes plain ints


def evaluation_lag_days(settings: Settings) -> int:
    """How many days the exporter's evaluation day can lie before the day of an event the
    worker has applied, from then on: the allowed lateness and an event's lead over the
    clock in whole days, one day for a daylight-saving shift and one because the newest
    day may still be running. State that only matters before that day can be forgotten."""
    lead_ms = (settings.allowed_lateness_seconds + settings.max_future_seconds) * 1000
    return -(-lead_ms // 86_400_000) + 2
