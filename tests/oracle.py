"""Independent, obviously-correct computation of every exported number.

Straight from docs/definitions.md with sets and loops, no incremental tricks. Output
is a flat dict {(sample_name, ((label, value), ...sorted)): value} — the same shape
`flatten()` gives for a scrape, so a comparison is one dict equality.

Money is handled as integer thousandths ("milli"): each event's amount is rounded with
round(amount * 1000), sums are exact integers, and an exported amount is milli / 1000.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Key = tuple[str, tuple[tuple[str, str], ...]]
EventLike = Mapping[str, Any] | bytes | bytearray


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
    purchase_types: frozenset[str] = frozenset({"purchase"})
    refund_types: frozenset[str] = frozenset({"refund"})
    install_type: str = "install"
    subscribe_types: frozenset[str] = frozenset({"subscription_start", "subscription_renew"})
    cancel_type: str = "subscription_cancel"
    nps_type: str = "nps"
    nps_window_days: int = 30
    quick_churn_days: int = 7
    clv_max_lifespan_years: float = 5
    rfm_recency_days: tuple[int, int, int, int] = (7, 14, 30, 60)  # R = 5, 4, 3, 2 if r <= ...
    rfm_frequency: tuple[int, ...] = (2, 3, 5, 10)
    rfm_monetary: tuple[int, ...] = (50, 150, 500, 1500)  # currency units
    rfm_new_days: int = 14


def key(name: str, **labels: str) -> Key:
    return (name, tuple(sorted(labels.items())))


def ts_ms(value: str | int | float) -> int:
    """RFC 3339 string (with offset) or epoch milliseconds -> epoch milliseconds."""
    if isinstance(value, str):
        dt = datetime.fromisoformat(value)
        assert dt.tzinfo is not None, value
        return (dt - EPOCH) // timedelta(milliseconds=1)
    return int(value)


def milli(event: Mapping[str, Any]) -> int:
    """The event's amount in thousandths, rounded per event (missing = 0)."""
    return round(float(event.get("amount") or 0) * 1000)


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
LIFECYCLE_STATES = ("new", "returning", "resurrecting", "dormant")
NPS_GROUPS = ("promoter", "passive", "detractor")
TENURES = ("quick", "late")
RFM_SEGMENTS = (
    "new",
    "vip",
    "pre_vip",
    "loyal",
    "at_risk",
    "lost",
    "hibernating",
    "active",
)


def rfm_segment(r: int, f: int, m: int, is_new: bool) -> str:
    """The named segment of R, F, M scores; the first rule that matches wins."""
    if is_new:
        return "new"
    if r >= 4 and f >= 4 and m >= 4:
        return "vip"
    if r >= 3 and f >= 3 and m >= 3:
        return "pre_vip"
    if r >= 3 and f >= 2:
        return "loyal"
    if r <= 2 and (f >= 3 or m >= 3):
        return "at_risk"
    if r == 1:
        return "lost"
    if r == 2:
        return "hibernating"
    return "active"


# --- the computation --------------------------------------------------------------------


def pure_activity(s: OracleSettings) -> frozenset[str]:
    """Types whose only effect is to make the customer active that day."""
    other = (
        s.churn_types
        | s.purchase_types
        | s.refund_types
        | s.subscribe_types
        | {s.install_type, s.cancel_type, s.nps_type}
    )
    return s.activity_types - other


