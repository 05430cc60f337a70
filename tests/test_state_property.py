"""Random small histories applied by the real Redis script, compared with the oracle.

This drives StateWriter and the collector directly against the real Redis (no Kafka),
so hypothesis can try hundreds of shuffled, duplicated and late histories quickly; the
Kafka path is covered by test_pipeline.py.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from metrics.exporter import build_registry
from retention.settings import Settings
from streams.events import Event
from streams.state import Record, StateWriter
from tests.oracle import OracleSettings, compute, diff, flatten

pytestmark = pytest.mark.integration

REDIS_URL = f"redis://127.0.0.1:{os.environ.get('REDIS_PORT', '16379')}/0"
START = datetime(2026, 1, 20, tzinfo=UTC)
TYPES = ("install", "app_open", "session", "purchase", "uninstall", "subscription_cancel", "nps")


@st.composite
def histories(draw: st.DrawFn) -> list[dict[str, object]]:
    """A few customers, events over ~80 days in random delivery order, some duplicated."""
    customers = draw(st.integers(1, 5))
    events = []
    for n in range(draw(st.integers(1, 40))):
        at = START + timedelta(minutes=draw(st.integers(0, 80 * 24 * 60)))
        event = {
            "event_id": f"e{n}",
            "customer_id": f"c{draw(st.integers(0, customers - 1))}",
            "type": draw(st.sampled_from(TYPES)),
            "ts": at.isoformat(),
        }
        events.append(event)
    delivered: list[dict[str, object]] = []
    for event in draw(st.permutations(events)):
        delivered.append(event)
        if draw(st.integers(0, 9)) == 0:
            delivered.append(dict(event))  # a producer retry: the same event right after
    return delivered


def apply_and_scrape(events: list[dict[str, object]], settings_: Settings) -> str:
    async def apply() -> None:
        redis = Redis.from_url(REDIS_URL)
        writer = StateWriter(redis, settings_)
        records = [
            Record(
                0,
                offset,
                event=Event(
                    event_id=str(e["event_id"]),
                    customer_id=str(e["customer_id"]),
                    type=str(e["type"]),
                    ts_ms=int(datetime.fromisoformat(str(e["ts"])).timestamp() * 1000),
                ),
            )
            for offset, e in enumerate(events)
        ]
        for i in range(0, len(records), 7):  # several batches, as a consumer would see
            await writer.apply(records[i : i + 7])
        await writer.apply(records)  # a full replay changes nothing
        await redis.aclose()

    asyncio.run(apply())
    return generate_latest(build_registry(settings_)).decode()


def drop_namespace(namespace: str) -> None:
    client = SyncRedis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{namespace}:*", count=1000))
    if keys:
        client.delete(*keys)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=histories(),
    tz=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"]),
    week_start=st.integers(0, 6),
    window=st.sampled_from([2, 7, 30]),
    kept=st.integers(1, 5),
    shards=st.sampled_from([1, 3]),
)
def test_state_matches_oracle(
    events: list[dict[str, object]],
    tz: str,
    week_start: int,
    window: int,
    kept: int,
    shards: int,
) -> None:
    namespace = f"p{uuid.uuid4().hex[:8]}"
    config = Settings(
        namespace=namespace,
        redis_url=REDIS_URL,
        timezone=tz,
        week_start=("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")[
            week_start
        ],
        churn_window_days=window,
        cohorts_kept=kept,
        shards=shards,
    )
    try:
        text = apply_and_scrape(events, config)
    finally:
        drop_namespace(namespace)
    expected = compute(
        events,
        OracleSettings(tz=tz, week_start=week_start, churn_window_days=window, cohorts_kept=kept),
    )
    problems = diff(expected, flatten(text))
    assert not problems, problems
