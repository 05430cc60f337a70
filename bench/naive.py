"""The naive baseline: the per-event Faust agent a user writes first.

`python -m bench.naive worker -l warn --web-port N`, configured by BENCH_* variables
(set by bench.run). One `@app.agent` iterates the stream; each event is decoded
with `json.loads` and its Redis commands are awaited one at a time: de-duplication
by event id, first-seen day, a per-customer day bitmap, DAU and day-retention
counters, purchases, last seen, per-type counts (about 8 commands per event).
It computes less than the tracker (no base, churn, lifecycle, breakdowns, and late
events are not re-cohorted), so the ratio tracker/naive is if anything flattering
to the naive side.

After `BENCH_WARMUP` events it starts the clock; after `BENCH_TARGET` more events or
`BENCH_SECONDS`, whichever comes first, it writes {"events", "seconds", "rate"} to
`BENCH_RESULT`, and the benchmark stops the process.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path

import faust

from core.redis_client import async_client
from core.settings import Settings
from streams.app import broker_credentials

ENV = os.environ
NS = ENV.get("BENCH_NS", "naive")
WARMUP = int(ENV.get("BENCH_WARMUP", "2000"))
TARGET = int(ENV.get("BENCH_TARGET", "50000"))
SECONDS = float(ENV.get("BENCH_SECONDS", "60"))
RESULT = Path(ENV.get("BENCH_RESULT", "naive-result.json"))
ACTIVITY = {
    "install",
    "app_open",
    "session",
    "purchase",
    "subscription_start",
    "subscription_renew",
}
KNOWN = ACTIVITY | {"refund", "subscription_cancel", "uninstall", "nps"}
DAY_MS = 86_400_000
BITMAP_BASE_DAY = 19_723  # 2024-01-01

app = faust.App(
    ENV.get("BENCH_GROUP", "bench-naive"),
    broker=f"kafka://{ENV.get('BENCH_BOOTSTRAP', '127.0.0.1:19092')}",
    broker_credentials=broker_credentials(Settings()),
    store="memory://",
    datadir=ENV.get("BENCH_DATADIR", "/tmp/bench-naive-data"),
    topic_replication_factor=1,
)
events_topic = app.topic(
    ENV.get("BENCH_TOPIC", "events"),
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
)
redis = async_client(
    Settings(redis_url=ENV.get("BENCH_REDIS_URL", "redis://127.0.0.1:16379/0")), timeout=60
)


class Clock:
    seen = 0
    started = 0.0
    done = False


def ts_ms(value: object) -> int:
    if isinstance(value, int | float):
        return int(value)
    return int(datetime.fromisoformat(str(value)).timestamp() * 1000)


async def handle(raw: bytes) -> None:
    try:
        event = json.loads(raw)
        cid, eid, kind = event["customer_id"], event["event_id"], event["type"]
        ts = ts_ms(event["ts"])
    except (ValueError, KeyError, TypeError):
        return
    if kind not in KNOWN:
        return
    if not await redis.set(f"{NS}:ev:{cid}:{eid}", 1, nx=True, ex=30 * 86400):
        return  # duplicate
    day = ts // DAY_MS
    customer = f"{NS}:c:{cid}"
    await redis.hsetnx(customer, "first_day", day)
    first = int(await redis.hget(customer, "first_day") or day)
    if kind in ACTIVITY and not await redis.setbit(f"{NS}:a:{cid}", day - BITMAP_BASE_DAY, 1):
        await redis.hincrby(f"{NS}:dau", str(day), 1)
        await redis.hincrby(f"{NS}:retained", f"{first}:{day - first}", 1)
    if kind == "purchase":
        await redis.hincrby(customer, "purchases", 1)
        await redis.hincrbyfloat(customer, "revenue", float(event.get("amount") or 0))
    await redis.hset(customer, "last_seen", ts)
    await redis.hincrby(f"{NS}:events", kind, 1)


def tick() -> None:
    Clock.seen += 1
    if Clock.seen == WARMUP:
        Clock.started = time.perf_counter()
    elif Clock.seen > WARMUP and not Clock.done:
        elapsed = time.perf_counter() - Clock.started
        timed = Clock.seen - WARMUP
        if timed >= TARGET or elapsed >= SECONDS:
            Clock.done = True
            result = {"events": timed, "seconds": elapsed, "rate": timed / elapsed}
            RESULT.write_text(json.dumps(result))


@app.agent(events_topic)
async def track(stream: faust.StreamT[bytes]) -> None:
    async for raw in stream:
        await handle(raw)
        tick()


if __name__ == "__main__":
    app.main()
