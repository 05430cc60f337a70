"""Scale-out: events/s of 1, 2, 3 … workers in one consumer group, against a standalone
Redis and against a Redis Cluster, each measured as a ratio to the one-worker standalone
run of the same round.

    .venv/bin/python -m bench.scale --workers 1,2,3 --redis standalone,cluster --runs 3

Every configuration reads the same records (the bench mix, produced to a fresh topic
once its workers have joined the group) into a fresh namespace of a private Redis: a
`redis-server` of its own for `standalone`, three of their own in cluster mode for
`cluster`. The clock runs from the first poll that sees a commit to the first where the
group has committed every partition's end, as in bench/throughput.py. Beside the rate:
the CPU cores each worker process and each redis-server used meanwhile (from /proc),
which is what limits scaling on a small machine. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis import Redis
from rich.console import Console
from rich.table import Table

from bench import report
from bench.kafka import (
    BulkProducer,
    CommitWatcher,
    connect,
    create_topics,
    delete_groups_containing,
    delete_topics_containing,
    end_offsets,
    group_members,
)
from bench.mix import Mix
from bench.options import STACK
from bench.procs import (
    Child,
    CpuMeter,
    CpuSample,
    pid_from_file,
    start_private_cluster,
    start_private_redis,
)
from bench.provenance import machine
from bench.report import progress
from bench.session import encoding_config
from bench.throughput import applied_events
from bench.worker import DEFAULT_SHARDS, POLL, Target, Worker, start_worker
from core.redis_client import async_client
from core.redis_types import AsyncRedis
from core.settings import Settings

RESULTS = Path(__file__).resolve().parent / "results"
EVENTS_PER_CUSTOMER = 4.3  # what the mix averages; sizes the data set
KINDS = ("standalone", "cluster")
BASELINE = ("standalone", 1)


@dataclass(frozen=True, slots=True)
class ScaleOptions:
    """The parsed command line (recorded in the results JSON as `options`)."""

    workers: list[int]
    redis: list[str]
    events: int
    runs: int
    partitions: int
    masters: int
    shards: int
    bootstrap: str
    timeout: float
    results: Path


def parse_args(argv: list[str] | None = None) -> ScaleOptions:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n")[0])
    p.add_argument("--workers", default="1,2,3", help="worker counts, comma-separated")
    p.add_argument("--redis", default="standalone,cluster", help="standalone and/or cluster")
    p.add_argument("--events", type=int, default=100_000, help="records per configuration")
    p.add_argument("--runs", type=int, default=3, help="rounds of every configuration")
    p.add_argument("--partitions", type=int, default=12, help="partitions of the events topic")
    p.add_argument("--masters", type=int, default=3, help="masters of the private cluster")
    p.add_argument("--shards", type=int, default=DEFAULT_SHARDS, help="RETENTION_SHARDS")
    p.add_argument("--bootstrap", default=STACK.kafka_bootstrap, help="Kafka bootstrap")
    p.add_argument("--timeout", type=float, default=600, help="seconds per configuration")
    p.add_argument("--results", type=Path, default=RESULTS / "scale", help="JSON directory")
    a = p.parse_args(argv)
    kinds = [k.strip() for k in a.redis.split(",") if k.strip()]
    if not kinds or any(k not in KINDS for k in kinds):
        p.error(f"--redis takes {' and/or '.join(KINDS)}, comma-separated: {a.redis!r}")
    workers = [int(w) for w in a.workers.split(",") if w.strip()]
    if not workers or min(workers) < 1 or max(workers) > a.partitions:
        p.error(f"--workers must be between 1 and --partitions ({a.partitions}): {a.workers!r}")
    sizes = (a.events, a.runs, a.partitions, a.masters, a.shards)
    return ScaleOptions(workers, kinds, *sizes, a.bootstrap, a.timeout, a.results)


@dataclass
class Deployment:
    """A private Redis deployment: its URL and its redis-server processes."""

    kind: str
    url: str
    servers: list[Child]
    ports: list[int]

    def client(self) -> AsyncRedis:
        """A client of the deployment, made as the tracker makes its own."""
        return async_client(Settings(redis_url=self.url), timeout=30)

    def flush(self) -> None:
        """Empty every server (ours alone), so each configuration starts from nothing."""
        for port in self.ports:
            with Redis(port=port) as r:
                r.flushall()

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def start_deployment(kind: str, workdir: Path, masters: int) -> Deployment:
    """A private standalone Redis or cluster, encoded like the stack's Redis."""
    config = encoding_config(STACK.redis_url)
    if kind == "cluster":
        nodes, url = start_private_cluster(workdir / "cluster", config, masters)
        ports = [int(a.rsplit(":", 1)[1]) for a in url.removeprefix("redis+cluster://").split(",")]
        return Deployment(kind, url, nodes, ports)
    child, url = start_private_redis(workdir / "standalone", config)
    return Deployment(kind, url, [child], [int(url.rsplit(":", 1)[1].split("/")[0])])


