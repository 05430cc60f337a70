"""Workers join and leave the group while the stream is consumed: every exported sample
equals the clean single-worker run's, and the lifecycle topic holds each of its changes
exactly once (a join or a clean leave is no crash window).
"""

from __future__ import annotations

import random
import time

import pytest

from tests.pipeline_runner import Pipeline, Process
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
)

pytestmark = pytest.mark.integration

# Small batches and a slow stream, so a rebalance lands while batches are in flight.
BATCH = "150"
PARTS = 12
PAUSE = 0.4


def streaming(pipeline, clean: Clean, seed: int) -> tuple[Pipeline, Producer]:  # type: ignore[no-untyped-def]
    """A pipeline of small batches and a producer that feeds it the clean history in
    chunks with pauses between them (not started yet)."""
    p: Pipeline = pipeline(
        start=False,
        allowed_lateness_seconds=LATENESS_S,
        extra_env={"RETENTION_BATCH_MAX_EVENTS": BATCH},
    )
    p.start_exporter()
    parts = chunks(clean.history, PARTS, random.Random(seed))
    return p, Producer(p, parts, PAUSE)


def wait_applied(p: Pipeline, share: float, total: int) -> None:
    r = redis_client()
    target = share * total
    wait_for(
        f"{target:.0f} of {total} records applied",
        lambda: applied_total(r, p.ns) >= target,
        timeout=120,
        p=p,
        every=0.02,
    )


def assert_exactly_like_clean(p: Pipeline, clean: Clean) -> None:
    """Every sample equal, every change of the clean run on the topic, none twice."""
    assert_like_clean(p, clean)
    distinct, messages = assert_lifecycle_like_clean(p, clean)
    print(f"lifecycle: {distinct} distinct changes in {messages} messages")
    assert messages == distinct, f"{messages - distinct} changes published twice"


def dropped(workers: list[Process]) -> int:
    """Batches polled before a rebalance that the workers did not send."""
    return sum(len(log_lines(w, "polled before a rebalance was not applied")) for w in workers)


def test_workers_join_mid_stream(pipeline, clean: Clean) -> None:  # type: ignore[no-untyped-def]
    """One worker consumes; a second joins at a quarter of the stream and a third at
    half; each join moves partitions while batches are being applied."""
    p, producer = streaming(pipeline, clean, seed=13)
    total = len(clean.history)
    workers = [p.start_worker(name="worker-a")]
    p.wait_for_group(1)
    producer.start()
    for share, name in ((0.25, "worker-b"), (0.5, "worker-c")):
        wait_applied(p, share, total)
        workers.append(p.start_worker(name=name))
        p.wait_for_group(len(workers))
    producer.finish(timeout=120)
    seconds = p.wait_until_consumed(timeout=240)
    p.check_alive()
    print(f"\n3 workers caught up {seconds:.1f}s after the last chunk; dropped {dropped(workers)}")
    assert_exactly_like_clean(p, clean)


def test_a_worker_leaves_cleanly_mid_stream(pipeline, clean: Clean) -> None:  # type: ignore[no-untyped-def]
    """Three workers share the stream; one is stopped with SIGTERM at 40 % of it and
    leaves the group cleanly: no crash, and the others take its partitions over."""
    p, producer = streaming(pipeline, clean, seed=17)
    total = len(clean.history)
    workers = [p.start_worker(name=f"worker-{n}") for n in "abc"]
    p.wait_for_group(3)
    producer.start()
    wait_applied(p, 0.4, total)
    leaving = workers[1]
    t0 = time.monotonic()
    leaving.stop(timeout=30)
    took = time.monotonic() - t0
    assert leaving.popen.returncode == 0, f"the leaving worker exited {leaving.popen.returncode}"
    p.wait_for_group(2)
    producer.finish(timeout=120)
    seconds = p.wait_until_consumed(timeout=240)
    p.check_alive()
    text = leaving.log.read_text(errors="replace")
    assert "Traceback" not in text, text[-3000:]
    print(
        f"\nSIGTERM to exit {took:.1f}s; caught up {seconds:.1f}s after the last chunk; "
        f"dropped {dropped(workers)}"
    )
    assert_exactly_like_clean(p, clean)
