"""Run the whole benchmark against the local stack and report.

    .venv/bin/python -m bench.run --customers 1000000 --runs 3     # full size
    .venv/bin/python -m bench.run --customers 50000 --runs 2       # smoke

Needs `bash scripts/stack.sh up` (Kafka 127.0.0.1:19092, Redis 127.0.0.1:16379).
Everything it creates carries one random tag (topics, consumer groups, Redis
namespaces) and is deleted at the end unless --keep. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis import Redis
from rich.console import Console

from bench import memory, profile, report
from bench.kafka import (
    BulkProducer,
    create_topics,
    delete_groups_containing,
    delete_topics_containing,
)
from bench.mix import Mix
from bench.procs import (
    ROOT,
    VENV_BIN,
    Child,
    CpuMeter,
    free_port,
    loadavg,
    pid_from_file,
    start_private_redis,
)
from bench.tracker import DEFAULT_SHARDS, Target, Worker, run_latency, run_throughput, start_worker
from core.schema import Keys
from core.totals import HEADLINE, headline
from retention.stack.settings import StackSettings

# the local stack the bench runs against (RETENTION_* ports, RETENTION_STATE)
STACK = StackSettings()
EVENTS_PER_CUSTOMER = 4.3  # what the mix averages; sizes the throughput data set
RESULTS = Path(__file__).resolve().parent / "results"
console = Console(stderr=True)


@dataclass(frozen=True, slots=True)
class Options:
    customers: int
    events: int
    runs: int
    naive_events: int
    naive_seconds: float
    latency_seconds: float
    scrapes: int
    profile: bool
    profile_seconds: int
    memory: bool
    private_redis: bool
    keep: bool
    bootstrap: str
    redis_url: str
    partitions: int
    shards: int
    sample: int


def parse_args(argv: list[str] | None = None) -> Options:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--customers",
        type=int,
        default=1_000_000,
        help="customers in the 90-day history for memory and scrape (default 1M)",
    )
    p.add_argument(
        "--events",
        type=int,
        default=0,
        help="records per throughput topic (default min(1M, 4 x customers))",
    )
    p.add_argument(
        "--runs",
        type=int,
        default=3,
        help="runs of limit, naive, tracker, latency (0: only the memory and scrape phase)",
    )
    p.add_argument(
        "--naive-events",
        type=int,
        default=50_000,
        help="events the naive agent is timed over (after a warm-up)",
    )
    p.add_argument("--naive-seconds", type=float, default=40.0, help="time cap of one naive run")
    p.add_argument(
        "--latency-seconds", type=float, default=30.0, help="paced production per latency run"
    )
    p.add_argument("--scrapes", type=int, default=10, help="timed /metrics scrapes")
    p.add_argument(
        "--no-profile",
        dest="profile",
        action="store_false",
        help="skip the extra py-spy run of the worker",
    )
    p.add_argument(
        "--profile-seconds",
        type=int,
        default=60,
        help="py-spy sampling time (on the memory-fill worker, from its first commit)",
    )
    p.add_argument(
        "--private-redis",
        action="store_true",
        help="run a dedicated redis-server (same binary and settings as scripts/stack.sh) "
        "so other users of the stack's Redis do not share its single thread",
    )
    p.add_argument(
        "--no-memory",
        dest="memory",
        action="store_false",
        help="skip the N-customer memory and scrape phase",
    )
    p.add_argument("--keep", action="store_true", help="leave topics, groups and keys behind")
    p.add_argument("--bootstrap", default=STACK.kafka_bootstrap)
    p.add_argument("--redis-url", default=STACK.redis_url)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument(
        "--shards",
        type=int,
        default=DEFAULT_SHARDS,
        help=f"RETENTION_SHARDS for worker and exporter (default: the worker's, {DEFAULT_SHARDS})",
    )
    p.add_argument(
        "--sample", type=int, default=2000, help="customer hashes sampled for MEMORY USAGE"
    )
    a = p.parse_args(argv)
    events = a.events or min(1_000_000, 4 * a.customers)
    return Options(
        customers=a.customers,
        events=events,
        runs=a.runs,
        naive_events=a.naive_events,
        naive_seconds=a.naive_seconds,
        latency_seconds=a.latency_seconds,
        scrapes=a.scrapes,
        profile=a.profile,
        profile_seconds=a.profile_seconds,
        memory=a.memory,
        private_redis=a.private_redis,
        keep=a.keep,
        bootstrap=a.bootstrap,
        redis_url=a.redis_url,
        partitions=a.partitions,
        shards=a.shards,
        sample=a.sample,
    )


class Bench:
    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.tag = "bm" + secrets.token_hex(3)
        self.workdir = Path(tempfile.mkdtemp(prefix=f"bench-{self.tag}-"))
        self.private_redis: Child | None = None
        self.redis_url = opts.redis_url
        self.redis_config = encoding_config(opts.redis_url)
        if opts.private_redis:
            self.private_redis, self.redis_url = start_private_redis(
                self.workdir, self.redis_config
            )
        self.redis = Redis.from_url(self.redis_url)
        self.started = datetime.now(UTC).replace(microsecond=0)
        self.results: dict[str, Any] = {
            "started": self.started.isoformat(),
            "command": " ".join([".venv/bin/python -m bench.run", *sys.argv[1:]]),
            "tag": self.tag,
            "options": asdict(opts),
            "machine": self._machine(),
            "redis_url": self.redis_url,
            "redis_encoding_config": self.redis_config,
            "datasets": {},
            "runs": {"limit": [], "naive": [], "tracker": [], "latency": []},
            "load": [],
        }
        self.namespaces: list[str] = []
        self.spy: Child | None = None
        self.pids = {
            "redis": int(self.redis.info("server")["process_id"]),
            "kafka": pid_from_file(STACK.pid_file("kafka")),
        }

    # --- orchestration --------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        o = self.opts
        console.print(f"[bold]benchmark {self.tag}[/bold]: logs and state in {self.workdir}")
        try:
            topics = await self._throughput_topics() if o.runs else []
            for i, topic in enumerate(topics, 1):
                self._note_load(f"run {i}")
                self.results["runs"]["limit"].append(self._limit(topic))
                self.results["runs"]["naive"].append(self._naive(topic, i))
                self.results["runs"]["tracker"].append(await self._tracker(topic, i))
            rate = report.spread([r["rate"] for r in self.results["runs"]["tracker"]])["median"]
            for i, topic in enumerate(topics, 1):  # --runs 0: memory and scrape only
                self._note_load(f"latency {i}")
                self.results["runs"]["latency"].append(await self._latency(topic, i, rate / 2))
            if o.memory:
                await self._memory()
            elif o.profile:
                await self._profile_run(topics[0])
        finally:
            self._note_load("end")
            if not o.keep:
                await self._cleanup()
        if self.private_redis is not None:
            self.private_redis.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)  # logs are kept when a phase failed
        self.results["summary"] = report.summarise(self.results)
        if code_digest() != self.results["machine"]["code_digest"]:
            # Workers and the exporter are started along the way and load the code as it
            # is then: a run that straddles an edit mixes two versions of the tracker.
            self.results["code_changed_during_run"] = True
            console.print(
                "[red]streams/, metrics/ or retention/ changed during the run: "
                "the figures mix code versions[/red]"
            )
        return self.results

    async def _throughput_topics(self) -> list[str]:
        o = self.opts
        mix = Mix(max(100, round(o.events / EVENTS_PER_CUSTOMER)), seed=2)
        console.print(f"generating the throughput data set (~{o.events:,} records) …")
        records = list(mix.records())
        self.throughput_mix = mix
        self.results["datasets"]["throughput"] = mix.stats.as_dict()
        topics = [f"{self.tag}-events-{i}" for i in range(1, o.runs + 1)]
        await create_topics(o.bootstrap, dict.fromkeys(topics, o.partitions))
        producer = BulkProducer(o.bootstrap, o.partitions)
        for topic in topics:
            produced = await producer.produce(topic, records)
            console.print(
                f"  {topic}: {produced.records:,} records in {produced.seconds:.1f}s "
                f"({produced.rate:,.0f}/s)"
            )
        self.counted_throughput = mix.stats.counted_events
        return topics

    def _limit(self, topic: str) -> dict[str, Any]:
        o = self.opts
        log = self.workdir / f"limit-{topic}.log"
        child = Child(
            "limit",
            [str(VENV_BIN / "python"), "-m", "bench.limit", o.bootstrap, topic, str(o.partitions)],
            {},
            log,
        )
        meter = CpuMeter({"limit": child.pid, **self.pids})
        a = meter.sample()
        child.popen.wait(900)
        b = meter.sample()
        if child.popen.returncode != 0:
            raise RuntimeError(f"limit run failed\n{child.tail()}")
        result: dict[str, Any] = json.loads(log.read_text().strip().splitlines()[-1])
        result["cpu_cores"] = CpuMeter.share(a, b)
        console.print(f"  limit   {topic}: {result['rate']:,.0f} records/s")
        return result

    def _naive(self, topic: str, i: int) -> dict[str, Any]:
        o = self.opts
        ns = f"{self.tag}n{i}"
        self.namespaces.append(ns)
        out = self.workdir / f"naive-{i}.json"
        env = {
            "BENCH_BOOTSTRAP": o.bootstrap,
            "BENCH_REDIS_URL": self.redis_url,
            "BENCH_TOPIC": topic,
            "BENCH_GROUP": f"{self.tag}-naive-{i}",
            "BENCH_NS": ns,
            "BENCH_WARMUP": "2000",
            "BENCH_TARGET": str(o.naive_events),
            "BENCH_SECONDS": str(o.naive_seconds),
            "BENCH_RESULT": str(out),
            "BENCH_DATADIR": str(self.workdir / f"naive-data-{i}"),
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
        child = Child(f"naive-{i}", args, env, self.workdir / f"naive-{i}.log")
        meter = CpuMeter({"naive": child.pid, **self.pids})
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
        console.print(f"  naive   {topic}: {result['rate']:,.0f} events/s")
        memory.delete_namespace(self.redis, ns)
        return result

    def _target(self, topic: str, suffix: str, cohorts_kept: int = 12) -> Target:
        ns = f"{self.tag}{suffix}"
        if ns not in self.namespaces:
            self.namespaces.append(ns)
        return Target(
            bootstrap=self.opts.bootstrap,
            redis_url=self.redis_url,
            topic=topic,
            partitions=self.opts.partitions,
            namespace=ns,
            group=f"{self.tag}-worker-{suffix}",
            workdir=self.workdir,
            cohorts_kept=cohorts_kept,
            shards=self.opts.shards,
        )

    async def _tracker(self, topic: str, i: int) -> dict[str, Any]:
        target = self._target(topic, f"t{i}")
        result, worker = await run_throughput(
            target, f"worker-t{i}", self.counted_throughput, self.pids, timeout=1800
        )
        worker.child.stop()
        console.print(
            f"  tracker {topic}: {result.rate:,.0f} events/s "
            f"(verified={result.verified}, cpu {result.cpu_cores})"
        )
        return result.as_dict()

    async def _latency(self, topic: str, i: int, rate: float) -> dict[str, Any]:
        target = self._target(topic, f"t{i}")
        worker = start_worker(target, f"worker-t{i}-latency")
        try:
            live = self.throughput_mix.live(seed=100 + i)
            result = await run_latency(target, worker, live, rate, self.opts.latency_seconds)
        finally:
            worker.child.stop()
        console.print(
            f"  latency {topic}: {result.rate_achieved:,.0f} ev/s → "
            f"p50 {result.p50_ms:,.0f} ms, p99 {result.p99_ms:,.0f} ms"
        )
        return result.as_dict()

    def _attach_profiler(self, worker: Worker) -> None:
        """Start py-spy on a worker (called at its first commit)."""
        if not self.opts.profile:
            return
        if profile.py_spy() is None:
            console.print("[yellow]py-spy not installed: no profile[/yellow]")
            return
        raw = self.workdir / "worker-profile.txt"
        self.spy = profile.start(worker.child.pid, raw, self.opts.profile_seconds)

    def _collect_profile(self, rate: float) -> None:
        spy, self.spy = self.spy, None
        if spy is None:
            return
        profile.finish(spy, timeout=self.opts.profile_seconds + 60)
        raw = self.workdir / "worker-profile.txt"
        if not raw.exists():
            console.print(f"[yellow]py-spy wrote no profile[/yellow]\n{spy.tail()}")
            return
        summary = profile.summarise(raw).as_dict()
        summary["seconds"] = self.opts.profile_seconds
        summary["run_rate"] = round(rate, 1)
        self.results["profile"] = summary
        console.print(f"  profile: {summary['samples']:,} samples")

    async def _profile_run(self, topic: str) -> None:
        """Without the memory phase: an extra, profiled tracker run on the first topic."""
        target = self._target(topic, "p")
        result, worker = await run_throughput(
            target,
            "worker-profile",
            self.counted_throughput,
            self.pids,
            1800,
            on_first_commit=self._attach_profiler,
        )
        worker.child.stop()
        self._collect_profile(result.rate)

    async def _memory(self) -> None:
        o = self.opts
        topic = f"{self.tag}-history"
        await create_topics(o.bootstrap, {topic: o.partitions})
        mix = Mix(o.customers, seed=1)
        console.print(f"producing the {o.customers:,}-customer, 90-day history …")
        produced = await BulkProducer(o.bootstrap, o.partitions).produce(topic, mix.records())
        self.results["datasets"]["history"] = mix.stats.as_dict()
        console.print(f"  {produced.records:,} records in {produced.seconds:.0f}s")
        target = self._target(topic, "m", cohorts_kept=90)
        self._note_load("memory fill")
        before = memory.RedisSnapshot.take(self.redis)
        fill, worker = await run_throughput(
            target,
            "worker-memory",
            mix.stats.counted_events,
            self.pids,
            timeout=6 * 3600,
            on_first_commit=self._attach_profiler,
        )
        self._wait_outbox_empty(target)
        worker.child.stop()
        self._collect_profile(fill.rate)
        time.sleep(1)
        after = memory.RedisSnapshot.take(self.redis)
        self.results["fill"] = fill.as_dict()
        console.print(f"  fill: {fill.rate:,.0f} events/s (verified={fill.verified})")
        keys = Keys(target.namespace, target.shards)
        tracked = sum(
            headline(self.redis.hmget(keys.totals(s), HEADLINE))[1] for s in range(target.shards)
        )
        usage = memory.namespace_usage(self.redis, target.namespace)
        ns_keys = sum(v["keys"] for v in usage.values())
        ns_bytes = sum(v["bytes"] for v in usage.values())
        sample = memory.sample_customers(
            self.redis, target, o.customers, 1, o.sample, dict(enumerate(mix.counts))
        )
        delta = after.used_memory - before.used_memory
        self.results["memory"] = {
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
        console.print(
            f"  memory: {delta / max(tracked, 1):,.0f} B/customer (INFO), "
            f"{ns_bytes / max(tracked, 1):,.0f} B (Σ MEMORY USAGE)"
        )
        scrape = memory.time_scrapes(target, o.scrapes, self.workdir)
        self.results["scrape"] = scrape.as_dict()
        console.print(f"  /metrics: median {scrape.median_ms:,.0f} ms")

    def _wait_outbox_empty(self, target: Target, timeout: float = 300) -> None:
        """Let the worker finish publishing lifecycle changes (its outbox is transient)."""
        keys = Keys(target.namespace, target.shards)
        outboxes = [keys.outbox(s) for s in range(target.shards)]
        deadline = time.monotonic() + timeout
        quiet = 0
        while quiet < 3 and time.monotonic() < deadline:
            pending = sum(int(self.redis.llen(k)) for k in outboxes)
            quiet = quiet + 1 if pending == 0 else 0
            time.sleep(1)

    # --- bookkeeping ----------------------------------------------------------------

    def _note_load(self, phase: str) -> None:
        self.results["load"].append({"phase": phase, "at": time.time(), "loadavg": loadavg()})

    @staticmethod
    def _machine() -> dict[str, Any]:
        def git(*args: str) -> str:
            done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
            return done.stdout.strip()

        return {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "loadavg_at_start": loadavg(),
            "git_commit": git("rev-parse", "--short", "HEAD"),
            "git_dirty": bool(
                git("status", "--porcelain", "--", "streams", "metrics", "retention")
            ),
            "code_digest": code_digest(),
        }

    async def _cleanup(self) -> None:
        for ns in self.namespaces:
            try:
                memory.delete_namespace(self.redis, ns)
            except Exception as exc:  # cleanup must not hide the results
                console.print(f"[yellow]redis cleanup of {ns} failed: {exc!r}[/yellow]")
        try:
            topics = await delete_topics_containing(self.opts.bootstrap, self.tag)
            groups = await delete_groups_containing(self.opts.bootstrap, self.tag)
            console.print(
                f"cleaned up {len(topics)} topics, {len(groups)} groups, "
                f"{len(self.namespaces)} namespaces"
            )
        except Exception as exc:
            console.print(f"[yellow]kafka cleanup failed: {exc!r}[/yellow]")


ENCODING_SETTINGS = ("hash-max-listpack-*", "zset-max-listpack-*", "set-max-*", "list-max-*")


def encoding_config(url: str) -> dict[str, str]:
    """The stack Redis's encoding thresholds (scripts/stack.sh may tune them)."""
    client = Redis.from_url(url, decode_responses=True)
    try:
        config: dict[str, str] = {}
        for pattern in ENCODING_SETTINGS:
            for name, value in client.config_get(pattern).items():
                config[str(name)] = str(value)
        return config
    finally:
        client.close()


def code_digest() -> str:
    """A digest of the tracker's code (streams/, metrics/, retention/), to spot edits mid-run."""
    h = hashlib.sha256()
    for package in ("streams", "metrics", "retention"):
        for path in sorted((ROOT / package).rglob("*")):
            if path.suffix in (".py", ".lua"):
                h.update(path.name.encode())
                h.update(path.read_bytes())
    return h.hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    bench = Bench(opts)
    results = asyncio.run(bench.run())
    path = report.write(results, RESULTS)
    report.render(results, Console(width=max(Console().width, 150)))
    console.print(f"results: {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
