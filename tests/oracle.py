"""Independent, obviously-correct computation of every exported number.

Straight from docs/definitions.md with sets and loops, no incremental tricks. Output
is a flat dict {(sample_name, ((label, value), ...sorted)): value} — the same shape
`flatten()` gives for a scrape, so a comparison is one dict equality.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Key = tuple[str, tuple[tuple[str, str], ...]]


@dataclass(frozen=True)
class OracleSettings:
    tz: str = "UTC"
    week_start: int = 0  # Monday, as date.weekday()
    churn_window_days: int = 30
    allowed_lateness_seconds: int = 0
    cohorts_kept: int = 12
    activity_types: frozenset[str] = field(
        default_factory=lambda: frozenset(
            {
                "install",
                "app_open",
                "session",
                "purchase",
                "subscription_start",
                "subscription_renew",
            }
        )
    )
    churn_types: frozenset[str] = frozenset({"uninstall", "subscription_cancel"})


def key(name: str, **labels: str) -> Key:
    return (name, tuple(sorted(labels.items())))


def ts_ms(value: str | int | float) -> int:
    """RFC 3339 string (with offset) or epoch milliseconds -> epoch milliseconds."""
    if isinstance(value, str):
        dt = datetime.fromisoformat(value)
        assert dt.tzinfo is not None, value
        return (dt - EPOCH) // timedelta(milliseconds=1)
    return int(value)


# --- calendar, on datetime.date objects -------------------------------------------------


def local_day(ms: int, zone: ZoneInfo) -> date:
    return (EPOCH + timedelta(milliseconds=ms)).astimezone(zone).date()


def period_of(d: date, kind: str, week_start: int) -> date:
    """A period is represented by its first day."""
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


PERIODS = ("day", "week", "month")


# --- the computation --------------------------------------------------------------------


def compute(events: list[dict | bytes], s: OracleSettings = OracleSettings()) -> dict[Key, float]:
    """Every exported number for these delivered (valid) events; duplicates allowed."""
    zone = ZoneInfo(s.tz)
    unique: dict[str, dict] = {}
    for ev in events:
        if isinstance(ev, bytes | bytearray):
            ev = json.loads(ev)
        if ev["event_id"] not in unique:
            unique[ev["event_id"]] = ev

    active: dict[str, set[date]] = {}
    churn: dict[str, set[date]] = {}
    types: Counter[str] = Counter()
    max_ts = None
    for ev in unique.values():
        ms = ts_ms(ev["ts"])
        max_ts = ms if max_ts is None else max(max_ts, ms)
        types[ev["type"]] += 1
        d = local_day(ms, zone)
        if ev["type"] in s.activity_types:
            active.setdefault(ev["customer_id"], set()).add(d)
        if ev["type"] in s.churn_types:
            churn.setdefault(ev["customer_id"], set()).add(d)

    out: dict[Key, float] = {}
    for t, n in types.items():
        out[key("retention_events_total", type=t)] = n
    if max_ts is None:
        return out
    watermark_ms = max_ts - s.allowed_lateness_seconds * 1000
    out[key("retention_watermark_seconds")] = watermark_ms / 1000
    T = local_day(watermark_ms, zone)

    tracked = set(active)
    out[key("retention_customers")] = len(tracked)

    for n in (1, 7, 30):
        window = {T - timedelta(days=i) for i in range(n)}
        out[key("retention_active_customers", window=f"{n}d")] = sum(
            1 for c in tracked if active[c] & window
        )

    first = {c: min(active[c]) for c in tracked}

    def in_base(c: str, t: date) -> bool:
        days = [a for a in active.get(c, ()) if a <= t]
        if not days:
            return False
        a = max(days)
        if (t - a).days >= s.churn_window_days:
            return False
        return not any(a <= x <= t for x in churn.get(c, ()))

    for kind in PERIODS:
        pT = period_of(T, kind, s.week_start)
        # Cohorts: the K most recent periods at or before period(T); size > 0 only.
        cohorts = [pT]
        while len(cohorts) < s.cohorts_kept:
            cohorts.append(prev_period(cohorts[-1], kind, s.week_start))
        for cohort in cohorts:
            members = [c for c in tracked if period_of(first[c], kind, s.week_start) == cohort]
            if not members:
                continue
            lab = {"cohort_period": kind, "cohort": label(cohort, kind)}
            out[key("retention_cohort_size", **lab)] = len(members)
            q, offset = cohort, 0
            while q <= pT:
                retained = sum(
                    1
                    for c in members
                    if any(period_of(a, kind, s.week_start) == q for a in active[c])
                )
                assert offset == period_index(q, kind) - period_index(cohort, kind)
                out[key("retention_cohort_retained", offset=str(offset), **lab)] = retained
                out[key("retention_cohort_ratio", offset=str(offset), **lab)] = retained / len(
                    members
                )
                q, offset = next_period(q, kind), offset + 1

        # Last complete period.
        start = prev_period(pT, kind, s.week_start)
        end = pT - timedelta(days=1)
        before = start - timedelta(days=1)
        base_s = {c for c in tracked if in_base(c, before)}
        base_e = {c for c in tracked if in_base(c, end)}
        new = {c for c in tracked if start <= first[c] <= end}
        lost = base_s - base_e
        out[key("retention_base_start_customers", period=kind)] = len(base_s)
        out[key("retention_base_end_customers", period=kind)] = len(base_e)
        out[key("retention_new_customers", period=kind)] = len(new)
        out[key("retention_lost_customers", period=kind)] = len(lost)
        if base_s:
            out[key("retention_churn_ratio", period=kind)] = len(lost) / len(base_s)
            out[key("retention_crr", period=kind)] = (len(base_e) - len(new)) / len(base_s)
    return out


# --- scrape side ------------------------------------------------------------------------

COMPARED = frozenset(
    {
        "retention_customers",
        "retention_active_customers",
        "retention_cohort_size",
        "retention_cohort_retained",
        "retention_cohort_ratio",
        "retention_churn_ratio",
        "retention_crr",
        "retention_base_start_customers",
        "retention_base_end_customers",
        "retention_new_customers",
        "retention_lost_customers",
        "retention_watermark_seconds",
        "retention_events_total",
    }
)
# Counters whose zero-valued series carry no information (a type never seen).
DROP_ZERO = frozenset({"retention_events_total", "retention_events_invalid_total"})


def flatten(text: str, names: frozenset[str] = COMPARED) -> dict[Key, float]:
    """Parse Prometheus text format into the oracle's shape, keeping only `names`."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[Key, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name not in names:
                continue
            k = (sample.name, tuple(sorted(sample.labels.items())))
            assert k not in out, f"duplicate series {k}"
            out[k] = sample.value
    return out


