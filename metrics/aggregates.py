"""Read the per-shard aggregates from Redis and sum them into one snapshot.

Three pipelined round trips per scrape, whatever the number of customers: the shard
totals, timelines and dimension registries first (they give the watermark), then
the day cells and the per-period heads (cohort sizes among them), and last the
retention cells of the cohorts that have customers.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import NamedTuple

from redis import Redis

from core.calendar import Calendar, Period
from core.schema import DIMENSIONS, OTHER, PERIOD_CODES, UNKNOWN, Keys, registry_key
from core.settings import Settings

WINDOWS = (1, 7, 30)

# Timeline series (subscriber deltas, first churns, RFM keys) by name, then by the
# rest of the field name (a day, or the RFM key).
Timeline = defaultdict[str, Counter[str]]


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

    @property
    def lost(self) -> int:
        return self.base_start - self.stayed


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
    """Purchases, net revenue and observed customer-days of one cohort (or all)."""

    purchases: int
    net_milli: int
    customer_days: int


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
    watermark_day: int | None = None
    totals: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    invalid: Counter[str] = field(default_factory=Counter)
    active: dict[int, int] = field(default_factory=dict)
    cohort_size: dict[tuple[Period, int], int] = field(default_factory=dict)
    retained: dict[CohortCell, int] = field(default_factory=dict)
    unbounded: dict[CohortCell, int] = field(default_factory=dict)
    churn: list[PeriodChurn] = field(default_factory=list)
    lifecycle: list[Lifecycle] = field(default_factory=list)
    value: dict[int | None, CohortValue] = field(default_factory=dict)
    subscribers: int = 0
    mrr_milli: int = 0
    nps: Counter[str] = field(default_factory=Counter)
    churned: Counter[str] = field(default_factory=Counter)
    won_back: Counter[str] = field(default_factory=Counter)
    rfm: Counter[tuple[int, int, int, int | None]] = field(default_factory=Counter)
    breakdowns: dict[tuple[str, str], Core] = field(default_factory=dict)


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

    def read(self) -> Snapshot:
        snap = Snapshot()
        timeline, scopes = self._read_totals(snap)
        max_ts = snap.totals.pop("watermark_ms", None)
        if max_ts is None:
            return snap
        snap.watermark_ms = max_ts - self.lateness_ms
        today = self.calendar.day(snap.watermark_ms)
        snap.watermark_day = today
        prefixes = ["", *scopes.values()]
        days, periods = self._sum_fields(
            (1, self._day_fields(today, prefixes)), (2, self._period_heads(today, prefixes))
        )
        (cells,) = self._sum_fields((2, self._cohort_cells(today, prefixes, periods)))
        periods |= cells
        snap.active = {n: days[f"a{n}:{today}"] for n in WINDOWS}
        snap.nps = Counter(
            {
                group: sum(days[f"{code}:{today - i}"] for i in range(self.nps_days))
                for group, code in (("promoter", "np"), ("passive", "nq"), ("detractor", "nd"))
            }
        )
        for kind in Period:
            self._fill_cohorts(snap, kind, today, periods)
            self._fill_unbounded(snap, kind, today, periods)
            snap.churn.append(self._churn(kind, today, days, periods, timeline))
            snap.lifecycle += self._lifecycle(kind, today, periods)
        for scope, prefix in scopes.items():
            snap.breakdowns[scope] = self._core(today, days, periods, prefix)
        self._fill_value(snap, today, periods)
        self._fill_timeline(snap, today, timeline)
        return snap

    def _read_totals(self, snap: Snapshot) -> tuple[Timeline, dict[tuple[str, str], str]]:
        """Sum the shard totals into the snapshot; return the summed timeline and the scopes."""
        pipe = self.redis.pipeline(transaction=False)
        for shard in range(self.keys.shards):
            agg, _, _, line = self.keys.aggregates(shard)
            pipe.hgetall(agg)
            pipe.hgetall(line)
        for dimension in DIMENSIONS:
            pipe.hgetall(registry_key(self.namespace, dimension))
        replies = pipe.execute()
        shard_replies = replies[: 2 * self.keys.shards]
        timeline: Timeline = defaultdict(Counter)
        for totals, line in zip(shard_replies[::2], shard_replies[1::2], strict=True):
            for raw_name, raw_value in totals.items():
                name, value = raw_name.decode(), int(raw_value)
                if name == "watermark_ms":
                    snap.totals[name] = max(snap.totals.get(name, value), value)
                elif name.startswith("e:"):
                    snap.events[name[2:]] += value
                elif name.startswith("i:"):
                    snap.invalid[name[2:]] += value
                elif not name.startswith(("o:", "m:")):
                    snap.totals[name] += value
            for raw_name, raw_value in line.items():
                series, _, rest = raw_name.decode().partition(":")
                timeline[series][rest] += int(raw_value)
        snap.customers = snap.totals["customers"]
        return timeline, _scopes(replies[2 * self.keys.shards :])

    def _core(self, today: int, days: dict[str, int], periods: dict[str, int], prefix: str) -> Core:
        core = Core(active={n: days[f"{prefix}a{n}:{today}"] for n in WINDOWS})
        for kind in Period:
            if kind is not Period.DAY:  # daily cohorts are not broken down
                self._fill_cohorts(core, kind, today, periods, prefix)
            core.churn.append(self._churn(kind, today, days, periods, None, prefix))
        return core

    def _sum_fields(self, *requests: tuple[int, list[str]]) -> list[dict[str, int]]:
        """HMGET each (aggregate hash, fields) request on every shard in one round trip,
        and sum the shards; a field missing on a shard counts 0."""
        pipe = self.redis.pipeline(transaction=False)
        for which, names in requests:
            for shard in range(self.keys.shards):
                if names:  # HMGET needs at least one field
                    pipe.hmget(self.keys.aggregates(shard)[which], names)
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
        for code in ("np", "nq", "nd"):
            fields += [f"{code}:{today - i}" for i in range(self.nps_days)]
        for prefix in prefixes:
            fields += [f"{prefix}a{n}:{today}" for n in WINDOWS]
            for kind in Period:
                _, start, end = self._last_complete(kind, today)
                fields += [f"{prefix}b:{start - 1}", f"{prefix}b:{end}"]
        return list(dict.fromkeys(fields))

    def _period_heads(self, today: int, prefixes: list[str]) -> list[str]:
        """Every per-period field except the retention cells: those wait for the sizes."""
        fields: list[str] = []
        for kind in Period:
            code = PERIOD_CODES[kind]
            last = self.calendar.period(today, kind) - 1
            fields.append(f"sc:{code}:{last}")
            for p in self._recent(kind, today):
                fields += [f"p:{code}:{p}", f"p:{code}:{p - 1}", f"r:{code}:{p}", f"i:{code}:{p}"]
            for prefix in prefixes:
                fields += [f"{prefix}z:{code}:{last}", f"{prefix}s:{code}:{last}"]
                if prefix and kind is Period.DAY:
                    continue  # daily cohorts are not broken down
                fields += [f"{prefix}z:{code}:{p}" for p in self._recent(kind, today)]
        for month in self._recent(Period.MONTH, today):
            fields += [f"vp:{month}", f"vr:{month}", f"vf:{month}"]
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
                    if heads[f"{prefix}z:{code}:{p}"] <= 0:
                        continue
                    offsets = range(current - p + 1)
                    fields += [f"{prefix}c:{code}:{p}:{k}" for k in offsets]
                    if not prefix:
                        fields += [f"u:{code}:{p}:{k}" for k in offsets]
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
            size = periods[f"{prefix}z:{code}:{cohort}"]
            if size <= 0:
                continue
            core.cohort_size[(kind, cohort)] = size
            for k in range(current - cohort + 1):
                cell = CohortCell(kind, cohort, k)
                core.retained[cell] = periods[f"{prefix}c:{code}:{cohort}:{k}"]

    def _fill_unbounded(
        self, snap: Snapshot, kind: Period, today: int, periods: dict[str, int]
    ) -> None:
        code = PERIOD_CODES[kind]
        for cell in snap.retained:
            if cell.period is kind:
                snap.unbounded[cell] = periods[f"u:{code}:{cell.cohort}:{cell.offset}"]

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
        code = PERIOD_CODES[kind]
        last, start, end = self._last_complete(kind, today)
        return PeriodChurn(
            period=kind,
            number=last,
            base_start=days[f"{prefix}b:{start - 1}"],
            base_end=days[f"{prefix}b:{end}"],
            new=periods[f"{prefix}z:{code}:{last}"],
            stayed=periods[f"{prefix}s:{code}:{last}"],
            cancels=periods[f"sc:{code}:{last}"] if timeline is not None else 0,
            subscribers_start=_sum_until(timeline, "sd", start - 1) if timeline is not None else 0,
        )

    def _lifecycle(self, kind: Period, today: int, periods: dict[str, int]) -> list[Lifecycle]:
        code = PERIOD_CODES[kind]
        return [
            Lifecycle(
                period=kind,
                number=p,
                active=periods[f"p:{code}:{p}"],
                previous_active=periods[f"p:{code}:{p - 1}"],
                new=periods[f"z:{code}:{p}"],
                returning=periods[f"r:{code}:{p}"],
                installs=periods[f"i:{code}:{p}"],
            )
            for p in self._recent(kind, today)
        ]

    def _fill_value(self, snap: Snapshot, today: int, periods: dict[str, int]) -> None:
        totals = snap.totals
        snap.value[None] = CohortValue(
            purchases=totals["purchases"],
            net_milli=totals["revenue_milli"] - totals["refunded_milli"],
            customer_days=snap.customers * (today + 1) - totals["sumf"],
        )
        for month in self._recent(Period.MONTH, today):
            size = periods[f"z:m:{month}"]
            if size > 0:
                snap.value[month] = CohortValue(
                    purchases=periods[f"vp:{month}"],
                    net_milli=periods[f"vr:{month}"],
                    customer_days=size * (today + 1) - periods[f"vf:{month}"],
                )

    def _fill_timeline(self, snap: Snapshot, today: int, timeline: Timeline) -> None:
        snap.subscribers = _sum_until(timeline, "sd", today)
        snap.mrr_milli = _sum_until(timeline, "sm", today)
        for tenure, code in (("quick", "q"), ("late", "l")):
            snap.churned[tenure] = _sum_until(timeline, f"c{code}", today)
            snap.won_back[tenure] = _sum_until(timeline, f"w{code}", today)
        for name, count in timeline["rf"].items():
            if count:
                last, frequency, monetary, first = name.split(":")
                first_day = None if first == "x" else int(first)
                snap.rfm[(int(last), int(frequency), int(monetary), first_day)] += count


def _sum_until(timeline: Timeline, series: str, day: int) -> int:
    """Sum of a day-keyed timeline series over all days up to and including `day`."""
    return sum(value for when, value in timeline[series].items() if int(when) <= day)


def _scopes(registries: list[dict[bytes, bytes]]) -> dict[tuple[str, str], str]:
    """(dimension, value) -> field prefix, from the registries plus unknown and other."""
    scopes: dict[tuple[str, str], str] = {}
    for (dimension, letter), registry in zip(DIMENSIONS.items(), registries, strict=True):
        values = {v.decode(): c.decode() for v, c in registry.items()}
        values |= {"unknown": UNKNOWN, "other": OTHER}
        for value, code in values.items():
            scopes[(dimension, value)] = f"{letter}{code}|"
    return scopes
