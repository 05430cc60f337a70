"""Several workers in one group through a join, a clean leave and a SIGKILL, mid-stream.

A 3,000-customer history (late events, late first days, re-sent duplicates) goes through
three workers sharing a consumer group on the stack's 3-master Redis Cluster; a fourth
joins, one leaves with SIGTERM and one is SIGKILLed while the stream is being consumed.
Every exported sample must equal the single-worker run over the same events on a
standalone Redis (and that run the metric oracle), and the lifecycle topic must hold the
changes of the lifecycle oracle.

The lifecycle oracle knows every event; the worker publishes a day once the watermark
(slowest partition's newest event time less the allowed lateness) has passed it, and
never takes a published change back. So a customer with an event that reached its
partition more than the allowed lateness behind the partition's newest one may have
had days published before that event came: for those customers the topic must hold a
consistent chain of changes ending in the oracle's final state; for everyone else,
exactly the oracle's changes.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest
from aiokafka.partitioner import murmur2

from core.settings import Settings
from tests.cluster_fixtures import CLUSTER_URL
from tests.history import generate_history
from tests.oracle import COMPARED, compute, diff, flatten, flatten_all, ts_ms
from tests.oracle.ledger import Ledger, read_ledger
from tests.oracle.lifecycle_topic import Change, lifecycle_changes, lifecycle_end, state_on
from tests.pipeline_runner import Pipeline, Process
from tests.test_reliability.support import (
    FAULT_SETTINGS,
    LATENESS_S,
    applied_total,
    chunks,
    log_lines,
    read_lifecycle,
    wait_for,
    without_invalid,
)

pytestmark = pytest.mark.integration

CUSTOMERS = 3000
DAYS = 60
# More partitions than workers, so that each of four workers holds some.
PARTITIONS = 8
RISK = Settings.model_fields["at_risk_days"].default
# The stack's 3-master Redis Cluster (or RETENTION_TEST_REDIS_CLUSTER_URL's); small
# batches, many per chunk, so that joins, leaves and the kill land between batches.
WORKER_ENV = {
    "RETENTION_REDIS_URL": CLUSTER_URL,
    "RETENTION_BATCH_MAX_EVENTS": "500",
}


@dataclass
class Expected:
    """The history and what every run over it must show."""

    history: list[dict[str, Any]]
    ledger: Ledger
    metrics: dict[Any, float]  # the metric oracle's samples
    changes: list[Change]  # the lifecycle oracle's
    end: date  # the lifecycle watermark's day once everything is in
    late: set[str]  # customers with an event beyond the allowed lateness


@dataclass
class Single:
    """The single-worker run on a standalone Redis."""

    text: str  # its exporter's /metrics
    messages: list[dict[str, Any]]  # its lifecycle topic
    seconds: float


def partition_of(customer: str) -> int:
    """The events topic's partition of a customer (the producer's default partitioner)."""
    return (murmur2(customer.encode()) & 0x7FFFFFFF) % PARTITIONS


def late_customers(history: Sequence[Mapping[str, Any]]) -> set[str]:
    """Customers with a first delivery that reached its partition more than the allowed
    lateness behind the newest event time already in that partition."""
    newest: dict[int, int] = defaultdict(int)
    seen: set[str] = set()
    late: set[str] = set()
    for ev in history:
        cid, p, ms = str(ev["customer_id"]), partition_of(str(ev["customer_id"])), ts_ms(ev["ts"])
        if ev["event_id"] not in seen and ms < newest[p] - LATENESS_S * 1000:
            late.add(cid)
        seen.add(ev["event_id"])
        newest[p] = max(newest[p], ms)
    return late


@pytest.fixture(scope="module")
def expected() -> Expected:
    history = generate_history(seed=2718, customers=CUSTOMERS, days=DAYS)
    ledger = read_ledger(history, FAULT_SETTINGS)
    partitions = {c: partition_of(c) for c in {str(e["customer_id"]) for e in history}}
    end = lifecycle_end(ledger.events, partitions, ledger)
    return Expected(
        history,
        ledger,
        compute(history, FAULT_SETTINGS),
        lifecycle_changes(ledger, end, RISK),
        end,
        late_customers(history),
    )


def read_messages(p: Pipeline, want: set[tuple[str, str, str, str]]) -> list[dict[str, Any]]:
    """Every message of the pipeline's lifecycle topic, once `want` is covered and the
    topic has been quiet for 3 s (or after 90 s); `_ms` is its Kafka timestamp."""
    records = asyncio.run(read_lifecycle(p.lifecycle_topic, want, quiet=3.0, timeout=90))
    return [{**body, "_ms": ms} for ms, body in records]


def outside_crash_window(
    messages: list[dict[str, Any]], killed_from: float, killed_by: float
) -> dict[Change, list[int]]:
    """Changes published more than once other than by the crash: a change may go out
    again only when the worker that published it was killed before trimming it from the
    outbox, so once before the kill and once after it (times in epoch seconds)."""
    times: dict[Change, list[int]] = defaultdict(list)
    for m in messages:
        times[as_change(m)].append(int(m["_ms"]))

    def crash_window(ts: list[int]) -> bool:
        return len(ts) == 2 and ts[0] <= killed_by * 1000 and ts[1] >= killed_from * 1000

    return {
        c: sorted(ts) for c, ts in times.items() if len(ts) > 1 and not crash_window(sorted(ts))
    }


def as_change(m: Mapping[str, Any]) -> Change:
    return (str(m["customer_id"]), str(m["from"]), str(m["to"]), str(m["at"]), str(m["reason"]))


def lifecycle_problems(messages: list[dict[str, Any]], exp: Expected) -> list[str]:
    """How the topic differs from the oracle: exactly its changes for customers without
    an event beyond the lateness, a consistent chain to its final state for the others."""
    got: dict[str, list[Change]] = defaultdict(list)
    for m in messages:
        change = as_change(m)
        if change not in got[change[0]]:
            got[change[0]].append(change)
    want: dict[str, list[Change]] = defaultdict(list)
    for change in exp.changes:
        want[change[0]].append(change)
    problems = []
    for c in sorted(set(got) | set(want)):
        if c not in exp.late:
            missing = [x for x in want[c] if x not in got[c]]
            extra = [x for x in got[c] if x not in want[c]]
            if missing or extra:
                problems.append(f"{c}: missing {missing}, not in the oracle {extra}")
            continue
        chain = sorted(got[c], key=lambda x: x[3])
        final = state_on(exp.ledger, c, exp.end - timedelta(days=1), RISK)
        froms = [x[1] for x in chain]
        tos = ["none", *(x[2] for x in chain[:-1])]
        if froms != tos or (chain[-1][2] if chain else "none") != final:
            problems.append(f"{c} (late events): chain {chain} does not end in {final}")
    return problems


def run_single(p: Pipeline, exp: Expected) -> Single:
    """One worker consumes the whole history."""
    p.start_worker()
    p.start_exporter()
    t0 = time.monotonic()
    p.produce(exp.history)
    p.wait_until_consumed(timeout=180)
    text = p.scrape_text()
    want = {c[:4] for c in exp.changes if c[0] not in exp.late}
    return Single(text, read_messages(p, want), time.monotonic() - t0)


@pytest.fixture(scope="module")
def single(
    expected: Expected, module_pipelines: list[Pipeline], tmp_path_factory: pytest.TempPathFactory
) -> Single:
    p = Pipeline(
        tmp_path_factory.mktemp("single"),
        allowed_lateness_seconds=LATENESS_S,
        partitions=PARTITIONS,
    )
    module_pipelines.append(p)
    run = run_single(p, expected)
    problems = diff(expected.metrics, flatten(run.text, COMPARED))
    assert not problems, f"the single-worker run differs from the oracle: {problems}"
    lifecycle = lifecycle_problems(run.messages, expected)
    assert not lifecycle, f"the single-worker run's lifecycle topic: {lifecycle[:10]}"
    distinct = {as_change(m) for m in run.messages}
    assert len(distinct) == len(run.messages), "the single worker published a change twice"
    return run


def held_partitions(proc: Process) -> set[int]:
    """The partitions a worker was ever assigned (its 'partition N resumes from' lines)."""
    return {int(line.split("partition ")[1].split()[0]) for line in log_lines(proc, "resumes from")}


def test_workers_join_leave_and_crash(pipeline, expected: Expected, single: Single) -> None:  # type: ignore[no-untyped-def]
    """Three workers; a fourth joins, one leaves with SIGTERM, one is SIGKILLed, each while
    records are being consumed; every sample and lifecycle change as with one worker."""
    rng = random.Random(99)
    p: Pipeline = pipeline(
        start=False,
        allowed_lateness_seconds=LATENESS_S,
        partitions=PARTITIONS,
        extra_env=WORKER_ENV,
    )
    p.start_exporter()
    r = p.redis()
    workers = [p.start_worker(name=f"worker-{n}") for n in range(3)]
    p.wait_for_group(3, timeout=90)
    parts = chunks(expected.history, 4, rng)
    produced = 0
    t0 = time.monotonic()

    def produce_and_reach(part: list[dict[str, Any]], share: float, what: str) -> None:
        """Produce a chunk, then wait until `share` of it is applied."""
        nonlocal produced
        base = produced
        produced += p.produce(part)
        target = base + share * len(part)
        wait_for(
            f"{what}: {target:.0f} records applied",
            lambda: applied_total(r, p.ns) >= target,
            timeout=120,
            p=p,
            every=0.02,
        )

    produce_and_reach(parts[0], 0.3, "three workers")
    joined = p.start_worker(name="worker-3")
    produce_and_reach(parts[1], 0.2, "while the fourth joins")
    p.wait_for_group(4, timeout=90)
    produce_and_reach(parts[2], 0.2, "four workers")
    leaving = workers[1]
    leaving.stop()
    assert leaving.popen.returncode == 0, f"SIGTERM exit code {leaving.popen.returncode}"
    produce_and_reach(parts[3], 0.3, "after the clean leave")
    killed = workers[2]
    held = held_partitions(killed)
    killed_from = time.time()
    killed.kill()
    killed_by = time.time()
    seconds = p.wait_until_consumed(timeout=180)
    survivors = [workers[0], joined]
    for proc in survivors:
        assert proc.alive(), f"{proc.name} died"

    # Four workers held partitions, and the killed one's were taken over.
    assigned = {proc.name: held_partitions(proc) for proc in [*workers, joined]}
    assert all(assigned.values()), f"a worker never got a partition: {assigned}"
    assert held, "the killed worker held no partition"
    messages = read_messages(p, {c[:4] for c in expected.changes if c[0] not in expected.late})
    text = p.scrape_text()
    counts = Counter(as_change(m) for m in messages)
    twice = {c: n for c, n in counts.items() if n > 1}
    print(
        f"\n{len(expected.history)} records, {CUSTOMERS} customers "
        f"({len(expected.late)} with events beyond the lateness), {PARTITIONS} partitions; "
        f"partitions held {assigned}; caught up {seconds:.1f} s after the kill, "
        f"{time.monotonic() - t0:.1f} s in all (single worker: {single.seconds:.1f} s); "
        f"lifecycle: {len(counts)} distinct changes in {len(messages)} messages, "
        f"{len(twice)} published more than once"
    )
    clean = without_invalid(flatten_all(single.text))
    full = diff(clean, without_invalid(flatten_all(text)))
    problems = diff(expected.metrics, flatten(text, COMPARED))
    assert not full and not problems, (
        f"metrics differ\nvs the single-worker run: {full}\nvs the oracle: {problems}"
    )
    lifecycle = lifecycle_problems(messages, expected)
    assert not lifecycle, f"{len(lifecycle)} customers' lifecycle differ: {lifecycle[:10]}"
    repeated = outside_crash_window(messages, killed_from, killed_by)
    assert not repeated, (
        f"{len(repeated)} changes published more than once outside the kill's window "
        f"(killed at {killed_from * 1000:.0f}): {sorted(repeated.items())[:10]}"
    )
