"""The lifecycle changes a customer goes through, day by day, from the ledger alone.

A customer's state at the end of day t: `churned` when not in the base (ledger.in_base:
the activity rule or a live subscription), else `at_risk_<r>` for the largest at-risk
threshold r that the days since the latest activity reach, else `active`. A change is
published for every day whose state differs from the day before, for the complete days
before the lifecycle watermark's day (the slowest partition's newest event time less
the allowed lateness, in the reporting time zone).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tests.oracle.basics import ts_ms
from tests.oracle.ledger import Ledger
from tests.oracle.periods import local_day

# (customer, from, to, day as ISO date, reason), as the lifecycle topic's messages say
Change = tuple[str, str, str, str, str]


def lifecycle_end(
    events: Sequence[Mapping[str, Any]], partition_of: Mapping[str, int], ledger: Ledger
) -> date:
    """The lifecycle watermark's day once every event is in: the slowest partition's
    newest event time, less the allowed lateness."""
    newest: dict[int, int] = {}
    for ev in events:
        p = partition_of[str(ev["customer_id"])]
        newest[p] = max(newest.get(p, 0), ts_ms(ev["ts"]))
    lateness_ms = ledger.s.allowed_lateness_seconds * 1000
    return local_day(min(newest.values()) - lateness_ms, ZoneInfo(ledger.s.tz))


def state_on(book: Ledger, c: str, t: date, risk: Sequence[int]) -> str:
    """The customer's lifecycle state at the end of day t."""
    days = [a for a in book.active.get(c, ()) if a <= t]
    if not days:
        return "none"
    if not book.in_base(c, t):
        return "churned"
    gap = (t - max(days)).days
    for r in sorted(risk, reverse=True):
        if gap >= r:
            return f"at_risk_{r}"
    return "active"


def reason(book: Ledger, c: str, before: str, now: str, t: date) -> str:
    """Why the state changed on day t (the words of the README's lifecycle section)."""
    if now == "active":
        return {"none": "first activity", "churned": "resurrected"}.get(before, "active again")
    last = max(a for a in book.active[c] if a <= t)
    if now == "churned":
        churn_event = any(last <= x <= t for x in book.churn.get(c, ()))
        if book.subscribed(c, t - timedelta(days=1)):
            return "churn event" if churn_event else "subscription ended"
        window = book.s.churn_window_days
        return f"inactive {window} days" if (t - last).days >= window else "churn event"
    return f"inactive {(t - last).days} days"


def customer_changes(book: Ledger, c: str, end: date, risk: Sequence[int]) -> list[Change]:
    """Every change of one customer on the days before `end`, in day order."""
    changes: list[Change] = []
    before, t = "none", min(book.active[c])
    while t < end:
        now = state_on(book, c, t, risk)
        if now != before:
            changes.append((c, before, now, t.isoformat(), reason(book, c, before, now, t)))
            before = now
        t += timedelta(days=1)
    return changes


def lifecycle_changes(book: Ledger, end: date, risk: Sequence[int] = (2, 7)) -> list[Change]:
    """Every tracked customer's changes on the days before `end`."""
    return [ch for c in sorted(book.tracked) for ch in customer_changes(book, c, end, risk)]
