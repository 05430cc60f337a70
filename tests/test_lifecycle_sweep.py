"""Lifecycle sweeps across batches, on the real Redis scripts, against hand-worked changes.

The Kafka path is covered by test_lifecycle_topic.py; here the batches are small on
purpose, so a customer published as churned comes back in a later batch, long after
the sweep's last published day (this once crashed the sweep on every later batch).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from msgspec.structs import replace

from core.redis_client import async_client
from core.schema import SWEEP_KEYS
from core.settings import Settings
from retention.rebuild import clear_namespace
from streams.events import Event
from streams.lifecycle import LifecyclePublisher
from streams.scripts import run_scripts
from streams.state import Record, StateWriter
from tests.services import REDIS_URL

pytestmark = pytest.mark.integration

DAY0 = datetime(2026, 1, 5, 12, tzinfo=UTC)


def event(n: int, customer: str, kind: str, day: int) -> Event:
    ts = int((DAY0 + timedelta(days=day)).timestamp() * 1000)
    return Event(event_id=f"e{n}", customer_id=customer, type=kind, ts_ms=ts)


def iso(day: int) -> str:
    return (DAY0 + timedelta(days=day)).date().isoformat()


async def run(batches: list[list[Event]], settings: Settings) -> list[tuple[str, ...]]:
    """Apply each batch, sweep after it, and return the queued changes in order."""
    redis = async_client(settings, timeout=30)
    writer = StateWriter(redis, settings)
    publisher = LifecyclePublisher(redis, settings)
    offset, changes = 0, []
    try:
        for batch in batches:
            records = [Record(0, offset + i, event=e) for i, e in enumerate(batch)]
            offset += len(batch)
            await writer.apply(records)
            mark = await publisher.watermark("test")
            assert mark.day is not None
            hold = await publisher.acquire()
            await publisher.sweep(mark, hold)
            await publisher.release(hold)  # nothing published: the outbox stays
        for shard in range(settings.shards):
            outbox = publisher.keys.outbox(shard)
            for raw in await redis.lrange(outbox, 0, -1):
                customer, value = publisher.message(json.loads(raw))
                body = json.loads(value)
                changes.append(
                    (customer.decode(), body["from"], body["to"], body["at"], body["reason"])
                )
    finally:
        keys = [k async for k in redis.scan_iter(f"{settings.namespace}:*", count=1000)]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()
    return sorted(changes)


def test_customer_published_as_churned_comes_back_in_a_later_batch() -> None:
    settings = Settings(namespace=f"l{uuid.uuid4().hex[:8]}", redis_url=REDIS_URL, shards=2)
    batches = [
        [event(1, "a", "install", 0), event(2, "b", "install", 0), event(3, "b", "app_open", 35)],
        [
            event(4, "a", "app_open", 40),
            event(5, "b", "app_open", 45),
            event(6, "a", "uninstall", 90),
        ],
        [event(7, "b", "app_open", 100)],
    ]
    got = asyncio.run(run(batches, settings))
    # The lifecycle watermark is the newest event's day; days before it are complete.
    expected = [
        # a: active day 0, at risk on days 2 and 7, churned on day 30 (30 idle days),
        # back on day 40, at risk again, churned on day 70, churn event on 90 changes
        # nothing (already churned); published through day 99.
        ("a", "none", "active", iso(0), "first activity"),
        ("a", "active", "at_risk_2", iso(2), "inactive 2 days"),
        ("a", "at_risk_2", "at_risk_7", iso(7), "inactive 7 days"),
        ("a", "at_risk_7", "churned", iso(30), "inactive 30 days"),
        ("a", "churned", "active", iso(40), "resurrected"),
        ("a", "active", "at_risk_2", iso(42), "inactive 2 days"),
        ("a", "at_risk_2", "at_risk_7", iso(47), "inactive 7 days"),
        ("a", "at_risk_7", "churned", iso(70), "inactive 30 days"),
        # b: the same first month, back on 35 before churning, then on 45 and 100.
        ("b", "none", "active", iso(0), "first activity"),
        ("b", "active", "at_risk_2", iso(2), "inactive 2 days"),
        ("b", "at_risk_2", "at_risk_7", iso(7), "inactive 7 days"),
        ("b", "at_risk_7", "churned", iso(30), "inactive 30 days"),
        ("b", "churned", "active", iso(35), "resurrected"),
        ("b", "active", "at_risk_2", iso(37), "inactive 2 days"),
        ("b", "at_risk_2", "at_risk_7", iso(42), "inactive 7 days"),
        ("b", "at_risk_7", "active", iso(45), "active again"),
        ("b", "active", "at_risk_2", iso(47), "inactive 2 days"),
        ("b", "at_risk_2", "at_risk_7", iso(52), "inactive 7 days"),
        ("b", "at_risk_7", "churned", iso(75), "inactive 30 days"),
    ]
    assert got == sorted(expected)


def test_churn_event_long_after_the_last_activity() -> None:
    settings = Settings(namespace=f"l{uuid.uuid4().hex[:8]}", redis_url=REDIS_URL, shards=1)
    batches = [
        [event(1, "c", "install", 0), event(2, "d", "install", 0), event(3, "d", "app_open", 3)],
        [
            event(4, "c", "uninstall", 50),
            event(5, "d", "uninstall", 4),
            event(6, "d", "app_open", 60),
        ],
    ]
    got = asyncio.run(run(batches, settings))
    expected = [
        ("c", "none", "active", iso(0), "first activity"),
        ("c", "active", "at_risk_2", iso(2), "inactive 2 days"),
        ("c", "at_risk_2", "at_risk_7", iso(7), "inactive 7 days"),
        ("c", "at_risk_7", "churned", iso(30), "inactive 30 days"),
        ("d", "none", "active", iso(0), "first activity"),
        ("d", "active", "at_risk_2", iso(2), "inactive 2 days"),
        # day 3 (active again) was published in the first sweep, which ran to day 2
        # only (the watermark was day 3); the late uninstall on day 4 arrives later.
        ("d", "at_risk_2", "active", iso(3), "active again"),
        ("d", "active", "churned", iso(4), "churn event"),
        # d's return on day 60 is on the watermark day itself: not complete, not yet sent.
    ]
    assert got == sorted(expected)


def test_subscribers_are_not_churned_while_their_subscription_lives() -> None:
    # s subscribes monthly on day 0 (2026-01-05) and renews on day 31 (02-05) without
    # ever opening the app: the renewal lives until 03-05 + 7 days grace = day 66. y
    # subscribes annually on day 0: live past day 119. z only moves the watermark, so the
    # sweep revisits s when the renewal arrives late and when the subscription expires.
    settings = Settings(namespace=f"l{uuid.uuid4().hex[:8]}", redis_url=REDIS_URL, shards=2)
    annual = replace(event(0, "y", "subscription_start", 0), annual=True)
    batches = [
        [
            event(1, "s", "subscription_start", 0),
            annual,
            event(2, "z", "app_open", 10),
        ],
        [event(3, "s", "subscription_renew", 31), event(4, "z", "app_open", 50)],
        [event(5, "z", "app_open", 120)],
    ]
    got = [c for c in asyncio.run(run(batches, settings)) if c[0] != "z"]
    assert got == sorted(
        [
            ("s", "none", "active", iso(0), "first activity"),
            ("s", "active", "at_risk_2", iso(2), "inactive 2 days"),
            ("s", "at_risk_2", "at_risk_7", iso(7), "inactive 7 days"),
            ("s", "at_risk_7", "active", iso(31), "active again"),
            ("s", "active", "at_risk_2", iso(33), "inactive 2 days"),
            ("s", "at_risk_2", "at_risk_7", iso(38), "inactive 7 days"),
            ("s", "at_risk_7", "churned", iso(66), "subscription ended"),
            ("y", "none", "active", iso(0), "first activity"),
            ("y", "active", "at_risk_2", iso(2), "inactive 2 days"),
            ("y", "at_risk_2", "at_risk_7", iso(7), "inactive 7 days"),
        ]
    )


def test_a_sweep_read_before_another_sweep_queues_nothing_twice() -> None:
    """Buckets are read from the due set before the script runs; a second sweep that
    read the same buckets (another worker, or a retry) finds them done and skips them."""
    settings = Settings(namespace=f"l{uuid.uuid4().hex[:8]}", redis_url=REDIS_URL, shards=2)
    batch = [event(1, "a", "install", 0), event(2, "b", "install", 0)]
    batch.append(event(3, "b", "app_open", 35))

    async def sweep_twice() -> tuple[list[tuple[int, ...]], list[tuple[str, ...]]]:
        redis = async_client(settings, timeout=30)
        writer = StateWriter(redis, settings)
        publisher = LifecyclePublisher(redis, settings)
        try:
            await writer.apply([Record(0, i, event=e) for i, e in enumerate(batch)])
            mark = await publisher.watermark("test")
            hold = await publisher.acquire()
            first = await publisher.sweep_calls(mark, hold.token, hold.shards)
            stale = await publisher.sweep_calls(mark, hold.token, hold.shards)
            assert [c.keys for c in first] == [c.keys for c in stale]
            assert any(len(c.keys) > len(SWEEP_KEYS) for c in first)  # due buckets named
            replies = await run_scripts(redis, first) + await run_scripts(redis, stale)
            await publisher.release(hold)
            changes = []
            for shard in range(settings.shards):
                for raw in await redis.lrange(publisher.keys.outbox(shard), 0, -1):
                    body = json.loads(publisher.message(json.loads(raw))[1])
                    changes.append((body["customer_id"], body["to"], body["at"]))
            return [tuple(r) for r in replies], sorted(changes)
        finally:
            await clear_namespace(redis, settings.namespace)
            await redis.aclose()

    replies, changes = asyncio.run(sweep_twice())
    # the stale calls looked at no customer and queued nothing
    assert all(reply[:2] == (0, 0) for reply in replies[len(replies) // 2 :])
    # days 0-34 are complete (the watermark is day 35): a and b alike up to then
    assert changes == sorted(
        (c, to, iso(day))
        for c in "ab"
        for to, day in (("active", 0), ("at_risk_2", 2), ("at_risk_7", 7), ("churned", 30))
    )
