"""Breakdowns by platform and channel equal the oracle run on each value's customers alone.

The script is driven directly against the real Redis; for each dimension value the
oracle sees only the events of customers whose first delivered event carries that
value, plus one inert event that pins the watermark to the global one.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from core.settings import Settings
from metrics.exporter import build_registry
from streams.events import Event, parse_ts
from streams.state import Record, StateWriter
from tests.history import generate_history
from tests.oracle import OracleSettings, compute, diff, flatten_all
from tests.services import REDIS_URL

pytestmark = pytest.mark.integration

CORE = (
    "active_customers",
    "cohort_size",
    "cohort_retained",
    "cohort_ratio",
    "base_start_customers",
    "base_end_customers",
    "new_customers",
    "lost_customers",
    "churn_ratio",
    "crr",
)


def as_event(raw: dict[str, object]) -> Event:
    return Event(
        event_id=str(raw["event_id"]),
        customer_id=str(raw["customer_id"]),
        type=str(raw["type"]),
        ts_ms=parse_ts(raw["ts"]),  # type: ignore[arg-type]
        amount=raw.get("amount"),  # type: ignore[arg-type]
        score=raw.get("score"),  # type: ignore[arg-type]
        platform=raw.get("platform"),  # type: ignore[arg-type]
        channel=raw.get("channel"),  # type: ignore[arg-type]
    )


def scrape_after_applying(events: list[dict[str, object]], config: Settings) -> str:
    async def apply() -> None:
        redis = Redis.from_url(REDIS_URL)
        writer = StateWriter(redis, config)
        records = [Record(0, n, event=as_event(e)) for n, e in enumerate(events)]
        for start in range(0, len(records), 500):
            await writer.apply(records[start : start + 500])
        await redis.aclose()

    try:
        asyncio.run(apply())
        return generate_latest(build_registry(config)).decode()
    finally:
        client = SyncRedis.from_url(REDIS_URL)
        keys = list(client.scan_iter(f"{config.namespace}:*", count=1000))
        if keys:
            client.delete(*keys)


def expected_breakdowns(
    events: list[dict[str, object]], oracle: OracleSettings
) -> dict[tuple[str, str], dict]:
    """Oracle output per (dimension, value), computed on that value's customers only."""
    first: dict[str, dict[str, object]] = {}
    for e in events:
        first.setdefault(str(e["customer_id"]), e)
    latest = max(events, key=lambda e: parse_ts(e["ts"]))  # type: ignore[arg-type]
    pin = {
        "event_id": "__pin__",
        "customer_id": "__pin__",
        "type": "nps",
        "score": 5,
        "ts": latest["ts"],
    }
    out = {}
    for dimension in ("platform", "channel"):
        values = {str(first[c].get(dimension) or "unknown") for c in first}
        for value in values:
            members = {c for c in first if str(first[c].get(dimension) or "unknown") == value}
            subset = [e for e in events if e["customer_id"] in members] + [pin]
            out[(dimension, value)] = compute(subset, oracle)
    return out


def compare(text: str, expected: dict[tuple[str, str], dict]) -> str:
    got: dict[tuple[str, str], dict] = {}
    for (name, labels), value in flatten_all(text).items():
        if not name.startswith("retention_breakdown_"):
            continue
        rest = dict(labels)
        scope = (rest.pop("dimension"), rest.pop("value"))
        plain = "retention_" + name.removeprefix("retention_breakdown_")
        got.setdefault(scope, {})[(plain, tuple(sorted(rest.items())))] = value
    problems = []
    for scope in sorted(set(got) | set(expected)):
        want = {
            k: v
            for k, v in expected.get(scope, {}).items()
            if k[0].removeprefix("retention_") in CORE
            and ("cohort_period", "day") not in k[1]  # daily cohorts are not broken down
        }
        have = got.get(scope, {})
        if not want and all(v == 0 for v in have.values()):
            continue  # 'unknown'/'other' with no customers: exported as zeros
        problem = diff(want, have)
        if problem:
            problems.append(f"{scope}: {problem}")
    return "\n".join(problems)


def test_breakdowns_of_a_seeded_history() -> None:
    events = generate_history(seed=11, customers=400, days=70)
    config = Settings(namespace=f"b{uuid.uuid4().hex[:8]}", redis_url=REDIS_URL, shards=4)
    text = scrape_after_applying(events, config)
    problems = compare(text, expected_breakdowns(events, OracleSettings()))
    assert not problems, problems


START = datetime(2026, 1, 5, tzinfo=UTC)
TYPES = ("install", "app_open", "purchase", "uninstall", "refund")


@st.composite
def histories(draw: st.DrawFn) -> list[dict[str, object]]:
    events = []
    for n in range(draw(st.integers(1, 30))):
        at = START + timedelta(hours=draw(st.integers(0, 60 * 24)))
        event: dict[str, object] = {
            "event_id": f"e{n}",
            "customer_id": f"c{draw(st.integers(0, 5))}",
            "type": draw(st.sampled_from(TYPES)),
            "ts": at.isoformat(),
        }
        platform = draw(st.sampled_from([None, "ios", "web"]))
        channel = draw(st.sampled_from([None, "paid", "organic"]))
        if platform:
            event["platform"] = platform
        if channel:
            event["channel"] = channel
        events.append(event)
    return draw(st.permutations(events))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=histories(), window=st.sampled_from([3, 30]), kept=st.integers(1, 4))
def test_breakdowns_of_random_histories(
    events: list[dict[str, object]], window: int, kept: int
) -> None:
    config = Settings(
        namespace=f"b{uuid.uuid4().hex[:8]}",
        redis_url=REDIS_URL,
        churn_window_days=window,
        cohorts_kept=kept,
        shards=2,
    )
    text = scrape_after_applying(events, config)
    oracle = OracleSettings(churn_window_days=window, cohorts_kept=kept)
    problems = compare(text, expected_breakdowns(events, oracle))
    assert not problems, problems
