"""What one scrape reads: the aggregates of every shard summed, as plain values.

metrics/aggregates.py builds a Snapshot from Redis; the collector turns it into metric
families, and the report's churn history reads PeriodChurn rows.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple

from core.calendar import Period
from core.rules import lost
from core.segments import RfmKey


class CohortCell(NamedTuple):
    """A retention cell; a tuple, as its C-level hash keeps ~20k dict lookups cheap."""

    period: Period
    cohort: int
    offset: int


@dataclass(frozen=True, slots=True)
class PeriodChurn:
    """Base at the start and end of the last complete period, and who came and went."""

    period: Period
    number: int
    base_start: int
    base_end: int
    new: int
    stayed: int
    cancels: int
    subscribers_start: int
    subscribers_stayed: int  # subscribed at the end of the day before and of the period

    @property
    def lost(self) -> int:
        return lost(self.base_start, self.stayed)

    @property
    def subscribers_lost(self) -> int:
        return lost(self.subscribers_start, self.subscribers_stayed)


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """PostHog-style lifecycle counts of one period."""

    period: Period
    number: int
    active: int
    previous_active: int
    new: int
    returning: int
    installs: int

    @property
    def resurrecting(self) -> int:
        return self.active - self.new - self.returning

    @property
    def dormant(self) -> int:
        return self.previous_active - self.returning


@dataclass(frozen=True, slots=True)
class CohortValue:
    """Purchases, net revenue and customer-days of active life of one cohort (or all)."""

    purchases: int
    net_milli: int
    customer_days: int


@dataclass(frozen=True, slots=True)
class PeriodBuyers:
    """Customers with a purchase in the last complete period, and those with two or more."""

    period: Period
    buyers: int
    repeat_buyers: int


@dataclass(frozen=True, slots=True)
class Purchases:
    """Purchase and refund totals of all customers."""

    purchases: int = 0
    revenue_milli: int = 0
    refunds: int = 0
    refunded_milli: int = 0
    purchasing_customers: int = 0
    repeat_customers: int = 0

    @property
    def net_milli(self) -> int:
        return self.revenue_milli - self.refunded_milli


@dataclass(slots=True)
class Core:
    """The metrics that are also broken down by platform and channel."""

    active: dict[int, int] = field(default_factory=dict)
    cohort_size: dict[tuple[Period, int], int] = field(default_factory=dict)
    retained: dict[CohortCell, int] = field(default_factory=dict)
    churn: list[PeriodChurn] = field(default_factory=list)


@dataclass(slots=True)
class Snapshot:
    customers: int = 0
    watermark_ms: int | None = None
    watermark_day: int | None = None  # T: the day of the watermark, still running
    evaluation_day: int | None = None  # C = T - 1: the last complete day
    purchases: Purchases = field(default_factory=Purchases)
    events: Counter[str] = field(default_factory=Counter)
    invalid: Counter[str] = field(default_factory=Counter)
    active: dict[int, int] = field(default_factory=dict)  # windows ending on C
    active_so_far: dict[int, int] = field(default_factory=dict)  # windows ending on T
    cohort_size: dict[tuple[Period, int], int] = field(default_factory=dict)
    retained: dict[CohortCell, int] = field(default_factory=dict)
    unbounded: dict[CohortCell, int] = field(default_factory=dict)
    churn: list[PeriodChurn] = field(default_factory=list)
    lifespan_months: list[PeriodChurn] = field(default_factory=list)  # the CLV lifespan's
    buyers: list[PeriodBuyers] = field(default_factory=list)
    lifecycle: list[Lifecycle] = field(default_factory=list)
    value: dict[int | None, CohortValue] = field(default_factory=dict)
    subscribers: int = 0
    mrr_twelfths: int = 0  # MRR in twelfths of a thousandth (annual plans stay exact)
    nps: Counter[str] = field(default_factory=Counter)
    churned: Counter[str] = field(default_factory=Counter)
    won_back: Counter[str] = field(default_factory=Counter)
    rfm: Counter[RfmKey] = field(default_factory=Counter)
    breakdowns: dict[tuple[str, str], Core] = field(default_factory=dict)
