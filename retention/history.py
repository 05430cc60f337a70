"""Churn and CRR of each of the last N complete periods, read from the Redis aggregates.

The exporter serves only the latest complete period; a chart of churn over time needs the
earlier ones, which the per-shard aggregates already hold (base per day, new and stayed
per period). Same formulas as the exporter, so the newest point equals its gauges.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from core.calendar import Calendar, Period
from core.errors import EXIT_UNREACHABLE, CommandError
from core.schema import PERIOD_CODES, Keys
from core.settings import Settings

DEPTH = {Period.DAY: 30, Period.WEEK: 12, Period.MONTH: 12}


@dataclass(frozen=True, slots=True)
class ChurnPoint:
    period: str
    label: str
    base_start: int
    base_end: int
    new: int
    lost: int

    @property
    def churn(self) -> float | None:
        return self.lost / self.base_start if self.base_start else None

    @property
    def crr(self) -> float | None:
        return (self.base_end - self.new) / self.base_start if self.base_start else None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "churn_ratio": self.churn, "crr": self.crr}


def churn_history(settings: Settings, watermark_ms: int) -> dict[str, list[ChurnPoint]]:
    """Per period type, the complete periods before the watermark's, oldest first."""
    calendar = Calendar(settings.zone, settings.week_start_index)
    today = calendar.day(watermark_ms)
    wanted: dict[Period, list[tuple[int, str, str, str, str]]] = {}
    for kind, depth in DEPTH.items():
        current, code = calendar.period(today, kind), PERIOD_CODES[kind]
        wanted[kind] = [
            (
                p,
                f"b:{calendar.period_start(p, kind) - 1}",
                f"b:{calendar.period_end(p, kind)}",
                f"z:{code}:{p}",
                f"s:{code}:{p}",
            )
            for p in range(current - depth, current)
        ]
    day_fields = sorted({f for rows in wanted.values() for row in rows for f in row[1:3]})
    per_fields = sorted({f for rows in wanted.values() for row in rows for f in row[3:]})
    days, periods = _sum_fields(settings, day_fields, per_fields)
    out: dict[str, list[ChurnPoint]] = {}
    for kind, rows in wanted.items():
        points = []
        for p, start, end, new, stayed in rows:
            base_start = days[start]
            points.append(
                ChurnPoint(
                    kind.value,
                    calendar.label(p, kind),
                    base_start,
                    days[end],
                    periods[new],
                    base_start - periods[stayed],
                )
            )
        out[kind.value] = points
    return out


def _sum_fields(
    settings: Settings, day_fields: list[str], per_fields: list[str]
) -> tuple[dict[str, int], dict[str, int]]:
    """Sum the fields over all shards: one pipelined round trip."""
    keys = Keys(settings.namespace, settings.shards)
    try:
        redis = Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
        pipe = redis.pipeline(transaction=False)
        for shard in range(settings.shards):
            hashes = keys.aggregates(shard)  # (totals, days, periods, ...)
            pipe.hmget(hashes[1], day_fields)
            pipe.hmget(hashes[2], per_fields)
        replies = pipe.execute()
        redis.close()
    except RedisError as exc:
        raise CommandError(
            f"cannot read Redis at {settings.redis_url} ({exc})", EXIT_UNREACHABLE
        ) from None
    days = dict.fromkeys(day_fields, 0)
    periods = dict.fromkeys(per_fields, 0)
    for i, values in enumerate(replies):
        target, fields = (days, day_fields) if i % 2 == 0 else (periods, per_fields)
        for name, value in zip(fields, values, strict=True):
            if value is not None:
                target[name] += int(value)
    return days, periods
