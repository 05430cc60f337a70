"""Breakdowns by platform and channel against the oracle (tests/oracle/segments.py), on the
real Redis and through the whole pipeline.

Besides the oracle's numbers, every scrape is checked for the invariant a breakdown
must keep: the values of a dimension split the customers, so summed over the values
each count equals the plain total.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest

from core.redis_client import async_client, sync_client
from core.settings import Settings
from metrics.exporter import build_registry
from streams.events import Event, parse_ts
from streams.state import Record, StateWriter
from tests.history import generate_history
from tests.oracle import COMPARED, Key, OracleSettings, compute, diff, flatten, key
from tests.services import REDIS_URL
from tests.toy_events import ev

pytestmark = pytest.mark.integration

BREAKDOWN = frozenset(n for n in COMPARED if n.startswith("retention_breakdown_"))
# Breakdown counts that add up over a dimension's values to the plain metric.
ADDITIVE = (
    "active_customers",
    "cohort_size",
    "cohort_retained",
    "base_start_customers",
    "base_end_customers",
    "new_customers",
    "lost_customers",
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
        annual=raw.get("billing_period") == "annual",
    )


def scrape_after_applying(events: list[dict[str, object]], config: Settings) -> str:
    """Apply the events in order (one partition) with the worker's writer, and scrape."""

    async def apply() -> None:
        redis = async_client(config, timeout=30)
        writer = StateWriter(redis, config)
        records = [Record(0, n, event=as_event(e)) for n, e in enumerate(events)]
        for start in range(0, len(records), 500):
            await writer.apply(records[start : start + 500])
        await redis.aclose()

    try:
        asyncio.run(apply())
        return generate_latest(build_registry(config)).decode()
    finally:
        client = sync_client(config, timeout=10)
        keys = list(client.scan_iter(f"{config.namespace}:*", count=1000))
        if keys:
            client.delete(*keys)


def breakdown_problems(text: str, expected: dict[Key, float]) -> str:
    """The oracle's breakdown samples against the scrape's, then the sums against totals."""
    want = {k: v for k, v in expected.items() if k[0] in BREAKDOWN}
    problems = diff(want, flatten(text, BREAKDOWN))
    return problems or sums_differ(flatten(text))


def sums_differ(got: dict[Key, float]) -> str:
    """Where a dimension's values do not add up to the plain total."""
    sums: dict[tuple[str, Key], float] = defaultdict(float)
    for (name, labels), v in got.items():
        plain = name.removeprefix("retention_breakdown_")
        if plain in ADDITIVE and name != f"retention_{plain}":
            rest = dict(labels)
            dimension = rest.pop("dimension")
            del rest["value"]
            sums[(dimension, (f"retention_{plain}", tuple(sorted(rest.items()))))] += v
    wrong = [
        f"{dimension} {total}: {v} != {got.get(total, 0)}"
        for (dimension, total), v in sums.items()
        if v != got.get(total, 0)
    ]
    assert sums, "no breakdown samples"
    return "\n".join(wrong)


def config(**kwargs: object) -> Settings:
    return Settings(namespace=f"b{uuid.uuid4().hex[:8]}", redis_url=REDIS_URL, **kwargs)  # type: ignore[arg-type]


def test_breakdowns_of_a_seeded_history() -> None:
    events = generate_history(seed=11, customers=400, days=70)
    text = scrape_after_applying(events, config(shards=4))
    problems = breakdown_problems(text, compute(events))
    assert not problems, problems


