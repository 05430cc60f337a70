"""Calendar arithmetic on datetime.date objects: a period is represented by its first day.

The evaluation day C is defined here, once: every family of the oracle is computed at
the end of C, and only the "so far" values look at the watermark day T itself.
"""

from __future__ import annotations

from datetime import date, timedelta
from zoneinfo import ZoneInfo

from tests.oracle.basics import EPOCH, OracleSettings

PERIODS = ("day", "week", "month")


def local_day(ms: int, zone: ZoneInfo) -> date:
    return (EPOCH + timedelta(milliseconds=ms)).astimezone(zone).date()


def evaluation_day(watermark_day: date) -> date:
    """C, the day the default gauges are evaluated at: the watermark's day T is still
    running (more of its events may come), so gauges cover complete days, up to the
    end of the day before it."""
    return watermark_day - timedelta(days=1)


def period_of(d: date, kind: str, week_start: int) -> date:
    if kind == "day":
        return d
    if kind == "week":
        return d - timedelta(days=(d.weekday() - week_start) % 7)
    return d.replace(day=1)


def next_period(p: date, kind: str) -> date:
    if kind == "day":
        return p + timedelta(days=1)
    if kind == "week":
        return p + timedelta(days=7)
    return date(p.year + (p.month == 12), p.month % 12 + 1, 1)


def prev_period(p: date, kind: str, week_start: int) -> date:
    return period_of(p - timedelta(days=1), kind, week_start)


def label(p: date, kind: str) -> str:
    return f"{p.year:04d}-{p.month:02d}" if kind == "month" else p.isoformat()


def period_index(p: date, kind: str) -> int:
    """Number of periods between 1970-01-(first) and p; only differences are used."""
    if kind == "day":
        return p.toordinal()
    if kind == "week":
        return p.toordinal() // 7  # p is a week start, so differences are exact
    return p.year * 12 + p.month - 1


def recent_periods(C: date, kind: str, s: OracleSettings) -> list[date]:
    """The K most recent periods up to and including period(C), newest first."""
    recent = [period_of(C, kind, s.week_start)]
    while len(recent) < s.cohorts_kept:
        recent.append(prev_period(recent[-1], kind, s.week_start))
    return recent


def last_complete(C: date, kind: str, s: OracleSettings) -> tuple[date, date]:
    """(first day, last day) of the latest period whose last day is at most C."""
    after = period_of(C + timedelta(days=1), kind, s.week_start)
    return prev_period(after, kind, s.week_start), after - timedelta(days=1)


def running_period(C: date, kind: str, s: OracleSettings) -> date | None:
    """period(C) when C is not its last day (it is still running at the end of C)."""
    p = period_of(C, kind, s.week_start)
    return p if period_of(C + timedelta(days=1), kind, s.week_start) == p else None
