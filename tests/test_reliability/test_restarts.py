"""Redis and Kafka restarted mid-stream (both keep their data): the worker retries, keeps
its position and catches up. These tests restart the shared services, so each first
waits until no other pytest run uses the stack.
"""

from __future__ import annotations

import os
import random
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.oracle import key
from tests.pipeline_runner import Pipeline, Process
from tests.services import ROOT, free_port
from tests.test_reliability.support import (
    LATENESS_S,
    Clean,
    Producer,
    applied_total,
    assert_lifecycle_like_clean,
    assert_like_clean,
    chunks,
    log_lines,
    redis_client,
    wait_for,
    worker_metrics,
)

pytestmark = pytest.mark.integration


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
