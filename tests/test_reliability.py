"""Faults end to end: crashes, backend restarts, a lost Redis, re-sent and hostile records.

Every fault run is held to a clean run over the same events, sample by sample: the
oracle's expected samples (tests/oracle/) and every `retention_*` sample the clean
run's exporter showed (breakdowns included), and, for the customer-lifecycle topic,
the set of distinct (customer, from, to, at) changes the clean run published.

The histories of the lifecycle comparisons are delivered in time order up to a bounded
jitter that the allowed lateness covers, so which day a change falls on does not depend
on how the records were batched: a fault run must publish every change of the clean
run (duplicates allowed) and no change the clean run did not publish.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import os
import random
import re
import subprocess
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from aiokafka import AIOKafkaConsumer

from core.schema import Keys
from core.settings import BUILTIN_TYPES, Settings
from core.totals import positions
from retention.mapping import FIELDS as MAPPED_FIELDS
from streams.events import MAX_DEPTH, Event, EventDecoder, Reason, Rejected
from tests.conftest import (
    KAFKA,
    PARTITIONS,
    REDIS_PORT,
    REDIS_URL,
    ROOT,
    Pipeline,
    Process,
    free_port,
)
from tests.history import generate_history
from tests.hostile import TOKENS as HOSTILE_TOKENS
from tests.oracle import (
    COMPARED,
    Key,
    OracleSettings,
    compute,
    diff,
    flatten,
    flatten_all,
    key,
    pure_activity,
    ts_ms,
)

pytestmark = pytest.mark.integration

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


def redis_ports(pid: int) -> set[int]:
    """The local ports of a process's TCP connections to Redis (read from /proc)."""
    sockets = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            link = os.readlink(fd)
            if link.startswith("socket:["):
                sockets.add(link[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, remote, inode = (line.split()[i] for i in (1, 2, 9))
            if inode in sockets and int(remote.rsplit(":", 1)[1], 16) == REDIS_PORT:
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


def redis_served(r: redis.Redis, ports: set[int]) -> bool:
    """Redis has closed every connection from these ports: it reads a closed connection
    to its end before it lets go, so whatever a dead client sent has run."""
    return not ports & {int(c["addr"].rsplit(":", 1)[1]) for c in r.client_list()}


def redis_client() -> redis.Redis:
    return redis.Redis.from_url(REDIS_URL, socket_timeout=10, socket_connect_timeout=5)


def applied_offsets(r: redis.Redis, ns: str) -> dict[int, int]:
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


def applied_total(r: redis.Redis, ns: str) -> int:
    return sum(max(v, 0) for v in applied_offsets(r, ns).values())


EMPTY_NAMESPACE = """
local keys = redis.call('KEYS', ARGV[1])
for i = 1, #keys, 1000 do
  redis.call('UNLINK', unpack(keys, i, math.min(i + 999, #keys)))
end
return #keys
"""


def empty_namespace(r: redis.Redis, ns: str) -> int:
    """UNLINK every key of the namespace in one atomic step (a script), as if that Redis
    had been emptied: no write of the worker can land between two deletions."""
    return int(r.eval(EMPTY_NAMESPACE, 0, f"{ns}:*"))  # type: ignore[arg-type]


def safe_progress(p: Pipeline) -> tuple[int, int] | None:
    """(committed, end) summed over partitions, or None while Kafka does not answer."""
    try:
        return p.progress()
    except Exception:
        return None


def wait_consumed(p: Pipeline, timeout: float) -> float:
    """Like Pipeline.wait_until_consumed, but riding out Kafka errors (after a restart)."""

    def done() -> bool:
        got = safe_progress(p)
        return got is not None and got[0] >= got[1]

    return wait_for(f"group {p.group} to consume {p.topic}", done, timeout, p, every=0.5)


def partition_offsets(p: Pipeline) -> tuple[dict[int, int], dict[int, int]]:
    """(end, committed) per partition."""
    return asyncio.run(p._offsets(p.group))


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


def own_processes() -> set[int]:
    """This process and its ancestors (the shell that started pytest says `pytest` too)."""
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return pids


def other_pytest_runs() -> list[str]:
    out = subprocess.run(["pgrep", "-af", "pytest"], capture_output=True, text=True, check=False)
    mine = own_processes()
    return [line for line in out.stdout.splitlines() if int(line.split()[0]) not in mine]


def exclusive_stack(purpose: str) -> None:
    """Wait (polling every 20 s, up to 10 min) until no other pytest run could be disturbed
    by a restart of a shared service; skip the test if one keeps running."""
    deadline = time.monotonic() + 600
    others = other_pytest_runs()
    while others:
        print(f"waiting to {purpose}: another pytest run uses the stack: {others}")
        if time.monotonic() > deadline:
            pytest.skip(f"another pytest run kept using the stack for 10 min: {others}")
        time.sleep(20)
        others = other_pytest_runs()


def restart_service(name: str) -> float:
    """`stack.sh restart <name>` (Redis or Kafka keep their data); the seconds it took."""
    exclusive_stack(f"restart {name}")
    t0 = time.monotonic()
    done = subprocess.run(
        ["bash", "scripts/stack.sh", "restart", name],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, f"stack.sh restart {name}: {done.stdout}\n{done.stderr}"
    return time.monotonic() - t0


class HealthSampler(threading.Thread):
    """Scrapes the worker's health metrics every 0.1 s: the lowest backend_up seen."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.lowest: dict[str, float] = {}
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(0.1):
            try:
                health = worker_metrics(self.port)
            except OSError:
                continue
            for (name, labels), value in health.items():
                if name == "retention_backend_up":
                    backend = dict(labels)["backend"]
                    self.lowest[backend] = min(value, self.lowest.get(backend, value))

    def finish(self) -> dict[str, float]:
        self.halt.set()
        self.join(5)
        return self.lowest


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


async def _read_lifecycle(
    topic: str, want: set[Change] | None, quiet: float, timeout: float
) -> list[dict[str, Any]]:
    """Every message of the topic: until `want` is covered (if given) and then nothing new
    for `quiet` seconds, or the deadline."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=KAFKA, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    out: list[dict[str, Any]] = []
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
                    out.append(body)
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
    messages = asyncio.run(_read_lifecycle(p.lifecycle_topic, want, quiet, timeout))
    return {as_change(m) for m in messages}, len(messages)


# --- the clean run ----------------------------------------------------------------------


@dataclass
class Clean:
    history: list[dict[str, Any]]
    expected: dict[Key, float]  # the oracle's samples
    samples: dict[Key, float]  # every retention_* sample of the clean exporter
    changes: set[Change]
    messages: int
    seconds: float


@pytest.fixture(scope="module")
def clean(stack: None, tmp_path_factory: pytest.TempPathFactory) -> Clean:
    """One fault-free run of the history the fault tests replay, at default batch sizes."""
    history = bounded_history(seed=31337, customers=CUSTOMERS)
    expected = compute(history, FAULT_SETTINGS)
    p = Pipeline(tmp_path_factory.mktemp("clean"), allowed_lateness_seconds=LATENESS_S)
    ok = False
    try:
        p.start_worker()
        p.start_exporter()
        t0 = time.monotonic()
        p.produce(history)
        p.wait_until_consumed(timeout=180)
        text = p.scrape_text()
        changes, messages = read_changes(p, quiet=3.0)
        seconds = time.monotonic() - t0
        problems = diff(expected, flatten(text, COMPARED))
        assert not problems, f"the clean run differs from the oracle: {problems}"
        assert expected[key("retention_customers")] == CUSTOMERS
        assert len(changes) > 1000 and {c[2] for c in changes} >= {
            "active",
            "at_risk_2",
            "at_risk_7",
            "churned",
        }, f"{len(changes)} changes: {Counter(c[2] for c in changes)}"
        assert messages == len(changes), "the clean run published a change twice"
        ok = True
        return Clean(
            history, expected, without_invalid(flatten_all(text)), changes, messages, seconds
        )
    finally:
        if not ok:
            print(f"\n===== clean pipeline {p.ns} logs =====\n{p.logs()}")
        p.close()


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


RESUME = re.compile(r"partition (\d+) resumes from (?:the beginning|offset (\d+))")


def resumes(proc: Process) -> dict[int, int]:
    """Where the worker's first assignment resumed each partition (-1: the beginning)."""
    out: dict[int, int] = {}
    for line in log_lines(proc, "resumes from"):
        m = RESUME.search(line)
        if m and int(m[1]) not in out:
            out[int(m[1])] = int(m[2]) if m[2] is not None else -1
    return out


# --- 1. crashes -------------------------------------------------------------------------


@dataclass
class Kill:
    end: dict[int, int]  # produced, per partition
    applied: dict[int, int]  # offset markers in Redis
    committed: dict[int, int]  # the group's commits
    resumed: dict[int, int] = field(default_factory=dict)  # where the next worker went on


def test_sigkill_five_times(pipeline, clean: Clean) -> None:  # type: ignore[no-untyped-def]
    """The worker is SIGKILLed at random points of its progress through the stream, five
    times, and restarted on the same group each time; nothing is lost or counted twice."""
    kills_wanted = 5
    rng = random.Random(5_555)
    # Small batches: many batches per chunk, so a kill lands between apply and commit.
    p: Pipeline = pipeline(
        start=False,
        allowed_lateness_seconds=LATENESS_S,
        extra_env={"RETENTION_BATCH_MAX_EVENTS": "100"},
    )
    p.start_exporter()
    r = redis_client()
    parts = chunks(clean.history, kills_wanted + 1, rng)
    worker = p.start_worker(name="worker-0")
    kills: list[Kill] = []
    for n in range(kills_wanted):
        p.produce(parts[n])
        end_total = sum(len(c) for c in parts[: n + 1])
        base = applied_total(r, p.ns)
        target = base + rng.uniform(0.1, 0.9) * (end_total - base)
        wait_for(
            f"worker {n} to apply {target:.0f} records",
            lambda target=target: applied_total(r, p.ns) >= target,  # type: ignore[misc]
            timeout=120,
            p=p,
            every=0.003,
        )
        time.sleep(rng.uniform(0, 0.05))
        assert worker.alive(), f"worker {n} died before its kill"
        connections = redis_ports(worker.popen.pid)
        assert connections, f"worker {n} has no connection to Redis to wait for"
        worker.kill()
        wait_for(
            f"Redis to finish worker {n}'s connections",
            lambda c=connections: redis_served(r, c),  # type: ignore[misc]
            timeout=30,
            p=p,
        )
        end, committed = partition_offsets(p)
        kills.append(Kill(end, applied_offsets(r, p.ns), committed))
        worker = p.start_worker(name=f"worker-{n + 1}")
    p.produce(parts[-1])
    seconds = p.wait_until_consumed(timeout=240)

    # Each restarted worker resumed exactly where Redis said, not at the group's commits.
    for n, kill in enumerate(kills):
        restarted = next(x for x in p.processes if x.name == f"worker-{n + 1}")
        kill.resumed = resumes(restarted)
        assert set(kill.resumed) == set(range(PARTITIONS)), (n, kill.resumed, restarted.log)
        for part in range(PARTITIONS):
            assert kill.resumed[part] == kill.applied.get(part, -1), (n, part, kill)
    behind = [k for k in kills if sum(k.committed.values()) < sum(k.end.values())]
    reread = [k for k in behind if any(k.resumed[q] < k.end[q] for q in range(PARTITIONS))]
    ahead_of_commits = [
        k for k in kills if any(k.applied.get(q, 0) > k.committed[q] for q in range(PARTITIONS))
    ]
    print(
        f"\nkills={len(kills)} with uncommitted records={len(behind)} "
        f"re-read after restart={len(reread)} applied-but-uncommitted={len(ahead_of_commits)} "
        f"records re-read={sum(k.end[q] - max(k.resumed[q], 0) for k in reread for q in k.end)} "
        f"final catch-up {seconds:.1f}s"
    )
    for n, k in enumerate(kills):
        print(f"  kill {n}: end={k.end} applied={k.applied} committed={k.committed}")
    assert len(kills) >= 5
    assert reread, "no kill left records produced but not applied (nothing was redelivered)"
    p.check_alive()
    assert_like_clean(p, clean)
    distinct, messages = assert_lifecycle_like_clean(p, clean)
    print(f"lifecycle: {distinct} distinct changes in {messages} messages")


# --- 2. and 3. backend restarts ---------------------------------------------------------


def small_batch_pipeline(pipeline) -> tuple[Pipeline, Process, int]:  # type: ignore[no-untyped-def]
    """A worker with small batches (so a restart lands mid-stream), its exporter, and the
    port of its health metrics."""
    port = free_port()
    p: Pipeline = pipeline(
        start=False,
        allowed_lateness_seconds=LATENESS_S,
        extra_env={"RETENTION_BATCH_MAX_EVENTS": "50", "RETENTION_WORKER_METRICS_PORT": str(port)},
    )
    worker = p.start_worker()
    p.start_exporter()
    return p, worker, port


def test_redis_restart_mid_stream(pipeline, clean: Clean) -> None:  # type: ignore[no-untyped-def]
    exclusive_stack("restart redis")  # before the stream starts, so it is mid-stream then
    rng = random.Random(2)
    p, worker, port = small_batch_pipeline(pipeline)
    r = redis_client()
    parts = chunks(clean.history, 12, rng)
    producer = Producer(p, parts, pause=0.5)
    producer.start()
    wait_for("the worker to apply records", lambda: applied_total(r, p.ns) > 0, 60, p)
    sampler = HealthSampler(port)
    sampler.start()
    took = restart_service("redis")
    producer.finish(timeout=120)
    lowest = sampler.finish()
    seconds = wait_consumed(p, timeout=180)
    p.check_alive()
    retries = log_lines(worker, "retrying in")
    assert any("position kept" in line for line in retries), "no retry was logged"
    health = worker_metrics(port)
    assert health[key("retention_backend_retries_total", backend="redis")] > 0, health
    assert health[key("retention_backend_up", backend="redis")] == 1, health
    print(
        f"\nredis restart took {took:.1f}s; {len(retries)} retries logged, e.g. {retries[0]!r}; "
        f"health {health}; lowest backend_up seen {lowest}; "
        f"caught up {seconds:.1f}s after the last chunk"
    )
    assert_like_clean(p, clean)
    assert_lifecycle_like_clean(p, clean)


def test_kafka_restart_mid_stream(pipeline, clean: Clean) -> None:  # type: ignore[no-untyped-def]
    exclusive_stack("restart kafka")  # before the stream starts, so it is mid-stream then
    p, worker, port = small_batch_pipeline(pipeline)
    r = redis_client()
    half = len(clean.history) // 2
    p.produce(clean.history[:half])
    wait_for("the worker to apply records", lambda: applied_total(r, p.ns) > half // 10, 60, p)
    applied_before = applied_total(r, p.ns)
    sampler = HealthSampler(port)
    sampler.start()
    took = restart_service("kafka")
    wait_for("Kafka to answer", lambda: safe_progress(p) is not None, 60, p, every=0.5)
    lowest = sampler.finish()
    applied_after = applied_total(r, p.ns)
    p.produce(clean.history[half:])
    seconds = wait_consumed(p, timeout=180)
    p.check_alive()
    retries = log_lines(worker, "retrying") + log_lines(worker, "failed")
    # The broker probe runs every KAFKA_PROBE_SECONDS, so the gauge may trail the catch-up.
    kafka_up = key("retention_backend_up", backend="kafka")
    wait_for(
        "backend_up{kafka} to recover",
        lambda: worker_metrics(port)[kafka_up] == 1,
        15,
        p,
        every=0.25,
    )
    health = worker_metrics(port)
    print(
        f"\nkafka restart took {took:.1f}s with {applied_before}/{half} applied before, "
        f"{applied_after} once it answered again; "
        f"{len(retries)} retry/failure lines, e.g. {retries[:1]}; health {health}; "
        f"lowest backend_up seen during the restart {lowest}; "
        f"caught up {seconds:.1f}s after producing the rest"
    )
    assert applied_before < half, "the first half was consumed before Kafka went down"
    assert lowest.get("kafka") == 0, f"the outage never showed on the health metrics: {lowest}"
    assert health[key("retention_backend_retries_total", backend="kafka")] >= 1, health
    assert_like_clean(p, clean)
    assert_lifecycle_like_clean(p, clean)


# --- 4. Redis emptied -------------------------------------------------------------------


def test_redis_emptied_mid_stream(pipeline, clean: Clean) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(4)
    p: Pipeline = pipeline(
        start=False,
        allowed_lateness_seconds=LATENESS_S,
        extra_env={"RETENTION_BATCH_MAX_EVENTS": "100"},
    )
    worker = p.start_worker()
    p.start_exporter()
    r = redis_client()
    parts = chunks(clean.history, 10, rng)
    producer = Producer(p, parts, pause=0.4)
    producer.start()
    third = len(clean.history) // 3
    wait_for("a third to be applied", lambda: applied_total(r, p.ns) >= third, 60, p, every=0.01)
    applied_before = applied_total(r, p.ns)
    deleted = empty_namespace(r, p.ns)
    assert applied_total(r, p.ns) == 0
    producer.finish(timeout=120)
    after = sum(len(c) for c in parts) - applied_before
    assert after > 0
    seconds = p.wait_until_consumed(timeout=180)
    lines = log_lines(worker, "re-reading from there")
    assert lines, "the worker never noticed that Redis lost its state"
    print(
        f"\nemptied {deleted} keys with {applied_before} records applied; "
        f"worker: {lines[0]!r} ({len(lines)} such lines); caught up in {seconds:.1f}s"
    )
    p.check_alive()
    assert_like_clean(p, clean)
    distinct, messages = assert_lifecycle_like_clean(p, clean)
    print(f"lifecycle: {distinct} distinct changes in {messages} messages")


# --- 5. re-sent events ------------------------------------------------------------------


def heavy_customers(rng: random.Random, n: int, days: int, start: date) -> list[dict[str, Any]]:
    """n customers with hundreds of events each: purchases, refunds, visits, a subscription
    and NPS answers spread over `days` days (time-ordered)."""
    t0 = datetime(start.year, start.month, start.day, tzinfo=UTC)
    out: list[tuple[int, dict[str, Any]]] = []

    def at(day: int) -> int:
        moment = t0 + timedelta(days=day, milliseconds=rng.randrange(86_400_000))
        return int((moment - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(milliseconds=1))

    for c in range(n):
        cid = f"heavy-{c}"

        def add(kind: str, day: int, cid: str = cid, **extra: Any) -> None:
            ms = at(day)
            ev = {
                "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "customer_id": cid,
                "type": kind,
                "ts": ms
                if rng.random() < 0.5
                else datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds"),
                "platform": rng.choice(("ios", "android", "web")),
                "channel": "organic",
                **extra,
            }
            out.append((ms, ev))

        add("install", 0)
        for _ in range(rng.randint(300, 360)):
            amount = round(rng.uniform(1, 99), 2)
            add("purchase", rng.randrange(days), amount=amount, currency="EUR")
        for _ in range(rng.randint(5, 15)):
            add("refund", rng.randrange(1, days), amount=round(rng.uniform(1, 20), 2))
        for _ in range(rng.randint(300, 400)):
            add(rng.choice(("app_open", "session")), rng.randrange(days))
        add("subscription_start", 1, amount=9.99, currency="EUR")
        for d in range(31, days, 30):
            add("subscription_renew", d, amount=9.99, currency="EUR")
        for _ in range(3):
            add("nps", rng.randrange(days), score=rng.randint(0, 10))
    out.sort(key=lambda t: t[0])
    return [e for _, e in out]


def test_refeed_same_events_changes_nothing(pipeline) -> None:  # type: ignore[no-untyped-def]
    """At default settings: the same events produced again, in order and shuffled, at
    new offsets, change no exported sample."""
    rng = random.Random(55)
    start, days = date(2026, 3, 2), 60
    normal = generate_history(seed=55, customers=300, days=days, start=start)
    heavy = heavy_customers(random.Random(5_500), 5, days, start)
    # Merge the heavy customers into the normal history, roughly by time.
    merged = [(ts_ms(e["ts"]) + rng.uniform(0, 6 * HOUR_MS), n, e) for n, e in enumerate(normal)]
    merged += [(ts_ms(e["ts"]), len(normal) + n, e) for n, e in enumerate(heavy)]
    merged.sort(key=lambda t: (t[0], t[1]))
    history = [e for _, _, e in merged]
    owners: dict[str, set[str]] = {}
    for e in history:
        owners.setdefault(e["event_id"], set()).add(e["customer_id"])
    assert all(len(o) == 1 for o in owners.values()), "an event id is shared by two customers"
    per_customer = Counter(e["customer_id"] for e in history)
    assert sum(1 for c in per_customer.values() if c >= 600) == 5
    assert min(Counter(e["customer_id"] for e in heavy if e["type"] == "purchase").values()) >= 300

    p: Pipeline = pipeline()
    p.produce(history)
    p.wait_until_consumed(timeout=180)
    first_text = p.scrape_text()
    expected = compute(history, OracleSettings())
    problems = diff(expected, flatten(first_text, COMPARED))
    assert not problems, f"first pass != oracle: {problems}"
    first = without_invalid(flatten_all(first_text))
    assert first[key("retention_customers")] == 305

    shuffled = list(history)
    rng.shuffle(shuffled)
    for label, again in (("same order", history), ("shuffled", shuffled)):
        p.produce(again)
        p.wait_until_consumed(timeout=180)
        text = p.scrape_text()
        changed = diff(first, without_invalid(flatten_all(text)))
        assert not changed, f"re-sending the events ({label}) changed the metrics: {changed}"
        problems = diff(expected, flatten(text, COMPARED))
        assert not problems, f"after re-sending ({label}) != oracle: {problems}"
    p.check_alive()
    _, end = p.progress()
    print(f"\n{len(history)} events x 3 = {end} records; {len(first)} samples unchanged")


# --- 6. hostile records -----------------------------------------------------------------

TOKENS = HOSTILE_TOKENS
FIELDS = [*MAPPED_FIELDS, "properties"]
TYPES = [*sorted(BUILTIN_TYPES), "identify", "purchsae"]
ODD_TEXT = ["", "\ud800", "\udfff", "a\x00b", "\u2028", "é", "😀", '"', "\\", "x" * 200, " "]


def rand_text(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.3:
        return rng.choice(ODD_TEXT)
    if roll < 0.6:
        return "".join(chr(rng.randrange(0x20, 0x7F)) for _ in range(rng.randrange(12)))
    # any code point, surrogates included
    return "".join(chr(rng.randrange(0x110000)) for _ in range(rng.randrange(8)))


def rand_number(rng: random.Random) -> Any:
    return rng.choice(
        [
            rng.randint(-(2**70), 2**70),
            rng.uniform(-1e9, 1e9),
            rng.choice([0, -0.0, 1e306, -1e306, 1e16, 2**63, 2**64, 10**400, 1.5e12]),
            float("nan"),
            float("inf"),
            -float("inf"),
            rng.randint(946_684_800_000, 1_780_000_000_000),
        ]
    )


def rand_json(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth >= 4 or roll < 0.55:
        kind = rng.randrange(5)
        if kind == 0:
            return None
        if kind == 1:
            return rng.random() < 0.5
        if kind == 2:
            return rand_number(rng)
        return rand_text(rng)
    if roll < 0.75:
        return [rand_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {
        (rng.choice(FIELDS) if rng.random() < 0.6 else rand_text(rng)): rand_json(rng, depth + 1)
        for _ in range(rng.randrange(6))
    }


def encode(value: Any, rng: random.Random) -> bytes:
    """JSON text, non-ASCII escaped or written out (a lone surrogate as its raw bytes)."""
    return json.dumps(value, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")


def mutate(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.choice(("flip", "flip", "insert", "token", "delete", "truncate"))
        at = rng.randrange(len(out) + 1)
        if op == "flip" and out:
            out[min(at, len(out) - 1)] ^= 1 << rng.randrange(8)
        elif op == "insert":
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 6)))
        elif op == "token":
            out[at : at + rng.randrange(7)] = rng.choice(TOKENS)
        elif op == "delete":
            del out[at : at + rng.randint(1, 8)]
        else:
            del out[at:]
    return bytes(out)


def hostile_field(ev: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """A valid event with one or two fields replaced by any JSON, removed, or an edge value."""
    out = dict(ev)
    for _ in range(rng.randint(1, 2)):
        name = rng.choice(FIELDS)
        roll = rng.random()
        if roll < 0.2:
            out.pop(name, None)
        elif roll < 0.4 and name == "type":
            out[name] = rng.choice(TYPES)
        elif roll < 0.6 and name in ("amount", "score", "ts"):
            out[name] = rand_number(rng)
        else:
            out[name] = rand_json(rng)
    return out


def deeply_nested(value: bytes | None) -> bool:
    return value is not None and value.count(b"{") + value.count(b"[") > MAX_DEPTH


def nested_call(frames: int, fn: Callable[[], Any]) -> Any:
    """fn() called `frames` Python frames deeper than here."""
    return fn() if frames == 0 else nested_call(frames - 1, fn)


def nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


@dataclass
class Fuzz:
    records: list[tuple[bytes | None, bytes | None]]
    accepted: list[dict[str, Any]]  # as the oracle gets them, in produce order
    rejected: Counter[str]  # reason -> count
    reason_of: dict[str, str]  # sha256 of the value -> reason
    dropped: Counter[str]  # why generated records were left out


def fuzz_records(seed: int, total: int) -> Fuzz:
    rng = random.Random(seed)
    valid = generate_history(seed=seed, customers=800, days=45, start=date(2026, 3, 2))
    raw = [encode(e, rng) for e in valid]
    now = int(time.time() * 1000)
    decoder = EventDecoder(Settings())
    pure = pure_activity(OracleSettings())

    def candidate() -> tuple[bytes | None, bytes | None]:
        roll = rng.random()
        n = rng.randrange(len(valid))
        home = valid[n]["customer_id"].encode()
        if roll < 0.10:
            return home, raw[n]  # a re-send
        if roll < 0.55:
            return home, mutate(raw[n], rng)
        if roll < 0.70:
            return home, encode(hostile_field(valid[n], rng), rng)
        if roll < 0.90:
            return None, encode(rand_json(rng), rng)
        if roll < 0.96:
            return None, bytes(rng.randrange(256) for _ in range(rng.randrange(200)))
        if roll < 0.985:
            return home, rng.choice([None, b""])  # tombstone, empty value
        if roll < 0.99:
            return home, mutate(
                nested(rng.choice([rng.randint(40, 90), rng.randint(1000, 6000)])), rng
            )
        if roll < 0.991:
            pad = {"pad": "x" * rng.randint(65_000, 80_000)}
            return home, encode({**valid[n], "properties": pad}, rng)
        return home, encode(hostile_field(valid[n], rng), rng)

    def decide(value: bytes | None, at: int) -> Event | str:
        try:
            return decoder.decode(value, now_ms=at)
        except Rejected as exc:
            return str(exc.reason)

    def depends_on_stack(value: bytes | None, at: int, verdict: Event | str) -> bool:
        """Whether a shallow stack (a new thread's) or a deeper one than this test's
        decides otherwise."""
        with ThreadPoolExecutor(1) as pool:
            shallow = pool.submit(decide, value, at).result()
        deep = nested_call(250, lambda: decide(value, at))
        return not (verdict == shallow == deep)

    records: list[tuple[bytes | None, bytes | None]] = []
    accepted: list[dict[str, Any]] = []
    rejected: Counter[str] = Counter()
    reason_of: dict[str, str] = {}
    dropped: Counter[str] = Counter()
    # The valid history first, in order; then the rest mixed.
    queue: Iterator[tuple[bytes | None, bytes | None]] = iter(
        [(e["customer_id"].encode(), v) for e, v in zip(valid, raw, strict=True)]
    )
    while len(records) < total:
        k, value = next(queue, None) or candidate()
        verdict = decide(value, now)
        later = decide(value, now + 15 * 60_000)  # when the worker decodes it
        if type(verdict) is not type(later) or (isinstance(verdict, str) and verdict != later):
            dropped["decided differently a few minutes later"] += 1
            continue
        if deeply_nested(value):
            # the verdict is the bytes' alone, not the calling stack's
            assert not depends_on_stack(value, now, verdict), value[:200] if value else value
        if isinstance(verdict, str):
            rejected[verdict] += 1
            reason_of[hashlib.sha256(value or b"").hexdigest()] = verdict
            roll = rng.random()
            key_ = k if roll < 0.5 else None if roll < 0.7 else rng.randbytes(rng.randrange(40))
            if value is None and key_ is None:
                key_ = b"tombstone"  # Kafka needs a key or a value
            records.append((key_, value))
            continue
        if verdict.ts_ms > now:
            # ahead of the wall clock: the watermark stops at the clock, the oracle's does not
            dropped["accepted, ts ahead of the wall clock"] += 1
            continue
        assert value is not None
        try:
            doc = json.loads(value)
        except ValueError:
            dropped["accepted, but Python's json cannot read it"] += 1
            continue
        if not isinstance(doc, dict) or doc.get("messageId") is not None:
            dropped["accepted in Segment format"] += 1
            continue
        # The oracle reads the same document the same way the decoder did.
        amount = round(float(doc.get("amount") or 0) * 1000)
        mine = (doc["customer_id"], doc["type"], ts_ms(doc["ts"]), amount)
        theirs = (
            verdict.customer_id,
            verdict.type,
            verdict.ts_ms,
            round((verdict.amount or 0) * 1000),
        )
        assert mine == theirs, f"decoder and oracle read {value!r} differently: {theirs} {mine}"
        # Ids are remembered per customer for events that move counters; visits are
        # idempotent by day whatever their id: give the oracle ids with that meaning.
        if doc["type"] in pure:
            doc["event_id"] = f"visit#{len(records)}"
        else:
            doc["event_id"] = f"{doc['customer_id']}\x1f{doc['event_id']}"
        accepted.append(doc)
        records.append((verdict.customer_id.encode(), value))
    return Fuzz(records, accepted, rejected, reason_of, dropped)


def test_fuzz_hostile_records(pipeline) -> None:  # type: ignore[no-untyped-def]
    total = 100_000
    t0 = time.monotonic()
    fuzz = fuzz_records(seed=666, total=total)
    generated = time.monotonic() - t0
    port = free_port()
    p: Pipeline = pipeline(start=False, extra_env={"RETENTION_WORKER_METRICS_PORT": str(port)})
    p.start_worker()
    p.start_exporter()
    t1 = time.monotonic()
    produced = p.produce(fuzz.records)  # type: ignore[arg-type]
    t2 = time.monotonic()
    assert produced == total
    seconds = p.wait_until_consumed(timeout=300)
    p.check_alive()
    n_rejected = sum(fuzz.rejected.values())
    assert n_rejected + len(fuzz.accepted) == total
    assert len(fuzz.accepted) > 10_000 and n_rejected > 50_000
    assert fuzz.rejected.keys() >= {
        "empty",
        "oversized",
        "invalid_encoding",
        "malformed_json",
        "too_deep",
        "not_an_object",
        "missing_field",
        "wrong_type",
        "invalid_value",
        "bad_timestamp",
        "ts_out_of_range",
        "unknown_type",
    }, fuzz.rejected

    scraped = p.scrape(COMPARED | {INVALID})
    invalid = {dict(k[1])["reason"]: v for k, v in scraped.items() if k[0] == INVALID and v}
    assert invalid == dict(fuzz.rejected), f"exporter {invalid} != decoder {dict(fuzz.rejected)}"
    got = {k: v for k, v in scraped.items() if k[0] != INVALID}
    problems = diff(compute(fuzz.accepted, OracleSettings()), got)
    assert not problems, f"valid records' metrics != oracle: {problems}"

    dead = p.consume_dlq(n_rejected, timeout=120)
    reasons: Counter[str] = Counter()
    for rec in dead:
        body = json.loads(rec.value)
        sha = body["original_sha256"]
        assert fuzz.reason_of.get(sha) == body["reason"], body
        assert base64.b64decode(body["original"]) or body["original_size"] == 0
        reasons[body["reason"]] += 1
    assert len(dead) == n_rejected and reasons == fuzz.rejected, (len(dead), reasons)
    health = worker_metrics(port)
    consumed = health[key("retention_consumed_events_total")]
    assert consumed >= total, health
    p.check_alive()
    print(
        f"\n{total} records ({len(fuzz.accepted)} accepted, {n_rejected} dead-lettered: "
        f"{dict(fuzz.rejected)}); left out while generating: {dict(fuzz.dropped)}; "
        f"generated in {generated:.1f}s, produced in {t2 - t1:.1f}s, consumed in {seconds:.1f}s; "
        f"worker consumed {consumed:.0f}"
    )


# --- 7. every dead-letter reason --------------------------------------------------------


def reason_cases() -> list[tuple[bytes | None, bytes | None, str]]:
    """(key, value, reason) for every reason a record can be dead-lettered for."""
    ok = {"event_id": "", "customer_id": "", "type": "app_open", "ts": "2026-03-10T12:00:00Z"}
    n = 0

    def ev(**changes: Any) -> dict[str, Any]:
        nonlocal n
        n += 1
        e = {**ok, "event_id": f"dead-{n}", "customer_id": f"dead-customer-{n}", **changes}
        return {k: v for k, v in e.items() if v is not None}

    def js(doc: Any) -> bytes:
        return json.dumps(doc).encode()

    no_customer = ev()
    del no_customer["customer_id"]
    cases: list[tuple[bytes | None, bytes | None, str]] = [
        (b"k-tombstone", None, "empty"),
        (b"k-empty", b"", "empty"),
        (b"k-big", js(ev(properties={"blob": "x" * 70_000})), "oversized"),
        (b"k-ff", b'{"event_id": "\xff", "customer_id": "c"}', "invalid_encoding"),
        (b"k-surrogate", js(ev(customer_id="\ud800")), "invalid_encoding"),
        (b"k-cut", b'{"event_id": ', "malformed_json"),
        (b"k-nan", js(ev(type="purchase", amount=float("nan"))), "malformed_json"),
        (b"k-deep", nested(5000), "too_deep"),
        (b"k-array", b"[1, 2]", "not_an_object"),
        (b"k-null", b"null", "not_an_object"),
        (b"k-missing", js(no_customer), "missing_field"),
        (b"k-nps", js(ev(type="nps")), "missing_field"),
        (b"k-wrong", js(ev(customer_id=123)), "wrong_type"),
        (b"k-amount-text", js(ev(type="purchase", amount="9.99")), "wrong_type"),
        (b"k-negative", js(ev(type="purchase", amount=-1)), "invalid_value"),
        (b"k-huge", js(ev(type="purchase", amount=1e306)), "invalid_value"),
        (b"k-currency", js(ev(type="purchase", amount=1, currency="eur")), "invalid_value"),
        (b"k-no-offset", js(ev(ts="2026-03-10T12:00:00")), "bad_timestamp"),
        (b"k-words", js(ev(ts="yesterday")), "bad_timestamp"),
        (b"k-1999", js(ev(ts="1999-12-31T23:59:59Z")), "ts_out_of_range"),
        (b"k-2099", js(ev(ts="2099-01-01T00:00:00Z")), "ts_out_of_range"),
        (b"k-type", js(ev(type="purchsae")), "unknown_type"),
    ]
    return cases


def test_every_dead_letter_reason(pipeline) -> None:  # type: ignore[no-untyped-def]
    cases = reason_cases()
    decoder = EventDecoder(Settings())
    for _, value, reason in cases:
        with pytest.raises(Rejected) as caught:
            decoder.decode(value)
        assert caught.value.reason == reason, (value, caught.value)
    # Every reason but `undecodable`, which no input reaches: it is the safety net for an
    # unforeseen exception (tests/test_decode_fuzz.py asserts that every input has a rule).
    assert {reason for _, _, reason in cases} == {str(r) for r in Reason} - {"undecodable"}

    valid = generate_history(seed=77, customers=60, days=20, start=date(2026, 3, 2))
    records: list[tuple[bytes | None, bytes | None]] = []
    step = len(valid) // (len(cases) + 1)
    for i, e in enumerate(valid):
        records.append((e["customer_id"].encode(), json.dumps(e).encode()))
        if i % step == step - 1 and i // step < len(cases):
            k, value, _ = cases[i // step]
            records.append((e["customer_id"].encode() if i // step % 2 else k, value))
    assert sum(1 for _, v in records if v is None) == 1
    p: Pipeline = pipeline()
    p.produce(records)  # type: ignore[arg-type]
    p.wait_until_consumed()

    dead = p.consume_dlq(len(cases))
    expected = {hashlib.sha256(v or b"").hexdigest(): r for _, v, r in cases}
    assert len(dead) == len(cases), [json.loads(d.value)["reason"] for d in dead]
    for rec in dead:
        body = json.loads(rec.value)
        assert body["reason"] == expected[body["original_sha256"]], body
        assert body["topic"] == p.topic and isinstance(body["offset"], int)
        assert isinstance(body["detail"], str) and body["detail"]
    assert Counter(json.loads(d.value)["reason"] for d in dead) == Counter(r for *_, r in cases)
    tombstones = [d for d in dead if json.loads(d.value)["original_size"] == 0]
    assert len(tombstones) == 2

    scraped = p.scrape(COMPARED | {INVALID})
    invalid = {dict(k[1])["reason"]: v for k, v in scraped.items() if k[0] == INVALID and v}
    assert invalid == dict(Counter(r for *_, r in cases))
    got = {k: v for k, v in scraped.items() if k[0] != INVALID}
    problems = diff(compute(valid, OracleSettings()), got)
    assert not problems, problems
    p.check_alive()
