"""The aiokafka clients of the pipeline, configured for exact resumption from Redis.

The consumer never commits on its own and never jumps to an offset by itself: where it
reads is always set from the offset markers in Redis (streams/pipeline/positions.py).
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from core.kafka import client_options
from core.settings import Settings

PRODUCER_BATCH_BYTES = 1024 * 1024
# How long the group waits for members to rejoin a rebalance: long enough for a worker
# to finish the batch it is sending before it gives partitions up (stages.py), and below
# the JoinGroup request's timeout (aiokafka's request_timeout_ms, 40 s).
REBALANCE_TIMEOUT_MS = 30_000


def make_consumer(settings: Settings) -> AIOKafkaConsumer:
    """The events consumer; it must be made inside the running event loop."""
    return AIOKafkaConsumer(
        **client_options(settings),
        group_id=settings.group_id,
        enable_auto_commit=False,
        # positions always come from Redis (Repositioner); never jump silently
        auto_offset_reset="none",
        max_poll_records=settings.batch_max_events,
        rebalance_timeout_ms=REBALANCE_TIMEOUT_MS,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )


def make_producer(settings: Settings) -> AIOKafkaProducer:
    """The producer for dead letters and lifecycle changes; made inside the event loop."""
    return AIOKafkaProducer(
        **client_options(settings),
        acks="all",
        enable_idempotence=True,
        # a batch's lifecycle changes go out together: with idempotence only one
        # request per partition is in flight, so the default 16 KiB batches made
        # publishing wait on dozens of round trips
        max_batch_size=PRODUCER_BATCH_BYTES,
        linger_ms=5,
        max_request_size=max(PRODUCER_BATCH_BYTES, 2 * settings.max_event_bytes + 65536),
    )


async def partitions_of(consumer: AIOKafkaConsumer, topic: str) -> list[int]:
    """The topic's partition numbers from fresh metadata (empty when it does not exist)."""
    metadata = await consumer._client.fetch_all_metadata()
    return sorted(metadata.partitions_for_topic(topic) or ())