def flatten_all(text: str) -> dict[Key, float]:
    """Every `retention_*` sample of a scrape (the `_created` timestamps excluded)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[Key, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("retention_") and not sample.name.endswith("_created"):
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def normalise(d: dict[Key, float]) -> dict[Key, float]:
    """Drop zero counters and compare the watermark in whole milliseconds."""
    out = {}
    for k, v in d.items():
        if k[0] in DROP_ZERO and v == 0:
            continue
        if k[0] == "retention_watermark_seconds":
            v = round(v * 1000)
        out[k] = v
    return out


def diff(expected: dict[Key, float], got: dict[Key, float], limit: int = 40) -> str:
    """Readable difference of two flat dicts ('' when equal)."""
    expected, got = normalise(expected), normalise(got)
    lines = []
    for k in sorted(set(expected) | set(got)):
        e, g = expected.get(k, "<absent>"), got.get(k, "<absent>")
        if e != g:
            lines.append(
                f"{k[0]}{{{','.join(f'{a}={b!r}' for a, b in k[1])}}}: expected {e} got {g}"
            )
    head = "\n".join(lines[:limit])
    more = f"\n... and {len(lines) - limit} more" if len(lines) > limit else ""
    return f"{len(lines)} differences:\n{head}{more}" if lines else ""
