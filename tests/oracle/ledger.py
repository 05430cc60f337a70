"""What the delivered events say, customer by customer, before any metric is derived.

Duplicates (same event_id) count once; an nps event without a score, and an event
naming a currency without a rate, are left out, as the decoder dead-letters them.
Amounts are filed in thousandths of the reporting currency (money.py). Every metric
family reads this ledger and nothing else.
"""

from __future__ import annotations

import calendar
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cached_property
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from tests.oracle.basics import EventLike, OracleSettings, pure_activity, ts_ms
from tests.oracle.money import milli, rate
from tests.oracle.periods import local_day

# Billing periods that make a start or renew annual (anything else valid is monthly).
ANNUAL_WORDS = frozenset({"year", "yearly", "annual", "annually"})


@dataclass(frozen=True)
class Subscription:
    """One subscription event: its day, type, time, id, amount in thousandths (None when
    the event has none) and whether it names an annual billing period."""

    day: date
    kind: str
    ms: int
    event_id: str
    milli: int | None
    annual: bool


def add_months(d: date, n: int) -> date:
    """d plus n calendar months, the day of month clamped to the month's length."""
    index = d.year * 12 + d.month - 1 + n
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(d.day, last))


def is_annual(ev: Mapping[str, Any]) -> bool:
    """Whether the event names a yearly billing period (native field or Segment property)."""
    props = ev.get("properties") or {}
    for value in (
        ev.get("billing_period"),
        ev.get("interval"),
        props.get("billing_period"),
        props.get("interval"),
    ):
        if value is not None:
            return str(value).strip().lower() in ANNUAL_WORDS
    return False


class NpsAnswer(NamedTuple):
    day: date
    ts_ms: int
    event_id: str
    score: int


@dataclass
class Ledger:
    s: OracleSettings
    types: Counter[str] = field(default_factory=Counter)
    active: dict[str, set[date]] = field(default_factory=dict)
    churn: dict[str, set[date]] = field(default_factory=dict)
    purchases: dict[str, list[int]] = field(default_factory=dict)  # milli of each purchase
    purchase_days: dict[str, list[date]] = field(default_factory=dict)  # day of each purchase
    refunds: dict[str, list[int]] = field(default_factory=dict)  # milli of each refund
    install_days: list[date] = field(default_factory=list)
    subs: dict[str, list[Subscription]] = field(default_factory=dict)
    cancel_days: list[date] = field(default_factory=list)
    nps_answers: dict[str, list[NpsAnswer]] = field(default_factory=dict)  # by customer
    max_ts: int | None = None
    events: list[Mapping[str, Any]] = field(default_factory=list)  # unique, delivery order

    @cached_property
    def tracked(self) -> set[str]:
        """The customers with an active day: those the tracker counts."""
        return set(self.active)

    @cached_property
    def first(self) -> dict[str, date]:
        """Each tracked customer's first active day (their cohort)."""
        return {c: min(self.active[c]) for c in self.tracked}

    def in_base(self, c: str, t: date) -> bool:
        """Whether c is a customer at the end of day t: seen by then, and either active
        within the churn window with no churn event since the last active day, or with a
        live subscription."""
        days = [a for a in self.active.get(c, ()) if a <= t]
        if not days:
            return False
        a = max(days)
        recent = (t - a).days < self.s.churn_window_days
        if recent and not any(a <= x <= t for x in self.churn.get(c, ())):
            return True
        return self.subscribed(c, t)

    def subscribed(self, c: str, t: date) -> bool:
        """Whether c's subscription is live at the end of day t: some start or renew on a
        day d <= t whose billing period (a month, or a year when annual) plus the grace
        days has not run out by t, with no cancel on any day from d to t."""
        mine = self.subs.get(c, ())
        cancels = [e.day for e in mine if e.kind == self.s.cancel_type]
        grace = timedelta(days=self.s.subscription_grace_days)
        for e in mine:
            if e.kind not in self.s.subscribe_types or e.day > t:
                continue
            ends = add_months(e.day, 12 if e.annual else 1) + grace
            if t < ends and not any(e.day <= k <= t for k in cancels):
                return True
        return False


def unique_events(events: Sequence[EventLike], s: OracleSettings) -> list[Mapping[str, Any]]:
    """The valid events, the first delivery of each event_id."""
    unique: dict[str, Mapping[str, Any]] = {}
    for raw in events:
        ev: Mapping[str, Any] = json.loads(raw) if isinstance(raw, bytes | bytearray) else raw
        if ev["type"] == s.nps_type and ev.get("score") is None:
            continue  # invalid: the decoder dead-letters an nps event without a score
        if rate(ev, s) is None:
            continue  # invalid: a currency without a rate is dead-lettered
        if ev["event_id"] not in unique:
            unique[ev["event_id"]] = ev
    return list(unique.values())


def read_ledger(events: Sequence[EventLike], s: OracleSettings) -> Ledger:
    """Each unique event entered once: counted by type, and its day, amount or score
    filed under its customer."""
    zone = ZoneInfo(s.tz)
    pure = pure_activity(s)
    book = Ledger(s)
    pure_days: set[tuple[str, date, str]] = set()
    book.events = unique_events(events, s)
    for ev in book.events:
        ms = ts_ms(ev["ts"])
        book.max_ts = ms if book.max_ts is None else max(book.max_ts, ms)
        kind, cid = ev["type"], ev["customer_id"]
        d = local_day(ms, zone)
        # An event whose only effect is an active day counts once per customer, day
        # and type, since a re-sent one cannot be told from a second visit that day.
        if kind not in pure:
            book.types[kind] += 1
        elif (cid, d, kind) not in pure_days:
            pure_days.add((cid, d, kind))
            book.types[kind] += 1
        if kind in s.activity_types:
            book.active.setdefault(cid, set()).add(d)
        if kind in s.churn_types:
            book.churn.setdefault(cid, set()).add(d)
        if kind in s.purchase_types:
            book.purchases.setdefault(cid, []).append(milli(ev, s))
            book.purchase_days.setdefault(cid, []).append(d)
        if kind in s.refund_types:
            book.refunds.setdefault(cid, []).append(milli(ev, s))
        if kind == s.install_type:
            book.install_days.append(d)
        if kind in s.subscribe_types or kind == s.cancel_type:
            amount = milli(ev, s) if ev.get("amount") is not None else None
            sub = Subscription(d, kind, ms, ev["event_id"], amount, is_annual(ev))
            book.subs.setdefault(cid, []).append(sub)
        if kind == s.cancel_type:
            book.cancel_days.append(d)
        if kind == s.nps_type:
            answer = NpsAnswer(d, ms, ev["event_id"], int(ev["score"]))
            book.nps_answers.setdefault(cid, []).append(answer)
    return book