def compute(events: Sequence[EventLike], s: OracleSettings = OracleSettings()) -> dict[Key, float]:
    """Every exported number for these delivered (valid) events; duplicates allowed."""
    zone = ZoneInfo(s.tz)
    unique: dict[str, Mapping[str, Any]] = {}
    for raw in events:
        ev: Mapping[str, Any] = json.loads(raw) if isinstance(raw, bytes | bytearray) else raw
        if ev["type"] == s.nps_type and ev.get("score") is None:
            continue  # invalid: the decoder dead-letters an nps event without a score
        if ev["event_id"] not in unique:
            unique[ev["event_id"]] = ev

    active: dict[str, set[date]] = {}
    churn: dict[str, set[date]] = {}
    types: Counter[str] = Counter()
    purchases: dict[str, list[int]] = {}  # customer -> milli amount of each purchase
    refunds: dict[str, list[int]] = {}  # customer -> milli amount of each refund
    install_days: list[date] = []
    # customer -> [(day, type, ts ms, event_id, milli)] of subscription events
    subs: dict[str, list[tuple[date, str, int, str, int]]] = {}
    cancel_days: list[date] = []
    nps_answers: list[tuple[date, int]] = []
    max_ts = None
    pure_days: set[tuple[str, date, str]] = set()
    for ev in unique.values():
        ms = ts_ms(ev["ts"])
        max_ts = ms if max_ts is None else max(max_ts, ms)
        kind, cid = ev["type"], ev["customer_id"]
        d = local_day(ms, zone)
        # An event whose only effect is an active day counts once per customer, day
        # and type, since a re-sent one cannot be told from a second visit that day.
        if kind not in pure_activity(s):
            types[kind] += 1
        elif (cid, d, kind) not in pure_days:
            pure_days.add((cid, d, kind))
            types[kind] += 1
        if kind in s.activity_types:
            active.setdefault(cid, set()).add(d)
        if kind in s.churn_types:
            churn.setdefault(cid, set()).add(d)
        if kind in s.purchase_types:
            purchases.setdefault(cid, []).append(milli(ev))
        if kind in s.refund_types:
            refunds.setdefault(cid, []).append(milli(ev))
        if kind == s.install_type:
            install_days.append(d)
        if kind in s.subscribe_types or kind == s.cancel_type:
            subs.setdefault(cid, []).append((d, kind, ms, ev["event_id"], milli(ev)))
        if kind == s.cancel_type:
            cancel_days.append(d)
        if kind == s.nps_type:
            nps_answers.append((d, int(ev["score"])))

    out: dict[Key, float] = {}
    for name, n in types.items():
        out[key("retention_events_total", type=name)] = n
    if max_ts is None:
        return out
    watermark_ms = max_ts - s.allowed_lateness_seconds * 1000
    out[key("retention_watermark_seconds")] = watermark_ms / 1000
    T = local_day(watermark_ms, zone)

    tracked = set(active)
    out[key("retention_customers")] = len(tracked)

    window_counts = {}
    for n in (1, 7, 30):
        window = {T - timedelta(days=i) for i in range(n)}
        window_counts[n] = sum(1 for c in tracked if active[c] & window)
        out[key("retention_active_customers", window=f"{n}d")] = window_counts[n]
    if window_counts[30]:
        out[key("retention_stickiness_ratio")] = window_counts[1] / window_counts[30]

    first = {c: min(active[c]) for c in tracked}

    def in_base(c: str, t: date) -> bool:
        days = [a for a in active.get(c, ()) if a <= t]
        if not days:
            return False
        a = max(days)
        if (t - a).days >= s.churn_window_days:
            return False
        return not any(a <= x <= t for x in churn.get(c, ()))

    def subscribed(c: str, t: date) -> bool:
        mine = [e for e in subs.get(c, ()) if e[0] <= t]
        if not mine:
            return False
        latest = max(e[0] for e in mine)
        kinds = {e[1] for e in mine if e[0] == latest}
        return bool(kinds & s.subscribe_types) and s.cancel_type not in kinds

    month_lost, month_start_base = 0, 0
    recent_months: list[date] = []
    for kind in PERIODS:
        pT = period_of(T, kind, s.week_start)
        # The K most recent periods up to and including period(T), newest first.
        recent = [pT]
        while len(recent) < s.cohorts_kept:
            recent.append(prev_period(recent[-1], kind, s.week_start))
        if kind == "month":
            recent_months = recent

        # Cohorts: those of the recent periods with size > 0.
        for cohort in recent:
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
                unbounded = sum(
                    1
                    for c in members
                    if any(period_of(a, kind, s.week_start) >= q for a in active[c])
                )
                assert offset == period_index(q, kind) - period_index(cohort, kind)
                cell = {"offset": str(offset), **lab}
                out[key("retention_cohort_retained", **cell)] = retained
                out[key("retention_cohort_ratio", **cell)] = retained / len(members)
                out[key("retention_cohort_unbounded_retained", **cell)] = unbounded
                out[key("retention_cohort_unbounded_ratio", **cell)] = unbounded / len(members)
                q, offset = next_period(q, kind), offset + 1

        # Lifecycle, active customers and installs of each recent period.
        def active_in(p: date, kind: str = kind) -> set[str]:
            return {
                c for c in tracked if any(period_of(a, kind, s.week_start) == p for a in active[c])
            }

        for p in recent:
            lab = {"period": kind, "start": label(p, kind)}
            prev = prev_period(p, kind, s.week_start)
            now_active, prev_active = active_in(p), active_in(prev)
            out[key("retention_period_active_customers", **lab)] = len(now_active)
            out[key("retention_period_installs", **lab)] = sum(
                1 for d in install_days if period_of(d, kind, s.week_start) == p
            )
            states = {
                "new": {c for c in tracked if period_of(first[c], kind, s.week_start) == p},
                "returning": now_active & prev_active,
                "resurrecting": {c for c in now_active - prev_active if first[c] < p},
                "dormant": prev_active - now_active,
            }
            for state, members_ in states.items():
                out[key("retention_lifecycle_customers", state=state, **lab)] = len(members_)
            if prev_active:
                out[key("retention_lifecycle_churn_ratio", **lab)] = len(states["dormant"]) / len(
                    prev_active
                )

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
        if kind == "month":
            month_lost, month_start_base = len(lost), len(base_s)

        # Subscriptions over the same last complete period.
        cancels = sum(1 for d in cancel_days if start <= d <= end)
        subs_start = sum(1 for c in subs if subscribed(c, before))
        out[key("retention_subscription_cancels", period=kind)] = cancels
        out[key("retention_subscribers_start", period=kind)] = subs_start
        if subs_start:
            out[key("retention_subscription_churn_ratio", period=kind)] = cancels / subs_start

    # --- purchases and value ------------------------------------------------------------
    all_purchases = [a for amounts in purchases.values() for a in amounts]
    all_refunds = [a for amounts in refunds.values() for a in amounts]
    revenue, refunded = sum(all_purchases), sum(all_refunds)
    purchasing = [c for c, amounts in purchases.items() if len(amounts) >= 1]
    repeat = [c for c, amounts in purchases.items() if len(amounts) >= 2]
    out[key("retention_purchases_total")] = len(all_purchases)
    out[key("retention_revenue_total")] = revenue / 1000
    out[key("retention_refunds_total")] = len(all_refunds)
    out[key("retention_refunded_revenue_total")] = refunded / 1000
    out[key("retention_net_revenue")] = (revenue - refunded) / 1000
    out[key("retention_purchasing_customers")] = len(purchasing)
    out[key("retention_repeat_customers")] = len(repeat)
    if purchasing:
        out[key("retention_repeat_purchase_ratio")] = len(repeat) / len(purchasing)
        out[key("retention_purchase_frequency")] = len(all_purchases) / len(purchasing)
    if all_purchases:
        out[key("retention_average_order_value")] = (revenue - refunded) / 1000 / len(all_purchases)

    # --- customer lifetime value --------------------------------------------------------
    if month_start_base and month_lost:
        lifespan = min(s.clv_max_lifespan_years, 1 / (12 * (month_lost / month_start_base)))
    else:
        lifespan = s.clv_max_lifespan_years
    out[key("retention_clv_lifespan_seconds")] = lifespan * 365 * 86400

    def value(cohort: str, n_purchases: int, net_milli: int, members: list[str]) -> None:
        customer_days = sum((T - first[c]).days + 1 for c in members)
        if customer_days <= 0:
            return
        per_year = n_purchases * 365 / customer_days
        out[key("retention_purchases_per_customer_year", cohort=cohort)] = per_year
        if n_purchases == 0:
            return
        aov = net_milli / 1000 / n_purchases
        if aov > 0:
            out[key("retention_clv", cohort=cohort)] = aov * per_year * lifespan

    value("all", len(all_purchases), revenue - refunded, sorted(tracked))
    for month in recent_months:
        members = sorted(c for c in tracked if first[c].replace(day=1) == month)
        if not members:
            continue
        value(
            label(month, "month"),
            sum(len(purchases.get(c, [])) for c in members),
            sum(sum(purchases.get(c, [])) - sum(refunds.get(c, [])) for c in members),
            members,
        )

    # --- subscriptions now ----------------------------------------------------------------
    subscribers = [c for c in subs if subscribed(c, T)]
    mrr = 0
    for c in subscribers:
        starts = [e for e in subs[c] if e[1] in s.subscribe_types]  # over all events
        latest = max(starts, key=lambda e: (e[2], e[3]))
        mrr += latest[4]
    out[key("retention_subscribers")] = len(subscribers)
    out[key("retention_mrr")] = mrr / 1000

    # --- NPS ------------------------------------------------------------------------------
    window_start = T - timedelta(days=s.nps_window_days - 1)
    groups: Counter[str] = Counter()
    for d, score in nps_answers:
        if window_start <= d <= T:
            groups["promoter" if score >= 9 else "passive" if score >= 7 else "detractor"] += 1
    for group in NPS_GROUPS:
        out[key("retention_nps_responses", group=group)] = groups[group]
    responses = sum(groups.values())
    if responses:
        out[key("retention_nps")] = 100 * (groups["promoter"] - groups["detractor"]) / responses

    # --- quick and late churn, win-back ---------------------------------------------------
    churned: Counter[str] = Counter()
    won_back: Counter[str] = Counter()
    for c in tracked:
        day = first[c]
        while day <= T and in_base(c, day):
            day += timedelta(days=1)
        if day > T:
            continue  # the first churn day is after T: not churned (yet)
        tenure = "quick" if (day - first[c]).days < s.quick_churn_days else "late"
        churned[tenure] += 1
        if any(a > day for a in active[c]):
            won_back[tenure] += 1
    for tenure in TENURES:
        out[key("retention_churned_customers", tenure=tenure)] = churned[tenure]
        out[key("retention_winback_customers", tenure=tenure)] = won_back[tenure]
        if churned[tenure]:
            out[key("retention_winback_ratio", tenure=tenure)] = won_back[tenure] / churned[tenure]

    # --- RFM ------------------------------------------------------------------------------
    segments: Counter[str] = Counter()
    for c in tracked:
        if first[c] > T:
            continue
        recency = max(0, (T - max(active[c])).days)
        r = 1
        for score, limit in zip((5, 4, 3, 2), s.rfm_recency_days, strict=True):
            if recency <= limit:
                r = score
                break
        n = len(purchases.get(c, []))
        f = 1 + sum(1 for limit in s.rfm_frequency if limit <= n)
        m = sum(purchases.get(c, [])) - sum(refunds.get(c, []))  # milli
        mscore = 1 + sum(1 for limit in s.rfm_monetary if limit * 1000 <= m)
        segments[rfm_segment(r, f, mscore, (T - first[c]).days < s.rfm_new_days)] += 1
    for segment in RFM_SEGMENTS:
        out[key("retention_rfm_customers", segment=segment)] = segments[segment]
    return out


