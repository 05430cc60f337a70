"""The benchmark's event mix: customers with a few active days spread over 90 days.

Every customer is acquired on a day drawn uniformly from the window (so each of the
90 daily cohorts has customers) and comes back on a few later days. Each active day
carries an `app_open` (`install` on the first day), often a `session`, sometimes a
`purchase`; a few customers subscribe (monthly renewals, some cancel), answer NPS,
get a refund or uninstall, and a small share of records is sent twice (producer
retries: same `event_id`, new offset). Values are pre-serialized JSON in the
contract of docs/definitions.md, keyed by customer id, in event-time order.

Customer ids are UUID-shaped (36 characters), as RudderStack/Segment anonymous ids
are, because the key name is part of what a customer costs in Redis.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

DAY_MS = 86_400_000
PLATFORMS = ("ios", "android", "web")
CHANNELS = ("organic", "paid", "referral", "email")
# Return days after the first one: weights of 1, 2, 3, 5 and 8 returns.
RETURNS = ((1, 0.40), (2, 0.25), (3, 0.15), (5, 0.10), (8, 0.10))
SESSION_P = 0.5
PURCHASE_P = 0.06
REFUND_P = 0.05  # of purchases
NPS_P = 0.02
SUBSCRIBER_P = 0.03
CANCEL_P = 0.2  # of subscribers
UNINSTALL_P = 0.05
DUPLICATE_P = 0.005
# Gaps between a customer's active days are drawn from 1..MAX_GAP_DAYS, so some
# customers are idle past the 30-day churn window and come back (resurrections), and
# churn-type events (uninstall, subscription_cancel) come up to CHURN_EVENT_GAP_DAYS
# after an activity. (Before commit cccb02e the lifecycle sweep crashed on both.)
MAX_GAP_DAYS = 45
CHURN_EVENT_GAP_DAYS = 40
ACTIVITY = frozenset(
    {"install", "app_open", "session", "purchase", "subscription_start", "subscription_renew"}
)
# Types that only make a customer active: the worker counts one per customer, day and type.
PURE_ACTIVITY = frozenset({"app_open", "session"})


@dataclass(frozen=True, slots=True)
class Event:
    ts_ms: int
    customer: int
    kind: str
    seq: int  # makes the event id unique per customer
    amount: float | None = None
    score: int | None = None


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


def customer_id(index: int, seed: int) -> str:
    """A stable, random-looking UUID-shaped id for customer `index`."""
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=16).digest()
    return str(uuid.UUID(bytes=digest))


class Mix:
    """Generates the records of `customers` customers over `days` days ending at `end`."""

    def __init__(
        self, customers: int, *, days: int = 90, seed: int = 1, end: datetime | None = None
    ) -> None:
        self.customers = customers
        self.days = days
        self.seed = seed
        end = end or datetime.now(UTC) - timedelta(minutes=5)
        self.start_ms = int(end.timestamp() * 1000) - days * DAY_MS
        self.stats = MixStats(customers=customers)
        self.counts = [0] * customers  # records per customer, filled by records()
        self.last_active = [0] * customers  # last active day, filled by records()

    def records(self) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) pairs in event-time order; fills self.stats as it goes."""
        rng = random.Random(self.seed)
        buckets: list[list[Event]] = [[] for _ in range(self.days)]
        for c in range(self.customers):
            self._customer(rng, c, buckets)
        ids = [customer_id(c, self.seed) for c in range(self.customers)]
        # last day each pure type was seen per customer (events come in time order)
        type_day = {kind: [-1] * self.customers for kind in PURE_ACTIVITY}
        for day in range(self.days):
            events = buckets[day]
            buckets[day] = []
            events.sort(key=lambda e: e.ts_ms)
            for event in events:
                key, value = ids[event.customer].encode(), self._encode(event, ids)
                self.stats.records += 1
                self.stats.unique_events += 1
                if event.kind not in PURE_ACTIVITY:
                    self.stats.counted_events += 1
                elif type_day[event.kind][event.customer] != event.ts_ms // DAY_MS:
                    type_day[event.kind][event.customer] = event.ts_ms // DAY_MS
                    self.stats.counted_events += 1
                self.stats.by_type[event.kind] = self.stats.by_type.get(event.kind, 0) + 1
                self.counts[event.customer] += 1
                yield key, value
                if rng.random() < DUPLICATE_P:
                    self.stats.records += 1
                    self.stats.duplicates += 1
                    yield key, value

    def live(self, seed: int) -> Iterator[tuple[bytes, bytes]]:
        """Endless events, ts = now, of customers active in the last 25 days of the window.

        (Live traffic comes mostly from recently active customers.) Used by the
        latency test: values carry a `{ts}` placeholder that the sender fills in with
        `live_value` just before sending.
        """
        rng = random.Random(seed)
        recent = [c for c in range(self.customers) if self.last_active[c] >= self.days - 25]
        seq = 1_000_000
        while True:
            c = rng.choice(recent)
            cid = customer_id(c, self.seed)
            r = rng.random()
            kind = "purchase" if r < PURCHASE_P else "session" if r < 0.45 else "app_open"
            seq += 1
            amount = round(rng.lognormvariate(3, 0.6), 2) if kind == "purchase" else None
            yield cid.encode(), _template(cid, kind, seq, c, amount, None)

    def _customer(self, rng: random.Random, c: int, buckets: list[list[Event]]) -> None:
        first = rng.randrange(self.days)
        (returns,) = rng.choices([n for n, _ in RETURNS], weights=[w for _, w in RETURNS])
        days = [first]
        while len(days) <= returns and days[-1] + 1 < self.days:
            days.append(min(days[-1] + rng.randint(1, MAX_GAP_DAYS), self.days - 1))
        self.stats.active_days += len(days)
        self.last_active[c] = days[-1]
        self.stats.span_days += days[-1] - first + 1
        seq = 0

        def add(day: int, kind: str, **extra: float | int | None) -> None:
            nonlocal seq
            seq += 1
            ts = self.start_ms + day * DAY_MS + rng.randrange(DAY_MS)
            buckets[day].append(Event(ts, c, kind, seq, **extra))  # type: ignore[arg-type]

        for day in days:
            add(day, "install" if day == first else "app_open")
            if rng.random() < SESSION_P:
                add(day, "session")
            if rng.random() < PURCHASE_P:
                add(day, "purchase", amount=round(rng.lognormvariate(3, 0.6), 2))
                if rng.random() < REFUND_P:
                    add(day, "refund", amount=round(rng.uniform(1, 20), 2))
            if rng.random() < NPS_P:
                add(day, "nps", score=rng.randrange(11))
        if rng.random() < SUBSCRIBER_P:
            start = rng.choice(days)
            add(start, "subscription_start", amount=9.99)
            cancel = None
            if rng.random() < CANCEL_P:
                anchor = rng.choice([d for d in days if d >= start])
                cancel = min(anchor + rng.randrange(CHURN_EVENT_GAP_DAYS), self.days - 1)
                add(cancel, "subscription_cancel")
            for renew in range(start + 30, min(cancel or self.days, days[-1] + 1), 30):
                add(renew, "subscription_renew", amount=9.99)
        if rng.random() < UNINSTALL_P and days[-1] + 1 < self.days:
            gap = rng.randrange(1, CHURN_EVENT_GAP_DAYS)
            add(min(days[-1] + gap, self.days - 1), "uninstall")

    def _encode(self, e: Event, ids: list[str]) -> bytes:
        return _template(ids[e.customer], e.kind, e.seq, e.customer, e.amount, e.score, e.ts_ms)


