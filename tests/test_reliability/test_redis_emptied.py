"""Redis emptied mid-stream: the worker notices that its state is gone and re-reads the
topic from there.
"""

from __future__ import annotations

import random

import pytest
import redis

from tests.pipeline_runner import Pipeline
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
