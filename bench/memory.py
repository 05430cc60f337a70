"""Memory per tracked customer and the exporter's scrape time, on the real worker's state.

The state is written by the real worker consuming the N-customer history (no
synthetic writer). Three views of its size:
- `INFO memory` used_memory after - before, divided by tracked customers (the
  headline figure; it also sees any other client's writes in the meantime, so the
  key count of other namespaces is reported beside it);
- Σ `MEMORY USAGE` over every key of the namespace, split by kind of key (customer
  buckets, shard aggregates, lifecycle due sets), which other users cannot disturb;
- for a random sample of customers: their bucket's `MEMORY USAGE` shared out over its
  customers, and the bytes of their own listpack entry (field and blob, by part of
  the blob), grouped by how many events the customer had, to show what a heavier
  customer costs.
"""

from __future__ import annotations

import random
import statistics
import time
import urllib.request
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from redis import RedisCluster

from bench.mix import customer_id
from bench.procs import VENV_BIN, Child, free_port
from bench.worker import Target
from core.redis_types import SyncRedis
from core.schema import CUSTOMER_SLOTS, Keys, key_kind
from core.settings import Settings

# MessagePack first bytes of fixed size (1 + that many bytes): ints and floats.
FIXED_SIZES = {0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}
FIXED_SIZES |= {0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8}
STR_LENGTH_BYTES = {0xD9: 1, 0xDA: 2, 0xDB: 4, 0xC4: 1, 0xC5: 2, 0xC6: 4}


@dataclass(frozen=True, slots=True)
class RedisSnapshot:
    used_memory: int
    keys: int

    @classmethod
    def take(cls, redis: SyncRedis) -> RedisSnapshot:
        """Used memory and keys; of every primary together on a cluster, where INFO and
        DBSIZE would otherwise answer for one node."""
        if isinstance(redis, RedisCluster):
            per_node: Any = redis.info("memory", target_nodes=redis.PRIMARIES)
            used = sum(int(info["used_memory"]) for info in per_node.values())
            return cls(used, int(redis.dbsize(target_nodes=redis.PRIMARIES)))
        info = redis.info("memory")
        return cls(int(info["used_memory"]), int(redis.dbsize()))


def namespace_usage(redis: SyncRedis, namespace: str) -> dict[str, dict[str, int]]:
    """Keys and Σ MEMORY USAGE (bytes) of the namespace, by kind of key."""
    kinds: dict[str, dict[str, int]] = defaultdict(lambda: {"keys": 0, "bytes": 0})
    batch: list[bytes] = []

    def flush() -> None:
        pipe = redis.pipeline(transaction=False)
        for key in batch:
            pipe.memory_usage(key, samples=0)
        for key, size in zip(batch, pipe.execute(), strict=True):
            kind = key_kind(key.decode(errors="replace"))
            kinds[kind]["keys"] += 1
            kinds[kind]["bytes"] += int(size or 0)
        batch.clear()

    for key in redis.scan_iter(match=Keys(namespace, 1).pattern(), count=5000):
        batch.append(key)
        if len(batch) >= 2000:
            flush()
    if batch:
        flush()
    return dict(kinds)


def blob_parts(blob: bytes) -> dict[str, int]:
    """Bytes each value of a customer blob (a MessagePack sequence) takes."""
    parts: dict[str, int] = {}
    pos = 0
    for slot in CUSTOMER_SLOTS:
        if pos >= len(blob):
            break
        end = _skip(blob, pos)
        parts[slot] = end - pos
        pos = end
    return parts


def _skip(blob: bytes, pos: int) -> int:
    """Where the MessagePack value at pos ends: scalars, strings and arrays of them (the
    per-type day bitmaps)."""
    first = blob[pos]
    pos += 1
    if 0xA0 <= first <= 0xBF:  # fixstr
        return pos + (first & 0x1F)
    if first in STR_LENGTH_BYTES:
        width = STR_LENGTH_BYTES[first]
        return pos + width + int.from_bytes(blob[pos : pos + width], "big")
    if 0x90 <= first <= 0x9F or first == 0xDC:  # fixarray, array 16
        count = first & 0x0F
        if first == 0xDC:
            count, pos = int.from_bytes(blob[pos : pos + 2], "big"), pos + 2
        for _ in range(count):
            pos = _skip(blob, pos)
        return pos
    return pos + FIXED_SIZES.get(first, 0)  # fixints and nil are one byte


