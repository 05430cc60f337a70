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
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest

from core.redis_client import async_client, sync_client
from core.settings import Settings
from metrics.exporter import build_registry
from streams.events import Event
from streams.state import Record, StateWriter
from tests.oracle import OracleSettings, compute, diff, flatten
from tests.services import REDIS_URL, STACK

pytestmark = pytest.mark.integration

START = datetime(2026, 1, 20, tzinfo=UTC)
TYPES = (
    "install",
    "app_open",
    "session",
    "purchase",
    "purchase",
    "refund",
    "uninstall",
    "subscription_start",
    "subscription_renew",
    "subscription_cancel",
    "nps",
)
MONEY_TYPES = frozenset({"purchase", "refund", "subscription_start", "subscription_renew"})
SUBSCRIBE_TYPES = frozenset({"subscription_start", "subscription_renew"})
# A subscription's billing period: mostly unsaid (monthly), sometimes named either way.
BILLING = st.sampled_from([None, None, "month", "annual", "yearly"])
# Amounts in currency units: missing, whole thousandths, or finer (rounded per event),
# including the RFM monetary edges 50 and 150.
AMOUNTS = st.one_of(
    st.none(),
    st.integers(0, 400_000).map(lambda m: m / 1000),
    st.sampled_from([0.0004, 0.0006, 0.0014, 19.9996, 49.9996, 50.0, 149.999, 150.0, 1e-7]),
)


@st.composite
def histories(draw: st.DrawFn) -> list[dict[str, object]]:
    """A few customers, events over ~80 days in random delivery order, some duplicated;
    money events carry amounts, NPS events a score 0-10."""
    customers = draw(st.integers(1, 5))
    events: list[dict[str, object]] = []
    for n in range(draw(st.integers(1, 40))):
        customer = f"c{draw(st.integers(0, customers - 1))}"
        if events and draw(st.integers(0, 7)) == 0:
            # The same instant as an earlier event, often of the same customer (ts ties).
            earlier = draw(st.sampled_from(events))
            at = datetime.fromisoformat(str(earlier["ts"]))
            if draw(st.booleans()):
                customer = str(earlier["customer_id"])
        else:
            at = START + timedelta(minutes=draw(st.integers(0, 80 * 24 * 60)))
        kind = draw(st.sampled_from(TYPES))
        event: dict[str, object] = {
            "event_id": f"e{n}",
            "customer_id": customer,
            "type": kind,
            "ts": at.isoformat(),
        }
        if kind in MONEY_TYPES:
            amount = draw(AMOUNTS)
            if amount is not None:
                event["amount"] = amount
        if kind in SUBSCRIBE_TYPES:
            period = draw(BILLING)
            if period is not None:
                event["billing_period"] = period
        if kind == "nps":
            event["score"] = draw(st.integers(0, 10))
        events.append(event)
    delivered: list[dict[str, object]] = []
    for event in draw(st.permutations(events)):
        delivered.append(event)
        if draw(st.integers(0, 9)) == 0:
            delivered.append(dict(event))  # a producer retry: the same event right after
    return delivered


def _amount(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def _score(value: object) -> int | None:
    return None if value is None else int(value)  # type: ignore[call-overload]


def apply_and_scrape(events: list[dict[str, object]], settings_: Settings) -> str:
    async def apply() -> None:
        redis = async_client(settings_, timeout=30)
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
                    amount=_amount(e.get("amount")),
                    score=_score(e.get("score")),
                    annual=e.get("billing_period") in ("annual", "yearly"),
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
    client = sync_client(STACK, timeout=10)
    keys = list(client.scan_iter(f"{namespace}:*", count=1000))
    if keys:
        client.delete(*keys)


# RETENTION_STATE_EXAMPLES=5000 for a deeper search than the default 150.
EXAMPLES = int(os.environ.get("RETENTION_STATE_EXAMPLES", "150"))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=histories(),
    tz=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"]),
    week_start=st.integers(0, 6),
    window=st.sampled_from([2, 7, 30]),
    kept=st.integers(1, 5),
    shards=st.sampled_from([1, 3]),
    buckets=st.sampled_from([1, 5, 32768]),  # customers per bucket hash: many to one
    lateness=st.sampled_from([0, 0, 3600, 86400 + 7200]),
    knobs=st.fixed_dictionaries(
        {
            "nps_window_days": st.sampled_from([30, 1, 10]),
            "quick_churn_days": st.sampled_from([7, 1, 20]),
            "clv_max_lifespan_years": st.sampled_from([5.0, 0.5]),
            "rfm_new_days": st.sampled_from([14, 1, 40]),
            "subscription_grace_days": st.sampled_from([7, 0, 3]),
        }
    ),
)
def test_state_matches_oracle(
    events: list[dict[str, object]],
    tz: str,
    week_start: int,
    window: int,
    kept: int,
    shards: int,
    buckets: int,
    lateness: int,
    knobs: dict[str, Any],
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
        customer_buckets=buckets,
        allowed_lateness_seconds=lateness,
        **knobs,
    )
    try:
        text = apply_and_scrape(events, config)
    finally:
        drop_namespace(namespace)
    expected = compute(
        events,
        OracleSettings(
            tz=tz,
            week_start=week_start,
            churn_window_days=window,
            cohorts_kept=kept,
            allowed_lateness_seconds=lateness,
            **knobs,
        ),
    )
    problems = diff(expected, flatten(text))
    assert not problems, problems


# --- regressions found by the property test, as plain examples ---------------------------


def check(events: list[dict[str, object]], **config: Any) -> None:
    namespace = f"p{uuid.uuid4().hex[:8]}"
    try:
        text = apply_and_scrape(
            events, Settings(namespace=namespace, redis_url=REDIS_URL, **config)
        )
    finally:
        drop_namespace(namespace)
    problems = diff(compute(events, OracleSettings()), flatten(text))
    assert not problems, problems


def test_cancel_counts_while_nobody_is_tracked() -> None:
    # T = 01-26 (Monday): the cancel of 01-25 lies in the last complete day and week.
    check(
        [
            {
                "event_id": "e0",
                "customer_id": "c0",
                "type": "subscription_cancel",
                "ts": "2026-01-25T10:00:00+00:00",
            },
            {
                "event_id": "e1",
                "customer_id": "c1",
                "type": "refund",
                "ts": "2026-01-26T10:00:00+00:00",
            },
        ]
    )


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_mrr_tie_does_not_depend_on_delivery_order(order: tuple[int, int]) -> None:
    # A start and a renew with the same ts: the tie goes to the larger event_id ('s5-b',
    # 3.00) whatever the delivery order.
    both: list[dict[str, object]] = [
        {
            "event_id": "s5-a",
            "customer_id": "s5",
            "type": "subscription_renew",
            "ts": "2026-04-02T10:00:00+00:00",
            "amount": 6.0,
        },
        {
            "event_id": "s5-b",
            "customer_id": "s5",
            "type": "subscription_start",
            "ts": "2026-04-02T10:00:00+00:00",
            "amount": 3.0,
        },
    ]
    check([both[i] for i in order])
