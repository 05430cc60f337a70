"""The benchmark's traffic, drawn from `retention simulate`'s generator (`bench` preset).

Every customer is acquired on a day drawn uniformly from the window (so each of the
90 daily cohorts has customers) and comes back on a few later days, with gaps long
enough that some are idle past the 30-day churn window and come back. A small share
of records is sent twice (producer retries: same `event_id`, new offset). Values are
JSON in the contract of docs/definitions.md, keyed by customer id, in event-time order.
Customer ids are UUID-shaped (36 characters), as RudderStack/Segment anonymous ids
are, because the key name is part of what a customer costs in Redis.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from core.settings import Settings
from retention.simulate.delivery import Delivery, delivery_order
from retention.simulate.generator import SimEvent, Simulator, rfc3339
from retention.simulate.generator import uuid_customer_id as customer_id
from retention.simulate.presets import preset_config

__all__ = ["Mix", "MixStats", "customer_id", "live_value"]

DUPLICATE_P = 0.005
UTC_ZONE = ZoneInfo("UTC")
DEFAULTS = Settings.model_fields
ACTIVITY = DEFAULTS["activity_types"].default
# Types that only make a customer active: the worker counts one per customer, day and type.
PURE_ACTIVITY = frozenset({"app_open", "session"})
LIVE_TYPES = ("app_open", "session", "purchase")  # what live traffic replays
LIVE_DAYS = 25  # live traffic comes from customers active in the window's last days


@dataclass(slots=True)
class MixStats:
    """What a generated data set holds, for the report."""

    customers: int = 0
    records: int = 0
    unique_events: int = 0
    counted_events: int = 0  # what retention_events_total sums to (see PURE_ACTIVITY)
    duplicates: int = 0
    active_days: int = 0
    span_days: int = 0  # sum over customers of last - first active day + 1
    by_type: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        n = max(self.customers, 1)
        return {
            "customers": self.customers,
            "records": self.records,
            "unique_events": self.unique_events,
            "counted_events": self.counted_events,
            "duplicate_records": self.duplicates,
            "events_per_customer": round(self.records / n, 2),
            "active_days_per_customer": round(self.active_days / n, 2),
            "mean_span_days": round(self.span_days / n, 1),
            "by_type": dict(sorted(self.by_type.items())),
        }


class Mix:
    """The records of `customers` customers over the `days` UTC days before `end`."""

    def __init__(
        self, customers: int, *, days: int = 90, seed: int = 1, end: datetime | None = None
    ) -> None:
        start = (end or datetime.now(UTC)).date() - timedelta(days=days)
        self.config = preset_config(
            "bench", start, customers=customers, days=days, seed=seed, ids="uuid", zone=UTC_ZONE
        )
        self.stats = MixStats(customers=customers)
        self.counts = [0] * customers  # records per customer, filled by records()
        self.last_active = [-1] * customers  # last active day, filled by records()
        self._recent: list[SimEvent] = []  # what live() replays, filled by records()

    def records(self) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) pairs in event-time order; fills self.stats as it goes."""
        seed, customers = self.config.seed, self.config.customers
        events = Simulator(self.config).run()
        index = {customer_id(c, seed): c for c in range(customers)}
        first_active = [-1] * customers
        sent = bytearray(len(events) + 1)  # by seq: 1 once an event was sent
        type_day: dict[tuple[int, str], int] = {}  # last day a pure type was counted
        for event in delivery_order(events, Delivery(duplicates=DUPLICATE_P), seed, ACTIVITY):
            c = index[event.customer]
            self.stats.records += 1
            self.counts[c] += 1
            value = json.dumps(event.as_dict(seed), separators=(",", ":")).encode()
            if sent[event.seq]:
                self.stats.duplicates += 1
                yield event.customer.encode(), value
                continue
            sent[event.seq] = 1
            self._count(event, c, type_day, first_active)
            yield event.customer.encode(), value
        for c in range(customers):
            if first_active[c] >= 0:
                self.stats.span_days += self.last_active[c] - first_active[c] + 1

    def _count(
        self,
        event: SimEvent,
        c: int,
        type_day: dict[tuple[int, str], int],
        first_active: list[int],
    ) -> None:
        """Add a first send to the stats, counted as the worker counts it."""
        stats = self.stats
        stats.unique_events += 1
        stats.by_type[event.kind] = stats.by_type.get(event.kind, 0) + 1
        if event.kind not in PURE_ACTIVITY:
            stats.counted_events += 1
        elif type_day.get((c, event.kind)) != event.day:
            type_day[(c, event.kind)] = event.day
            stats.counted_events += 1
        if event.kind in ACTIVITY and self.last_active[c] != event.day:
            stats.active_days += 1
            self.last_active[c] = event.day
            if first_active[c] < 0:
                first_active[c] = event.day
        if event.kind in LIVE_TYPES and event.day >= self.config.days - LIVE_DAYS:
            self._recent.append(event)

    def live(self, seed: int) -> Iterator[tuple[bytes, bytes]]:
        """Endless events with ts = now: the generated activity of the window's last days,
        replayed in random order with fresh event ids.

        Used by the latency test: values carry a `{ts}` placeholder that the sender fills
        in with `live_value` just before sending.
        """
        rng = random.Random(seed)
        lap = 0
        while True:
            lap += 1
            for event in rng.sample(self._recent, len(self._recent)):
                record = event.as_dict(self.config.seed)
                record.update(event_id=f"live{seed}-{lap}-{event.seq}", ts="{ts}")
                yield event.customer.encode(), json.dumps(record, separators=(",", ":")).encode()


def live_value(template: bytes, ts_ms: int) -> bytes:
    """Fill the `{ts}` placeholder of a `Mix.live` value."""
    return template.replace(b"{ts}", rfc3339(ts_ms).encode(), 1)
