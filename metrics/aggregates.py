"""Read the per-shard aggregates from Redis and sum them into one snapshot.

Three pipelined round trips per scrape, whatever the number of customers: the shard
totals, timelines and dimension registries first (they give the watermark), then
the day cells and the per-period heads (cohort sizes among them), and last the
retention cells of the cohorts that have customers.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import replace

from redis import Redis

from core.calendar import Calendar, Period
from core.rules import ACTIVITY_WINDOWS
from core.schema import (
    DIMENSIONS,
    OTHER,
    PERIOD_CODES,
    UNKNOWN,
    DaysField,
    Keys,
    PeriodsField,
    TimelineField,
    TotalsField,
    active_window,
    cell_field,
    numbered,
    period_field,
    registry_key,
    scope,
)
from core.settings import Settings
from core.totals import HEADLINE, headline, sum_totals
from metrics.snapshot import (
    CohortCell,
    CohortValue,
    Core,
    Lifecycle,
    PeriodChurn,
    Purchases,
    Snapshot,
)

# Timeline series (subscriber deltas, first churns, RFM keys) by field prefix without
# its ':', then by the rest of the field name (a day, or the RFM key).
Timeline = defaultdict[str, Counter[str]]
NPS_GROUPS = (
    ("promoter", DaysField.NPS_PROMOTERS),
    ("passive", DaysField.NPS_PASSIVES),
    ("detractor", DaysField.NPS_DETRACTORS),
)
# Tenure classes of first churns: (label, first-churn series, won-back series).
TENURES = (
    ("quick", TimelineField.FIRST_CHURN_QUICK, TimelineField.WON_BACK_QUICK),
    ("late", TimelineField.FIRST_CHURN_LATE, TimelineField.WON_BACK_LATE),
)


class AggregateReader:
    """Builds a Snapshot from one namespace's shard aggregates."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.keys = Keys(settings.namespace, settings.shards)
        self.calendar = Calendar(settings.zone, settings.week_start_index)
        self.lateness_ms = settings.allowed_lateness_seconds * 1000
        self.cohorts_kept = settings.cohorts_kept
        self.nps_days = settings.nps_window_days
        self.namespace = settings.namespace

    def headline(self) -> tuple[int | None, int]:
        """(newest event time applied or None, customers) over the shards: a cheap look."""
        pipe = self.redis.pipeline(transaction=False)
        for shard in range(self.keys.shards):
            pipe.hmget(self.keys.totals(shard), HEADLINE)
        marks, customers = [], 0
        for values in pipe.execute():
            watermark, count = headline(values)
            customers += count
            if watermark is not None:
                marks.append(watermark)
        return (max(marks) if marks else None), customers

    def read(self) -> Snapshot:
        snap = Snapshot()
        max_ts, timeline, scopes = self._read_totals(snap)
        if max_ts is None:
            return snap
        snap.watermark_ms = max_ts - self.lateness_ms
        today = self.calendar.day(snap.watermark_ms)
        snap.watermark_day = today
        prefixes = ["", *scopes.values()]
        days, periods = self._sum_fields(
            (self.keys.days, self._day_fields(today, prefixes)),
            (self.keys.periods, self._period_heads(today, prefixes)),
        )
        cells_wanted = self._cohort_cells(today, prefixes, periods)
        (cells,) = self._sum_fields((self.keys.periods, cells_wanted))
        periods |= cells
        snap.active = {n: days[numbered(active_window(n), today)] for n in ACTIVITY_WINDOWS}
        snap.nps = Counter(
            {
                group: sum(days[numbered(prefix, today - i)] for i in range(self.nps_days))
                for group, prefix in NPS_GROUPS
            }
        )
        for kind in Period:
            self._fill_cohorts(snap, kind, today, periods)
            self._fill_unbounded(snap, kind, today, periods)
            snap.churn.append(self._churn(kind, today, days, periods, timeline))
            snap.lifecycle += self._lifecycle(kind, today, periods)
        for breakdown, prefix in scopes.items():
            snap.breakdowns[breakdown] = self._core(today, days, periods, prefix)
        self._fill_value(snap, today, periods)
        self._fill_timeline(snap, today, timeline)
        return snap

    def _read_totals(
        self, snap: Snapshot
    ) -> tuple[int | None, Timeline, dict[tuple[str, str], str]]:
        """Sum the shard totals into the snapshot; return the newest event time applied,
        the summed timeline and the breakdown scopes."""
        pipe = self.redis.pipeline(transaction=False)
        for shard in range(self.keys.shards):
            pipe.hgetall(self.keys.totals(shard))
            pipe.hgetall(self.keys.timeline(shard))
        for dimension in DIMENSIONS:
            pipe.hgetall(registry_key(self.namespace, dimension))
        replies = pipe.execute()
        shard_replies = replies[: 2 * self.keys.shards]
        totals = sum_totals(shard_replies[::2])
        timeline: Timeline = defaultdict(Counter)
        for line in shard_replies[1::2]:
            for raw_name, raw_value in line.items():
                series, _, rest = raw_name.decode().partition(":")
                timeline[series][rest] += int(raw_value)
        counts = totals.counts
        snap.customers = totals.customers
        snap.events, snap.invalid = totals.events, totals.invalid
        snap.first_day_sum = counts[TotalsField.FIRST_DAY_SUM]
        snap.purchases = Purchases(
            purchases=counts[TotalsField.PURCHASES],
            revenue_milli=counts[TotalsField.REVENUE],
            refunds=counts[TotalsField.REFUNDS],
            refunded_milli=counts[TotalsField.REFUNDED],
            purchasing_customers=counts[TotalsField.PURCHASING_CUSTOMERS],
            repeat_customers=counts[TotalsField.REPEAT_CUSTOMERS],
        )
        return totals.watermark_ms, timeline, _scopes(replies[2 * self.keys.shards :])

    def _core(self, today: int, days: dict[str, int], periods: dict[str, int], prefix: str) -> Core:
        active = {
            n: days[numbered(active_window(n), today, scope=prefix)] for n in ACTIVITY_WINDOWS
        }
        core = Core(active=active)
        for kind in Period:
            if kind is not Period.DAY:  # daily cohorts are not broken down
                self._fill_cohorts(core, kind, today, periods, prefix)
            core.churn.append(self._churn(kind, today, days, periods, None, prefix))
        return core

    def _sum_fields(
        self, *requests: tuple[Callable[[int], str], list[str]]
    ) -> list[dict[str, int]]:
        """HMGET each (aggregate hash, fields) request on every shard in one round trip,
        and sum the shards; a field missing on a shard counts 0."""
        pipe = self.redis.pipeline(transaction=False)
        for which, names in requests:
            for shard in range(self.keys.shards):
                if names:  # HMGET needs at least one field
                    pipe.hmget(which(shard), names)
        replies = iter(pipe.execute())
        sums: list[dict[str, int]] = []
        for _, names in requests:
            if not names:
                sums.append({})
                continue
            shards = [[int(v or 0) for v in next(replies)] for _ in range(self.keys.shards)]
            sums.append(dict(zip(names, map(sum, zip(*shards, strict=True)), strict=True)))
        return sums

    def _recent(self, kind: Period, today: int) -> range:
        current = self.calendar.period(today, kind)
        return range(current - self.cohorts_kept + 1, current + 1)

    def _last_complete(self, kind: Period, today: int) -> tuple[int, int, int]:
        """Number, first day and last day of the period before the watermark's."""
        last = self.calendar.period(today, kind) - 1
        return last, self.calendar.period_start(last, kind), self.calendar.period_end(last, kind)

    def _day_fields(self, today: int, prefixes: list[str]) -> list[str]:
        fields: list[str] = []
        for _, nps in NPS_GROUPS:
            fields += [numbered(nps, today - i) for i in range(self.nps_days)]
        for prefix in prefixes:
            fields += [numbered(active_window(n), today, scope=prefix) for n in ACTIVITY_WINDOWS]
            for kind in Period:
                _, start, end = self._last_complete(kind, today)
                fields += [numbered(DaysField.BASE, day, scope=prefix) for day in (start - 1, end)]
        return list(dict.fromkeys(fields))

    def _period_heads(self, today: int, prefixes: list[str]) -> list[str]:
        """Every per-period field except the retention cells: those wait for the sizes."""
        f = PeriodsField
        fields: list[str] = []
        for kind in Period:
            code = PERIOD_CODES[kind]
            last = self.calendar.period(today, kind) - 1
            fields.append(period_field(f.SUBSCRIPTION_CANCELS, code, last))
            for p in self._recent(kind, today):
                fields += [period_field(f.ACTIVE, code, p), period_field(f.ACTIVE, code, p - 1)]
                fields += [period_field(f.RETURNING, code, p), period_field(f.INSTALLS, code, p)]
            for prefix in prefixes:
                fields += [period_field(f.COHORT_SIZE, code, last, scope=prefix)]
                fields += [period_field(f.STAYED_IN_BASE, code, last, scope=prefix)]
                if prefix and kind is Period.DAY:
                    continue  # daily cohorts are not broken down
                fields += [
                    period_field(f.COHORT_SIZE, code, p, scope=prefix)
                    for p in self._recent(kind, today)
                ]
        for month in self._recent(Period.MONTH, today):
            fields += [
                numbered(f.COHORT_PURCHASES, month),
                numbered(f.COHORT_NET_REVENUE, month),
            ]
            fields += [numbered(f.COHORT_FIRST_DAY_SUM, month)]
        return list(dict.fromkeys(fields))

    def _cohort_cells(self, today: int, prefixes: list[str], heads: dict[str, int]) -> list[str]:
        """Retained (and, for the totals, unbounded) cells of the cohorts with customers:
        a cohort of size 0 exports nothing, so its cells are not read."""
        fields: list[str] = []
        for kind in Period:
            code = PERIOD_CODES[kind]
            current = self.calendar.period(today, kind)
            for prefix in prefixes:
                if prefix and kind is Period.DAY:
                    continue
                for p in self._recent(kind, today):
                    if heads[period_field(PeriodsField.COHORT_SIZE, code, p, scope=prefix)] <= 0:
                        continue
                    offsets = range(current - p + 1)
                    retained = PeriodsField.RETAINED
                    fields += [cell_field(retained, code, p, k, scope=prefix) for k in offsets]
                    if not prefix:
                        later = PeriodsField.RETAINED_OR_LATER
                        fields += [cell_field(later, code, p, k) for k in offsets]
        return fields

    def _fill_cohorts(
        self,
        core: Core | Snapshot,
        kind: Period,
        today: int,
        periods: dict[str, int],
        prefix: str = "",
    ) -> None:
        code = PERIOD_CODES[kind]
        current = self.calendar.period(today, kind)
        for cohort in self._recent(kind, today):
            size = periods[period_field(PeriodsField.COHORT_SIZE, code, cohort, scope=prefix)]
            if size <= 0:
                continue
            core.cohort_size[(kind, cohort)] = size
            for k in range(current - cohort + 1):
                cell = CohortCell(kind, cohort, k)
                core.retained[cell] = periods[
                    cell_field(PeriodsField.RETAINED, code, cohort, k, scope=prefix)
                ]

    def _fill_unbounded(
        self, snap: Snapshot, kind: Period, today: int, periods: dict[str, int]
    ) -> None:
        code = PERIOD_CODES[kind]
        for cell in snap.retained:
            if cell.period is kind:
                later = cell_field(PeriodsField.RETAINED_OR_LATER, code, cell.cohort, cell.offset)
                snap.unbounded[cell] = periods[later]

    def _churn(
        self,
        kind: Period,
        today: int,
        days: dict[str, int],
        periods: dict[str, int],
        timeline: Timeline | None,
        prefix: str = "",
    ) -> PeriodChurn:
        """Base movement of the last complete period; subscriptions only for the total."""
        last, start, _ = self._last_complete(kind, today)
        movement = self._movement(kind, last, days, periods, prefix)
        if timeline is None:
            return movement
        code = PERIOD_CODES[kind]
        return replace(
            movement,
            cancels=periods[period_field(PeriodsField.SUBSCRIPTION_CANCELS, code, last)],
            subscribers_start=_sum_until(timeline, TimelineField.SUBSCRIBERS, start - 1),
        )

    def _movement_fields(
        self, kind: Period, number: int, prefix: str = ""
    ) -> tuple[list[str], list[str]]:
        """The day fields and period fields _movement reads for one period."""
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

    def _movement(
        self,
        kind: Period,
        number: int,
        days: dict[str, int],
        periods: dict[str, int],
        prefix: str = "",
    ) -> PeriodChurn:
        """Base at the start and end of a period, its new customers and those who stayed."""
        (before, end), (new, stayed) = self._movement_fields(kind, number, prefix)
        return PeriodChurn(
            period=kind,
            number=number,
            base_start=days[before],
            base_end=days[end],
            new=periods[new],
            stayed=periods[stayed],
            cancels=0,
            subscribers_start=0,
        )

    def churn_history(
        self, today: int, depths: dict[Period, int]
    ) -> dict[Period, list[PeriodChurn]]:
        """Base movement of the `depth` complete periods before today's, oldest first, per
        period kind: one round trip."""
        numbers = {
            kind: range(
                self.calendar.period(today, kind) - depth, self.calendar.period(today, kind)
            )
            for kind, depth in depths.items()
        }
        day_fields: list[str] = []
        period_fields: list[str] = []
        for kind, periods_of_kind in numbers.items():
            for number in periods_of_kind:
                wanted_days, wanted_periods = self._movement_fields(kind, number)
                day_fields += wanted_days
                period_fields += wanted_periods
        days, periods = self._sum_fields(
            (self.keys.days, list(dict.fromkeys(day_fields))),
            (self.keys.periods, list(dict.fromkeys(period_fields))),
        )
        return {
            kind: [self._movement(kind, number, days, periods) for number in periods_of_kind]
            for kind, periods_of_kind in numbers.items()
        }

    def _lifecycle(self, kind: Period, today: int, periods: dict[str, int]) -> list[Lifecycle]:
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
            for p in self._recent(kind, today)
        ]

    def _fill_value(self, snap: Snapshot, today: int, periods: dict[str, int]) -> None:
        snap.value[None] = CohortValue(
            purchases=snap.purchases.purchases,
            net_milli=snap.purchases.net_milli,
            customer_days=snap.customers * (today + 1) - snap.first_day_sum,
        )
        f, month_code = PeriodsField, PERIOD_CODES[Period.MONTH]
        for month in self._recent(Period.MONTH, today):
            size = periods[period_field(f.COHORT_SIZE, month_code, month)]
            if size > 0:
                snap.value[month] = CohortValue(
                    purchases=periods[numbered(f.COHORT_PURCHASES, month)],
                    net_milli=periods[numbered(f.COHORT_NET_REVENUE, month)],
                    customer_days=size * (today + 1)
                    - periods[numbered(f.COHORT_FIRST_DAY_SUM, month)],
                )

    def _fill_timeline(self, snap: Snapshot, today: int, timeline: Timeline) -> None:
        snap.subscribers = _sum_until(timeline, TimelineField.SUBSCRIBERS, today)
        snap.mrr_milli = _sum_until(timeline, TimelineField.MRR, today)
        for tenure, churned, won_back in TENURES:
            snap.churned[tenure] = _sum_until(timeline, churned, today)
            snap.won_back[tenure] = _sum_until(timeline, won_back, today)
        for name, count in _series(timeline, TimelineField.RFM_KEY).items():
            if count:
                last, frequency, monetary, first = name.split(":")
                first_day = None if first == TimelineField.RFM_NOT_NEW else int(first)
                snap.rfm[(int(last), int(frequency), int(monetary), first_day)] += count


def _series(timeline: Timeline, prefix: str) -> Counter[str]:
    """The series of a timeline field prefix."""
    return timeline[prefix.removesuffix(":")]


def _sum_until(timeline: Timeline, prefix: str, day: int) -> int:
    """Sum of a day-keyed timeline series over all days up to and including `day`."""
    return sum(value for when, value in _series(timeline, prefix).items() if int(when) <= day)


def _scopes(registries: list[dict[bytes, bytes]]) -> dict[tuple[str, str], str]:
    """(dimension, value) -> field prefix, from the registries plus unknown and other."""
    scopes: dict[tuple[str, str], str] = {}
    for dimension, registry in zip(DIMENSIONS, registries, strict=True):
        values = {v.decode(): c.decode() for v, c in registry.items()}
        values |= {"unknown": UNKNOWN, "other": OTHER}
        for value, code in values.items():
            scopes[(dimension, value)] = scope(dimension, code)
    return scopes
