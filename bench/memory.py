"""Memory per tracked customer and the exporter's scrape time, on the real worker's state.

The state is written by the real worker consuming the N-customer history (no
synthetic writer). Three views of its size:
- `INFO memory` used_memory after - before, divided by tracked customers (what the
  issue asks for; it also sees any other client's writes in the meantime, so the
  key count of other namespaces is reported beside it);
- Σ `MEMORY USAGE` over every key of the namespace, split by kind of key (customer
  hashes, shard aggregates, lifecycle due sets), which other users cannot disturb;
- `MEMORY USAGE` and field lengths of a random sample of customer hashes, grouped by
  how many events the customer had, to show what a heavier customer costs.
"""

from __future__ import annotations

import random
import statistics
import time
import urllib.request
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

from redis import Redis

from bench.mix import customer_id
from bench.procs import VENV_BIN, Child, free_port
from bench.tracker import Target
from streams.state import Keys

CUSTOMER_FIELDS = (
    "o",
    "a",
    "x",
    "s",
    "k",
    "e",
    "f",
    "l",
    "p",
    "r",
    "q",
    "sa",
    "st",
    "g",
    "pt",
    "ls",
)


@dataclass(frozen=True, slots=True)
class RedisSnapshot:
    used_memory: int
    keys: int

    @classmethod
    def take(cls, redis: Redis) -> RedisSnapshot:
        info = redis.info("memory")
        return cls(int(info["used_memory"]), int(redis.dbsize()))


def namespace_usage(redis: Redis, namespace: str) -> dict[str, dict[str, int]]:
    """Keys and Σ MEMORY USAGE (bytes) of the namespace, by kind of key."""
    kinds: dict[str, dict[str, int]] = defaultdict(lambda: {"keys": 0, "bytes": 0})
    batch: list[bytes] = []

    def flush() -> None:
        pipe = redis.pipeline(transaction=False)
        for key in batch:
            pipe.memory_usage(key, samples=0)
        for key, size in zip(batch, pipe.execute(), strict=True):
            kind = _kind(key.decode(errors="replace"))
            kinds[kind]["keys"] += 1
            kinds[kind]["bytes"] += int(size or 0)
        batch.clear()

    for key in redis.scan_iter(match=f"{namespace}:*", count=5000):
        batch.append(key)
        if len(batch) >= 2000:
            flush()
    if batch:
        flush()
    return dict(kinds)


def _kind(key: str) -> str:
    if ":c:" in key:
        return "customer hashes"
    tail = key.rsplit(":", 1)[-1]
    if tail in ("agg", "days", "per", "line"):
        return "shard aggregates"
    if tail in ("due", "outbox"):
        return f"lifecycle {tail}"
    return "other"


def sample_customers(
    redis: Redis,
    target: Target,
    customers: int,
    seed: int,
    size: int,
    events: dict[int, int],
) -> dict[str, object]:
    """MEMORY USAGE and field sizes of `size` random customers of the history."""
    keys = Keys(target.namespace, target.shards)
    picks = random.Random(99).sample(range(customers), min(size, customers))
    names = [keys.customer(customer_id(c, seed)) for c in picks]
    pipe = redis.pipeline(transaction=False)
    for name in names:
        pipe.memory_usage(name, samples=0)
        pipe.object("encoding", name)
        for f in CUSTOMER_FIELDS:
            pipe.hstrlen(name, f)
    replies = pipe.execute()
    per = 2 + len(CUSTOMER_FIELDS)
    usages: list[int] = []
    encodings: Counter[str] = Counter()
    field_bytes: Counter[str] = Counter()
    by_events: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(picks):
        usage, encoding, *lengths = replies[i * per : (i + 1) * per]
        if usage is None:
            continue
        usages.append(int(usage))
        encodings[encoding.decode() if isinstance(encoding, bytes) else str(encoding)] += 1
        for f, n in zip(CUSTOMER_FIELDS, lengths, strict=True):
            field_bytes[f] += int(n)
        n_events = events.get(c, 0)
        bucket = (
            "1-3"
            if n_events <= 3
            else "4-7"
            if n_events <= 7
            else "8-15"
            if n_events <= 15
            else "16+"
        )
        by_events[bucket].append(int(usage))
    found = len(usages)
    return {
        "sampled": len(picks),
        "found": found,
        "memory_usage_median": statistics.median(usages) if usages else 0,
        "memory_usage_mean": round(statistics.fmean(usages), 1) if usages else 0,
        "memory_usage_p90": statistics.quantiles(usages, n=10)[8] if len(usages) > 10 else 0,
        "encodings": dict(encodings),
        "key_name_bytes_mean": round(statistics.fmean(len(n) for n in names), 1),
        "field_value_bytes_mean": {
            f: round(field_bytes[f] / max(found, 1), 1) for f in CUSTOMER_FIELDS
        },
        "memory_usage_by_events": {
            b: {"customers": len(v), "median": statistics.median(v)}
            for b, v in sorted(by_events.items())
        },
    }


@dataclass(slots=True)
class ScrapeResult:
    median_ms: float
    min_ms: float
    max_ms: float
    scrapes: int
    body_bytes: int
    samples: int
    daily_cohorts: int
    largest_families: dict[str, int]

    def as_dict(self) -> dict[str, object]:
        return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def time_scrapes(target: Target, scrapes: int, workdir: Path) -> ScrapeResult:
    """Start `retention exporter` on the namespace and time /metrics (after one warm-up)."""
    port = free_port()
    env = {**target.env(), "RETENTION_EXPORTER_PORT": str(port)}
    exporter = Child(
        "exporter", [str(VENV_BIN / "retention"), "exporter"], env, workdir / "exporter.log"
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        body = b""
        deadline = time.monotonic() + 60
        while True:
            exporter.check()
            try:
                with urllib.request.urlopen(url, timeout=60) as resp:
                    body = resp.read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        times: list[float] = []
        for _ in range(scrapes):
            t = time.perf_counter()
            with urllib.request.urlopen(url, timeout=60) as resp:
                body = resp.read()
            times.append((time.perf_counter() - t) * 1000)
    finally:
        exporter.stop()
    text = body.decode()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    cohorts = {
        line.split('cohort="', 1)[1].split('"', 1)[0]
        for line in lines
        if line.startswith("retention_cohort_size{") and 'cohort_period="day"' in line
    }
    families: Counter[str] = Counter(line.split("{", 1)[0].split(" ", 1)[0] for line in lines)
    return ScrapeResult(
        median_ms=statistics.median(times),
        min_ms=min(times),
        max_ms=max(times),
        scrapes=len(times),
        body_bytes=len(body),
        samples=len(lines),
        daily_cohorts=len(cohorts),
        largest_families=dict(families.most_common(8)),
    )


def delete_namespace(redis: Redis, namespace: str) -> int:
    deleted, batch = 0, []
    for key in redis.scan_iter(match=f"{namespace}:*", count=5000):
        batch.append(key)
        if len(batch) >= 2000:
            deleted += int(redis.unlink(*batch))
            batch.clear()
    if batch:
        deleted += int(redis.unlink(*batch))
    return deleted