def _template(
    cid: str,
    kind: str,
    seq: int,
    c: int,
    amount: float | None,
    score: int | None,
    ts_ms: int | None = None,
) -> bytes:
    """One event as JSON; ts is RFC 3339 (a `{ts}` placeholder when ts_ms is None)."""
    ts = rfc3339(ts_ms) if ts_ms is not None else "{ts}"
    extra = ""
    if amount is not None:
        extra += f',"amount":{amount},"currency":"EUR"'
    if score is not None:
        extra += f',"score":{score}'
    return (
        f'{{"event_id":"{cid[:8]}-{seq:x}-{kind[:3]}","customer_id":"{cid}","type":"{kind}",'
        f'"ts":"{ts}","platform":"{PLATFORMS[c % 3]}","channel":"{CHANNELS[(c // 3) % 4]}"'
        f"{extra}}}"
    ).encode()


def live_value(template: bytes, ts_ms: int) -> bytes:
    """Fill the `{ts}` placeholder of a `Mix.live` value."""
    return template.replace(b"{ts}", rfc3339(ts_ms).encode(), 1)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_day_prefix: dict[int, str] = {}


def rfc3339(ts_ms: int) -> str:
    """Epoch ms as `YYYY-MM-DDTHH:MM:SS.mmmZ`, without a datetime per call."""
    day, ms = divmod(ts_ms, DAY_MS)
    prefix = _day_prefix.get(day)
    if prefix is None:
        prefix = (_EPOCH + timedelta(days=day)).strftime("%Y-%m-%dT")
        _day_prefix[day] = prefix
    s, milli = divmod(ms, 1000)
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{prefix}{h:02d}:{m:02d}:{sec:02d}.{milli:03d}Z"


def is_activity(kind: str) -> bool:
    return kind in ACTIVITY
