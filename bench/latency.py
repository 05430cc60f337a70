"""Latency: produce -> state readable, on a warm worker at a fixed rate.

The worker is restarted on the same namespace and topic (warm state, the group
resumes at the end), then events of existing customers with ts = now are produced at
a fixed rate. Each record's (partition, offset) comes back from the producer; a
poller reads every shard's offset markers `o:<topic>@<id>:<partition>` (the offset
after the last applied record, stored by the Lua script in the same atomic write as
the state) every POLL_LATENCY seconds. A record is visible once its own shard's
marker is beyond its offset: the script applies a shard's records of a batch in one
atomic call, so that is the moment its state is readable. Latency = poll completion
time - the time just before `send()` (an upper bound by at most one poll interval
plus one Redis round trip).
"""

from __future__ import annotations

import asyncio
import bisect
import statistics
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import cast

from aiokafka import AIOKafkaProducer

from bench.kafka import connect
from bench.mix import live_value
from bench.worker import Target, Worker, wait_idle
from core.redis_client import async_client
from core.redis_types import AsyncRedis
from core.schema import Keys
from core.totals import marker_fields, positions

POLL_LATENCY = 0.01


@dataclass(slots=True)
class Latency:
    """One latency run's figures, as they go into the results JSON."""

    rate_target: float
    rate_achieved: float
    sent: int
    measured: int
    unseen: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    poll_interval_ms: float

    def as_dict(self) -> dict[str, object]:
        return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in asdict(self).items()}


async def marker_source(redis: AsyncRedis, keys: Keys, topic: str) -> str:
    """The source (`<topic>@<id>`, the id being the broker's topic id) whose offset
    markers the worker writes for the topic, read from a shard that has applied records."""
    for shard in range(keys.shards):
        totals = cast("dict[bytes, bytes]", await redis.hgetall(keys.totals(shard)))
        for source, _ in positions(totals):
            if source == topic or source.startswith(f"{topic}@"):
                return source
    raise RuntimeError(f"no offset markers of {topic} in namespace {keys.namespace}")


class OffsetPoller:
    """Snapshots of every shard's offset markers (offset after the last applied record of
    each partition), with the time of each."""

    def __init__(self, redis: AsyncRedis, keys: Keys, partitions: int, source: str) -> None:
        self.redis = redis
        self.aggs = [keys.totals(s) for s in range(keys.shards)]
        self.fields = marker_fields(source, range(partitions))
        self.times: list[float] = []
        # series[(shard, partition)] = applied offset at each snapshot (non-decreasing)
        self.series: dict[tuple[int, int], list[int]] = {}

    async def poll(self) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for agg in self.aggs:
            pipe.hmget(agg, self.fields)
        replies = await pipe.execute()
        self.times.append(time.monotonic())
        for shard, values in enumerate(replies):
            for p, v in enumerate(values):
                self.series.setdefault((shard, p), []).append(-1 if v is None else int(v))

    def seen_at(self, shard: int, partition: int, offset: int) -> float | None:
        values = self.series.get((shard, partition), [])
        i = bisect.bisect_left(values, offset + 1)
        return self.times[i] if i < len(values) else None

    def all_seen(self, needed: dict[tuple[int, int], int]) -> bool:
        return all(self.series.get(k, [-1])[-1] > off for k, off in needed.items() if off >= 0)


async def run_latency(
    target: Target,
    worker: Worker,
    live: Iterator[tuple[bytes, bytes]],
    rate: float,
    seconds: float,
    warmup_seconds: float = 2.0,
) -> Latency:
    """Produce `rate` events/s for `seconds` and measure produce → state-visible."""
    await wait_idle(target, worker)
    keys = Keys(target.namespace, target.shards)
    redis = async_client(target.settings(), timeout=60)
    source = await marker_source(redis, keys, target.topic)
    poller = OffsetPoller(redis, keys, target.partitions, source)
    producer = AIOKafkaProducer(**connect(target.bootstrap), acks=1, linger_ms=5)
    await producer.start()
    sent: list[tuple[float, int, asyncio.Future[object]]] = []
    stop = asyncio.Event()

    async def poll_loop() -> None:
        while not stop.is_set():
            await poller.poll()
            await asyncio.sleep(POLL_LATENCY)

    poll_task = asyncio.create_task(poll_loop())
    try:
        t0 = time.monotonic()
        while (now := time.monotonic()) - t0 < seconds:
            due = int(rate * (now - t0)) - len(sent)
            for _ in range(due):
                key, template = next(live)
                value = live_value(template, int(time.time() * 1000))
                t_send = time.monotonic()
                future = await producer.send(target.topic, value, key=key)
                sent.append((t_send, keys.shard_of(key.decode()), future))
            await asyncio.sleep(0.002)
        produced_for = time.monotonic() - t0
        metas = await asyncio.gather(*(f for _, _, f in sent))
        needed: dict[tuple[int, int], int] = {}
        for (_, shard, _), meta in zip(sent, metas, strict=True):
            k = (shard, meta.partition)  # type: ignore[attr-defined]
            needed[k] = max(needed.get(k, -1), meta.offset)  # type: ignore[attr-defined]
        deadline = time.monotonic() + 60
        while not poller.all_seen(needed) and time.monotonic() < deadline:
            worker.child.check()
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await poll_task
        await producer.stop()
        await redis.aclose()
    latencies: list[float] = []
    unseen = 0
    for (t_send, shard, _), meta in zip(sent, metas, strict=True):
        if t_send - t0 < warmup_seconds:
            continue
        seen = poller.seen_at(shard, meta.partition, meta.offset)  # type: ignore[attr-defined]
        if seen is None:
            unseen += 1
        else:
            latencies.append((seen - t_send) * 1000)
    if not latencies:
        raise RuntimeError(f"no record became visible ({unseen} unseen); is the poller stale?")
    latencies.sort()
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return Latency(
        rate_target=rate,
        rate_achieved=len(sent) / produced_for,
        sent=len(sent),
        measured=len(latencies),
        unseen=unseen,
        p50_ms=q[49],
        p90_ms=q[89],
        p99_ms=q[98],
        max_ms=latencies[-1],
        poll_interval_ms=POLL_LATENCY * 1000,
    )
