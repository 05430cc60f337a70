"""The tracker: the real `retention worker`, measured end to end.

Throughput: a fresh namespace and consumer group read a pre-filled topic. The
committed offsets of the group are polled every POLL seconds; the clock starts at
the first poll that sees a commit (so process start, the Faust boot and the group
join are left out, and so are the records of that first commit) and stops at the
first poll where every partition's committed offset has reached its end offset.
The worker commits only after Redis holds a batch, so that is "in Redis and
committed". Afterwards the shard counters are checked against the data set.

Latency: the worker is restarted on the same namespace and topic (warm state, the
group resumes at the end), then events of existing customers with ts = now are
produced at a fixed rate. Each record's (partition, offset) comes back from the
producer; a poller reads every shard's offset markers `o:<topic>@<id>:<partition>`
(the offset after the last applied record, stored by the Lua script in the same
atomic write as the state) every POLL_LATENCY seconds. A record is visible once its
own shard's marker is beyond its offset: the script
applies a shard's records of a batch in one atomic call, so that is the moment its
state is readable. Latency = poll completion time - the time just before `send()`
(an upper bound by at most one poll interval plus one Redis round trip).
"""

from __future__ import annotations

import asyncio
import bisect
import statistics
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis as AsyncRedis

from bench.kafka import CommitWatcher, end_offsets
from bench.mix import live_value
from bench.procs import VENV_BIN, Child, CpuMeter, free_port
from core.schema import Keys
from core.settings import Settings
from core.totals import marker_fields, positions, sum_totals

POLL = 0.2
POLL_LATENCY = 0.01
# The worker's default shard count; the benchmark sets RETENTION_SHARDS explicitly so
# that worker, exporter and the benchmark's own key arithmetic always agree.
DEFAULT_SHARDS: int = Settings.model_fields["shards"].default


@dataclass(frozen=True, slots=True)
class Target:
    """Where one worker reads and writes."""

    bootstrap: str
    redis_url: str
    topic: str
    partitions: int
    namespace: str
    group: str
    workdir: Path
    cohorts_kept: int = 12
    shards: int = DEFAULT_SHARDS

    def env(self) -> dict[str, str]:
        return {
            "RETENTION_KAFKA_BOOTSTRAP": self.bootstrap,
            "RETENTION_REDIS_URL": self.redis_url,
            "RETENTION_NAMESPACE": self.namespace,
            "RETENTION_EVENTS_TOPIC": self.topic,
            "RETENTION_DLQ_TOPIC": f"{self.topic}.dlq",
            "RETENTION_LIFECYCLE_TOPIC": f"{self.topic}.lifecycle",
            "RETENTION_GROUP_ID": self.group,
            "RETENTION_EVENTS_PARTITIONS": str(self.partitions),
            "RETENTION_COHORTS_KEPT": str(self.cohorts_kept),
            "RETENTION_SHARDS": str(self.shards),
            "RETENTION_STATE_DIR": str(self.workdir / f"state-{self.namespace}"),
        }


@dataclass(slots=True)
class Worker:
    child: Child
    metrics_port: int


def start_worker(target: Target, name: str) -> Worker:
    port = free_port()
    env = {
        **target.env(),
        "RETENTION_WORKER_WEB_PORT": str(free_port()),
        "RETENTION_WORKER_METRICS_PORT": str(port),
    }
    child = Child(
        name, [str(VENV_BIN / "retention"), "worker"], env, target.workdir / f"{name}.log"
    )
    return Worker(child, port)


@dataclass(slots=True)
class Throughput:
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
    redis = AsyncRedis.from_url(target.redis_url)
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
    replies = [await redis.hgetall(keys.totals(shard)) for shard in range(shards)]
    return sum_totals(replies).applied_events


async def _eval_stats(redis: AsyncRedis) -> dict[str, dict[str, float]]:
    """INFO commandstats (commands run inside scripts are counted too) and Redis CPU."""
    info = await redis.info("commandstats")
    stats = {
        name.removeprefix("cmdstat_"): {"calls": float(v["calls"]), "usec": float(v["usec"])}
        for name, v in info.items()
    }
    cpu = await redis.info("cpu")
    stats["_cpu"] = {"seconds": float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])}
    return stats


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


# --- latency ------------------------------------------------------------------------


@dataclass(slots=True)
class Latency:
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


async def wait_idle(target: Target, worker: Worker, timeout: float = 120) -> None:
    """Wait until the group has committed everything in the topic."""
    ends = await end_offsets(target.bootstrap, target.topic, target.partitions)
    async with CommitWatcher(target.bootstrap, target.topic, target.partitions) as watcher:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            worker.child.check()
            committed = await watcher.committed(target.group)
            if all(committed.get(p, 0) >= e for p, e in ends.items()):
                return
            await asyncio.sleep(POLL)
    raise TimeoutError(f"{worker.child.name} did not catch up within {timeout:.0f}s")


async def marker_source(redis: AsyncRedis, keys: Keys, topic: str) -> str:
    """The source (`<topic>@<id>`, the id being the broker's topic id) whose offset
    markers the worker writes for the topic, read from a shard that has applied records."""
    for shard in range(keys.shards):
        for source, _ in positions(await redis.hgetall(keys.totals(shard))):
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
    redis = AsyncRedis.from_url(target.redis_url)
    source = await marker_source(redis, keys, target.topic)
    poller = OffsetPoller(redis, keys, target.partitions, source)
    producer = AIOKafkaProducer(bootstrap_servers=target.bootstrap, acks=1, linger_ms=5)
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
