"""The worker SIGKILLed at random points of its progress: each restarted worker resumes
where Redis says, and nothing is lost or counted twice.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from dataclasses import dataclass, field

import pytest
import redis

from bench.procs import tcp_ports_to
from tests.pipeline_runner import Pipeline, Process
from tests.services import PARTITIONS, REDIS_PORT
from tests.test_reliability.support import (
    LATENESS_S,
    Clean,
    applied_offsets,
    applied_total,
    assert_lifecycle_like_clean,
    assert_like_clean,
    chunks,
    log_lines,
    redis_client,
    wait_for,
)

pytestmark = pytest.mark.integration


def redis_served(r: redis.Redis, ports: set[int]) -> bool:
    """Redis has closed every connection from these ports: it reads a closed connection
    to its end before it lets go, so whatever a dead client sent has run."""
    return not ports & {int(c["addr"].rsplit(":", 1)[1]) for c in r.client_list()}


def partition_offsets(p: Pipeline) -> tuple[dict[int, int], dict[int, int]]:
    """(end, committed) per partition."""
    return asyncio.run(p._offsets(p.group))


RESUME = re.compile(r"partition (\d+) resumes from (?:the beginning|offset (\d+))")


def resumes(proc: Process) -> dict[int, int]:
    """Where the worker's first assignment resumed each partition (-1: the beginning)."""
    out: dict[int, int] = {}
    for line in log_lines(proc, "resumes from"):
        m = RESUME.search(line)
        if m and int(m[1]) not in out:
            out[int(m[1])] = int(m[2]) if m[2] is not None else -1
    return out


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
        connections = tcp_ports_to(worker.popen.pid, REDIS_PORT)
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