def listpack_entry_bytes(length: int) -> int:
    """Bytes a string of `length` bytes takes in a listpack: header, data, back-length."""
    header = 1 if length < 64 else 2 if length < 4096 else 5
    total = header + length
    return total + (1 if total < 128 else 2 if total < 16384 else 3)


def sample_customers(
    redis: SyncRedis,
    target: Target,
    customers: int,
    seed: int,
    size: int,
    events: dict[int, int],
) -> dict[str, object]:
    """Sizes of `size` random customers of the history: their bucket entries (field and
    blob) and, for their buckets, MEMORY USAGE shared out over the bucket's customers."""
    # the worker reads RETENTION_CUSTOMER_BUCKETS from the same environment
    keys = Keys(target.namespace, target.shards, Settings().customer_buckets)
    picks = random.Random(99).sample(range(customers), min(size, customers))
    places = [keys.customer(customer_id(c, seed)) for c in picks]
    pipe = redis.pipeline(transaction=False)
    for bucket, member in places:
        pipe.hget(bucket, member)
    blobs = pipe.execute()
    buckets = sorted({bucket for bucket, _ in places})
    pipe = redis.pipeline(transaction=False)
    for bucket in buckets:
        pipe.memory_usage(bucket, samples=0)
        pipe.object("encoding", bucket)
        pipe.hlen(bucket)
    replies = pipe.execute()
    shares: list[float] = []
    encodings: Counter[str] = Counter()
    for i in range(len(buckets)):
        usage, encoding, length = replies[3 * i : 3 * i + 3]
        if usage and length:
            shares.append(int(usage) / int(length))
        encodings[encoding.decode() if isinstance(encoding, bytes) else str(encoding)] += 1
    entries: list[int] = []
    part_bytes: Counter[str] = Counter()
    by_events: dict[str, list[int]] = defaultdict(list)
    for c, (_, member), blob in zip(picks, places, blobs, strict=True):
        if blob is None:
            continue
        entry = listpack_entry_bytes(len(member)) + listpack_entry_bytes(len(blob))
        entries.append(entry)
        part_bytes.update(blob_parts(blob))
        n_events = events.get(c, 0)
        group = (
            "1-3"
            if n_events <= 3
            else "4-7"
            if n_events <= 7
            else "8-15"
            if n_events <= 15
            else "16+"
        )
        by_events[group].append(entry)
    found = len(entries)
    return {
        "sampled": len(picks),
        "found": found,
        "buckets": len(buckets),
        "customers_per_bucket_mean": round(
            statistics.fmean(int(n) for n in replies[2::3]) if buckets else 0, 1
        ),
        "memory_usage_median": round(statistics.median(shares), 1) if shares else 0,
        "memory_usage_mean": round(statistics.fmean(shares), 1) if shares else 0,
        "encodings": dict(encodings),
        "key_name_bytes_mean": round(statistics.fmean(len(m) for _, m in places), 1),
        "entry_bytes_mean": round(statistics.fmean(entries), 1) if entries else 0,
        "blob_part_bytes_mean": {
            part: round(n / max(found, 1), 1) for part, n in part_bytes.most_common()
        },
        "memory_usage_by_events": {
            g: {"customers": len(v), "median": statistics.median(v)}
            for g, v in sorted(by_events.items())
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


def delete_namespace(redis: SyncRedis, namespace: str) -> int:
    deleted, batch = 0, []
    for key in redis.scan_iter(match=Keys(namespace, 1).pattern(), count=5000):
        batch.append(key)
        if len(batch) >= 2000:
            deleted += int(redis.unlink(*batch))
            batch.clear()
    if batch:
        deleted += int(redis.unlink(*batch))
    return deleted
