"""Day, week and month cutting, checked against datetime arithmetic on explicit dates."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from core.calendar import Calendar, Period, date_to_day, day_to_date


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def test_utc_day_boundary() -> None:
    cal = Calendar(UTC)
    assert day_to_date(cal.day(ms("2026-03-01T23:59:59.999+00:00"))) == date(2026, 3, 1)
    assert day_to_date(cal.day(ms("2026-03-02T00:00:00+00:00"))) == date(2026, 3, 2)


def test_zone_cuts_by_local_midnight() -> None:
    cal = Calendar(ZoneInfo("America/New_York"))
    # 03:30 UTC on the 2nd is still the evening of the 1st in New York.
    assert day_to_date(cal.day(ms("2026-03-02T03:30:00+00:00"))) == date(2026, 3, 1)
    assert day_to_date(cal.day(ms("2026-03-02T05:00:00+00:00"))) == date(2026, 3, 2)


def test_dst_change_keeps_local_days() -> None:
    cal = Calendar(ZoneInfo("Europe/Berlin"))
    # 2026-03-29 is the spring-forward day: local midnight is 23:00 UTC before, 22:00 after.
    assert day_to_date(cal.day(ms("2026-03-28T23:00:00+00:00"))) == date(2026, 3, 29)
    assert day_to_date(cal.day(ms("2026-03-29T21:59:59+00:00"))) == date(2026, 3, 29)
    assert day_to_date(cal.day(ms("2026-03-29T22:00:00+00:00"))) == date(2026, 3, 30)


def test_negative_offset_near_epoch_rounds_down() -> None:
    cal = Calendar(ZoneInfo("Pacific/Honolulu"))
    assert day_to_date(cal.day(ms("2000-01-01T05:00:00+00:00"))) == date(1999, 12, 31)


@pytest.mark.parametrize("start", range(7))
def test_weeks_start_on_the_configured_day(start: int) -> None:
    cal = Calendar(UTC, week_start=start)
    for offset in range(400):
        d = date(2025, 12, 1) + timedelta(days=offset)
        week = cal.period(date_to_day(d), Period.WEEK)
        first = day_to_date(cal.period_start(week, Period.WEEK))
        assert first.weekday() == start
        assert first <= d < first + timedelta(days=7)
        assert cal.period_end(week, Period.WEEK) == cal.period_start(week, Period.WEEK) + 6


def test_months_and_labels() -> None:
    cal = Calendar(UTC)
    for d in (date(2024, 2, 29), date(2025, 12, 31), date(2026, 1, 1), date(2026, 3, 15)):
        month = cal.period(date_to_day(d), Period.MONTH)
        assert cal.label(month, Period.MONTH) == f"{d.year:04d}-{d.month:02d}"
        assert day_to_date(cal.period_start(month, Period.MONTH)) == d.replace(day=1)
    feb = cal.period(date_to_day(date(2024, 2, 10)), Period.MONTH)
    assert day_to_date(cal.period_end(feb, Period.MONTH)) == date(2024, 2, 29)
    monday = cal.period(date_to_day(date(2026, 3, 4)), Period.WEEK)
    assert cal.label(monday, Period.WEEK) == "2026-03-02"
    assert cal.label(date_to_day(date(2026, 3, 4)), Period.DAY) == "2026-03-04"
