"""Unit checks of the test oracle and the history generator (no servers needed).

The expected numbers below were worked out by hand from docs/definitions.md.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date
from itertools import pairwise
from typing import Any

import pytest

from tests.history import generate_history
from tests.oracle import Key, OracleSettings, compute, key, local_day, ts_ms

# The metrics that existed before the value / lifecycle suite.
BASE_METRICS = frozenset(
    {
        "retention_events_total",
        "retention_watermark_seconds",
        "retention_customers",
        "retention_active_customers",
        "retention_cohort_size",
        "retention_cohort_retained",
        "retention_cohort_ratio",
        "retention_base_start_customers",
        "retention_base_end_customers",
        "retention_new_customers",
        "retention_lost_customers",
        "retention_churn_ratio",
        "retention_crr",
    }
)

# Toy history (UTC unless noted). 2026-03-02 and 2026-04-06 are Mondays.
#   A: install 03-02, app_open 03-03 (sent twice), app_open 03-10, purchase 04-01
#   B: app_open 03-09 08:00, uninstall 03-09 20:00, install 03-20, nps 04-07 12:00
#   C: session 03-05, install 2026-02-28T23:30Z delivered late (00:30 on 03-01 in Berlin),
#      session 04-06
E: list[dict[str, Any]] = [
    {"event_id": "e1", "customer_id": "A", "type": "install", "ts": "2026-03-02T10:00:00Z"},
    {"event_id": "e2", "customer_id": "A", "type": "app_open", "ts": 1772532000000},  # 03-03 10:00Z
    {"event_id": "e2", "customer_id": "A", "type": "app_open", "ts": 1772532000000},
    {"event_id": "e5", "customer_id": "B", "type": "app_open", "ts": "2026-03-09T08:00:00+00:00"},
    {"event_id": "e9", "customer_id": "C", "type": "session", "ts": "2026-03-05T12:00:00-05:00"},
    {"event_id": "e6", "customer_id": "B", "type": "uninstall", "ts": "2026-03-09T20:00:00Z"},
    {"event_id": "e3", "customer_id": "A", "type": "app_open", "ts": "2026-03-10T09:00:00Z"},
    {"event_id": "e10", "customer_id": "C", "type": "install", "ts": "2026-03-01T00:30:00+01:00"},
    {"event_id": "e7", "customer_id": "B", "type": "install", "ts": "2026-03-20T07:00:00Z"},
    {
        "event_id": "e4",
        "customer_id": "A",
        "type": "purchase",
        "ts": "2026-04-01T15:00:00Z",
        "amount": 9.99,
        "currency": "usd",  # the reporting currency, in any case
    },
    {"event_id": "e11", "customer_id": "C", "type": "session", "ts": "2026-04-06T10:00:00Z"},
    {"event_id": "e8", "customer_id": "B", "type": "nps", "ts": "2026-04-07T12:00:00Z", "score": 9},
]


def test_ts_parsing() -> None:
    assert (
        ts_ms(1772532000000) == ts_ms("2026-03-03T10:00:00Z") == ts_ms("2026-03-03T11:00:00+01:00")
    )
    assert ts_ms("2026-03-03T10:00:00.123Z") == 1772532000123


def test_toy_utc() -> None:
    got = compute(E, OracleSettings())
    exp: dict[Key, float] = {}
    for t, n in {
        "install": 3,
        "app_open": 3,
        "purchase": 1,
        "uninstall": 1,
        "nps": 1,
        "session": 2,
    }.items():
        exp[key("retention_events_total", type=t)] = n
    exp[key("retention_watermark_seconds")] = ts_ms("2026-04-07T12:00:00Z") / 1000
    exp[key("retention_customers")] = 3
    # T = 04-07 (B's nps) is running: gauges are evaluated at the end of C = 04-06.
    exp[key("retention_active_customers", window="1d")] = 1  # C 04-06
    exp[key("retention_active_customers", window="7d")] = 2  # A 04-01, C 04-06
    exp[key("retention_active_customers", window="30d")] = 3  # window starts 03-08: B counts

    def cohort(kind: str, c: str, size: int, retained: list[int]) -> None:
        exp[key("retention_cohort_size", cohort_period=kind, cohort=c)] = size
        for off, r in enumerate(retained):
            lab = {"cohort_period": kind, "cohort": c, "offset": str(off)}
            exp[key("retention_cohort_retained", **lab)] = r
            exp[key("retention_cohort_ratio", **lab)] = r / size

    # No day cohort among the 12 days 03-26..04-06. Week 04-06 is running at C (a
    # Monday), so week cohorts run to it as before, and so do the months (April).
    cohort("week", "2026-02-23", 1, [1, 1, 0, 0, 0, 0, 1])  # C moved here by the late install
    cohort("week", "2026-03-02", 1, [1, 1, 0, 0, 1, 0])  # A
    cohort("week", "2026-03-09", 1, [1, 1, 0, 0, 0])  # B
    cohort("month", "2026-02", 1, [1, 1, 1])  # C
    cohort("month", "2026-03", 2, [2, 1])  # A, B

    def churn(kind: str, S: int, E_: int, N: int, lost: int) -> None:
        exp[key("retention_base_start_customers", period=kind)] = S
        exp[key("retention_base_end_customers", period=kind)] = E_
        exp[key("retention_new_customers", period=kind)] = N
        exp[key("retention_lost_customers", period=kind)] = lost
        if S:
            exp[key("retention_churn_ratio", period=kind)] = lost / S
            exp[key("retention_crr", period=kind)] = (E_ - N) / S

    churn("day", 2, 3, 0, 0)  # day C = 04-06: C lapsed at end of 04-05 (31 days), back on 04-06
    churn("week", 3, 2, 0, 1)  # week 03-30: C is lost
    churn("month", 1, 3, 2, 0)  # March: S = {C}, new A and B
    # The value metrics (purchases, subscriptions, NPS, RFM, ...) are checked in
    # test_oracle_value.py.
    assert {k: v for k, v in got.items() if k[0] in BASE_METRICS} == exp


def test_toy_uninstall_before_reinstall() -> None:
    # Cut at 03-17 (Tuesday, T): C = 03-16 and week 03-09..03-15 is the last complete one.
    events = [e for e in E if ts_ms(e["ts"]) < ts_ms("2026-03-17T00:00:00Z")]
    events.append(
        {
            "event_id": "z",
            "customer_id": "B",
            "type": "nps",
            "ts": "2026-03-17T05:00:00Z",
            "score": 5,
        }
    )
    got = compute(events)
    # base(03-08) = {A, C}; base(03-15) = {A, C} (B uninstalled on its last active day);
    # new = {B}.
    assert got[key("retention_base_start_customers", period="week")] == 2
    assert got[key("retention_base_end_customers", period="week")] == 2
    assert got[key("retention_new_customers", period="week")] == 1
    assert got[key("retention_lost_customers", period="week")] == 0
    assert got[key("retention_crr", period="week")] == 0.5
    assert got[key("retention_churn_ratio", period="week")] == 0.0
    # Only A is active in [03-10, 03-16] (on 03-10); everyone in [02-15, 03-16].
    assert got[key("retention_active_customers", window="7d")] == 1
    assert got[key("retention_active_customers", window="30d")] == 3
    # Day 03-16: S = base(03-15) = {A, C}, E = base(03-16) = {A, C}.
    assert got[key("retention_base_start_customers", period="day")] == 2


def test_toy_berlin_moves_late_install_to_march() -> None:
    got = compute(E, OracleSettings(tz="Europe/Berlin"))
    # e10 is 00:30 on 03-01 in Berlin (CET): C's first day is 03-01, cohort month March.
    assert key("retention_cohort_size", cohort_period="month", cohort="2026-02") not in got
    assert got[key("retention_cohort_size", cohort_period="month", cohort="2026-03")] == 3
    # 03-01 is a Sunday: the week cohort is still 02-23.
    assert got[key("retention_cohort_size", cohort_period="week", cohort="2026-02-23")] == 1
    # March's base start (end of 02-28) is now empty: no ratios.
    assert got[key("retention_base_start_customers", period="month")] == 0
    assert key("retention_churn_ratio", period="month") not in got
    assert key("retention_crr", period="month") not in got
    assert got[key("retention_new_customers", period="month")] == 3


def test_toy_lateness_and_big_k() -> None:
    got = compute(E, OracleSettings(allowed_lateness_seconds=86400, cohorts_kept=40))
    assert got[key("retention_watermark_seconds")] == ts_ms("2026-04-06T12:00:00Z") / 1000
    # T = 04-06, so C = 04-05: nobody is active on it; C's session of 04-06 is so far.
    assert got[key("retention_active_customers", window="1d")] == 0
    assert got[key("retention_active_customers_so_far", window="1d")] == 1
    # Day cohorts 02-25..04-05: C (02-28), A (03-02), B (03-09).
    c = {"cohort_period": "day", "cohort": "2026-02-28"}
    assert got[key("retention_cohort_size", **c)] == 1
    days = [off for off in range(37) if got[key("retention_cohort_retained", offset=str(off), **c)]]
    assert days == [0, 5]  # 02-28, 03-05; 04-06 (offset 37) is after C
    assert key("retention_cohort_retained", offset="37", **c) not in got
    b = {"cohort_period": "day", "cohort": "2026-03-09"}
    assert [o for o in range(28) if got[key("retention_cohort_retained", offset=str(o), **b)]] == [
        0,
        11,
    ]


# --- the generator ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def history() -> list[dict[str, Any]]:
    return generate_history(seed=7, customers=2000, days=60)


def test_generator_is_deterministic(history: list[dict[str, Any]]) -> None:
    assert generate_history(seed=7, customers=2000, days=60) == history
    assert generate_history(seed=8, customers=50, days=60) != generate_history(
        seed=7, customers=50, days=60
    )


def test_generator_properties(history: list[dict[str, Any]]) -> None:
    ids = Counter(e["event_id"] for e in history)
    unique = {e["event_id"]: e for e in history}
    dups = len(history) - len(unique)
    assert 0.01 < dups / len(unique) < 0.04
    assert sum(1 for i, n in ids.items() if n > 1 and unique[i]["type"] == "purchase") >= 5
    # Duplicates are exact copies within the next <= 5 events of the same customer.
    per_customer: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in history:
        per_customer[e["customer_id"]].append(e)
    for evs in per_customer.values():
        for i, e in enumerate(evs):
            for j in range(i):
                if evs[j]["event_id"] == e["event_id"]:
                    assert evs[j] == e
                    # (re-sends of other events in between do not count)
                    between = {x["event_id"] for x in evs[j:i]}
                    assert len(between - {x["event_id"] for x in evs[:j]}) <= 5
    assert len(per_customer) == 2000
    types = Counter(e["type"] for e in unique.values())
    for t in (
        "install",
        "app_open",
        "session",
        "purchase",
        "refund",
        "uninstall",
        "nps",
        "subscription_start",
        "subscription_renew",
        "subscription_cancel",
    ):
        assert types[t] > 0, t
    amounts = [e["amount"] for e in unique.values() if e["type"] == "purchase"]
    assert all(isinstance(a, float) for a in amounts)
    # Mostly 2 decimals; a few with 4 (rounded to thousandths by the tracker, no ties).
    finer = [a for a in amounts if round(a, 2) != a]
    assert 0 < len(finer) < 0.1 * len(amounts)
    assert all(round(a, 4) == a and abs(a * 1000 % 1 - 0.5) > 1e-6 for a in finer)
    assert {type(e["ts"]) for e in history} == {int, str}
    # Delivery order: mostly but not entirely in time order; some events days late.
    ts = [ts_ms(e["ts"]) for e in history]
    inversions = sum(1 for a, b in pairwise(ts) if b < a)
    assert 0.05 * len(ts) < inversions < 0.6 * len(ts)
    running_max, very_late = 0, 0
    for t_ms in ts:
        very_late += running_max - t_ms > 86_400_000
        running_max = max(running_max, t_ms)
    assert very_late > 0.01 * len(ts)


def test_generator_has_the_hard_cases(history: list[dict[str, Any]]) -> None:
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    utc = ZoneInfo("UTC")
    activity = {
        "install",
        "app_open",
        "session",
        "purchase",
        "subscription_start",
        "subscription_renew",
    }
    seen_first: dict[str, int] = {}
    cohort_moves = 0
    days: dict[str, set[date]] = defaultdict(set)
    for e in history:
        if e["type"] not in activity:
            continue
        t = ts_ms(e["ts"])
        c = e["customer_id"]
        if c in seen_first and local_day(t, utc) < local_day(seen_first[c], utc):
            cohort_moves += 1
        seen_first[c] = min(t, seen_first.get(c, t))
        days[c].add(local_day(t, utc))
    assert cohort_moves >= 20
    # Lapsers: a gap of more than 30 days between two activity days.
    resurrected = sum(
        1
        for ds in days.values()
        if any((b - a) > timedelta(days=30) for a, b in pairwise(sorted(ds)))
    )
    assert resurrected >= 50
    firsts: Counter[str] = Counter()
    for evs in _by_customer_time(history).values():
        firsts[evs[0]["type"]] += 1
    assert firsts["install"] > 0.85 * sum(firsts.values())
    reinstalls = sum(
        1
        for evs in _by_customer_time(history).values()
        if any(e["type"] == "uninstall" for e in evs)
        and any(
            e["type"] == "install" and ts_ms(e["ts"]) > ts_ms(u["ts"])
            for u in evs
            if u["type"] == "uninstall"
            for e in evs
        )
    )
    assert reinstalls >= 10


def _by_customer_time(history: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in {e["event_id"]: e for e in history}.values():
        out[e["customer_id"]].append(e)
    for evs in out.values():
        evs.sort(key=lambda e: ts_ms(e["ts"]))
    return out


def test_generator_exercises_value_metrics(history: list[dict[str, Any]]) -> None:
    by_customer = _by_customer_time(history)
    types = Counter(e["type"] for evs in by_customer.values() for e in evs)
    # Refunds: full and partial, a few without an amount.
    refunds = [e for evs in by_customer.values() for e in evs if e["type"] == "refund"]
    assert sum(1 for e in refunds if "amount" not in e) >= 1
    purchase_amounts = {
        e["amount"] for evs in by_customer.values() for e in evs if e["type"] == "purchase"
    }
    partial = [e for e in refunds if "amount" in e and e["amount"] not in purchase_amounts]
    assert len(partial) >= 5
    # Repeat buyers, and buyers with enough spend for the top RFM monetary scores.
    buys = Counter(
        e["customer_id"] for evs in by_customer.values() for e in evs if e["type"] == "purchase"
    )
    assert sum(1 for n in buys.values() if n >= 2) >= 100
    assert sum(1 for n in buys.values() if n >= 5) >= 20
    # Subscriptions: several plans, renewals, cancels, re-subscriptions.
    sub_amounts = {
        e.get("amount")
        for evs in by_customer.values()
        for e in evs
        if e["type"] in ("subscription_start", "subscription_renew")
    }
    assert {4.99, 9.99, 19.99} <= sub_amounts
    assert types["subscription_renew"] >= 50 and types["subscription_cancel"] >= 20
    resubscribed = sum(
        1
        for evs in by_customer.values()
        if any(
            a["type"] == "subscription_cancel"
            and any(
                b["type"] == "subscription_start" and ts_ms(b["ts"]) > ts_ms(a["ts"]) for b in evs
            )
            for a in evs
        )
    )
    assert resubscribed >= 5
    # NPS: every score 0-10 shows up.
    scores = Counter(
        e.get("score") for evs in by_customer.values() for e in evs if e["type"] == "nps"
    )
    assert set(range(11)) == set(scores)