@dataclass
class Measurement:
    """One configuration of one round."""

    kind: str
    workers: int
    run: int
    records: int
    seconds: float
    rate: float
    cpu_cores: dict[str, float]
    verified: bool


async def wait_for_group(
    opts: ScaleOptions, group: str, members: int, workers: list[Worker]
) -> None:
    """Until every worker is a member of the stable group."""
    deadline = time.monotonic() + 180
    state: tuple[str, int] = ("", 0)
    while time.monotonic() < deadline:
        for w in workers:
            w.child.check()
        try:
            state = await group_members(connect(opts.bootstrap), group)
        except Exception:  # the group does not exist yet
            state = ("", 0)
        if state == ("Stable", members):
            return
        await asyncio.sleep(0.5)
    raise TimeoutError(f"group {group} not Stable with {members} members: {state}")


async def time_commits(
    opts: ScaleOptions,
    target: Target,
    workers: list[Worker],
    meter: CpuMeter,
    produced: CpuSample,
) -> tuple[float, int, dict[str, float]]:
    """(seconds, records timed, CPU cores) from the first commit to the last; from the
    start of production when the first commit seen is already the last (tiny runs)."""
    ends = await end_offsets(opts.bootstrap, target.topic, opts.partitions)
    cpu_first = meter.sample()
    first: tuple[float, int] | None = None
    async with CommitWatcher(opts.bootstrap, target.topic, opts.partitions) as watcher:
        deadline = time.monotonic() + opts.timeout
        while True:
            for w in workers:
                w.child.check()
            committed = await watcher.committed(target.group)
            now = time.monotonic()
            if first is None and sum(committed.values()) > 0:
                first, cpu_first = (now, sum(committed.values())), meter.sample()
            if all(committed.get(p, 0) >= end for p, end in ends.items()):
                break
            if now > deadline:
                raise TimeoutError(f"{target.group}: not caught up after {opts.timeout:.0f}s")
            await asyncio.sleep(POLL)
    cpu_last = meter.sample()
    assert first is not None
    if first[1] == sum(ends.values()):
        first, cpu_first = (produced.at, 0), produced
    return now - first[0], sum(ends.values()) - first[1], CpuMeter.share(cpu_first, cpu_last)


def stop_all(workers: list[Worker]) -> None:
    """SIGTERM every worker at once (one by one, each leave would rebalance the rest)."""
    for w in workers:
        w.child.send_signal(signal.SIGTERM)
    for w in workers:
        w.child.stop()


async def measure(
    opts: ScaleOptions,
    deployment: Deployment,
    records: list[tuple[bytes, bytes]],
    counted: int,
    at: tuple[str, Path, int, int],
) -> Measurement:
    """`workers` workers on a fresh topic and namespace: join, produce, time, verify."""
    tag, workdir, run, workers = at
    kind = deployment.kind
    name = f"{tag}-{deployment.kind}-{workers}w-{run}"
    await create_topics(opts.bootstrap, {name: opts.partitions})
    target = Target(
        bootstrap=opts.bootstrap,
        redis_url=deployment.url,
        topic=name,
        partitions=opts.partitions,
        namespace=f"{tag}{deployment.kind[0]}{workers}r{run}",
        group=f"{name}-group",
        workdir=workdir,
        shards=opts.shards,
    )
    procs = [start_worker(target, f"{name}-{n}") for n in range(workers)]
    try:
        await wait_for_group(opts, target.group, workers, procs)
        pids: dict[str, int | None] = {f"worker-{n}": w.child.pid for n, w in enumerate(procs)}
        pids |= {f"redis-{n}": s.pid for n, s in enumerate(deployment.servers)}
        pids["kafka"] = pid_from_file(STACK.pid_file("kafka"))
        meter = CpuMeter(pids)
        producing = meter.sample()
        await BulkProducer(opts.bootstrap, opts.partitions).produce(name, records)
        seconds, timed, cpu = await time_commits(opts, target, procs, meter, producing)
        client = deployment.client()
        try:
            applied = await applied_events(client, target.namespace, target.shards)
        finally:
            await client.aclose()
    finally:
        stop_all(procs)
        await delete_topics_containing(opts.bootstrap, name)
        await delete_groups_containing(opts.bootstrap, name)
        deployment.flush()
    rate = timed / seconds
    return Measurement(kind, workers, run, timed, seconds, rate, cpu, applied == counted)