# --- scrape side ------------------------------------------------------------------------

# Integer counts: compared exactly.
COUNTS = frozenset(
    {
        "retention_customers",
        "retention_active_customers",
        "retention_cohort_size",
        "retention_cohort_retained",
        "retention_base_start_customers",
        "retention_base_end_customers",
        "retention_new_customers",
        "retention_lost_customers",
        "retention_events_total",
        "retention_cohort_unbounded_retained",
        "retention_period_active_customers",
        "retention_period_installs",
        "retention_lifecycle_customers",
        "retention_purchases_total",
        "retention_refunds_total",
        "retention_purchasing_customers",
        "retention_repeat_customers",
        "retention_subscribers",
        "retention_subscription_cancels",
        "retention_subscribers_start",
        "retention_nps_responses",
        "retention_churned_customers",
        "retention_winback_customers",
        "retention_rfm_customers",
    }
)
# Quotients and money: compared with math.isclose, since the exporter may divide or
# scale in another (equally valid) order of floating-point operations.
QUOTIENTS = frozenset(
    {
        "retention_cohort_ratio",
        "retention_churn_ratio",
        "retention_crr",
        "retention_cohort_unbounded_ratio",
        "retention_lifecycle_churn_ratio",
        "retention_stickiness_ratio",
        "retention_repeat_purchase_ratio",
        "retention_purchase_frequency",
        "retention_average_order_value",
        "retention_purchases_per_customer_year",
        "retention_clv_lifespan_seconds",
        "retention_clv",
        "retention_subscription_churn_ratio",
        "retention_nps",
        "retention_winback_ratio",
    }
)
MONEY = frozenset(
    {
        "retention_revenue_total",
        "retention_refunded_revenue_total",
        "retention_net_revenue",
        "retention_mrr",
    }
)
COMPARED = COUNTS | QUOTIENTS | MONEY | {"retention_watermark_seconds"}
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


