"""Read the per-shard aggregates from Redis and sum them into one snapshot.

Three pipelined round trips per scrape, whatever the number of customers: the shard
totals, timelines and dimension registries first (they give the watermark), then
the day cells and the per-period heads (cohort sizes among them), and last the
retention cells of the cohorts that have customers. Which fields those are, and the
snapshot parts built from their sums, is metrics/aggregate_fields.py's job.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable

from core.calendar import Calendar, Period, evaluation_day
from core.redis_types import SyncRedis
from core.rules import ACTIVITY_WINDOWS
from core.schema import (
    BUCKET_LABELS,
    DIMENSIONS,
    Keys,
    TotalsField,
    active_window,
    numbered,
    registry_key,
    scope,
)
from core.settings import Settings
from core.totals import HEADLINE, headline, sum_totals
from metrics.aggregate_fields import AggregateFields, Timeline
from metrics.snapshot import Core, PeriodChurn, Purchases, Snapshot


class AggregateReader:
    """Builds a Snapshot from one namespace's shard aggregates."""

    def __init__(self, redis: SyncRedis, settings: Settings) -> None:
        self.redis = redis
        self.keys = Keys(settings.namespace, settings.shards)
        self.calendar = Calendar(settings.zone, settings.week_start_index)
        self.lateness_ms = settings.allowed_lateness_seconds * 1000
        self.fields = AggregateFields(self.calendar, settings.cohorts_kept)
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
        snap.watermark_day = self.calendar.day(snap.watermark_ms)
        # Every default gauge is evaluated at the end of the last complete day; only
        # the so-far series look at the running watermark day.
        day = snap.evaluation_day = evaluation_day(snap.watermark_day)
        prefixes = ["", *scopes.values()]
        so_far = {n: numbered(active_window(n), snap.watermark_day) for n in ACTIVITY_WINDOWS}
        days, periods = self._sum_fields(
            (self.keys.days, [*self.fields.day_fields(day, prefixes), *so_far.values()]),
            (self.keys.periods, self.fields.period_heads(day, prefixes)),
        )
        cells_wanted = self.fields.cohort_cells(day, prefixes, periods)
        (cells,) = self._sum_fields((self.keys.periods, cells_wanted))
        periods |= cells
        snap.active = {n: days[numbered(active_window(n), day)] for n in ACTIVITY_WINDOWS}
        snap.active_so_far = {n: days[name] for n, name in so_far.items()}
        for kind in Period:
            self.fields.fill_cohorts(snap, kind, day, periods)
            self.fields.fill_unbounded(snap, kind, day, periods)
            snap.churn.append(self.fields.churn(kind, day, days, periods, timeline))
            snap.lifecycle += self.fields.lifecycle(kind, day, periods)
        for breakdown, prefix in scopes.items():
            snap.breakdowns[breakdown] = self._core(day, days, periods, prefix)
        snap.lifespan_months = [
            self.fields.movement(Period.MONTH, month, days, periods)
            for month in self.fields.lifespan_months(day)
        ]
        self.fields.fill_value(snap, day, days, periods, timeline)
        self.fields.fill_buyers(snap, day, periods)
        self.fields.fill_timeline(snap, day, timeline)
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
        snap.purchases = Purchases(
            purchases=counts[TotalsField.PURCHASES],
            revenue_milli=counts[TotalsField.REVENUE],
            refunds=counts[TotalsField.REFUNDS],
            refunded_milli=counts[TotalsField.REFUNDED],
            purchasing_customers=counts[TotalsField.PURCHASING_CUSTOMERS],
            repeat_customers=counts[TotalsField.REPEAT_CUSTOMERS],
        )
        return totals.watermark_ms, timeline, _scopes(replies[2 * self.keys.shards :])

    def _core(self, day: int, days: dict[str, int], periods: dict[str, int], prefix: str) -> Core:
        """One breakdown value's part, evaluated at the end of `day` like the totals."""
        active = {n: days[numbered(active_window(n), day, scope=prefix)] for n in ACTIVITY_WINDOWS}
        core = Core(active=active)
        for kind in Period:
            if kind is not Period.DAY:  # daily cohorts are not broken down
                self.fields.fill_cohorts(core, kind, day, periods, prefix)
            core.churn.append(self.fields.churn(kind, day, days, periods, None, prefix))
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

    def churn_history(self, day: int, depths: dict[Period, int]) -> dict[Period, list[PeriodChurn]]:
        """Base movement of the `depth` periods complete at the end of `day` (the
        evaluation day), oldest first, per period kind: one round trip."""
        numbers = {
            kind: range(
                self.calendar.last_complete(day, kind) - depth + 1,
                self.calendar.last_complete(day, kind) + 1,
            )
            for kind, depth in depths.items()
        }
        day_fields: list[str] = []
        period_fields: list[str] = []
        for kind, periods_of_kind in numbers.items():
            for number in periods_of_kind:
                wanted_days, wanted_periods = self.fields.movement_fields(kind, number)
                day_fields += wanted_days
                period_fields += wanted_periods
        days, periods = self._sum_fields(
            (self.keys.days, list(dict.fromkeys(day_fields))),
            (self.keys.periods, list(dict.fromkeys(period_fields))),
        )
        return {
            kind: [self.fields.movement(kind, number, days, periods) for number in periods_of_kind]
            for kind, periods_of_kind in numbers.items()
        }


def _scopes(registries: list[dict[bytes, bytes]]) -> dict[tuple[str, str], str]:
    """(dimension, value) -> field prefix, from the registries plus the two buckets, whose
    labels no registered value can take."""
    scopes: dict[tuple[str, str], str] = {}
    for dimension, registry in zip(DIMENSIONS, registries, strict=True):
        values = {v.decode(): c.decode() for v, c in registry.items()}
        values |= {label: code for code, label in BUCKET_LABELS.items()}
        for value, code in values.items():
            scopes[(dimension, value)] = scope(dimension, code)
    return scopes
