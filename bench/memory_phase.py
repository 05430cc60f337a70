"""The N-customer phase: memory per customer, the fill rate and the scrape time.

The history is produced to a topic and consumed by the real worker with 90 daily
cohorts kept; `INFO memory` is read before the worker starts and after it has
committed everything, drained its lifecycle outbox and disconnected. The exporter is
then timed on that namespace. The fill is also where py-spy samples the worker.
"""

from __future__ import annotations

import time

from redis import RedisCluster

from bench import memory
from bench.kafka import BulkProducer, create_topics
from bench.mix import Mix
from bench.procs import tcp_ports_to
from bench.profile import Profiler
from bench.report import progress
from bench.session import Session
from bench.throughput import run_throughput
from bench.worker import Target
from core.redis_types import SyncRedis
from core.schema import Keys
from core.totals import HEADLINE, headline


async def memory_phase(session: Session, profiler: Profiler) -> None:
    """Fill a namespace from the N-customer history, then measure its memory and scrape."""
    o, redis, results = session.opts, session.redis, session.results
    topic = f"{session.tag}-history"
    await create_topics(o.bootstrap, {topic: o.partitions})
    mix = Mix(o.customers, seed=1)
    progress.print(f"producing the {o.customers:,}-customer, 90-day history …")
    produced = await BulkProducer(o.bootstrap, o.partitions).produce(topic, mix.records())
    results["datasets"]["history"] = mix.stats.as_dict()
    progress.print(f"  {produced.records:,} records in {produced.seconds:.0f}s")
    target = session.target(topic, "m", cohorts_kept=90)
    session.note_load("memory fill")
    before = memory.RedisSnapshot.take(redis)
    fill, worker = await run_throughput(
        target,
        "worker-memory",
        mix.stats.counted_events,
        session.pids,
        timeout=6 * 3600,
        on_first_commit=profiler.attach,
    )
    wait_outbox_empty(redis, target)
    ports = tcp_ports_to(worker.child.pid, redis_port(redis))
    worker.child.stop()
    summary = profiler.collect(fill.rate)
    if summary is not None:
        results["profile"] = summary
    wait_disconnected(redis, ports)
    after = memory.RedisSnapshot.take(redis)
    results["fill"] = fill.as_dict()
    progress.print(f"  fill: {fill.rate:,.0f} events/s (verified={fill.verified})")
    keys = Keys(target.namespace, target.shards)
    tracked = sum(headline(redis.hmget(keys.totals(s), HEADLINE))[1] for s in range(target.shards))
    usage = memory.namespace_usage(redis, target.namespace)
    ns_keys = sum(v["keys"] for v in usage.values())
    ns_bytes = sum(v["bytes"] for v in usage.values())
    sample = memory.sample_customers(
        redis, target, o.customers, 1, o.sample, dict(enumerate(mix.counts))
    )
    delta = after.used_memory - before.used_memory
    results["memory"] = {
        "customers": tracked,
        "used_memory_before": before.used_memory,
        "used_memory_after": after.used_memory,
        "info_bytes_per_customer": delta / max(tracked, 1),
        "namespace_bytes": ns_bytes,
        "namespace_bytes_per_customer": ns_bytes / max(tracked, 1),
        "namespace_keys": ns_keys,
        "by_kind": {
            k: {**v, "per_customer": round(v["bytes"] / max(tracked, 1), 1)}
            for k, v in usage.items()
        },
        "other_clients_key_change": (after.keys - before.keys) - ns_keys,
        "sample": sample,
    }
    progress.print(
        f"  memory: {delta / max(tracked, 1):,.0f} B/customer (INFO), "
        f"{ns_bytes / max(tracked, 1):,.0f} B (Σ MEMORY USAGE)"
    )
    scrape = memory.time_scrapes(target, o.scrapes, session.workdir)
    results["scrape"] = scrape.as_dict()
    progress.print(f"  /metrics: median {scrape.median_ms:,.0f} ms")


def wait_outbox_empty(redis: SyncRedis, target: Target, timeout: float = 300) -> None:
    """Let the worker finish publishing lifecycle changes (its outbox is transient)."""
    keys = Keys(target.namespace, target.shards)
    outboxes = [keys.outbox(s) for s in range(target.shards)]
    deadline = time.monotonic() + timeout
    quiet = 0
    while quiet < 3 and time.monotonic() < deadline:
        pending = sum(int(redis.llen(k)) for k in outboxes)
        quiet = quiet + 1 if pending == 0 else 0
        time.sleep(1)


def redis_port(redis: SyncRedis) -> int:
    """The port the client connects to (the stack's Redis or the private one): the memory
    phase measures one standalone server."""
    if isinstance(redis, RedisCluster):
        raise ValueError("the memory phase measures a standalone Redis, not a cluster")
    return int(redis.connection_pool.connection_kwargs["port"])


def wait_disconnected(redis: SyncRedis, ports: set[int], timeout: float = 30) -> None:
    """Wait until Redis has let go of the stopped worker's connections, whose buffers
    `used_memory` counts (Redis notices a closed connection on its next event-loop turn)."""
    deadline = time.monotonic() + timeout
    while ports & {int(c["addr"].rsplit(":", 1)[1]) for c in redis.client_list()}:
        if time.monotonic() > deadline:
            progress.print(f"[yellow]Redis still lists the worker's connections {ports}[/yellow]")
            return
        time.sleep(0.05)
