"""Hand-written events for the oracle's unit tests, and a filter of its samples."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from tests.oracle import Key

Event = dict[str, Any]


def ev(
    event_id: str, customer: str, kind: str, day: str, time: str = "12:00:00", **extra: Any
) -> Event:
    """An event at 12:00 UTC on `day` (YYYY-MM-DD) unless a time is given."""
    return {
        "event_id": event_id,
        "customer_id": customer,
        "type": kind,
        "ts": f"{day}T{time}Z",
        **extra,
    }


def closing(evaluation_day: str) -> Event:
    """A session of a customer of its own at 00:00 the day after `evaluation_day`: that
    day becomes the running watermark day T, so the gauges are evaluated at the end of
    `evaluation_day` (C = T - 1)."""
    after = date.fromisoformat(evaluation_day) + timedelta(days=1)
    return ev(f"close-{after}", "closing", "session", after.isoformat(), "00:00:00")


def pick(got: dict[Key, float], *names: str) -> dict[Key, float]:
    """The samples of these metric names."""
    return {k: v for k, v in got.items() if k[0] in names}
