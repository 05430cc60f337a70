"""What the delivered events say, customer by customer, before any metric is derived.

Duplicates (same event_id) count once, and an nps event without a score is left out,
as the decoder dead-letters it. Every metric family reads this ledger and nothing else.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from tests.oracle.basics import EventLike, OracleSettings, milli, pure_activity, ts_ms
from tests.oracle.periods import local_day

# (day, type, ts ms, event_id, milli) of a subscription event
Subscription = tuple[date, str, int, str, int]


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
        """Whether c is a customer at the end of day t: active within the churn window
        and no churn event since the last active day."""
        days = [a for a in self.active.get(c, ()) if a <= t]
        if not days:
            return False
        a = max(days)
        if (t - a).days >= self.s.churn_window_days:
            return False
        return not any(a <= x <= t for x in self.churn.get(c, ()))

    def subscribed(self, c: str, t: date) -> bool:
        """Whether c's subscription events up to the end of day t leave them subscribed."""
        mine = [e for e in self.subs.get(c, ()) if e[0] <= t]
        if not mine:
            return False
        latest = max(e[0] for e in mine)
        kinds = {e[1] for e in mine if e[0] == latest}
        return bool(kinds & self.s.subscribe_types) and self.s.cancel_type not in kinds


def unique_events(events: Sequence[EventLike], s: OracleSettings) -> list[Mapping[str, Any]]:
    """The valid events, the first delivery of each event_id."""
    unique: dict[str, Mapping[str, Any]] = {}
    for raw in events:
        ev: Mapping[str, Any] = json.loads(raw) if isinstance(raw, bytes | bytearray) else raw
        if ev["type"] == s.nps_type and ev.get("score") is None:
            continue  # invalid: the decoder dead-letters an nps event without a score
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
            book.purchases.setdefault(cid, []).append(milli(ev))
            book.purchase_days.setdefault(cid, []).append(d)
        if kind in s.refund_types:
            book.refunds.setdefault(cid, []).append(milli(ev))
        if kind == s.install_type:
            book.install_days.append(d)
        if kind in s.subscribe_types or kind == s.cancel_type:
            book.subs.setdefault(cid, []).append((d, kind, ms, ev["event_id"], milli(ev)))
        if kind == s.cancel_type:
            book.cancel_days.append(d)
        if kind == s.nps_type:
            answer = NpsAnswer(d, ms, ev["event_id"], int(ev["score"]))
            book.nps_answers.setdefault(cid, []).append(answer)
    return book