def normalise(d: Mapping[Key, float]) -> dict[Key, float]:
    """Drop zero counters and compare the watermark in whole milliseconds."""
    out = {}
    for k, v in d.items():
        if k[0] in DROP_ZERO and v == 0:
            continue
        if k[0] == "retention_watermark_seconds":
            v = round(v * 1000)
        out[k] = v
    return out


def same(name: str, expected: float, got: float) -> bool:
    """Counts exactly; quotients and money up to float rounding (rel 1e-9)."""
    if name in QUOTIENTS or name in MONEY:
        return math.isclose(expected, got, rel_tol=1e-9, abs_tol=1e-12)
    return expected == got


def diff(expected: Mapping[Key, float], got: Mapping[Key, float], limit: int = 40) -> str:
    """Readable difference of two flat dicts ('' when equal)."""
    expected, got = normalise(expected), normalise(got)
    lines = []
    for k in sorted(set(expected) | set(got)):
        e, g = expected.get(k), got.get(k)
        if e is None or g is None or not same(k[0], e, g):
            lines.append(
                f"{k[0]}{{{','.join(f'{a}={b!r}' for a, b in k[1])}}}: "
                f"expected {'<absent>' if e is None else e} got {'<absent>' if g is None else g}"
            )
    head = "\n".join(lines[:limit])
    more = f"\n... and {len(lines) - limit} more" if len(lines) > limit else ""
    return f"{len(lines)} differences:\n{head}{more}" if lines else ""
