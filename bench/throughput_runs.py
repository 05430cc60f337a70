"""The throughput runs: limit, naive and tracker on copies of one topic, then latency.

Each run i reads its own copy of the same data set, limit then naive then tracker, so
background load hits all three alike. Latency runs come after all throughput runs and
restart each run's worker on its warm namespace.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from bench import memory, report
from bench.kafka import BulkProducer, create_topics
from bench.latency import run_latency
from bench.mix import Mix
from bench.procs import VENV_BIN, Child, CpuMeter, free_port
from bench.profile import Profiler
from bench.report import progress
from bench.session import Session
from bench.throughput import run_throughput
from bench.worker import start_worker

EVENTS_PER_CUSTOMER = 4.3  # what the mix averages; sizes the throughput data set


@dataclass(frozen=True, slots=True)
class ThroughputData:
    """The topics (one copy per run) and the mix they were produced from."""

    topics: list[str]
    mix: Mix
    counted_events: int


async def produce_topics(session: Session) -> ThroughputData:
    """Generate the throughput data set once and produce it to one topic per run."""
    o = session.opts
    mix = Mix(max(100, round(o.events / EVENTS_PER_CUSTOMER)), seed=2)
    progress.print(f"generating the throughput data set (~{o.events:,} records) …")
    records = list(mix.records())
    session.results["datasets"]["throughput"] = mix.stats.as_dict()
    topics = [f"{session.tag}-events-{i}" for i in range(1, o.runs + 1)]
    await create_topics(o.bootstrap, dict.fromkeys(topics, o.partitions))
    producer = BulkProducer(o.bootstrap, o.partitions)
    for topic in topics:
        produced = await producer.produce(topic, records)
        progress.print(
            f"  {topic}: {produced.records:,} records in {produced.seconds:.1f}s "
            f"({produced.rate:,.0f}/s)"
        )
    return ThroughputData(topics, mix, mix.stats.counted_events)


async def throughput_and_latency(session: Session, data: ThroughputData) -> None:
    """Runs 1..R of limit, naive and tracker, then one latency run per tracker run at half
    the median tracker rate."""
    runs = session.results["runs"]
    for i, topic in enumerate(data.topics, 1):
        session.note_load(f"run {i}")
        runs["limit"].append(limit_run(session, topic))
        runs["naive"].append(naive_run(session, topic, i))
        runs["tracker"].append(await tracker_run(session, data, topic, i))
    rate = report.spread([r["rate"] for r in runs["tracker"]])["median"]
    for i, topic in enumerate(data.topics, 1):
        session.note_load(f"latency {i}")
        runs["latency"].append(await latency_run(session, data, topic, i, rate / 2))


def limit_run(session: Session, topic: str) -> dict[str, Any]:
    """Raw aiokafka consumption of the topic (`bench.limit`, its own process)."""
    o = session.opts
    log = session.workdir / f"limit-{topic}.log"
    child = Child(
        "limit",
        [str(VENV_BIN / "python"), "-m", "bench.limit", o.bootstrap, topic, str(o.partitions)],
        {},
        log,
    )
    meter = CpuMeter({"limit": child.pid, **session.pids})
    a = meter.sample()
    child.popen.wait(900)
    b = meter.sample()
    if child.popen.returncode != 0:
        raise RuntimeError(f"limit run failed\n{child.tail()}")
    result: dict[str, Any] = json.loads(log.read_text().strip().splitlines()[-1])
    result["cpu_cores"] = CpuMeter.share(a, b)
    progress.print(f"  limit   {topic}: {result['rate']:,.0f} records/s")
    return result


def naive_run(session: Session, topic: str, i: int) -> dict[str, Any]:
    """The naive per-event Faust agent (`bench.naive`, a real `faust worker`)."""
    o = session.opts
    ns = f"{session.tag}n{i}"
    session.namespaces.append(ns)
    out = session.workdir / f"naive-{i}.json"
    env = {
        "BENCH_BOOTSTRAP": o.bootstrap,
        "BENCH_REDIS_URL": session.redis_url,
        "BENCH_TOPIC": topic,
        "BENCH_GROUP": f"{session.tag}-naive-{i}",
        "BENCH_NS": ns,
        "BENCH_WARMUP": "2000",
        "BENCH_TARGET": str(o.naive_events),
        "BENCH_SECONDS": str(o.naive_seconds),
        "BENCH_RESULT": str(out),
        "BENCH_DATADIR": str(session.workdir / f"naive-data-{i}"),
    }
    args = [
        str(VENV_BIN / "python"),
        "-m",
        "bench.naive",
        "worker",
        "-l",
        "warn",
        "--web-port",
        str(free_port()),
        "--web-bind",
        "127.0.0.1",
    ]
    child = Child(f"naive-{i}", args, env, session.workdir / f"naive-{i}.log")
    meter = CpuMeter({"naive": child.pid, **session.pids})
    a = meter.sample()
    deadline = time.monotonic() + o.naive_seconds + 180
    try:
        while not out.exists():
            child.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"naive agent gave no result\n{child.tail()}")
            time.sleep(0.5)
        b = meter.sample()
    finally:
        child.stop()
    result: dict[str, Any] = json.loads(out.read_text())
    result["cpu_cores"] = CpuMeter.share(a, b)  # includes its start-up
    progress.print(f"  naive   {topic}: {result['rate']:,.0f} events/s")
    memory.delete_namespace(session.redis, ns)
    return result


async def tracker_run(session: Session, data: ThroughputData, topic: str, i: int) -> dict[str, Any]:
    """The real worker on a fresh namespace and group (`bench.throughput`)."""
    target = session.target(topic, f"t{i}")
    result, worker = await run_throughput(
        target, f"worker-t{i}", data.counted_events, session.pids, timeout=1800
    )
    worker.child.stop()
    progress.print(
        f"  tracker {topic}: {result.rate:,.0f} events/s "
        f"(verified={result.verified}, cpu {result.cpu_cores})"
    )
    return result.as_dict()


async def latency_run(
    session: Session, data: ThroughputData, topic: str, i: int, rate: float
) -> dict[str, Any]:
    """Run i's worker restarted on its warm namespace, fed live events at `rate`."""
    target = session.target(topic, f"t{i}")
    worker = start_worker(target, f"worker-t{i}-latency")
    try:
        live = data.mix.live(seed=100 + i)
        result = await run_latency(target, worker, live, rate, session.opts.latency_seconds)
    finally:
        worker.child.stop()
    progress.print(
        f"  latency {topic}: {result.rate_achieved:,.0f} ev/s → "
        f"p50 {result.p50_ms:,.0f} ms, p99 {result.p99_ms:,.0f} ms"
    )
    return result.as_dict()


async def profiled_run(session: Session, data: ThroughputData, profiler: Profiler) -> None:
    """Without the memory phase: an extra, profiled tracker run on the first topic."""
    target = session.target(data.topics[0], "p")
    result, worker = await run_throughput(
        target,
        "worker-profile",
        data.counted_events,
        session.pids,
        1800,
        on_first_commit=profiler.attach,
    )
    worker.child.stop()
    summary = profiler.collect(result.rate)
    if summary is not None:
        session.results["profile"] = summary