# Hand-checked: T = 03-20 (P's nps), so the evaluation day C is 03-19.
#   N  nps 03-02 (no platform), app_open 03-03 ios       -> ios from its first activity
#   L  install 03-02 (nothing), session 03-10 android     -> moves from (not set) to android
#      paid; a late install 03-01 tv/email afterwards      -> sets nothing: first delivered
#      wins (tv is kept as a value, with no customer)
#   R  refund 03-04 web, session 03-04 (no platform)      -> (not set); web is never kept
#   O  install 03-05 "other" / "unknown"                   -> real values, not the buckets
#   U  install 03-05 "unknown" / "(not set)"               -> unknown; channel not set
#   B  install 03-06 "(other)"                             -> the (other) bucket
#   Z  session 03-19 (nothing)                              -> (not set)
HAND = [
    ev("n1", "N", "nps", "2026-03-02", score=9),
    ev("n2", "N", "app_open", "2026-03-03", platform="ios"),
    ev("l1", "L", "install", "2026-03-02"),
    ev("l2", "L", "session", "2026-03-10", platform="android", channel="paid"),
    ev("l3", "L", "install", "2026-03-01", platform="tv", channel="email"),
    ev("r1", "R", "refund", "2026-03-04", amount=1, platform="web"),
    ev("r2", "R", "session", "2026-03-04"),
    ev("o1", "O", "install", "2026-03-05", platform="other", channel="unknown"),
    ev("u1", "U", "install", "2026-03-05", platform="unknown", channel="(not set)"),
    ev("b1", "B", "install", "2026-03-06", platform="(other)"),
    ev("z1", "Z", "session", "2026-03-19"),
    ev("p1", "P", "nps", "2026-03-20", score=5),
]


def platform_active(got: dict[Key, float], value: str) -> float:
    return got[
        key("retention_breakdown_active_customers", dimension="platform", value=value, window="30d")
    ]


def test_hand_checked_breakdowns() -> None:
    expected = compute(HAND)
    platforms = {
        "ios": 1,  # N
        "android": 1,  # L
        "other": 1,  # O
        "unknown": 1,  # U
        "(other)": 1,  # B
        "(not set)": 2,  # R, Z
    }
    assert {v: platform_active(expected, v) for v in platforms} == platforms
    assert platform_active(expected, "tv") == 0
    web = key(
        "retention_breakdown_active_customers", dimension="platform", value="web", window="30d"
    )
    assert web not in expected
    paid = key(
        "retention_breakdown_active_customers", dimension="channel", value="paid", window="30d"
    )
    assert expected[paid] == 1
    text = scrape_after_applying(HAND, config(shards=2))
    problems = breakdown_problems(text, expected)
    assert not problems, problems
    got = flatten(text)
    assert {v: platform_active(got, v) for v in platforms} == platforms
    # L moved whole: its monthly cohort (March) is android's and nothing of it stayed unset.
    for value, size in (("android", 1), ("(not set)", 2)):
        labels = {"cohort": "2026-03", "cohort_period": "month", "dimension": "platform"}
        assert got[key("retention_breakdown_cohort_size", value=value, **labels)] == size


def test_the_cap_keeps_the_first_values_met_on_activity() -> None:
    # cap 2: 'web' on an nps is never kept; ios and android are; tv comes third -> (other)
    events = [
        ev("a", "A", "nps", "2026-03-02", score=3, platform="web"),
        ev("b", "B", "install", "2026-03-02", platform="ios"),
        ev("c", "C", "install", "2026-03-03", platform="android"),
        ev("d", "D", "install", "2026-03-04", platform="tv"),
        ev("e", "A", "install", "2026-03-05", platform="web"),
        ev("p", "P", "nps", "2026-03-06", score=5),  # T = 03-06: evaluated at the end of 03-05
    ]
    expected = compute(events, OracleSettings(dimension_cap=2))
    assert platform_active(expected, "(other)") == 2  # D, A
    text = scrape_after_applying(events, config(dimension_cap=2))
    problems = breakdown_problems(text, expected)
    assert not problems, problems


