"""Churn and CRR of each of the last N complete periods, read from the Redis aggregates.

The exporter serves only the latest complete period; a chart of churn over time needs the
earlier ones, which the per-shard aggregates already hold (base per day, new and stayed
per period). The exporter's reader and formulas (core/rules.py), so the newest point
equals its gauges.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from core.calendar import Calendar, Period, evaluation_day
from core.errors import EXIT_UNREACHABLE, CommandError
from core.redis_client import REDIS_ERRORS, describe_failure, sync_client
from core.rules import churn_ratio, crr
from core.settings import Settings
from metrics.aggregates import AggregateReader
from metrics.snapshot import PeriodChurn

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
        return churn_ratio(self.lost, self.base_start)

    @property
    def crr(self) -> float | None:
        return crr(self.base_start, self.base_end, self.new)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "churn_ratio": self.churn, "crr": self.crr}


def churn_history(settings: Settings, watermark_ms: int) -> dict[str, list[ChurnPoint]]:
    """Per period type, the periods complete at the evaluation day, oldest first."""
    calendar = Calendar(settings.zone, settings.week_start_index)
    day = evaluation_day(calendar.day(watermark_ms))
    try:
        redis = sync_client(settings, timeout=5)
        try:
            history = AggregateReader(redis, settings).churn_history(day, DEPTH)
        finally:
            redis.close()
    except REDIS_ERRORS as exc:
        failure = describe_failure(settings, exc)
        raise CommandError(failure.message, EXIT_UNREACHABLE) from None
    return {
        kind.value: [_point(calendar, movement) for movement in movements]
        for kind, movements in history.items()
    }


def _point(calendar: Calendar, movement: PeriodChurn) -> ChurnPoint:
    return ChurnPoint(
        movement.period.value,
        calendar.label(movement.number, movement.period),
        movement.base_start,
        movement.base_end,
        movement.new,
        movement.lost,
    )
