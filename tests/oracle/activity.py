"""Activity and retention: customers, active windows, stickiness, cohorts, each recent
period's lifecycle and installs, and the base's churn and CRR over the last complete period."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from tests.oracle.basics import Key, key
from tests.oracle.ledger import Ledger
from tests.oracle.periods import (
    label,
    last_complete,
    next_period,
    period_index,
    period_of,
    prev_period,
    recent_periods,
    running_period,
)

LIFECYCLE_STATES = ("new", "returning", "resurrecting", "dormant")


def active_in_window(book: Ledger, last: date, n: int) -> int:
    """Customers with an active day among the n days ending on `last`."""
    window = {last - timedelta(days=i) for i in range(n)}
    return sum(1 for c in book.tracked if book.active[c] & window)


def customers(book: Ledger, C: date) -> dict[Key, float]:
    """Tracked customers, those active in the 1, 7 and 30 days ending on C, and
    stickiness on C."""
    out: dict[Key, float] = {key("retention_customers"): len(book.tracked)}
    window_counts = {}
    for n in (1, 7, 30):
        window_counts[n] = active_in_window(book, C, n)
        out[key("retention_active_customers", window=f"{n}d")] = window_counts[n]
    if window_counts[30]:
        out[key("retention_stickiness_ratio")] = window_counts[1] / window_counts[30]
    return out


def active_so_far(book: Ledger, T: date) -> dict[Key, float]:
    """The live values: customers active in the windows ending on the running day T."""
    return {
        key("retention_active_customers_so_far", window=f"{n}d"): active_in_window(book, T, n)
        for n in (1, 7, 30)
    }


def cohorts(book: Ledger, C: date, kind: str) -> dict[Key, float]:
    """The cohorts of the recent periods with size > 0: retained in each period up to
    period(C), and retained in that period or any later one (unbounded), counting every
    delivered event; a cell whose period is still running at the end of C is marked."""
    s = book.s
    pC = period_of(C, kind, s.week_start)
    running = running_period(C, kind, s)
    out: dict[Key, float] = {}
    for cohort in recent_periods(C, kind, s):
        members = [
            c for c in book.tracked if period_of(book.first[c], kind, s.week_start) == cohort
        ]
        if not members:
            continue
        lab = {"cohort_period": kind, "cohort": label(cohort, kind)}
        out[key("retention_cohort_size", **lab)] = len(members)
        q, offset = cohort, 0
        while q <= pC:
            retained = sum(
                1
                for c in members
                if any(period_of(a, kind, s.week_start) == q for a in book.active[c])
            )
            unbounded = sum(
                1
                for c in members
                if any(period_of(a, kind, s.week_start) >= q for a in book.active[c])
            )
            assert offset == period_index(q, kind) - period_index(cohort, kind)
            cell = {"offset": str(offset), **lab}
            out[key("retention_cohort_retained", **cell)] = retained
            out[key("retention_cohort_ratio", **cell)] = retained / len(members)
            out[key("retention_cohort_unbounded_retained", **cell)] = unbounded
            out[key("retention_cohort_unbounded_ratio", **cell)] = unbounded / len(members)
            if q == running:
                out[key("retention_cohort_cell_running", **cell)] = 1
            q, offset = next_period(q, kind), offset + 1
    return out


def lifecycle(book: Ledger, C: date, kind: str) -> dict[Key, float]:
    """Active customers, installs and lifecycle states of each recent period, counting
    every delivered event; a period still running at the end of C is marked and has no
    churn ratio."""
    s = book.s
    running = running_period(C, kind, s)

    def active_in(p: date) -> set[str]:
        return {
            c
            for c in book.tracked
            if any(period_of(a, kind, s.week_start) == p for a in book.active[c])
        }

    out: dict[Key, float] = {}
    for p in recent_periods(C, kind, s):
        lab = {"period": kind, "start": label(p, kind)}
        prev = prev_period(p, kind, s.week_start)
        now_active, prev_active = active_in(p), active_in(prev)
        out[key("retention_period_active_customers", **lab)] = len(now_active)
        out[key("retention_period_installs", **lab)] = sum(
            1 for d in book.install_days if period_of(d, kind, s.week_start) == p
        )
        states = {
            "new": {c for c in book.tracked if period_of(book.first[c], kind, s.week_start) == p},
            "returning": now_active & prev_active,
            "resurrecting": {c for c in now_active - prev_active if book.first[c] < p},
            "dormant": prev_active - now_active,
        }
        for state, members in states.items():
            out[key("retention_lifecycle_customers", state=state, **lab)] = len(members)
        if p == running:
            out[key("retention_period_running", **lab)] = 1
        elif prev_active:
            out[key("retention_lifecycle_churn_ratio", **lab)] = len(states["dormant"]) / len(
                prev_active
            )
    return out


@dataclass(frozen=True)
class BaseChange:
    """The customer base over the last complete period of a kind."""

    kind: str
    at_start: set[str]  # in the base at the end of the day before the period
    at_end: set[str]  # in the base at the end of its last day
    new: set[str]  # first active within the period
    lost: set[str]  # in the base at the start, not at the end


def base_change(book: Ledger, C: date, kind: str) -> BaseChange:
    start, end = last_complete(C, kind, book.s)
    before = start - timedelta(days=1)
    at_start = {c for c in book.tracked if book.in_base(c, before)}
    at_end = {c for c in book.tracked if book.in_base(c, end)}
    new = {c for c in book.tracked if start <= book.first[c] <= end}
    return BaseChange(kind, at_start, at_end, new, at_start - at_end)


def churn(change: BaseChange) -> dict[Key, float]:
    """The base's counts, churn and CRR over the last complete period."""
    kind = change.kind
    out: dict[Key, float] = {
        key("retention_base_start_customers", period=kind): len(change.at_start),
        key("retention_base_end_customers", period=kind): len(change.at_end),
        key("retention_new_customers", period=kind): len(change.new),
        key("retention_lost_customers", period=kind): len(change.lost),
    }
    if change.at_start:
        out[key("retention_churn_ratio", period=kind)] = len(change.lost) / len(change.at_start)
        out[key("retention_crr", period=kind)] = (len(change.at_end) - len(change.new)) / len(
            change.at_start
        )
        # the start base's customers who are in the end base too
        out[key("retention_retained_share_ratio", period=kind)] = len(
            change.at_start & change.at_end
        ) / len(change.at_start)
    return out
