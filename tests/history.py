"""Test histories: `retention simulate`'s generator, delivered the way real clients send.

`generate_history(seed, ...)` returns the event dicts in the order they are produced to
Kafka. The events come from the generator's `varied` preset (lapsers who come back
after more than 30 days, whales, refunds with and without amounts, purchases priced to
4 decimals, reinstalls, subscriptions on several plans with plan changes, cancels and
re-subscriptions, NPS answers, events around local midnight, customer ids with braces,
colons, spaces and non-ASCII), and the delivery order is realistic rather than clean:

* mostly time order, with local shuffles of up to a few hours;
* ~3% of events delivered 1-5 days late;
* ~3.5% of returning customers whose first active day is delivered after a later one
  (a late first event moves the customer to an earlier cohort);
* ~2% exact duplicates, re-sent among the customer's next 5 events (re-sends at any
  distance are covered by the re-feed tests);
* `ts` a mix of RFC 3339 strings with various UTC offsets and epoch-ms integers.

The expected numbers come from tests/oracle/, which reads only these events.
"""

from __future__ import annotations

from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from core.settings import Settings
from retention.simulate.delivery import Delivery, deliver
from retention.simulate.generator import Simulator
from retention.simulate.presets import preset_config

ACTIVITY = Settings.model_fields["activity_types"].default


def generate_history(
    seed: int,
    customers: int = 2000,
    days: int = 60,
    start: date = date(2026, 3, 2),
    tz: str = "UTC",
    very_late: float = 0.0,
) -> list[dict[str, Any]]:
    """Event dicts in delivery order (duplicates included).

    `very_late` is an extra fraction of events delivered 10-45 days late (beyond the
    churn window), off by default.
    """
    config = preset_config(
        "varied", start, seed=seed, customers=customers, days=days, zone=ZoneInfo(tz), ids="odd"
    )
    delivery = Delivery(
        shuffle_hours=3,
        late=0.03,
        very_late=very_late,
        late_first=0.035,
        duplicates=0.02,
        mixed_ts=True,
    )
    return deliver(Simulator(config).run(), delivery, seed, ACTIVITY)


def unique_events(delivered: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The history without re-sent duplicates (first delivery of each event_id), in order."""
    seen: dict[str, dict[str, Any]] = {}
    for ev in delivered:
        seen.setdefault(ev["event_id"], ev)
    return list(seen.values())
