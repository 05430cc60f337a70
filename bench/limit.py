"""The limit: raw aiokafka `getmany()` over a topic, decoding nothing.

Run as its own process (`python -m bench.limit BOOTSTRAP TOPIC PARTITIONS`) so it
pays the same process and event-loop costs as the workers. The consumer uses the
tracker's fetch settings and batch size, is assigned every partition (no group
join), and counts records from the first one received until the end offsets
(read before starting) are reached. Prints one JSON object.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.kafka import connect

BATCH = 5000  # = RETENTION_BATCH_MAX_EVENTS default
TIMEOUT_MS = 200


async def consume(bootstrap: str, topic: str, partitions: int) -> dict[str, float]:
    consumer = AIOKafkaConsumer(
        **connect(bootstrap),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=BATCH,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        target = sum(ends.values())
        count, nbytes, first, warmup = 0, 0, 0.0, 0
        deadline = time.monotonic() + 600
        while count < target and time.monotonic() < deadline:
            polled = await consumer.getmany(timeout_ms=TIMEOUT_MS, max_records=BATCH)
            for records in polled.values():
                count += len(records)
                nbytes += sum(len(r.value or b"") for r in records)
            if polled and not first:  # the clock starts once the first batch is in
                first, warmup = time.perf_counter(), count
        seconds = time.perf_counter() - first
    finally:
        await consumer.stop()
    timed = count - warmup
    return {"records": count, "bytes": nbytes, "seconds": seconds, "rate": timed / seconds}


def main() -> None:
    bootstrap, topic, partitions = sys.argv[1], sys.argv[2], int(sys.argv[3])
    print(json.dumps(asyncio.run(consume(bootstrap, topic, partitions))))


if __name__ == "__main__":
    main()
