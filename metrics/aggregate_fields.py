"""Which aggregate fields a scrape reads, and the snapshot parts built from their sums.

Field names come from core.schema and the calendar alone, so the reader can ask every
shard for exactly the fields one scrape needs; the parts are built from the shards'
sums, and a field no shard has counts 0. Nothing here talks to Redis.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import replace

from core.calendar import Calendar, Period
from core.rules import ACTIVITY_WINDOWS, LIFESPAN_MONTHS
from core.schema import (
    PERIOD_CODES,
    DaysField,
    PeriodsField,
    TimelineField,
    active_window,
    cell_field,
    cohort_month_field,
    numbered,
    period_field,
)
from core.segments import RfmKey
from metrics.snapshot import (
    CohortCell,
    CohortValue,
    Core,
    Lifecycle,
    PeriodBuyers,
    PeriodChurn,
    Snapshot,
)

# Timeline series (subscriber deltas, first churns, NPS respondents, RFM keys) by field
# prefix without its ':', then by the rest of the field name (a day, or the RFM key).
Timeline = defaultdict[str, Counter[str]]
NPS_GROUPS = (
    ("promoter", TimelineField.NPS_PROMOTERS),
    ("passive", TimelineField.NPS_PASSIVES),
    ("detractor", TimelineField.NPS_DETRACTORS),
)
# Tenure classes of first churns: (label, first-churn series, won-back series).
TENURES = (
    ("quick", TimelineField.FIRST_CHURN_QUICK, TimelineField.WON_BACK_QUICK),
    ("late", TimelineField.FIRST_CHURN_LATE, TimelineField.WON_BACK_LATE),
)


class AggregateFields:
    """Names the summed fields of one scrape and turns their sums into snapshot parts."""

    def __init__(self, calendar: Calendar, cohorts_kept: int) -> None:
        self.calendar = calendar
        self.cohorts_kept = cohorts_kept

    def recent(self, kind: Period, day: int) -> range:
        """The K most recent periods up to the one containing `day`."""
        current = self.calendar.period(day, kind)
        return range(current - self.cohorts_kept + 1, current + 1)

    def last_complete(self, kind: Period, day: int) -> tuple[int, int, int]:
        """Number, first day and last day of the latest period complete at the end of `day`."""
        last = self.calendar.last_complete(day, kind)
        return last, self.calendar.period_start(last, kind), self.calendar.period_end(last, kind)

    def day_fields(self, day: int, prefixes: list[str]) -> list[str]:
        fields: list[str] = []
        for prefix in prefixes:
            fields += [numbered(active_window(n), day, scope=prefix) for n in ACTIVITY_WINDOWS]
            for kind in Period:
                _, start, end = self.last_complete(kind, day)
                fields += [numbered(DaysField.BASE, d, scope=prefix) for d in (start - 1, end)]
        for month in self.lifespan_months(day):
            fields += self.movement_fields(Period.MONTH, month)[0]
        fields += self.life_day_fields(day)
        return list(dict.fromkeys(fields))

    def lifespan_months(self, day: int) -> range:
        """The complete months whose pooled churn gives the CLV lifespan, oldest first:
        the latest one complete at the end of `day` and the two before it."""
        last = self.calendar.last_complete(day, Period.MONTH)
        return range(last - LIFESPAN_MONTHS + 1, last + 1)

    def life_day_fields(self, day: int) -> list[str]:
        """Active-life edges on the days of `day`'s month up to `day`: of all customers,
        and of each recent monthly cohort (earlier months are read summed)."""
        month = self.calendar.period(day, Period.MONTH)
        days = range(self.calendar.period_start(month, Period.MONTH), day + 1)
        fields = [numbered(DaysField.LIFE_EDGES, d) for d in days]
        for cohort in self.recent(Period.MONTH, day):
            fields += [cohort_month_field(DaysField.COHORT_LIFE_EDGES, cohort, d) for d in days]
        return fields

    def period_heads(self, day: int, prefixes: list[str]) -> list[str]:
        """Every per-period field except the retention cells: those wait for the sizes."""
        f = PeriodsField
        fields: list[str] = []
        for kind in Period:
            code = PERIOD_CODES[kind]
            last = self.calendar.last_complete(day, kind)
            fields.append(period_field(f.SUBSCRIPTION_CANCELS, code, last))
            fields.append(period_field(f.STAYED_SUBSCRIBED, code, last))
            fields.append(period_field(f.PERIOD_BUYERS, code, last))
            fields.append(period_field(f.PERIOD_REPEAT_BUYERS, code, last))
            for p in self.recent(kind, day):
                fields += [period_field(f.ACTIVE, code, p), period_field(f.ACTIVE, code, p - 1)]
                fields += [period_field(f.RETURNING, code, p), period_field(f.INSTALLS, code, p)]
            for prefix in prefixes:
                fields += [period_field(f.COHORT_SIZE, code, last, scope=prefix)]
                fields += [period_field(f.STAYED_IN_BASE, code, last, scope=prefix)]
                if prefix and kind is Period.DAY:
                    continue  # daily cohorts are not broken down
                fields += [
                    period_field(f.COHORT_SIZE, code, p, scope=prefix)
                    for p in self.recent(kind, day)
                ]
        for month in self.recent(Period.MONTH, day):
            fields += [
                numbered(f.COHORT_PURCHASES, month),
                numbered(f.COHORT_NET_REVENUE, month),
            ]
            for before in range(month, self.calendar.period(day, Period.MONTH)):
                fields.append(cohort_month_field(f.COHORT_LIFE_EDGES, month, before))
                fields.append(cohort_month_field(f.COHORT_LIFE_EDGE_DAYS, month, before))
        for month in self.lifespan_months(day):
            fields += self.movement_fields(Period.MONTH, month)[1]
        return list(dict.fromkeys(fields))

    def cohort_cells(self, day: int, prefixes: list[str], heads: dict[str, int]) -> list[str]:
        """Retained (and, for the totals, unbounded) cells of the cohorts with customers:
        a cohort of size 0 exports nothing, so its cells are not read."""
        fields: list[str] = []
        for kind in Period:
            code = PERIOD_CODES[kind]
            current = self.calendar.period(day, kind)
            for prefix in prefixes:
                if prefix and kind is Period.DAY:
                    continue
                for p in self.recent(kind, day):
                    if heads[period_field(PeriodsField.COHORT_SIZE, code, p, scope=prefix)] <= 0:
                        continue
                    offsets = range(current - p + 1)
                    retained = PeriodsField.RETAINED
                    fields += [cell_field(retained, code, p, k, scope=prefix) for k in offsets]
                    if not prefix:
                        later = PeriodsField.RETAINED_OR_LATER
                        fields += [cell_field(later, code, p, k) for k in offsets]
        return fields

    def fill_cohorts(
        self,
        core: Core | Snapshot,
        kind: Period,
        day: int,
        periods: dict[str, int],
        prefix: str = "",
    ) -> None:
        code = PERIOD_CODES[kind]
        current = self.calendar.period(day, kind)
        for cohort in self.recent(kind, day):
            size = periods[period_field(PeriodsField.COHORT_SIZE, code, cohort, scope=prefix)]
            if size <= 0:
                continue
            core.cohort_size[(kind, cohort)] = size
            for k in range(current - cohort + 1):
                cell = CohortCell(kind, cohort, k)
                core.retained[cell] = periods[
                    cell_field(PeriodsField.RETAINED, code, cohort, k, scope=prefix)
                ]

    def fill_unbounded(
        self, snap: Snapshot, kind: Period, day: int, periods: dict[str, int]
    ) -> None:
        code = PERIOD_CODES[kind]
        for cell in snap.retained:
            if cell.period is kind:
                later = cell_field(PeriodsField.RETAINED_OR_LATER, code, cell.cohort, cell.offset)
                snap.unbounded[cell] = periods[later]

    def churn(
        self,
        kind: Period,
        day: int,
        days: dict[str, int],
        periods: dict[str, int],
        timeline: Timeline | None,
        prefix: str = "",
    ) -> PeriodChurn:
        """Base movement of the last complete period; subscriptions only for the total."""
        last, start, _ = self.last_complete(kind, day)
        movement = self.movement(kind, last, days, periods, prefix)
        if timeline is None:
            return movement
        code = PERIOD_CODES[kind]
        return replace(
            movement,
            cancels=periods[period_field(PeriodsField.SUBSCRIPTION_CANCELS, code, last)],
            subscribers_start=_sum_until(timeline, TimelineField.SUBSCRIBERS, start - 1),
            subscribers_stayed=periods[period_field(PeriodsField.STAYED_SUBSCRIBED, code, last)],
        )

    def movement_fields(
        self, kind: Period, number: int, prefix: str = ""
    ) -> tuple[list[str], list[str]]:
        """The day fields and period fields movement reads for one period."""
        code = PERIOD_CODES[kind]
        start, end = (
            self.calendar.period_start(number, kind),
            self.calendar.period_end(number, kind),
        )
        day_fields = [numbered(DaysField.BASE, day, scope=prefix) for day in (start - 1, end)]
        period_fields = [
            period_field(PeriodsField.COHORT_SIZE, code, number, scope=prefix),
            period_field(PeriodsField.STAYED_IN_BASE, code, number, scope=prefix),
        ]
        return day_fields, period_fields

    def movement(
        self,
        kind: Period,
        number: int,
        days: dict[str, int],
        periods: dict[str, int],
        prefix: str = "",
    ) -> PeriodChurn:
        """Base at the start and end of a period, its new customers and those who stayed."""
        (before, end), (new, stayed) = self.movement_fields(kind, number, prefix)
        return PeriodChurn(
            period=kind,
            number=number,
            base_start=days[before],
            base_end=days[end],
            new=periods[new],
            stayed=periods[stayed],
            cancels=0,
            subscribers_start=0,
            subscribers_stayed=0,
        )

    def lifecycle(self, kind: Period, day: int, periods: dict[str, int]) -> list[Lifecycle]:
        code, f = PERIOD_CODES[kind], PeriodsField
        return [
            Lifecycle(
                period=kind,
                number=p,
                active=periods[period_field(f.ACTIVE, code, p)],
                previous_active=periods[period_field(f.ACTIVE, code, p - 1)],
                new=periods[period_field(f.COHORT_SIZE, code, p)],
                returning=periods[period_field(f.RETURNING, code, p)],
                installs=periods[period_field(f.INSTALLS, code, p)],
            )
            for p in self.recent(kind, day)
        ]

    def fill_value(
        self,
        snap: Snapshot,
        day: int,
        days: dict[str, int],
        periods: dict[str, int],
        timeline: Timeline,
    ) -> None:
        """Purchases, net revenue and customer-days of active life up to the end of `day`,
        of every customer and of each recent monthly cohort with customers."""
        month = self.calendar.period(day, Period.MONTH)
        this_month = range(self.calendar.period_start(month, Period.MONTH), day + 1)
        edges = _series(timeline, TimelineField.LIFE_EDGES)
        edge_days = _series(timeline, TimelineField.LIFE_EDGE_DAYS)
        # a month's edge sum is often 0 and then has no field: take both series' months
        earlier = [
            (edges[q], edge_days[q]) for q in edges.keys() | edge_days.keys() if int(q) < month
        ]
        snap.value[None] = CohortValue(
            purchases=snap.purchases.purchases,
            net_milli=snap.purchases.net_milli,
            customer_days=_life_days(
                day, earlier, [(d, days[numbered(DaysField.LIFE_EDGES, d)]) for d in this_month]
            ),
        )
        f, month_code = PeriodsField, PERIOD_CODES[Period.MONTH]
        for cohort in self.recent(Period.MONTH, day):
            if periods[period_field(f.COHORT_SIZE, month_code, cohort)] <= 0:
                continue
            earlier = [
                (
                    periods[cohort_month_field(f.COHORT_LIFE_EDGES, cohort, q)],
                    periods[cohort_month_field(f.COHORT_LIFE_EDGE_DAYS, cohort, q)],
                )
                for q in range(cohort, month)
            ]
            edges_this_month = [
                (d, days[cohort_month_field(DaysField.COHORT_LIFE_EDGES, cohort, d)])
                for d in this_month
            ]
            snap.value[cohort] = CohortValue(
                purchases=periods[numbered(f.COHORT_PURCHASES, cohort)],
                net_milli=periods[numbered(f.COHORT_NET_REVENUE, cohort)],
                customer_days=_life_days(day, earlier, edges_this_month),
            )

    def fill_buyers(self, snap: Snapshot, day: int, periods: dict[str, int]) -> None:
        """Buyers and repeat buyers of the latest complete period of each kind."""
        for kind in Period:
            code, last = PERIOD_CODES[kind], self.last_complete(kind, day)[0]
            snap.buyers.append(
                PeriodBuyers(
                    period=kind,
                    buyers=periods[period_field(PeriodsField.PERIOD_BUYERS, code, last)],
                    repeat_buyers=periods[
                        period_field(PeriodsField.PERIOD_REPEAT_BUYERS, code, last)
                    ],
                )
            )

    def fill_timeline(self, snap: Snapshot, day: int, timeline: Timeline) -> None:
        snap.subscribers = _sum_until(timeline, TimelineField.SUBSCRIBERS, day)
        snap.mrr_twelfths = _sum_until(timeline, TimelineField.MRR, day)
        for tenure, churned, won_back in TENURES:
            snap.churned[tenure] = _sum_until(timeline, churned, day)
            snap.won_back[tenure] = _sum_until(timeline, won_back, day)
        # each respondent's counted answer adds 1 from its day and 1 less when it stops
        # counting (a later answer, or the end of its window)
        for group, prefix in NPS_GROUPS:
            snap.nps[group] = _sum_until(timeline, prefix, day)
        for name, count in _series(timeline, TimelineField.RFM_KEY).items():
            if count:
                snap.rfm[_rfm_key(name)] += count


def _rfm_key(name: str) -> RfmKey:
    """(last purchase day or None, F score, M score, first day or None) of an RFM key."""
    purchased, frequency, monetary, first = name.split(":")
    return RfmKey(
        last_purchase=None if purchased == TimelineField.RFM_NO_PURCHASE else int(purchased),
        frequency=int(frequency),
        monetary=int(monetary),
        first=None if first == TimelineField.RFM_NOT_NEW else int(first),
    )


def _series(timeline: Timeline, prefix: str) -> Counter[str]:
    """The series of a timeline field prefix."""
    return timeline[prefix.removesuffix(":")]


def _life_days(day: int, earlier: list[tuple[int, int]], this_month: list[tuple[int, int]]) -> int:
    """Customer-days of active life up to the end of `day`: an edge e on day d adds
    e * (day + 1 - d). Earlier months come as (sum of edges, sum of edge * day), the
    days of `day`'s month as (d, e)."""
    total = sum((day + 1) * edges - edge_days for edges, edge_days in earlier)
    return total + sum(edge * (day + 1 - d) for d, edge in this_month)


def _sum_until(timeline: Timeline, prefix: str, day: int) -> int:
    """Sum of a day-keyed timeline series over all days up to and including `day`."""
    return sum(value for when, value in _series(timeline, prefix).items() if int(when) <= day)
