"""Tracker throughput: the real worker timed on a pre-filled topic.

A fresh namespace and consumer group read the topic. The committed offsets of the
group are polled every POLL seconds; the clock starts at the first poll that sees a
commit (so process start, the Faust boot and the group join are left out, and so are
the records of that first commit) and stops at the first poll where every partition's
committed offset has reached its end offset. The worker commits only after Redis
holds a batch, so that is "in Redis and committed". Afterwards the shard counters are
checked against the data set.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from redis.asyncio import RedisCluster

from bench.kafka import CommitWatcher, end_offsets
from bench.procs import CpuMeter
from bench.worker import POLL, Target, Worker, start_worker
from core.redis_client import async_client
from core.redis_types import AsyncRedis
from core.schema import Keys
from core.totals import sum_totals


@dataclass(slots=True)
class Throughput:
    """One tracker run's figures, as they go into the results JSON."""

    records: int
    seconds: float
    rate: float
    startup_seconds: float
    cpu_cores: dict[str, float]
    worker_metrics: dict[str, float]
    redis_eval: dict[str, object]
    verified: bool
    applied_events: int
    extra: dict[str, object] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "records": self.records,
            "seconds": round(self.seconds, 3),
            "rate": round(self.rate, 1),
            "startup_seconds": round(self.startup_seconds, 2),
            "cpu_cores": self.cpu_cores,
            "worker_metrics": self.worker_metrics,
            "redis_eval": self.redis_eval,
            "verified": self.verified,
            "applied_events": self.applied_events,
            **self.extra,
        }


async def run_throughput(
    target: Target,
    name: str,
    expected_counted: int,
    pids: dict[str, int | None],
    timeout: float,
    on_first_commit: Callable[[Worker], None] | None = None,
) -> tuple[Throughput, Worker]:
    """Start a worker on a filled topic and time it until every offset is committed.

    Returns the figures and the (still running) worker; the caller stops it.
    """
    ends = await end_offsets(target.bootstrap, target.topic, target.partitions)
    total = sum(ends.values())
    redis = async_client(target.settings(), timeout=60)
    eval_before = await _eval_stats(redis)
    spawned = time.monotonic()
    worker = start_worker(target, name)
    meter = CpuMeter({"worker": worker.child.pid, **pids})
    first: tuple[float, int] | None = None
    cpu_first = meter.sample()
    async with CommitWatcher(target.bootstrap, target.topic, target.partitions) as watcher:
        deadline = time.monotonic() + timeout
        while True:
            worker.child.check()
            committed = await watcher.committed(target.group)
            now = time.monotonic()
            done = sum(committed.values())
            if first is None and done > 0:
                first, cpu_first = (now, done), meter.sample()
                if on_first_commit is not None:
                    on_first_commit(worker)
            if all(committed.get(p, 0) >= end for p, end in ends.items()):
                break
            if now > deadline:
                raise TimeoutError(f"{name}: {done}/{total} committed after {timeout:.0f}s")
            await asyncio.sleep(POLL)
    cpu_last = meter.sample()
    assert first is not None
    seconds = now - first[0]
    timed = total - first[1]
    eval_after = await _eval_stats(redis)
    applied = await applied_events(redis, target.namespace, target.shards)
    await redis.aclose()
    result = Throughput(
        records=total,
        seconds=seconds,
        rate=timed / seconds if seconds > 0 else float("nan"),
        startup_seconds=first[0] - spawned,
        cpu_cores=CpuMeter.share(cpu_first, cpu_last),
        worker_metrics=scrape_worker(worker.metrics_port),
        redis_eval=_eval_delta(eval_before, eval_after, timed),
        verified=applied == expected_counted,
        applied_events=applied,
    )
    return result, worker


async def applied_events(redis: AsyncRedis, namespace: str, shards: int) -> int:
    """Σ over shards of the per-type counts of applied events (retention_events_total)."""
    keys = Keys(namespace, shards)
    replies = [
        cast("dict[bytes, bytes]", await redis.hgetall(keys.totals(shard)))
        for shard in range(shards)
    ]
    return sum_totals(replies).applied_events


async def _eval_stats(redis: AsyncRedis) -> dict[str, dict[str, float]]:
    """INFO commandstats (commands run inside scripts are counted too) and Redis CPU,
    summed over a cluster's primaries."""
    stats: defaultdict[str, dict[str, float]] = defaultdict(lambda: {"calls": 0.0, "usec": 0.0})
    for info in await _per_primary(redis, "commandstats"):
        for name, v in info.items():
            counted = stats[name.removeprefix("cmdstat_")]
            counted["calls"] += float(v["calls"])
            counted["usec"] += float(v["usec"])
    cpu = await _per_primary(redis, "cpu")
    seconds = sum(float(c["used_cpu_user"]) + float(c["used_cpu_sys"]) for c in cpu)
    return {**stats, "_cpu": {"seconds": seconds}}


async def _per_primary(redis: AsyncRedis, section: str) -> list[dict[str, Any]]:
    """An INFO section of every primary (INFO on a cluster client asks one node only)."""
    if isinstance(redis, RedisCluster):
        per_node: Any = await redis.info(section, target_nodes=redis.PRIMARIES)
        return list(per_node.values())
    return [await redis.info(section)]


def _eval_delta(
    a: dict[str, dict[str, float]], b: dict[str, dict[str, float]], events: int
) -> dict[str, object]:
    """Time Redis spent in scripts, and the commands per event (all clients of this Redis)."""

    def delta(name: str, field: str) -> float:
        return b.get(name, {}).get(field, 0.0) - a.get(name, {}).get(field, 0.0)

    n = max(events, 1)
    usec = delta("evalsha", "usec") + delta("eval", "usec")
    commands = {
        name: {
            "per_event": round(delta(name, "calls") / n, 2),
            "usec_per_event": round(delta(name, "usec") / n, 2),
        }
        for name in b
        if not name.startswith("_") and delta(name, "calls") > 0
    }
    top = dict(sorted(commands.items(), key=lambda kv: -kv[1]["per_event"])[:10])
    return {
        "script_calls": delta("evalsha", "calls") + delta("eval", "calls"),
        "script_seconds": round(usec / 1e6, 3),
        "script_usec_per_event": round(usec / n, 2),
        "redis_cpu_seconds": round(delta("_cpu", "seconds"), 3),
        "commands": top,
    }


def scrape_worker(port: int) -> dict[str, float]:
    """The worker's own batch and Redis-round-trip histograms (sums and counts)."""
    wanted = (
        "retention_batch_seconds_sum",
        "retention_batch_seconds_count",
        "retention_redis_seconds_sum",
        "retention_redis_seconds_count",
        "retention_consumed_events_total",
    )
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in wanted:
            out[name.removeprefix("retention_")] = float(value)
    return out
