"""How generated events reach Kafka: in time order, or the way real clients send them.

Phones batch events and go offline, SDKs retry, clients disagree on time formats. A
`Delivery` turns the generator's time-ordered events into a delivery order with local
shuffles, events days late, customers whose first active day arrives after a later one
(which moves them to an earlier cohort), and re-sent duplicates; `as_records` writes
the events as the dicts a client would send, with the timestamps in mixed formats.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from retention.simulate.generator import SimEvent

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
OFFSETS = (
    UTC,
    timezone(timedelta(hours=2)),
    timezone(timedelta(hours=-5)),
    timezone(timedelta(hours=5, minutes=30)),
    timezone(timedelta(hours=-9, minutes=-30)),
)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Delivery:
    """Shares of events (or customers) delivered out of time order; all 0 is time order."""

    shuffle_hours: float = 0.0  # each event is delayed by up to this many hours
    late: float = 0.0  # share delivered 1-5 days late
    very_late: float = 0.0  # share delivered 10-45 days late (beyond a 30-day churn window)
    late_first: float = 0.0  # share of returning customers whose first day comes after a later
    duplicates: float = 0.0  # share re-sent among the customer's next 5 events
    mixed_ts: bool = False  # half epoch-ms integers, half RFC 3339 with various UTC offsets


def delivery_order(
    events: list[SimEvent], delivery: Delivery, seed: int, activity: frozenset[str]
) -> list[SimEvent]:
    """The events in the order they are sent, duplicates included (as repeats)."""
    rng = random.Random(f"delivery:{seed}")
    order = _reordered(events, delivery, rng, activity)
    if not delivery.duplicates:
        return order
    positions: dict[str, list[int]] = defaultdict(list)
    for pos, event in enumerate(order):
        positions[event.customer].append(pos)
    resent: dict[int, list[SimEvent]] = defaultdict(list)
    for plist in positions.values():
        for k, pos in enumerate(plist):
            if rng.random() < delivery.duplicates:
                ahead = rng.randint(0, min(4, len(plist) - 1 - k))
                resent[plist[k + ahead]].append(order[pos])
    out: list[SimEvent] = []
    for pos, event in enumerate(order):
        out.append(event)
        out.extend(resent.get(pos, ()))
    return out


def _reordered(
    events: list[SimEvent], delivery: Delivery, rng: random.Random, activity: frozenset[str]
) -> list[SimEvent]:
    if not (delivery.shuffle_hours or delivery.late or delivery.very_late or delivery.late_first):
        return list(events)
    first: dict[str, int] = {}
    for e in events:
        if e.kind in activity and e.customer not in first:
            first[e.customer] = e.ts_ms  # events come in time order
    later: dict[str, int] = {}  # the first activity more than a day after the first one
    for e in events:
        if e.kind in activity and e.customer not in later and e.ts_ms - first[e.customer] > DAY_MS:
            later[e.customer] = e.ts_ms
    late_first = {c for c in later if rng.random() < delivery.late_first}
    keyed: list[tuple[float, int, SimEvent]] = []
    for n, e in enumerate(events):
        key = e.ts_ms + rng.uniform(0, delivery.shuffle_hours * HOUR_MS)
        if rng.random() < delivery.late:
            key += rng.uniform(1, 5) * DAY_MS
        elif delivery.very_late and rng.random() < delivery.very_late:
            key += rng.uniform(10, 45) * DAY_MS
        if e.customer in late_first and e.ts_ms < later[e.customer]:
            key = later[e.customer] + rng.uniform(3 * HOUR_MS, 2 * DAY_MS)
        keyed.append((key, n, e))
    keyed.sort(key=lambda t: (t[0], t[1]))
    return [e for _, _, e in keyed]


def deliver(
    events: list[SimEvent], delivery: Delivery, seed: int, activity: frozenset[str]
) -> list[dict[str, Any]]:
    """The event dicts in the order they are sent, duplicates included."""
    return as_records(delivery_order(events, delivery, seed, activity), seed, delivery.mixed_ts)


def as_records(order: Iterable[SimEvent], seed: int, mixed_ts: bool) -> list[dict[str, Any]]:
    """Event dicts in delivery order; a re-sent event is an exact copy of its first send."""
    rng = random.Random(f"timestamps:{seed}")
    made: dict[int, dict[str, Any]] = {}
    out = []
    for e in order:
        if e.seq not in made:
            record = e.as_dict(seed)
            if mixed_ts:
                record["ts"] = _any_format(e.ts_ms, rng)
            made[e.seq] = record
        out.append(dict(made[e.seq]))
    return out


def _any_format(ts_ms: int, rng: random.Random) -> str | int:
    """Half epoch ms, half RFC 3339 with a random offset (the same instant either way)."""
    if rng.random() < 0.5:
        return ts_ms
    tz = rng.choice(OFFSETS)
    dt = (EPOCH + timedelta(milliseconds=ts_ms)).astimezone(tz)
    if ts_ms % 1000 == 0 and rng.random() < 0.5:
        text = dt.isoformat(timespec="seconds")
    else:
        text = dt.isoformat(timespec="milliseconds")
    if tz is UTC and rng.random() < 0.5:
        text = text.replace("+00:00", "Z")
    return text
