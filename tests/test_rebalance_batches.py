"""A batch polled before the group takes partitions away is never sent to Redis after the
revocation, and commits for partitions the worker no longer holds never fail the worker.

Unit tests of the batch loop's bookkeeping (streams/pipeline/stages.py, positions.py):
Redis and Kafka are stand-ins that record what would have been sent.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from redis.exceptions import ConnectionError as RedisConnectionError

from core.settings import Settings
from streams.pipeline import outages
from streams.pipeline.positions import Repositioner, commit_positions
from streams.pipeline.stages import Batch, BatchPipeline
from streams.state import ApplyResult, ShardBatch, Span

TOPIC = "events"


def in_loop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test in a fresh event loop (the suite has no asyncio plugin)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


class Consumer:
    """The part of aiokafka's consumer the batch loop commits through."""

    def __init__(self, assigned: set[TopicPartition], error: KafkaError | None = None) -> None:
        self.assigned = assigned
        self.error = error
        self.commits: list[dict[TopicPartition, int]] = []

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.error is not None:
            raise self.error
        self.commits.append(dict(offsets))


class Sends:
    """Stands in for StateWriter.send: records each batch sent; `gate` holds a send
    until set, `failures` makes the first sends fail like an unreachable Redis."""

    def __init__(self, failures: int = 0) -> None:
        self.sent: list[dict[int, Span]] = []
        self.started = asyncio.Event()
        self.gate: asyncio.Event | None = None
        self.failures = failures

    async def __call__(
        self, shards: dict[int, ShardBatch], source: str, spans: dict[int, Span]
    ) -> ApplyResult:
        self.started.set()
        if self.failures:
            self.failures -= 1
            raise RedisConnectionError("Connection refused")
        if self.gate is not None:
            await self.gate.wait()
        self.sent.append(spans)
        return ApplyResult(applied=0)


def pipeline(sends: Sends, consumer: Consumer) -> BatchPipeline:
    """A batch loop whose Redis sends and Kafka commits are recorded, not made."""
    settings = Settings(redis_url="redis://127.0.0.1:1/0", kafka_bootstrap="127.0.0.1:1")
    p = BatchPipeline(settings)
    p.writer.send = sends  # type: ignore[method-assign]
    p.consumer = consumer  # type: ignore[assignment]
    p.sweep_due = False  # no lifecycle round: it would need Redis
    return p


def polled_batch(p: BatchPipeline, partition: int = 0, offset: int = 0) -> Batch:
    """A batch of one partition as the loop makes it, under the current generation."""
    tp = TopicPartition(TOPIC, partition)
    record: Any = type("Record", (), {"offset": offset})()
    return Batch(
        polled={tp: [record]},
        spans={partition: Span(offset - 1, offset + 1)},
        shards={},
        size=1,
        rejected=0,
        started=time.perf_counter(),
        generation=p.positions.generation,
    )


def everything(partitions: int = 2) -> set[TopicPartition]:
    return {TopicPartition(TOPIC, n) for n in range(partitions)}


@in_loop
async def test_a_batch_prepared_before_a_revocation_is_not_sent_after_it() -> None:
    sends, consumer = Sends(), Consumer(everything())
    p = pipeline(sends, consumer)
    listener = Repositioner(p.positions, consumer, p)  # type: ignore[arg-type]
    before = polled_batch(p)
    await listener.on_partitions_revoked(everything())
    await p.apply(before)
    assert sends.sent == [], "a batch polled before the revocation was sent after it"
    assert not consumer.commits and not p.tails and p.progress.batches == 0
    # a batch polled after the revocation is sent as usual
    after = polled_batch(p, offset=1)
    await p.apply(after)
    await p.drain()
    assert sends.sent == [after.spans]
    assert consumer.commits == [{TopicPartition(TOPIC, 0): 2}]


@in_loop
async def test_the_revocation_waits_for_the_send_under_way_and_its_commit() -> None:
    sends, consumer = Sends(), Consumer(everything())
    sends.gate = asyncio.Event()
    p = pipeline(sends, consumer)
    batch = polled_batch(p)
    p.inflight = asyncio.ensure_future(p.apply(batch))
    await asyncio.wait_for(sends.started.wait(), 5)
    revoking = asyncio.ensure_future(p.before_revocation())
    await asyncio.sleep(0.3)
    assert not revoking.done(), "the revocation returned while the batch was being sent"
    sends.gate.set()
    await asyncio.wait_for(revoking, 5)
    # applied and committed before the partitions were given up
    assert sends.sent == [batch.spans]
    assert consumer.commits == [{TopicPartition(TOPIC, 0): 1}]


@in_loop
async def test_a_batch_waiting_to_retry_its_send_drops_out_at_the_revocation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Redis is down: the batch waits out a long backoff. The revocation does not wait
    for the backoff, and the batch is not sent when Redis answers again."""
    monkeypatch.setattr(outages, "FIRST_BACKOFF", 60.0)
    sends, consumer = Sends(failures=1), Consumer(everything())
    p = pipeline(sends, consumer)
    p.inflight = asyncio.ensure_future(p.apply(polled_batch(p)))
    await asyncio.wait_for(sends.started.wait(), 5)
    await asyncio.sleep(0.05)  # the failed attempt is now in its backoff
    t0 = time.monotonic()
    await asyncio.wait_for(p.before_revocation(), 5)
    assert time.monotonic() - t0 < 2, "the revocation waited for the retry backoff"
    await asyncio.wait_for(p.inflight, 5)
    assert sends.sent == [] and not consumer.commits


@in_loop
async def test_a_hung_send_holds_the_revocation_only_for_the_settle_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Redis that never answers cannot hold the group: the revocation gives up after
    SETTLE_SECONDS and says so."""
    from streams.pipeline import stages

    monkeypatch.setattr(stages, "SETTLE_SECONDS", 0.3)
    sends, consumer = Sends(), Consumer(everything())
    sends.gate = asyncio.Event()  # never set
    p = pipeline(sends, consumer)
    p.inflight = asyncio.ensure_future(p.apply(polled_batch(p)))
    await asyncio.wait_for(sends.started.wait(), 5)
    t0 = time.monotonic()
    await asyncio.wait_for(p.before_revocation(), 5)
    assert 0.25 < time.monotonic() - t0 < 2
    p.inflight.cancel()


@in_loop
async def test_commits_for_revoked_partitions_are_left_out() -> None:
    held = {TopicPartition(TOPIC, 1)}
    consumer = Consumer(held)
    offsets = {tp: 10 + tp.partition for tp in everything(4)}
    await commit_positions(consumer, offsets)  # type: ignore[arg-type]
    assert consumer.commits == [{TopicPartition(TOPIC, 1): 11}]
    consumer.assigned = set()
    await commit_positions(consumer, offsets)  # type: ignore[arg-type]
    assert len(consumer.commits) == 1, "committed with nothing assigned"


@pytest.mark.parametrize(
    "error",
    [
        IllegalStateError("Partition TopicPartition(topic='events', partition=0) is not assigned"),
        CommitFailedError("the group has already rebalanced"),
    ],
)
@in_loop
async def test_a_refused_commit_is_logged_not_raised(
    error: KafkaError, caplog: pytest.LogCaptureFixture
) -> None:
    consumer = Consumer(everything(), error=error)
    with caplog.at_level(logging.WARNING):
        await commit_positions(consumer, {TopicPartition(TOPIC, 0): 5})  # type: ignore[arg-type]
    assert type(error).__name__ in caplog.text and "kept in Redis" in caplog.text