START = datetime(2026, 1, 5, tzinfo=UTC)
TYPES = (
    *("install", "app_open", "session", "purchase", "uninstall", "refund", "nps"),
    *("subscription_start", "subscription_renew", "subscription_cancel"),
)


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
        if event["type"] == "nps":
            event["score"] = draw(st.integers(0, 10))
        if event["type"] in ("subscription_start", "subscription_renew") and draw(st.booleans()):
            # a year-long subscription keeps its customer in the base for all 60 days
            event["billing_period"] = "annual"
        platform = draw(st.sampled_from([None, "ios", "web", "other", "unknown", "(other)"]))
        channel = draw(st.sampled_from([None, "paid", "organic", "(not set)"]))
        if platform:
            event["platform"] = platform
        if channel:
            event["channel"] = channel
        events.append(event)
    return draw(st.permutations(events))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=histories(),
    window=st.sampled_from([3, 30]),
    kept=st.integers(1, 4),
    cap=st.sampled_from([1, 2, 10]),
)
def test_breakdowns_of_random_histories(
    events: list[dict[str, object]], window: int, kept: int, cap: int
) -> None:
    settings_ = config(churn_window_days=window, cohorts_kept=kept, shards=2, dimension_cap=cap)
    text = scrape_after_applying(events, settings_)
    oracle = OracleSettings(churn_window_days=window, cohorts_kept=kept, dimension_cap=cap)
    problems = breakdown_problems(text, compute(events, oracle))
    assert not problems, problems


# --- through Kafka: Segment payloads ------------------------------------------------------


def segment(message: str, user: str, name: str, day: str, **fields: object) -> tuple[bytes, bytes]:
    """(key, value) of a Segment track call at 12:00 UTC on `day` with extra top-level fields."""
    call = {
        "type": "track",
        "messageId": message,
        "userId": user,
        "event": name,
        "timestamp": f"{day}T12:00:00Z",
        **fields,
    }
    return user.encode(), json.dumps(call).encode()


#   S1 Application Opened, context.os.name iOS and campaign source newsletter
#   S2 Application Installed, context.device.type android beside os.name Android: the
#      device type wins; Segment's own top-level "channel" (server) is not a marketing one
#   S3 Order Completed with properties.platform web: explicit beats context (os.name Mac)
#   S4 Application Opened, its first activity without context; then one with os.name iOS
SEGMENT = [
    segment("s1", "S1", "Application Opened", "2026-03-02",
            context={"os": {"name": "iOS"}, "campaign": {"source": "newsletter"}}),
    segment("s2", "S2", "Application Installed", "2026-03-02", channel="server",
            context={"device": {"type": "android"}, "os": {"name": "Android"}}),
    segment("s3", "S3", "Order Completed", "2026-03-03",
            properties={"platform": "web", "revenue": 5}, context={"os": {"name": "Mac OS X"}}),
    segment("s4", "S4", "Application Opened", "2026-03-02"),
    segment("s5", "S4", "Application Opened", "2026-03-04", context={"os": {"name": "iOS"}}),
]  # fmt: skip
# The same events as our own, written from the precedence in docs/definitions.md.
SEGMENT_AS_OURS = [
    ev("s1", "S1", "app_open", "2026-03-02", platform="iOS", channel="newsletter"),
    ev("s2", "S2", "install", "2026-03-02", platform="android"),
    ev("s3", "S3", "purchase", "2026-03-03", platform="web", amount=5),
    ev("s4", "S4", "app_open", "2026-03-02"),
    ev("s5", "S4", "app_open", "2026-03-04", platform="iOS"),
]


def test_hand_checked_and_segment_breakdowns_through_kafka(pipeline) -> None:  # type: ignore[no-untyped-def]
    p = pipeline()
    p.produce(HAND)
    p.produce(SEGMENT)
    p.wait_until_consumed()
    expected = compute(HAND + SEGMENT_AS_OURS)
    assert platform_active(expected, "iOS") == 2  # S1, S4
    text = p.scrape_text()
    problems = breakdown_problems(text, expected)
    assert not problems, problems
    got = flatten(text)
    assert platform_active(got, "android") == 2  # L, S2
    assert platform_active(got, "web") == 1  # S3
