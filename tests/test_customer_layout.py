"""How customers are stored: many per bucket hash, each one binary blob (customer.lua).

The codec is exercised through the real Lua (prepended to a tiny test script, as the
batch and sweep scripts prepend it) on the real Redis; field names are checked in
Python and Lua both.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from core.redis_client import async_client, sync_client
from core.schema import Keys, customer_field, customer_of_field
from core.settings import Settings
from streams.events import Event
from streams.lifecycle import LifecyclePublisher
from streams.scripts import load_script
from streams.state import Record, StateWriter
from tests.services import REDIS_URL, STACK

DAY0 = datetime(2026, 3, 2, 12, tzinfo=UTC)
IDS = [
    "0f8fad5b-d9cb-469f-a165-70867728950e",  # canonical UUID: 16 raw bytes
    "0F8FAD5B-D9CB-469F-A165-70867728950E",  # not canonical: kept as text
    "sixteen-chars-id",  # 16 bytes of text: behind a 0xff byte
    "c-42",
    "kundin-ä-🙂",
    "x" * 128,
]

# Encode each state, decode it again, and return both as JSON; also the customer id of
# each field. cjson cannot tell a missing key from nil, so states are compared as JSON.
ROUND_TRIP = """
local out = {}
for _, st in ipairs(cjson.decode(ARGV[1])) do
  local blob = encode_customer(st)
  local back = decode_customer(blob)
  back.bytes = #blob
  back.due_header = due_day(blob)
  out[#out + 1] = back
end
local ids = {}
for i = 2, #ARGV do ids[#ids + 1] = customer_id(ARGV[i]) end
return cjson.encode({ states = out, ids = ids })
"""


def test_customer_field_round_trip() -> None:
    fields = [customer_field(c) for c in IDS]
    assert len(fields[0]) == 16
    assert fields[1] == IDS[1].encode()
    assert fields[2] == b"\xff" + IDS[2].encode()
    assert len(set(fields)) == len(fields)
    assert [customer_of_field(f) for f in fields] == IDS


def test_keys_spread_customers_over_buckets_of_their_shard() -> None:
    keys = Keys("t", shards=4, buckets=64)
    buckets = {keys.customer(f"c{n}")[0] for n in range(2000)}
    assert len(buckets) == 64
    for n in range(50):
        bucket, _ = keys.customer(f"c{n}")
        assert bucket.startswith(keys.bucket_prefix(keys.shard_of(f"c{n}")))


@pytest.mark.integration
def test_blob_round_trip_in_lua() -> None:
    base = 20512  # a multiple of 8, as rebase keeps it
    ms = base * 86_400_000
    states = [
        {"o": base, "a": "\x01", "e": "abcdef", "f": ms + 5, "l": ms + 5},
        {
            "o": base,
            "a": "\x81\x00\x07",
            "x": "\x02",
            "v": ["", "\x81"],  # the second pure activity type on two days
            "s": "\x01",
            "k": "\x04",
            "e": "abcdefghijkl",
            "f": ms - 5 * 3_600_000,  # before the base day's UTC midnight (UTC+5 zone)
            "l": ms + 20 * 86_400_000 + 1,
            "p": 3,
            "r": 123_456_789_012,
            "q": 1,
            "sa": 9990,
            "st": ms + 86_400_000,
            "si": "renew-7",
            "y": "\x01",  # the subscribe day is annual
            "sy": 1,
            "g": "P0\tC3",
            "pt": base + 19,
            "ls": "at_risk_7",
            "due": base + 25,
            "pd": base + 17,
            # NPS answers: day, ts (one before its day's UTC midnight), score, event id
            "n": [[base + 3, ms + 3 * 86_400_000 - 1, 9, "nps-1"], [base + 40, ms, 0, "x" * 128]],
            "pb": "\x03",  # purchases on the first two days
            "pm": "\x02",  # two or more on the second
        },
        {"o": base, "e": "abcdef", "f": ms, "l": ms, "n": [[base, ms, 7, "only"]]},
        {"o": base, "a": "\x01", "e": "abcdef", "f": ms, "l": ms, "pt": base, "ls": "churned"},
        *(
            {"o": base, "e": "abcdef", "f": ms, "l": ms, "g": g}
            for g in ("Pu\tCo", "P12\tC99", "P05\tC1", "P0\tC", "P200\tC1", "other")
        ),
    ]
    client = sync_client(STACK, timeout=10)
    try:
        fields = [customer_field(c) for c in IDS]
        script = load_script("customer.lua") + ROUND_TRIP
        raw = client.eval(script, 0, json.dumps(states), *fields)
    finally:
        client.close()
    got = json.loads(raw)
    assert got["ids"] == IDS
    empty = {"a": "", "v": {}, "x": "", "s": "", "k": "", "y": "", "e": "", "si": ""}
    empty |= {"p": 0, "r": 0, "q": 0, "sy": 0}
    empty["n"] = {}  # an empty Lua table: cjson writes an object
    empty |= {"pb": "", "pm": ""}
    sizes = []
    for sent, back in zip(states, got["states"], strict=True):
        assert back.pop("due_header", None) == sent.get("due")
        sizes.append(back.pop("bytes"))
        assert back == {**empty, "sa": 0, **sent}
    # o/8 (2 bytes), due, mask, a (2), v (nil), e (one 6-byte id: 7), f, l (1 each here)
    assert sizes[0] == 16


def event(n: int, customer: str, kind: str, day: int) -> Event:
    ts = int((DAY0 + timedelta(days=day)).timestamp() * 1000)
    return Event(event_id=f"e{n}", customer_id=customer, type=kind, ts_ms=ts)


@pytest.mark.integration
def test_one_bucket_holds_many_customers_and_the_sweep_names_them() -> None:
    settings = Settings(
        namespace=f"b{uuid.uuid4().hex[:8]}", redis_url=REDIS_URL, shards=1, customer_buckets=1
    )
    keys = Keys(settings.namespace, 1, 1)
    customers = [*IDS, *(str(uuid.UUID(int=n)) for n in range(1, 40))]

    async def run() -> tuple[dict[bytes, bytes], list[tuple[str, str, str]], str]:
        redis = async_client(settings, timeout=30)
        writer = StateWriter(redis, settings)
        publisher = LifecyclePublisher(redis, settings)
        try:
            # everyone active on day 0 and again (a duplicate too) on day 1; the first
            # customer also on day 3, which moves the watermark so days 0-2 are complete
            batch = [event(i, c, "install", 0) for i, c in enumerate(customers)]
            batch += [event(100 + i, c, "app_open", 1) for i, c in enumerate(customers)]
            batch += [
                event(100, customers[0], "app_open", 1),
                event(999, customers[0], "session", 3),
            ]
            await writer.apply([Record(0, i, event=e) for i, e in enumerate(batch)])
            mark = await publisher.watermark("test")
            assert mark.day is not None
            hold = await publisher.acquire()
            await publisher.sweep(mark, hold)
            await publisher.release(hold)  # nothing published: the outbox stays
            bucket = keys.customer(customers[0])[0]
            stored = await redis.hgetall(bucket)
            encoding = (await redis.object("encoding", bucket)).decode()
            changes = []
            for raw in await redis.lrange(keys.outbox(0), 0, -1):
                customer, value = publisher.message(json.loads(raw))
                body = json.loads(value)
                assert body["customer_id"] == customer.decode()
                changes.append((customer.decode(), body["to"], body["at"]))
            return stored, changes, encoding
        finally:
            found = [k async for k in redis.scan_iter(f"{settings.namespace}:*", count=1000)]
            if found:
                await redis.delete(*found)
            await redis.aclose()

    stored, changes, encoding = asyncio.run(run())
    assert sorted(customer_of_field(f) for f in stored) == sorted(customers)
    assert encoding == "listpack"
    # complete days 0-2: everyone became active on day 0 and was not idle 2 days yet
    assert sorted(changes) == sorted((c, "active", DAY0.date().isoformat()) for c in customers)
