"""The customer-lifecycle topic holds exactly the changes an oracle predicts, once each.

A history goes through the real Kafka, worker and Redis; the oracle replays the
definition (state per complete day, a change whenever it differs from the day
before) over the same events, and a second consumer group replaying the whole
topic must publish nothing more.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from datetime import UTC, date, datetime, timedelta

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import DefaultPartitioner

from core.segments import SEGMENTS
from tests.pipeline_runner import Pipeline
from tests.services import KAFKA

pytestmark = pytest.mark.integration

START = datetime(2026, 4, 6, tzinfo=UTC)
DAYS = 45
WINDOW = 10
RISK = (2, 5)
LATENESS_S = 2 * 3600
PARTITIONS = 4

Change = tuple[str, str, str, str, str]  # customer, from, to, at, reason


def history(seed: int, customers: int) -> list[dict[str, object]]:
    """Installs, visits with gaps of varying length, some uninstalls; roughly time-ordered."""
    rng = random.Random(seed)
    events: list[dict[str, object]] = []
    for n in range(customers):
        cid = f"life-{n:04d}"
        day = rng.randrange(DAYS - 5)
        kind = "install"
        while day < DAYS:
            at = START + timedelta(days=day, seconds=rng.randrange(86_400))
            events.append(
                {
                    "event_id": f"{cid}-{len(events)}",
                    "customer_id": cid,
                    "type": kind,
                    "ts": at.isoformat(),
                }
            )
            if rng.random() < 0.04:
                churn_at = at + timedelta(minutes=rng.randrange(1, 600))
                events.append(
                    {
                        "event_id": f"{cid}-{len(events)}",
                        "customer_id": cid,
                        "type": "uninstall",
                        "ts": churn_at.isoformat(),
                    }
                )
            kind = "app_open"
            day += rng.choice([1, 1, 1, 2, 3, 4, 6, 9, 12, 20])
    events.sort(key=lambda e: str(e["ts"]))
    # Local disorder within an hour (inside the allowed lateness) and a few retries.
    delivered: list[dict[str, object]] = []
    for i, event in enumerate(events):
        delivered.append(event)
        if rng.random() < 0.02:
            delivered.append(dict(event))
        if i and rng.random() < 0.1:
            a, b = delivered[-1], delivered[-2]
            gap = datetime.fromisoformat(str(a["ts"])) - datetime.fromisoformat(str(b["ts"]))
            if gap < timedelta(hours=1):
                delivered[-1], delivered[-2] = b, a
    return delivered


def lifecycle_day(events: list[dict[str, object]]) -> date:
    """Day of the slowest partition's newest event time, less the lateness."""
    partitioner = DefaultPartitioner()
    newest: dict[int, datetime] = {}
    for e in events:
        p = partitioner(str(e["customer_id"]).encode(), list(range(PARTITIONS)), [])
        ts = datetime.fromisoformat(str(e["ts"]))
        newest[p] = max(newest.get(p, ts), ts)
    return (min(newest.values()) - timedelta(seconds=LATENESS_S)).date()


def expected_changes(events: list[dict[str, object]]) -> list[Change]:
    active: dict[str, set[date]] = {}
    churn: dict[str, set[date]] = {}
    for e in {str(e["event_id"]): e for e in events}.values():
        day = datetime.fromisoformat(str(e["ts"])).date()
        target = churn if e["type"] == "uninstall" else active
        target.setdefault(str(e["customer_id"]), set()).add(day)
    end = lifecycle_day(events)
    changes: list[Change] = []
    for cid, days in active.items():
        previous, t = "none", min(days)
        while t < end:
            last = max(d for d in days if d <= t)
            gap = (t - last).days
            churned = gap >= WINDOW or any(last <= c <= t for c in churn.get(cid, ()))
            if churned:
                state = "churned"
            elif gap >= RISK[1]:
                state = f"at_risk_{RISK[1]}"
            elif gap >= RISK[0]:
                state = f"at_risk_{RISK[0]}"
            else:
                state = "active"
            if state != previous:
                changes.append((cid, previous, state, t.isoformat(), why(previous, state, gap)))
                previous = state
            t += timedelta(days=1)
    return sorted(changes)


def why(previous: str, state: str, gap: int) -> str:
    if state == "active":
        return {"none": "first activity", "churned": "resurrected"}.get(previous, "active again")
    if state == "churned":
        return f"inactive {WINDOW} days" if gap >= WINDOW else "churn event"
    return f"inactive {gap} days"


async def read_topic(topic: str, expected: int, linger: float = 3.0) -> list[dict[str, object]]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=KAFKA, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    out: list[dict[str, object]] = []
    try:
        deadline = time.monotonic() + 90
        quiet_until = None
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    body = json.loads(record.value)
                    assert record.key.decode() == body["customer_id"]
                    # Kafka's default key partitioning, so a customer's changes stay in order
                    partitions = sorted(consumer.partitions_for_topic(topic) or ())
                    assert len(partitions) > 1
                    assert record.partition == DefaultPartitioner()(record.key, partitions, [])
                    out.append(body)
            if len(out) >= expected:
                quiet_until = quiet_until or time.monotonic() + linger
                if time.monotonic() >= quiet_until:
                    break
    finally:
        await consumer.stop()
    return out


def as_changes(messages: list[dict[str, object]]) -> list[Change]:
    return sorted(
        (str(m["customer_id"]), str(m["from"]), str(m["to"]), str(m["at"]), str(m["reason"]))
        for m in messages
    )


def test_lifecycle_changes_are_published_once(pipeline) -> None:  # type: ignore[no-untyped-def]
    p: Pipeline = pipeline(
        churn_window_days=WINDOW,
        allowed_lateness_seconds=LATENESS_S,
        extra_env={"RETENTION_AT_RISK_DAYS": ",".join(map(str, RISK))},
    )
    events = history(seed=5, customers=240)
    expected = expected_changes(events)
    assert len(expected) > 500 and {c[2] for c in expected} >= {
        "active",
        "at_risk_2",
        "at_risk_5",
        "churned",
    }
    p.produce(events)
    p.wait_until_consumed()
    messages = asyncio.run(read_topic(p.lifecycle_topic, len(expected)))
    assert {m["segment"] for m in messages} <= set(SEGMENTS)
    got = as_changes(messages)
    assert len(got) == len(set(got)), "a change was published twice"
    assert got == expected

    # Replaying the whole topic with a new consumer group publishes nothing again.
    replay = f"{p.group}-replay"
    p.start_worker(group=replay)
    p.wait_until_consumed(group=replay)
    again = asyncio.run(read_topic(p.lifecycle_topic, len(expected)))
    assert as_changes(again) == expected
