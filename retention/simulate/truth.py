"""The ground truth written beside simulated events: the parameters they were drawn
from, and the realized retention of exactly these events, counted as the tracker counts
them (its calendar, activity types and allowed lateness)."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from core.calendar import Calendar, Period, date_to_day, day_to_date, evaluation_day
from core.rules import ACTIVITY_WINDOWS
from retention.curve import CurvePoint, pooled_curve
from retention.simulate.config import SimConfig
from retention.simulate.generator import SimEvent


def ground_truth(
    config: SimConfig,
    events: list[SimEvent],
    activity: frozenset[str],
    churned_on: Counter[int],
    pure: frozenset[str],
) -> dict[str, Any]:
    """Intended parameters and the realized retention of exactly these events."""
    return {
        "seed": config.seed,
        "profile": config.profile,
        "start": config.start.isoformat(),
        "days": config.days,
        "timezone": str(config.zone),
        "note": (
            "realized: exact counts over the events written beside this file; the tracker "
            "must report the same numbers (same time zone, week start and activity types, "
            "allowed lateness as given). intended: the probabilities the events were drawn "
            "from; realized values scatter around them."
        ),
        "intended": _intended(config),
        "realized": _realized(config, events, activity, pure),
        "churned_for_good_by_day": {
            (config.start + timedelta(days=d)).isoformat(): n for d, n in sorted(churned_on.items())
        },
    }


def _intended(c: SimConfig) -> dict[str, Any]:
    horizon = range(min(c.days, 60))
    survival = [(1 - c.hazard) ** k for k in horizon]
    return {
        "installs_per_day_mean": c.installs,
        "weekly_seasonality": c.weekly,
        "curve": str(c.curve),
        "p_return_by_day_offset": [round(c.curve.p(k), 6) for k in horizon],
        "churn_hazard_per_day": c.hazard,
        "churn_spikes": {
            (c.start + timedelta(days=d)).isoformat(): f for d, f in sorted(c.spikes.items())
        },
        "expected_day_retention_without_spikes": [
            round(c.curve.p(k) * survival[k], 6) for k in horizon
        ],
    }


def _realized(
    c: SimConfig, events: list[SimEvent], activity: frozenset[str], pure: frozenset[str]
) -> dict[str, Any]:
    """Counts over the events; an event of a pure activity type (`pure`) counts once per
    customer, day and type, as the tracker counts it."""
    calendar = Calendar(c.zone, c.week_start)
    first_day = date_to_day(c.start)
    active: dict[str, set[int]] = {}
    types: Counter[str] = Counter()
    pure_days: set[tuple[str, int, str]] = set()
    revenue = 0.0
    for e in events:
        day = first_day + e.day
        if e.kind not in pure or (e.customer, day, e.kind) not in pure_days:
            types[e.kind] += 1
            if e.kind in pure:
                pure_days.add((e.customer, day, e.kind))
        if e.kind in activity:
            active.setdefault(e.customer, set()).add(day)
        if e.kind == "purchase":
            revenue += dict(e.extra)["amount"]
    out: dict[str, Any] = {
        "events": len(events),
        "events_by_type": dict(sorted(types.items())),
        "customers": len(active),
        "purchases": types["purchase"],
        "revenue": round(revenue, 2),
        "currency": c.currency,
    }
    if not events:
        return out
    watermark = max(e.ts_ms for e in events) - c.lateness_ms
    # Counted as the exporter counts them: at the end of the last complete day.
    day = evaluation_day(calendar.day(watermark))
    out["watermark_ms"] = watermark
    out["watermark_day"] = day_to_date(calendar.day(watermark)).isoformat()
    out["as_of_day"] = day_to_date(day).isoformat()
    out["active"] = {
        f"{n}d": sum(1 for days in active.values() if any(0 <= day - d < n for d in days))
        for n in ACTIVITY_WINDOWS
    }
    first = {cid: min(days) for cid, days in active.items()}
    installs = Counter(day_to_date(d).isoformat() for d in first.values())
    out["new_customers_by_day"] = dict(sorted(installs.items()))
    out["cohorts"] = {kind.value: _cohorts(calendar, kind, day, active, first) for kind in Period}
    out["curve"] = {
        kind: [{**asdict(p), "ratio": p.ratio} for p in _curve(cohorts)]
        for kind, cohorts in out["cohorts"].items()
    }
    return out


def _cohorts(
    calendar: Calendar,
    kind: Period,
    day: int,
    active: dict[str, set[int]],
    first: dict[str, int],
) -> dict[str, dict[str, Any]]:
    """cohort label -> size, retained[k] = members active in period cohort + k, and the
    offsets whose period is still running at the end of `day`."""
    current, running = calendar.period(day, kind), calendar.running(day, kind)
    cells: dict[int, dict[int, set[str]]] = {}
    members: Counter[int] = Counter()
    for cid, days in active.items():
        cohort = calendar.period(first[cid], kind)
        if cohort > current:
            continue
        members[cohort] += 1
        row = cells.setdefault(cohort, {})
        for d in days:
            row.setdefault(calendar.period(d, kind) - cohort, set()).add(cid)
    out = {}
    for cohort in sorted(members):
        retained = [len(cells[cohort].get(k, ())) for k in range(current - cohort + 1)]
        out[calendar.label(cohort, kind)] = {
            "size": members[cohort],
            "retained": retained,
            "running": [] if running is None else [running - cohort],
        }
    return out


def _curve(cohorts: dict[str, dict[str, Any]]) -> list[CurvePoint]:
    return pooled_curve(
        (cell["size"], cell["retained"], cell["running"]) for cell in cohorts.values()
    )
