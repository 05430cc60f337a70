"""Read the per-shard aggregates from Redis and sum them into one snapshot.

Two pipelined round trips per scrape, whatever the number of customers: the shard
totals first (they give the watermark), then exactly the day and period cells the
metrics need.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from redis import Redis

from retention.settings import Settings
from streams.calendar import Calendar, Period
from streams.state import Keys

PERIOD_CODES = {Period.DAY: "d", Period.WEEK: "w", Period.MONTH: "m"}
WINDOWS = (1, 7, 30)


@dataclass(frozen=True, slots=True)
class CohortCell:
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

    @property
    def lost(self) -> int:
        return self.base_start - self.stayed


@dataclass(slots=True)
class Snapshot:
    customers: int = 0
    watermark_ms: int | None = None
    watermark_day: int | None = None
    events: Counter[str] = field(default_factory=Counter)
    invalid: Counter[str] = field(default_factory=Counter)
    purchases: int = 0
    revenue_milli: int = 0
    active: dict[int, int] = field(default_factory=dict)
    cohort_size: dict[tuple[Period, int], int] = field(default_factory=dict)
    retained: dict[CohortCell, int] = field(default_factory=dict)
    churn: list[PeriodChurn] = field(default_factory=list)


class AggregateReader:
    """Builds a Snapshot from one namespace's shard aggregates."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.keys = Keys(settings.namespace, settings.shards)
        self.calendar = Calendar(settings.zone, settings.week_start_index)
        self.lateness_ms = settings.allowed_lateness_seconds * 1000
        self.cohorts_kept = settings.cohorts_kept

    def read(self) -> Snapshot:
        snap = Snapshot()
        max_ts = self._read_totals(snap)
        if max_ts is None:
            return snap
        snap.watermark_ms = max_ts - self.lateness_ms
        today = self.calendar.day(snap.watermark_ms)
        snap.watermark_day = today
        day_fields = {f"a{n}:{today}" for n in WINDOWS}
        period_fields: set[str] = set()
        for kind in Period:
            day_fields |= self._churn_day_fields(kind, today)
            period_fields |= self._period_fields(kind, today)
        days = self._sum_fields(1, sorted(day_fields))
        periods = self._sum_fields(2, sorted(period_fields))
        snap.active = {n: days[f"a{n}:{today}"] for n in WINDOWS}
        for kind in Period:
            self._fill_cohorts(snap, kind, today, periods)
            snap.churn.append(self._churn(kind, today, days, periods))
        return snap

    def _read_totals(self, snap: Snapshot) -> int | None:
        pipe = self.redis.pipeline(transaction=False)
        for shard in range(self.keys.shards):
            pipe.hgetall(self.keys.aggregates(shard)[0])
        max_ts: int | None = None
        for totals in pipe.execute():
            for raw_name, raw_value in totals.items():
                name, value = raw_name.decode(), int(raw_value)
                if name == "watermark_ms":
                    max_ts = value if max_ts is None else max(max_ts, value)
                elif name.startswith("e:"):
                    snap.events[name[2:]] += value
                elif name.startswith("i:"):
                    snap.invalid[name[2:]] += value
                elif name == "customers":
                    snap.customers += value
                elif name == "purchases":
                    snap.purchases += value
                elif name == "revenue_milli":
                    snap.revenue_milli += value
        return max_ts

    def _sum_fields(self, which: int, names: list[str]) -> dict[str, int]:
        pipe = self.redis.pipeline(transaction=False)
        for shard in range(self.keys.shards):
            pipe.hmget(self.keys.aggregates(shard)[which], names)
        totals = dict.fromkeys(names, 0)
        for values in pipe.execute():
            for name, value in zip(names, values, strict=True):
                if value is not None:
                    totals[name] += int(value)
        return totals

    def _recent_cohorts(self, kind: Period, today: int) -> Iterable[int]:
        current = self.calendar.period(today, kind)
        return range(current - self.cohorts_kept + 1, current + 1)

    def _period_fields(self, kind: Period, today: int) -> set[str]:
        code = PERIOD_CODES[kind]
        current = self.calendar.period(today, kind)
        fields = {f"z:{code}:{current - 1}", f"s:{code}:{current - 1}"}
        for cohort in self._recent_cohorts(kind, today):
            fields.add(f"z:{code}:{cohort}")
            fields |= {f"c:{code}:{cohort}:{k}" for k in range(current - cohort + 1)}
        return fields

    def _churn_day_fields(self, kind: Period, today: int) -> set[str]:
        last = self.calendar.period(today, kind) - 1
        start = self.calendar.period_start(last, kind)
        return {f"b:{start - 1}", f"b:{self.calendar.period_end(last, kind)}"}

    def _fill_cohorts(
        self, snap: Snapshot, kind: Period, today: int, periods: dict[str, int]
    ) -> None:
        code = PERIOD_CODES[kind]
        current = self.calendar.period(today, kind)
        for cohort in self._recent_cohorts(kind, today):
            size = periods[f"z:{code}:{cohort}"]
            if size <= 0:
                continue
            snap.cohort_size[(kind, cohort)] = size
            for k in range(current - cohort + 1):
                snap.retained[CohortCell(kind, cohort, k)] = periods[f"c:{code}:{cohort}:{k}"]

    def _churn(
        self, kind: Period, today: int, days: dict[str, int], periods: dict[str, int]
    ) -> PeriodChurn:
        code = PERIOD_CODES[kind]
        last = self.calendar.period(today, kind) - 1
        start = self.calendar.period_start(last, kind)
        return PeriodChurn(
            period=kind,
            number=last,
            base_start=days[f"b:{start - 1}"],
            base_end=days[f"b:{self.calendar.period_end(last, kind)}"],
            new=periods[f"z:{code}:{last}"],
            stayed=periods[f"s:{code}:{last}"],
        )
