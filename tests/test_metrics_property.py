"""Random small histories through the real Kafka -> worker -> Redis -> exporter path,
every metric checked against the oracle.

Each example gets its own pipeline (namespace, topics, consumer group, worker and
exporter processes; about 4 s), so examples are independent and may use different
settings. That cost is why the example count is small; test_state_property.py drives
the same Redis script without Kafka for hundreds of examples. Shrinking is off by
default (each step would start a pipeline); a failure prints the events and the
difference. RETENTION_PROPERTY_SHRINK=1 turns it on, RETENTION_PROPERTY_EXAMPLES=N
changes the count.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.oracle import OracleSettings, compute, diff, flatten
from tests.pipeline_runner import Pipeline

pytestmark = pytest.mark.integration

START = datetime(2026, 1, 26, tzinfo=UTC)
SPAN_MINUTES = 90 * 24 * 60
TYPES = (
    "install",
    "app_open",
    "session",
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
CUSTOMERS = ("c0", "c1", "user:{7}", "ü-ñ", "c 4", "{s:3}")
OFFSETS = (UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30)))
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
EXAMPLES = int(os.environ.get("RETENTION_PROPERTY_EXAMPLES", "15"))
PHASES = (
    tuple(Phase)
    if os.environ.get("RETENTION_PROPERTY_SHRINK")
    else (
        Phase.explicit,
        Phase.reuse,
        Phase.generate,
    )
)


@st.composite
def event_at(draw: st.DrawFn, n: int, customers: int) -> tuple[int, dict[str, Any]]:
    minute = draw(st.integers(0, SPAN_MINUTES))
    at = START + timedelta(minutes=minute, milliseconds=draw(st.integers(0, 999)))
    kind = draw(st.sampled_from(TYPES))
    ts: str | int
    if draw(st.booleans()):
        ts = int(at.timestamp() * 1000)
    else:
        ts = at.astimezone(draw(st.sampled_from(OFFSETS))).isoformat(timespec="milliseconds")
    event: dict[str, Any] = {
        "event_id": f"e{n}",
        "customer_id": CUSTOMERS[draw(st.integers(0, customers - 1))],
        "type": kind,
        "ts": ts,
    }
    if kind in MONEY_TYPES and draw(st.integers(0, 4)):
        # Cents mostly; now and then a finer amount that rounds to thousandths.
        event["amount"] = draw(
            st.one_of(
                st.integers(0, 30_000).map(lambda cents: cents / 100),
                st.sampled_from([0.0004, 0.0006, 49.9996, 150.0, 19.99, 9.99]),
            )
        )
        event["currency"] = "USD"
    if kind in ("subscription_start", "subscription_renew") and draw(st.integers(0, 2)) == 0:
        event["billing_period"] = draw(st.sampled_from(["monthly", "year", "Annual"]))
    if kind == "nps":
        event["score"] = draw(st.integers(0, 10))
    return minute, event


@st.composite
def deliveries(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Events of a few customers in delivery order: time order with some events delivered
    late (moved further down), or fully shuffled; a few re-sent right after the original."""
    customers = draw(st.integers(1, len(CUSTOMERS)))
    timed = [draw(event_at(n, customers)) for n in range(draw(st.integers(1, 45)))]
    for i in range(1, len(timed)):
        if draw(st.integers(0, 7)) == 0:
            # The same instant as an earlier event, often of the same customer (ts ties).
            minute, earlier = timed[draw(st.integers(0, i - 1))]
            same = {"ts": earlier["ts"]}
            if draw(st.booleans()):
                same["customer_id"] = earlier["customer_id"]
            timed[i] = (minute, {**timed[i][1], **same})
    if draw(st.booleans()):
        order = [e for _, e in sorted(timed, key=lambda t: t[0])]
        for i in reversed(range(len(order))):
            if draw(st.integers(0, 4)) == 0:  # late: delivered after later events
                order.insert(draw(st.integers(i, len(order) - 1)), order.pop(i))
    else:
        order = draw(st.permutations([e for _, e in timed]))
    delivered: list[dict[str, Any]] = []
    for event in order:
        delivered.append(event)
        if draw(st.integers(0, 6)) == 0:
            delivered.append(dict(event))  # a producer retry
    return delivered


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    phases=PHASES,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    events=deliveries(),
    tz=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"]),
    week_start=st.integers(0, 6),
    window=st.sampled_from([3, 14, 30]),
    kept=st.integers(1, 6),
    lateness=st.sampled_from([0, 7200, 86400 + 3600]),
    quick=st.sampled_from([7, 2]),
    nps_days=st.sampled_from([30, 5]),
    new_days=st.sampled_from([14, 3]),
    grace=st.sampled_from([7, 1]),
)
def test_pipeline_matches_oracle(
    stack: None,
    tmp_path_factory: pytest.TempPathFactory,
    events: list[dict[str, Any]],
    tz: str,
    week_start: int,
    window: int,
    kept: int,
    lateness: int,
    quick: int,
    nps_days: int,
    new_days: int,
    grace: int,
) -> None:
    p = Pipeline(
        tmp_path_factory.mktemp("prop"),
        timezone=tz,
        churn_window_days=window,
        allowed_lateness_seconds=lateness,
        cohorts_kept=kept,
        extra_env={
            "RETENTION_WEEK_START": WEEKDAYS[week_start],
            "RETENTION_QUICK_CHURN_DAYS": str(quick),
            "RETENTION_NPS_WINDOW_DAYS": str(nps_days),
            "RETENTION_RFM_NEW_DAYS": str(new_days),
            "RETENTION_SUBSCRIPTION_GRACE_DAYS": str(grace),
        },
    )
    try:
        p.start_worker()
        p.start_exporter()
        p.produce(events)
        p.wait_until_consumed(timeout=60)
        got = flatten(p.scrape_text())
        expected = compute(
            events,
            OracleSettings(
                tz=tz,
                week_start=week_start,
                churn_window_days=window,
                cohorts_kept=kept,
                allowed_lateness_seconds=lateness,
                quick_churn_days=quick,
                nps_window_days=nps_days,
                rfm_new_days=new_days,
                subscription_grace_days=grace,
            ),
        )
        problems = diff(expected, got)
        if problems:
            lines = "\n".join(json.dumps(e, ensure_ascii=False) for e in events)
            pytest.fail(f"exporter != oracle; {problems}\nevents in delivery order:\n{lines}")
    finally:
        p.close()
