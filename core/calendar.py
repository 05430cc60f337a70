"""Cut event times into local days, weeks and months as small integers.

Days are counted from 1970-01-01 in the configured zone, so the Redis script can do
all period arithmetic with integers and never needs to know about time zones.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, tzinfo
from enum import StrEnum

EPOCH = date(1970, 1, 1)
EPOCH_ORDINAL = EPOCH.toordinal()
MS_PER_DAY = 86_400_000


class Period(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


class Calendar:
    """Maps epoch milliseconds to local day numbers and day numbers to period numbers."""

    def __init__(self, zone: tzinfo, week_start: int = 0) -> None:
        self.zone = zone
        self.week_start = week_start  # 0 = Monday, as date.weekday()
        self._utc = zone is UTC or getattr(zone, "key", None) in {"UTC", "Etc/UTC"}

    def day(self, ts_ms: int) -> int:
        """Local calendar day of an event time, as days since 1970-01-01."""
        if self._utc:
            return ts_ms // MS_PER_DAY
        local = datetime.fromtimestamp(ts_ms / 1000, tz=self.zone)
        return local.toordinal() - EPOCH_ORDINAL

    def day_start_ms(self, day: int) -> int:
        """First epoch millisecond of a local day: its local midnight (DST-safe)."""
        d = day_to_date(day)
        local = datetime(d.year, d.month, d.day, tzinfo=self.zone)
        return int(local.timestamp() * 1000)

    def period(self, day: int, kind: Period) -> int:
        """Week or month number of a day; a day is its own period."""
        if kind is Period.DAY:
            return day
        if kind is Period.WEEK:
            # 1970-01-01 was a Thursday (weekday 3).
            return (day + 3 - self.week_start) // 7
        d = day_to_date(day)
        return d.year * 12 + d.month - 1

    def period_start(self, number: int, kind: Period) -> int:
        """First day of a period."""
        if kind is Period.DAY:
            return number
        if kind is Period.WEEK:
            return number * 7 - 3 + self.week_start
        year, month0 = divmod(number, 12)
        return date_to_day(date(year, month0 + 1, 1))

    def period_end(self, number: int, kind: Period) -> int:
        """Last day of a period."""
        return self.period_start(number + 1, kind) - 1

    def last_complete(self, day: int, kind: Period) -> int:
        """The latest period whose last day is at most `day` (the evaluation day)."""
        return self.period(day + 1, kind) - 1

    def running(self, day: int, kind: Period) -> int | None:
        """The period containing `day` when `day` is not its last day (it is still
        running at the end of `day`), else None; a day period is never running."""
        number = self.period(day, kind)
        return number if self.period_end(number, kind) > day else None

    def label(self, number: int, kind: Period) -> str:
        """Human label: ISO date of the first day, or YYYY-MM for a month."""
        if kind is Period.MONTH:
            year, month0 = divmod(number, 12)
            return f"{year:04d}-{month0 + 1:02d}"
        return day_to_date(self.period_start(number, kind)).isoformat()


def evaluation_day(watermark_day: int) -> int:
    """The day every default gauge is evaluated at: the last complete day. The
    watermark's own day is still running (more of its events may come), so it is the
    day before it."""
    return watermark_day - 1


def day_to_date(day: int) -> date:
    return EPOCH + timedelta(days=day)


def date_to_day(d: date) -> int:
    return d.toordinal() - EPOCH_ORDINAL