def summarise(measurements: Sequence[Measurement]) -> list[dict[str, Any]]:
    """Per configuration: median rate, median ratio to the same round's baseline, median
    cores of the workers (together and each) and of the redis-servers."""
    base = {m.run: m.rate for m in measurements if (m.kind, m.workers) == BASELINE}
    rows = []
    for kind, workers in sorted({(m.kind, m.workers) for m in measurements}):
        ms = [m for m in measurements if (m.kind, m.workers) == (kind, workers)]

        def cores(prefix: str, ms: list[Measurement] = ms) -> float:
            return statistics.median(
                sum(v for k, v in m.cpu_cores.items() if k.startswith(prefix)) for m in ms
            )

        ratios = [m.rate / base[m.run] for m in ms if m.run in base]
        rows.append(
            {
                "redis": kind,
                "workers": workers,
                "rate": report.spread([m.rate for m in ms]),
                "ratio": report.spread(ratios) if ratios else None,
                "worker_cores": cores("worker-"),
                "cores_per_worker": cores("worker-") / workers,
                "redis_cores": cores("redis-"),
                "kafka_cores": cores("kafka"),
                "machine_cores": cores("machine"),
                "verified": all(m.verified for m in ms),
            }
        )
    return rows


def render(rows: list[dict[str, Any]], console: Console) -> None:
    table = Table(title="scale-out: events/s (median) and CPU cores used while timed")
    for col in (
        "redis",
        "workers",
        "events/s",
        "x 1 worker standalone",
        "workers' cores",
        "per worker",
        "redis cores",
        "kafka",
        "machine",
        "verified",
    ):
        table.add_column(col, justify="right")
    for r in rows:
        ratio = f"{r['ratio']['median']:.2f}x" if r["ratio"] else "-"
        table.add_row(
            r["redis"],
            str(r["workers"]),
            f"{r['rate']['median']:,.0f} ({r['rate']['min']:,.0f}-{r['rate']['max']:,.0f})",
            ratio,
            f"{r['worker_cores']:.2f}",
            f"{r['cores_per_worker']:.2f}",
            f"{r['redis_cores']:.2f}",
            f"{r['kafka_cores']:.2f}",
            f"{r['machine_cores']:.2f}",
            "yes" if r["verified"] else "NO",
        )
    console.print(table)


async def run(opts: ScaleOptions, tag: str, workdir: Path) -> list[Measurement]:
    """Every round, and in each every Redis kind and worker count, on the same records."""
    mix = Mix(max(100, round(opts.events / EVENTS_PER_CUSTOMER)), seed=3)
    records = list(mix.records())
    counted = mix.stats.counted_events
    progress.print(f"[bold]scale {tag}[/bold]: {len(records):,} records; logs in {workdir}")
    deployments = {kind: start_deployment(kind, workdir, opts.masters) for kind in opts.redis}
    out: list[Measurement] = []
    try:
        for run_no in range(1, opts.runs + 1):
            for kind, deployment in deployments.items():
                for workers in opts.workers:
                    at = (tag, workdir, run_no, workers)
                    m = await measure(opts, deployment, records, counted, at)
                    progress.print(
                        f"  round {run_no} {kind} x {workers}: {m.rate:,.0f} events/s, "
                        f"cores {m.cpu_cores}"
                    )
                    out.append(m)
    finally:
        for deployment in deployments.values():
            deployment.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    tag = "bs" + secrets.token_hex(3)
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{tag}-"))
    started = datetime.now(UTC).replace(microsecond=0)
    measurements = asyncio.run(run(opts, tag, workdir))
    shutil.rmtree(workdir, ignore_errors=True)  # kept when a configuration failed
    rows = summarise(measurements)
    results = {
        "started": started.isoformat(),
        "command": " ".join([".venv/bin/python -m bench.scale", *sys.argv[1:]]),
        "options": asdict(opts),
        "machine": machine(),
        "measurements": [asdict(m) for m in measurements],
        "summary": rows,
    }
    path = report.write(results, opts.results)
    render(rows, Console(width=max(Console().width, 150)))
    progress.print(f"results: {path}")
    return 0 if all(r["verified"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
