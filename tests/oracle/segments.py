"""Customers in groups: NPS respondents by group, churned customers by tenure and those
won back, RFM segments (docs/definitions.md "NPS", "Quick and late churn, win-back",
"RFM segments"), and the breakdowns by platform and channel."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import date, timedelta

from tests.oracle.activity import base_change, churn, cohorts, customers
from tests.oracle.basics import Key, key
from tests.oracle.ledger import Ledger, read_ledger
from tests.oracle.periods import PERIODS

NPS_GROUPS = ("promoter", "passive", "detractor")
TENURES = ("quick", "late")
RFM_SEGMENTS = (
    "new",
    "no_purchase",
    "vip",
    "pre_vip",
    "loyal",
    "at_risk",
    "lost",
    "hibernating",
    "promising",
)


def nps_group(score: int) -> str:
    return "promoter" if score >= 9 else "passive" if score >= 7 else "detractor"


def nps(book: Ledger, C: date) -> dict[Key, float]:
    """Respondents of the NPS window ending on C by the group of their latest answer in it,
    and the score."""
    window_start = C - timedelta(days=book.s.nps_window_days - 1)
    groups: Counter[str] = Counter()
    for answers in book.nps_answers.values():
        in_window = [a for a in answers if window_start <= a.day <= C]
        if in_window:
            latest = max(in_window, key=lambda a: (a.ts_ms, a.event_id))
            groups[nps_group(latest.score)] += 1
    out: dict[Key, float] = {
        key("retention_nps_responses", group=group): groups[group] for group in NPS_GROUPS
    }
    respondents = sum(groups.values())
    if respondents:
        out[key("retention_nps")] = 100 * (groups["promoter"] - groups["detractor"]) / respondents
    return out


def churn_tenures(book: Ledger, C: date) -> dict[Key, float]:
    """Customers whose first churn day is at most C, by their tenure (first activity day to
    the last activity day on or before the churn day), and those active again after it (at
    any time)."""
    churned: Counter[str] = Counter()
    won_back: Counter[str] = Counter()
    for c in book.tracked:
        day = book.first[c]
        while day <= C and book.in_base(c, day):
            day += timedelta(days=1)
        if day > C:
            continue  # the first churn day is after C: not churned (yet)
        last = max(a for a in book.active[c] if a <= day)
        tenure = "quick" if (last - book.first[c]).days < book.s.quick_churn_days else "late"
        churned[tenure] += 1
        if any(a > day for a in book.active[c]):
            won_back[tenure] += 1
    out: dict[Key, float] = {}
    for tenure in TENURES:
        out[key("retention_churned_customers", tenure=tenure)] = churned[tenure]
        out[key("retention_winback_customers", tenure=tenure)] = won_back[tenure]
        if churned[tenure]:
            out[key("retention_winback_ratio", tenure=tenure)] = won_back[tenure] / churned[tenure]
    return out


def rfm_segment(book: Ledger, c: str, day: date) -> str:
    """Customer c's segment at the end of `day`, with every purchase and refund in the ledger;
    the rules in order, the first that matches wins."""
    s = book.s
    if (day - book.first[c]).days < s.rfm_new_days:
        return "new"
    if not book.purchase_days.get(c):
        return "no_purchase"
    recency = max(0, (day - max(book.purchase_days[c])).days)
    r = 1
    for score, limit in zip((5, 4, 3, 2), s.rfm_recency_days, strict=True):
        if recency <= limit:
            r = score
            break
    n = len(book.purchases[c])
    f = 1 + sum(1 for limit in s.rfm_frequency if limit <= n)
    spend = sum(book.purchases[c]) - sum(book.refunds.get(c, []))  # milli
    m = 1 + sum(1 for limit in s.rfm_monetary if limit * 1000 <= spend)
    if r >= 4 and f >= 4 and m >= 4:
        return "vip"
    if r >= 3 and f >= 3 and m >= 3:
        return "pre_vip"
    if r >= 3 and f >= 2:
        return "loyal"
    if r <= 2 and (f >= 3 or m >= 3):
        return "at_risk"
    if r == 1:
        return "lost"
    if r == 2:
        return "hibernating"
    return "promising"


def rfm(book: Ledger, C: date) -> dict[Key, float]:
    """Customers first seen by C, by RFM segment."""
    segments = Counter(rfm_segment(book, c, C) for c in book.tracked if book.first[c] <= C)
    return {
        key("retention_rfm_customers", segment=segment): segments[segment]
        for segment in RFM_SEGMENTS
    }


# --- breakdowns ---------------------------------------------------------------------------
DIMENSIONS = ("platform", "channel")
NOT_SET, OTHER = "(not set)", "(other)"  # the buckets: no value yet, and past the cap
# The metrics restricted to each value's customers (daily cohorts are not broken down).
BREAKDOWN_METRICS = frozenset(
    {
        "active_customers",
        "cohort_size",
        "cohort_retained",
        "cohort_ratio",
        "base_start_customers",
        "base_end_customers",
        "new_customers",
        "lost_customers",
        "churn_ratio",
        "crr",
        "retained_share_ratio",
    }
)


def dimension_values(
    book: Ledger, dimension: str, kept: Sequence[str] | None = None
) -> tuple[list[str], dict[str, str]]:
    """(the values kept, in the order first met; each tracked customer's value).

    Only activity events count: the first N distinct values met on them are kept, later
    ones are OTHER; a customer takes the value of their first delivered activity event
    that has the field, NOT_SET when none has. A value spelled like a bucket stands for it.
    `kept` gives the kept values instead, for events consumed from several partitions
    with more distinct values than the cap: then the order they were first met in is
    the consumption order, which only the tracker saw.
    """
    cap = book.s.dimension_cap
    met: list[str] = []
    of: dict[str, str] = {}
    for ev in book.events:  # delivery order
        raw = ev.get(dimension)
        if ev["type"] not in book.s.activity_types or raw in (None, NOT_SET):
            continue
        value = str(raw)
        if value != OTHER and value not in met:
            met.append(value)
        of.setdefault(ev["customer_id"], value)
    chosen = list(kept) if kept is not None else met[:cap]
    assert len(chosen) <= cap, f"{dimension}: {len(chosen)} values kept, over the cap {cap}"
    values = {}
    for c in book.tracked:
        first = of.get(c)
        values[c] = NOT_SET if first is None else first if first in chosen else OTHER
    return chosen, values


def breakdowns(
    book: Ledger, C: date, kept: Mapping[str, Sequence[str]] | None = None
) -> dict[Key, float]:
    """For each dimension and value (the kept ones and both buckets): the activity and
    retention numbers of that value's customers alone, at the end of the same day C."""
    out: dict[Key, float] = {}
    for dimension in DIMENSIONS:
        given = None if kept is None else kept.get(dimension, [])
        kept_values, of = dimension_values(book, dimension, given)
        for value in [*kept_values, NOT_SET, OTHER]:
            members = {c for c, v in of.items() if v == value}
            mine = read_ledger([e for e in book.events if e["customer_id"] in members], book.s)
            samples = customers(mine, C)
            for kind in PERIODS:
                if kind != "day":
                    samples.update(cohorts(mine, C, kind))
                samples.update(churn(base_change(mine, C, kind)))
            for (name, labels), v in samples.items():
                plain = name.removeprefix("retention_")
                if plain in BREAKDOWN_METRICS:
                    scoped = (*labels, ("dimension", dimension), ("value", value))
                    out[(f"retention_breakdown_{plain}", tuple(sorted(scoped)))] = v
    return out
