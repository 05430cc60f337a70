"""A small built-in sample feed so `retention demo` shows live numbers out of the box.

It is deliberately simple (the full simulator is `retention simulate`): customers
install over the last weeks, return with a decaying probability, and sometimes buy.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

PLATFORMS = ("ios", "android", "web")
CHANNELS = ("organic", "paid", "referral")


def sample_events(
    customers: int = 500, days: int = 42, seed: int = 7, end: datetime | None = None
) -> Iterator[dict[str, object]]:
    """Yield events in time order, ending at `end` (default: now)."""
    rng = random.Random(seed)
    end = end or datetime.now(UTC)
    start = end - timedelta(days=days)
    events: list[dict[str, object]] = []
    for n in range(customers):
        events.extend(_customer_history(rng, f"cust-{n:05d}", start, days))
    events.sort(key=lambda e: str(e["ts"]))
    yield from (e for e in events if str(e["ts"]) <= end.isoformat())


def _customer_history(
    rng: random.Random, customer: str, start: datetime, days: int
) -> list[dict[str, object]]:
    first = rng.randrange(days)
    platform, channel = rng.choice(PLATFORMS), rng.choice(CHANNELS)
    stickiness = rng.uniform(0.2, 0.9)
    out = []
    for day in range(first, days):
        age = day - first
        if age and rng.random() > stickiness / (1 + 0.15 * age):
            continue
        at = start + timedelta(days=day, seconds=rng.randrange(86_400))
        kind = "install" if age == 0 else rng.choice(("app_open", "session"))
        out.append(_event(customer, kind, at, platform, channel))
        if rng.random() < 0.08:
            amount = round(rng.lognormvariate(3, 0.6), 2)
            paid = at + timedelta(minutes=5)
            out.append(_event(customer, "purchase", paid, platform, channel, amount))
    return out


def _event(
    customer: str,
    kind: str,
    at: datetime,
    platform: str,
    channel: str,
    amount: float | None = None,
) -> dict[str, object]:
    event: dict[str, object] = {
        "event_id": f"{customer}-{kind}-{int(at.timestamp() * 1000)}",
        "customer_id": customer,
        "type": kind,
        "ts": at.isoformat(),
        "platform": platform,
        "channel": channel,
    }
    if amount is not None:
        event.update(amount=amount, currency="EUR")
    return event


def encode(event: dict[str, object]) -> tuple[bytes, bytes]:
    """Kafka key and value for an event."""
    return str(event["customer_id"]).encode(), json.dumps(event).encode()
