"""What the fault tests share: the history they replay, waiting on Redis and Kafka, reading
the lifecycle topic, and the comparison with the clean run.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer

from core.redis_client import sync_client
from core.redis_types import SyncRedis
from core.schema import Keys
from core.settings import Settings
from core.totals import positions
from tests.history import generate_history
from tests.oracle import COMPARED, Key, OracleSettings, diff, flatten, flatten_all, ts_ms
from tests.pipeline_runner import Pipeline, Process
from tests.services import KAFKA, STACK

HOUR_MS = 3_600_000
# Delivery jitter of the lifecycle histories, and the allowed lateness that covers it.
JITTER_MS = 2 * HOUR_MS
LATENESS_S = 3 * 3600
FAULT_SETTINGS = OracleSettings(allowed_lateness_seconds=LATENESS_S)
CUSTOMERS = 500
SHARDS = Settings().shards
INVALID = "retention_events_invalid_total"

Change = tuple[str, str, str, str]  # customer, from, to, at


# --- histories --------------------------------------------------------------------------


def bounded_history(seed: int, customers: int, days: int = 60) -> list[dict[str, Any]]:
    """generate_history's events (duplicates included), delivered in time order up to a
    jitter of JITTER_MS (< the allowed lateness)."""
    rng = random.Random(seed)
    events = generate_history(seed=seed, customers=customers, days=days)
    keyed = [(ts_ms(e["ts"]) + rng.uniform(0, JITTER_MS), n, e) for n, e in enumerate(events)]
    keyed.sort(key=lambda t: (t[0], t[1]))
    return [e for _, _, e in keyed]


def chunks(items: list[Any], n: int, rng: random.Random) -> list[list[Any]]:
    """n consecutive, non-empty chunks of random sizes (each at least a third of the mean)."""
    weights = [rng.uniform(1, 3) for _ in range(n)]
    cuts, acc = [0], 0.0
    for w in weights[:-1]:
        acc += w
        cuts.append(round(len(items) * acc / sum(weights)))
    cuts.append(len(items))
    out = [items[a:b] for a, b in itertools.pairwise(cuts)]
    assert all(out) and sum(map(len, out)) == len(items)
    return out


# --- waiting, Redis, Kafka --------------------------------------------------------------


def wait_for(
    what: str, cond: Callable[[], bool], timeout: float, p: Pipeline, every: float = 0.05
) -> float:
    """Poll cond until true (checking that the pipeline's processes live); seconds taken."""
    t0 = time.monotonic()
    p.wait(cond, what, timeout, interval=every)
    return time.monotonic() - t0


def redis_client() -> SyncRedis:
    return sync_client(STACK, timeout=10)


def applied_offsets(r: SyncRedis, ns: str) -> dict[int, int]:
    """Per partition, the offset after the last record every shard applied (the offset
    markers `o:<topic>@<id>:<partition>` in the shards' totals; -1 = none)."""
    per: dict[int, list[int]] = {}
    keys = Keys(ns, SHARDS)
    pipe = r.pipeline(transaction=False)
    for shard in range(SHARDS):
        pipe.hgetall(keys.totals(shard))
    for totals in pipe.execute():
        for (_, partition), offset in positions(totals).items():
            per.setdefault(partition, []).append(offset)
    return {
        partition: min(values) if len(values) == SHARDS else -1 for partition, values in per.items()
    }


def applied_total(r: SyncRedis, ns: str) -> int:
    return sum(max(v, 0) for v in applied_offsets(r, ns).values())


def worker_metrics(port: int) -> dict[Key, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    names = frozenset(
        {
            "retention_backend_up",
            "retention_backend_retries_total",
            "retention_consumed_events_total",
        }
    )
    return flatten(text, names)


class Producer(threading.Thread):
    """Produces chunks with pauses between them, beside the test's own actions."""

    def __init__(self, p: Pipeline, parts: list[list[dict[str, Any]]], pause: float) -> None:
        super().__init__(daemon=True)
        self.p, self.parts, self.pause = p, parts, pause
        self.produced = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for part in self.parts:
                self.produced += self.p.produce(part)
                time.sleep(self.pause)
        except BaseException as exc:
            self.error = exc

    def finish(self, timeout: float) -> None:
        self.join(timeout)
        assert not self.is_alive(), f"producing did not finish in {timeout}s"
        if self.error is not None:
            raise self.error


# --- the lifecycle topic ----------------------------------------------------------------


async def read_lifecycle(
    topic: str, want: set[Change] | None, quiet: float, timeout: float
) -> list[tuple[int, dict[str, Any]]]:
    """Every message of the topic with its Kafka timestamp (epoch ms): until `want` is
    covered (if given) and then nothing new for `quiet` seconds, or the deadline."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=KAFKA, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    out: list[tuple[int, dict[str, Any]]] = []
    seen: set[Change] = set()
    try:
        deadline = time.monotonic() + timeout
        last_new = time.monotonic()
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            for records in batch.values():
                for record in records:
                    body = json.loads(record.value)
                    assert record.key.decode() == body["customer_id"]
                    out.append((record.timestamp, body))
                    seen.add(as_change(body))
                    last_new = time.monotonic()
            covered = want is None or want <= seen
            if covered and time.monotonic() - last_new >= quiet:
                break
    finally:
        await consumer.stop()
    return out


def as_change(m: dict[str, Any]) -> Change:
    return (str(m["customer_id"]), str(m["from"]), str(m["to"]), str(m["at"]))


def read_changes(
    p: Pipeline, want: set[Change] | None = None, quiet: float = 3.0, timeout: float = 60
) -> tuple[set[Change], int]:
    """(distinct changes, messages) on the pipeline's lifecycle topic."""
    messages = asyncio.run(read_lifecycle(p.lifecycle_topic, want, quiet, timeout))
    return {as_change(m) for _, m in messages}, len(messages)


# --- the clean run ----------------------------------------------------------------------


@dataclass
class Clean:
    history: list[dict[str, Any]]
    expected: dict[Key, float]  # the oracle's samples
    samples: dict[Key, float]  # every retention_* sample of the clean exporter
    changes: set[Change]
    messages: int
    seconds: float


def without_invalid(samples: dict[Key, float]) -> dict[Key, float]:
    return {k: v for k, v in samples.items() if k[0] != INVALID}


def assert_like_clean(p: Pipeline, clean: Clean) -> None:
    """Metrics sample by sample: the oracle's, and every sample of the clean exporter."""
    text = p.scrape_text()
    problems = diff(clean.expected, flatten(text, COMPARED))
    full = diff(clean.samples, without_invalid(flatten_all(text)))
    if problems or full:
        p.fail(
            f"metrics differ ({p.still_moving()})\n"
            f"vs oracle: {problems or 'equal'}\nvs clean run (all samples): {full or 'equal'}"
        )


def assert_lifecycle_like_clean(p: Pipeline, clean: Clean) -> tuple[int, int]:
    """Every change of the clean run is on the topic, none that it did not publish;
    returns (distinct changes, messages)."""
    got, messages = read_changes(p, want=clean.changes, quiet=2.0, timeout=90)
    missing, extra = clean.changes - got, got - clean.changes
    if missing or extra:
        p.fail(
            f"lifecycle topic: {len(missing)} changes of the clean run missing "
            f"{sorted(missing)[:10]}, {len(extra)} changes it never published {sorted(extra)[:10]}"
        )
    return len(got), messages


def log_lines(proc: Process, needle: str) -> list[str]:
    return [line for line in proc.log.read_text(errors="replace").splitlines() if needle in line]
