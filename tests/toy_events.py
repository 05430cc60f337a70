"""Hand-written events for the oracle's unit tests, and a filter of its samples."""

from __future__ import annotations

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


def pick(got: dict[Key, float], *names: str) -> dict[Key, float]:
    """The samples of these metric names."""
    return {k: v for k, v in got.items() if k[0] in names}
