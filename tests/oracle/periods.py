"""Calendar arithmetic on datetime.date objects: a period is represented by its first day."""

from __future__ import annotations

from datetime import date, timedelta
from zoneinfo import ZoneInfo

from tests.oracle.basics import EPOCH, OracleSettings

PERIODS = ("day", "week", "month")


def local_day(ms: int, zone: ZoneInfo) -> date:
    return (EPOCH + timedelta(milliseconds=ms)).astimezone(zone).date()


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


def recent_periods(T: date, kind: str, s: OracleSettings) -> list[date]:
    """The K most recent periods up to and including period(T), newest first."""
    recent = [period_of(T, kind, s.week_start)]
    while len(recent) < s.cohorts_kept:
        recent.append(prev_period(recent[-1], kind, s.week_start))
    return recent


def last_complete(T: date, kind: str, s: OracleSettings) -> tuple[date, date]:
    """(first day, last day) of the period before period(T)."""
    pT = period_of(T, kind, s.week_start)
    return prev_period(pT, kind, s.week_start), pT - timedelta(days=1)
