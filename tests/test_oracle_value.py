"""Hand-checked unit tests of the oracle's value metrics (no servers needed): unbounded
retention, lifecycle, purchases, CLV, subscriptions, NPS, quick and late churn, win-back, RFM.

Every expected number below was worked out by hand from docs/definitions.md; the
arithmetic is in the comments. Events are at 12:00 UTC unless a time is given.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.oracle import (
    LIFECYCLE_STATES,
    RFM_SEGMENTS,
    Key,
    OracleSettings,
    compute,
    key,
)
from tests.test_oracle import E

Event = dict[str, Any]


def ev(
    event_id: str, customer: str, kind: str, day: str, time: str = "12:00:00", **extra: Any
) -> Event:
    return {
        "event_id": event_id,
        "customer_id": customer,
        "type": kind,
        "ts": f"{day}T{time}Z",
        **extra,
    }


def pick(got: dict[Key, float], *names: str) -> dict[Key, float]:
    return {k: v for k, v in got.items() if k[0] in names}


# --- unbounded retention, lifecycle, installs, stickiness on the toy history E ----------
#   A: install 03-02, app_open 03-03, app_open 03-10, purchase 04-01 (9.99)
#   B: app_open 03-09, uninstall 03-09, install 03-20, nps 04-07 (score 9)
#   C: install 02-28 (late), session 03-05, session 04-06
# T = 04-07 (a Tuesday); week 04-06 is period(T).


def test_toy_unbounded_retention() -> None:
    got = compute(E)
    exp: dict[Key, float] = {}

    def cells(kind: str, cohort: str, size: int, retained: list[int]) -> None:
        for off, r in enumerate(retained):
            lab = {"cohort_period": kind, "cohort": cohort, "offset": str(off)}
            exp[key("retention_cohort_unbounded_retained", **lab)] = r
            exp[key("retention_cohort_unbounded_ratio", **lab)] = r / size

    # C's weeks are 02-23, 03-02, 04-06: active in that week or later for offsets 0..6.
    cells("week", "2026-02-23", 1, [1, 1, 1, 1, 1, 1, 1])
    # A (03-02): last active 04-01 (week 03-30 = offset 4), nothing in week 04-06.
    cells("week", "2026-03-02", 1, [1, 1, 1, 1, 1, 0])
    # B (03-09): active 03-09 and 03-20 (week 03-16 = offset 1).
    cells("week", "2026-03-09", 1, [1, 1, 0, 0, 0])
    cells("month", "2026-02", 1, [1, 1, 1])  # C: Feb, Mar, Apr
    cells("month", "2026-03", 2, [2, 1])  # A and B in March, A (04-01) in April
    assert (
        pick(got, "retention_cohort_unbounded_retained", "retention_cohort_unbounded_ratio") == exp
    )


def test_toy_lifecycle_and_installs() -> None:
    got = compute(E)
    exp: dict[Key, float] = {}

    def period(kind: str, start: str, active: int, installs: int, **states: int) -> None:
        lab = {"period": kind, "start": start}
        exp[key("retention_period_active_customers", **lab)] = active
        exp[key("retention_period_installs", **lab)] = installs
        for state in LIFECYCLE_STATES:
            exp[key("retention_lifecycle_customers", state=state, **lab)] = states.get(state, 0)

    def churn(kind: str, start: str, ratio: float) -> None:
        exp[key("retention_lifecycle_churn_ratio", period=kind, start=start)] = ratio

    # Days 03-27 .. 04-07 (K = 12): A is active on 04-01 only, C on 04-06 only; no installs.
    for d in range(27, 32):
        period("day", f"2026-03-{d}", 0, 0)
    for d in range(1, 8):
        period("day", f"2026-04-0{d}", 0, 0)
    period("day", "2026-04-01", 1, 0, resurrecting=1)  # A, first seen 03-02
    period("day", "2026-04-02", 0, 0, dormant=1)
    churn("day", "2026-04-02", 1.0)  # 1 dormant / 1 active on 04-01
    period("day", "2026-04-06", 1, 0, resurrecting=1)  # C
    period("day", "2026-04-07", 0, 0, dormant=1)
    churn("day", "2026-04-07", 1.0)

    # Weeks 01-19 .. 04-06. Active: 02-23 {C}, 03-02 {A, C}, 03-09 {A, B}, 03-16 {B},
    # 03-23 {}, 03-30 {A}, 04-06 {C}. Installs: C 02-28, A 03-02, B 03-20.
    for start in ("2026-01-19", "2026-01-26", "2026-02-02", "2026-02-09", "2026-02-16"):
        period("week", start, 0, 0)
    period("week", "2026-02-23", 1, 1, new=1)
    period("week", "2026-03-02", 2, 1, new=1, returning=1)  # A new, C returning
    churn("week", "2026-03-02", 0.0)  # 0 / |{C}|
    period("week", "2026-03-09", 2, 0, new=1, returning=1, dormant=1)  # B new, A, C gone
    churn("week", "2026-03-09", 0.5)  # 1 / |{A, C}|
    period("week", "2026-03-16", 1, 1, returning=1, dormant=1)  # B stays, A gone
    churn("week", "2026-03-16", 0.5)
    period("week", "2026-03-23", 0, 0, dormant=1)
    churn("week", "2026-03-23", 1.0)
    period("week", "2026-03-30", 1, 0, resurrecting=1)  # A; no ratio, nobody in 03-23
    period("week", "2026-04-06", 1, 0, resurrecting=1, dormant=1)  # C back, A gone
    churn("week", "2026-04-06", 1.0)

    # Months 2025-05 .. 2026-04. Feb {C}, Mar {A, B, C}, Apr {A, C}.
    for m in range(5, 13):
        period("month", f"2025-{m:02d}", 0, 0)
    period("month", "2026-01", 0, 0)
    period("month", "2026-02", 1, 1, new=1)
    period("month", "2026-03", 3, 2, new=2, returning=1)
    churn("month", "2026-03", 0.0)
    period("month", "2026-04", 2, 0, returning=2, dormant=1)  # B is dormant
    churn("month", "2026-04", 1 / 3)

    names = (
        "retention_period_active_customers",
        "retention_period_installs",
        "retention_lifecycle_customers",
        "retention_lifecycle_churn_ratio",
    )
    assert pick(got, *names) == exp


def test_toy_stickiness_and_reinstalls() -> None:
    got = compute(E)
    assert got[key("retention_stickiness_ratio")] == 0.0  # 1d: nobody on 04-07; 30d: 3
    # C active on T: 1 / 3.
    with_c = [*E, ev("x1", "C", "session", "2026-04-07", "13:00:00")]
    assert compute(with_c)[key("retention_stickiness_ratio")] == 1 / 3
    # Every unique install event counts, a reinstall too; a duplicate does not.
    events = [
        ev("i1", "r", "install", "2026-03-02"),
        ev("i2", "r", "install", "2026-03-04"),
        ev("i2", "r", "install", "2026-03-04"),
        ev("i3", "s", "install", "2026-03-09"),
    ]
    got = compute(events)
    week = {"period": "week"}
    assert got[key("retention_period_installs", start="2026-03-02", **week)] == 2
    assert got[key("retention_period_installs", start="2026-03-09", **week)] == 1
    assert got[key("retention_period_active_customers", start="2026-03-02", **week)] == 1
    # 30d active is nonzero as soon as anyone is active; no 30d activity -> absent.
    only_nps = [ev("n", "z", "nps", "2026-03-02", score=3)]
    assert key("retention_stickiness_ratio") not in compute(only_nps)


def test_toy_unbounded_counts_activity_after_t() -> None:
    # With 2 days of lateness T is 03-06 (Friday); a session on 03-09 (next week) lies
    # beyond period(T) and still counts as "that period or any later one".
    events = [
        ev("a", "u", "install", "2026-03-02"),
        ev("b", "u", "session", "2026-03-09"),
        ev("c", "v", "install", "2026-03-08"),
    ]
    got = compute(events, OracleSettings(allowed_lateness_seconds=2 * 86400))
    cell = {"cohort_period": "week", "cohort": "2026-03-02"}
    assert got[key("retention_cohort_retained", offset="0", **cell)] == 2
    assert got[key("retention_cohort_unbounded_retained", offset="0", **cell)] == 2
    assert key("retention_cohort_unbounded_retained", offset="1", **cell) not in got


# --- purchases ---------------------------------------------------------------------------


SHOP = [
    ev("p1", "c1", "purchase", "2026-03-01", amount=10.0),
    ev("p2", "c1", "purchase", "2026-03-02", amount=5.25),
    ev("p2", "c1", "purchase", "2026-03-02", amount=5.25),  # duplicate delivery
    ev("r1", "c1", "refund", "2026-03-03", amount=5.25),
    ev("p3", "c2", "purchase", "2026-03-01", amount=0.0004),  # rounds to 0 thousandths
    ev("p4", "c2", "purchase", "2026-03-01", amount=0.0006),  # rounds to 1 thousandth
    ev("p5", "c2", "purchase", "2026-03-02"),  # no amount: 0
    ev("r2", "c3", "refund", "2026-03-02", amount=2.5),  # c3 never active: not tracked
    ev("r3", "c3", "refund", "2026-03-03"),
]


def test_purchases_and_rounding() -> None:
    got = compute(SHOP)
    # 5 purchases: c1 10.000 + 5.250, c2 0.000 + 0.001 + 0 -> 15251 thousandths.
    # 3 refunds: 5.250 + 2.500 + 0 -> 7750; net 7501.
    assert got[key("retention_purchases_total")] == 5
    assert got[key("retention_revenue_total")] == 15.251
    assert got[key("retention_refunds_total")] == 3
    assert got[key("retention_refunded_revenue_total")] == 7.75
    assert got[key("retention_net_revenue")] == 7.501
    assert got[key("retention_purchasing_customers")] == 2
    assert got[key("retention_repeat_customers")] == 2  # c1 has 2, c2 has 3
    assert got[key("retention_repeat_purchase_ratio")] == 1.0
    assert got[key("retention_purchase_frequency")] == 2.5  # 5 / 2
    assert got[key("retention_average_order_value")] == pytest.approx(1.5002)  # 7.501 / 5
    assert got[key("retention_customers")] == 2


def test_purchase_ratios_absent_without_purchases() -> None:
    got = compute([ev("a", "x", "install", "2026-03-01"), ev("r", "x", "refund", "2026-03-01")])
    assert got[key("retention_purchases_total")] == 0
    assert got[key("retention_net_revenue")] == 0.0
    assert got[key("retention_refunds_total")] == 1
    for name in (
        "retention_repeat_purchase_ratio",
        "retention_purchase_frequency",
        "retention_average_order_value",
    ):
        assert key(name) not in got
    one = compute([ev("a", "x", "purchase", "2026-03-01", amount=3)])
    assert one[key("retention_repeat_purchase_ratio")] == 0.0
    assert one[key("retention_average_order_value")] == 3.0


# --- customer lifetime value --------------------------------------------------------------
# T = 05-10; the last complete month is April: base at the end of 03-31 is {a, b, c, d}
# (each active within 30 days), at the end of 04-30 {a, b, c}: churn 1/4, lifespan
# 1 / (12 * 0.25) = 1/3 year.
# Customer-days to the end of 05-10: a 03-15 -> 57, b 03-20 -> 52, c 03-25 -> 47,
# d 03-10 -> 62, e 05-10 -> 1; total 219.
# Purchases a 30 + 20, b 100, e 50 = 200 over 4; refund b 40; net 160; AOV 40.

CLV = [
    ev("a1", "a", "purchase", "2026-03-15", amount=30),
    ev("a2", "a", "purchase", "2026-04-20", amount=20),
    ev("b1", "b", "purchase", "2026-03-20", amount=100),
    ev("b2", "b", "session", "2026-04-25"),
    ev("b3", "b", "refund", "2026-04-25", amount=40),
    ev("c1", "c", "install", "2026-03-25"),
    ev("c2", "c", "session", "2026-04-28"),
    ev("d1", "d", "install", "2026-03-10"),
    ev("e1", "e", "purchase", "2026-05-10", amount=50),
]


def test_clv() -> None:
    got = compute(CLV)
    assert got[key("retention_churn_ratio", period="month")] == 0.25
    assert got[key("retention_clv_lifespan_seconds")] == pytest.approx(365 * 86400 / 3)
    # all: 4 * 365 / 219 = 20/3 purchases per customer-year; CLV 40 * 20/3 * 1/3 = 800/9.
    assert got[key("retention_purchases_per_customer_year", cohort="all")] == pytest.approx(20 / 3)
    assert got[key("retention_clv", cohort="all")] == pytest.approx(800 / 9)
    # March cohort {a, b, c, d}: 3 purchases, net 110, 218 customer-days.
    assert got[key("retention_purchases_per_customer_year", cohort="2026-03")] == pytest.approx(
        1095 / 218
    )
    assert got[key("retention_clv", cohort="2026-03")] == pytest.approx(110 / 3 * 1095 / 218 / 3)
    # May cohort {e}: 1 purchase of 50 over 1 customer-day: 365 per year, CLV 50*365/3.
    assert got[key("retention_purchases_per_customer_year", cohort="2026-05")] == 365.0
    assert got[key("retention_clv", cohort="2026-05")] == pytest.approx(50 * 365 / 3)
    # April has no cohort members: no series.
    assert key("retention_clv", cohort="2026-04") not in got
    assert key("retention_purchases_per_customer_year", cohort="2026-04") not in got
    names = {k[1] for k in got if k[0] == "retention_clv"}
    assert names == {(("cohort", c),) for c in ("all", "2026-03", "2026-05")}


def test_clv_cap_negative_value_and_moved_customer() -> None:
    # The cap: 1/3 year is above a 0.25-year cap.
    capped = compute(CLV, OracleSettings(clv_max_lifespan_years=0.25))
    assert capped[key("retention_clv_lifespan_seconds")] == 0.25 * 365 * 86400
    assert capped[key("retention_clv", cohort="all")] == pytest.approx(40 * 20 / 3 * 0.25)
    # No monthly churn (ratio 0): the cap, 5 years.
    no_churn = [e for e in CLV if e["customer_id"] != "d"]
    assert compute(no_churn)[key("retention_clv_lifespan_seconds")] == 5 * 365 * 86400
    # A refund bigger than e's purchases: May's AOV is -10, no CLV; per-year stays.
    refunded = compute([*CLV, ev("e2", "e", "refund", "2026-05-10", amount=60)])
    assert key("retention_clv", cohort="2026-05") not in refunded
    assert refunded[key("retention_purchases_per_customer_year", cohort="2026-05")] == 365.0
    assert refunded[key("retention_clv", cohort="all")] == pytest.approx(25 * 20 / 3 / 3)
    # A late session of e on 04-15 moves e (and the purchase) to April: 26 customer-days.
    moved = compute([*CLV, ev("e0", "e", "session", "2026-04-15")])
    assert key("retention_clv", cohort="2026-05") not in moved
    assert moved[key("retention_purchases_per_customer_year", cohort="2026-04")] == pytest.approx(
        365 / 26
    )
    assert moved[key("retention_clv", cohort="2026-04")] == pytest.approx(50 * 365 / 26 / 3)


# --- subscriptions ------------------------------------------------------------------------
# T = 04-15 (Wednesday). s3 re-subscribes; s4 starts and cancels on one day; s5's start
# and renew share a ts (the larger event_id wins); s6 cancels without a subscription.

SUBS = [
    ev("s1a", "s1", "subscription_start", "2026-03-01", amount=9.99),
    ev("s1b", "s1", "subscription_renew", "2026-04-01", amount=12.99),
    ev("s1c", "s1", "app_open", "2026-04-15"),
    ev("s2a", "s2", "subscription_start", "2026-03-05", amount=9.99),
    ev("s2b", "s2", "subscription_cancel", "2026-04-08"),
    ev("s3a", "s3", "subscription_start", "2026-02-10", amount=4.99),
    ev("s3b", "s3", "subscription_cancel", "2026-03-10"),
    ev("s3c", "s3", "subscription_start", "2026-03-20", amount=7.99),
    ev("s4a", "s4", "subscription_start", "2026-04-10", "08:00:00", amount=5.0),
    ev("s4b", "s4", "subscription_cancel", "2026-04-10", "09:00:00"),
    ev("s5-b", "s5", "subscription_start", "2026-04-02", "10:00:00", amount=3.0),
    ev("s5-a", "s5", "subscription_renew", "2026-04-02", "10:00:00", amount=6.0),
    ev("s6a", "s6", "subscription_cancel", "2026-03-15"),
]


def test_subscriptions() -> None:
    got = compute(SUBS)
    # Subscribed at the end of 04-15: s1 (renew 04-01), s3 (restart 03-20), s5.
    assert got[key("retention_subscribers")] == 3
    # MRR: s1 12.99 (latest is the renew) + s3 7.99 + s5 3.00 ('s5-b' > 's5-a').
    assert got[key("retention_mrr")] == pytest.approx(23.98)
    # Month March: cancels s3 (03-10) and s6 (03-15); subscribed at the end of 02-28: s3.
    assert got[key("retention_subscription_cancels", period="month")] == 2
    assert got[key("retention_subscribers_start", period="month")] == 1
    assert got[key("retention_subscription_churn_ratio", period="month")] == 2.0
    # Week 04-06..04-12: cancels s2, s4; subscribed at the end of 04-05: s1, s2, s3, s5.
    assert got[key("retention_subscription_cancels", period="week")] == 2
    assert got[key("retention_subscribers_start", period="week")] == 4
    assert got[key("retention_subscription_churn_ratio", period="week")] == 0.5
    # Day 04-14: no cancels; subscribed at the end of 04-13: s1, s3, s5.
    assert got[key("retention_subscription_cancels", period="day")] == 0
    assert got[key("retention_subscribers_start", period="day")] == 3
    assert got[key("retention_subscription_churn_ratio", period="day")] == 0.0


def test_subscription_mrr_uses_latest_event_even_after_t() -> None:
    # Lateness 1 day: T = 04-14. s1's renew at 04-15 (after T) has the latest ts, so
    # its amount is the MRR, although subscription state is taken at the end of T.
    events = [
        ev("a", "s1", "subscription_start", "2026-04-01", amount=10),
        ev("b", "s1", "subscription_renew", "2026-04-15", amount=15),
        ev("c", "s2", "subscription_start", "2026-04-15", amount=100),
    ]
    got = compute(events, OracleSettings(allowed_lateness_seconds=86400))
    assert got[key("retention_subscribers")] == 1  # s2 starts after T
    assert got[key("retention_mrr")] == 15.0
    # s1 was subscribed at the end of 04-12 (day) and 04-05 (week), not of 02-28 (month).
    ratios = {k[1]: v for k, v in got.items() if k[0] == "retention_subscription_churn_ratio"}
    assert ratios == {(("period", "day"),): 0.0, (("period", "week"),): 0.0}


# --- NPS ----------------------------------------------------------------------------------
# T = 04-30; the 30-day window is 04-01..04-30.

NPS = [
    ev("n1", "a", "nps", "2026-04-30", score=10),
    ev("n2", "b", "nps", "2026-04-01", "00:00:00", score=9),  # first day of the window
    ev("n3", "c", "nps", "2026-04-15", score=8),
    ev("n4", "d", "nps", "2026-04-15", score=7),
    ev("n5", "e", "nps", "2026-04-20", score=6),
    ev("n6", "f", "nps", "2026-04-02", score=0),
    ev("n7", "g", "nps", "2026-04-03", score=5),
    ev("n7", "g", "nps", "2026-04-03", score=5),  # duplicate
    ev("n8", "h", "nps", "2026-03-31", "23:59:59", score=3),  # outside the window
    ev("n9", "i", "nps", "2026-03-31", score=10),  # outside
    ev("n10", "j", "nps", "2026-04-10"),  # no score: invalid (dead-lettered), ignored
    ev("n11", "a", "nps", "2026-04-29", score=10),  # a second answer of a counts too
]


def test_nps() -> None:
    got = compute(NPS)
    # Promoters n1, n2, n11 = 3; passives n3, n4 = 2; detractors n5, n6, n7 = 3.
    assert got[key("retention_nps_responses", group="promoter")] == 3
    assert got[key("retention_nps_responses", group="passive")] == 2
    assert got[key("retention_nps_responses", group="detractor")] == 3
    assert got[key("retention_nps")] == 0.0  # 100 * (3 - 3) / 8
    without_a = compute([e for e in NPS if e["event_id"] != "n11"])
    assert without_a[key("retention_nps")] == pytest.approx(100 * (2 - 3) / 7)
    one_day = compute(NPS, OracleSettings(nps_window_days=1))
    assert one_day[key("retention_nps")] == 100.0  # n1 only
    assert one_day[key("retention_nps_responses", group="detractor")] == 0
    # No responses: zero counts, no NPS.
    none = compute([ev("x", "a", "session", "2026-04-30")])
    assert key("retention_nps") not in none
    assert none[key("retention_nps_responses", group="promoter")] == 0


# --- quick and late churn, win-back -----------------------------------------------------
# T = 04-25, window 30, quick < 7 days.
#   q1 install 03-01, uninstall 03-07: churns 03-07, tenure 6 -> quick
#   q2 install 03-01, uninstall 03-08: tenure 7 -> late
#   q3 install 03-01 only until 04-10: out of the base at the end of 03-31 (30 days),
#      tenure 30 -> late; back on 04-10 -> won back
#   q4 install + uninstall 03-01 (tenure 0, quick), install 03-02 -> won back
#   q6 install 03-27: would churn at the end of 04-26 > T -> not churned
#   q7 install 03-26: churns at the end of 04-25 = T -> late
#   q5 install 04-20, session 04-25

CHURN = [
    ev("q1a", "q1", "install", "2026-03-01"),
    ev("q1b", "q1", "uninstall", "2026-03-07"),
    ev("q2a", "q2", "install", "2026-03-01"),
    ev("q2b", "q2", "uninstall", "2026-03-08"),
    ev("q3a", "q3", "install", "2026-03-01"),
    ev("q3b", "q3", "session", "2026-04-10"),
    ev("q4a", "q4", "install", "2026-03-01", "08:00:00"),
    ev("q4b", "q4", "uninstall", "2026-03-01", "09:00:00"),
    ev("q4c", "q4", "install", "2026-03-02"),
    ev("q6a", "q6", "install", "2026-03-27"),
    ev("q7a", "q7", "install", "2026-03-26"),
    ev("q5a", "q5", "install", "2026-04-20"),
    ev("q5b", "q5", "session", "2026-04-25"),
]


def test_quick_and_late_churn() -> None:
    got = compute(CHURN)
    assert got[key("retention_churned_customers", tenure="quick")] == 2  # q1, q4
    assert got[key("retention_winback_customers", tenure="quick")] == 1  # q4
    assert got[key("retention_winback_ratio", tenure="quick")] == 0.5
    assert got[key("retention_churned_customers", tenure="late")] == 3  # q2, q3, q7
    assert got[key("retention_winback_customers", tenure="late")] == 1  # q3
    assert got[key("retention_winback_ratio", tenure="late")] == pytest.approx(1 / 3)
    # quick_churn_days = 8 makes q2 (tenure 7) quick.
    got8 = compute(CHURN, OracleSettings(quick_churn_days=8))
    assert got8[key("retention_churned_customers", tenure="quick")] == 3
    assert got8[key("retention_churned_customers", tenure="late")] == 2


def test_winback_counts_activity_after_t() -> None:
    # Lateness 2 days: T = 04-23, so q7 (churn day 04-25) is not churned yet; q2's
    # session on 04-24, after T, still counts as a win-back.
    events = [*CHURN, ev("q2c", "q2", "session", "2026-04-24")]
    got = compute(events, OracleSettings(allowed_lateness_seconds=2 * 86400))
    assert got[key("retention_churned_customers", tenure="late")] == 2  # q2, q3
    assert got[key("retention_winback_customers", tenure="late")] == 2
    no_churn = compute([ev("a", "x", "install", "2026-04-01")])
    assert no_churn[key("retention_churned_customers", tenure="quick")] == 0
    assert key("retention_winback_ratio", tenure="quick") not in no_churn


# --- RFM ----------------------------------------------------------------------------------
# T = 06-30 (V's NPS answer; not an activity). R: recency r <= 7, 14, 30, 60 -> 5..2.


def _rfm_history() -> list[Event]:
    out: list[Event] = []

    def buy(cid: str, day: str, amount: float) -> None:
        out.append(ev(f"{cid}-{len(out)}", cid, "purchase", day, amount=amount))

    def act(cid: str, day: str, kind: str = "session") -> None:
        out.append(ev(f"{cid}-{len(out)}", cid, kind, day))

    # V: r 10 (R4), 5 purchases (F4), 510 (M4) -> vip
    act("V", "2026-05-01", "install")
    for d, amount in zip((16, 17, 18, 19, 20), (120, 130, 100, 90, 70), strict=True):
        buy("V", f"2026-06-{d}", amount)
    out.append(ev("V-nps", "V", "nps", "2026-06-30", score=10))
    # P: r 20 (R3), 3 purchases (F3), 200 (M3) -> pre_vip
    act("P", "2026-05-01", "install")
    for d, amount in ((8, 100), (9, 60), (10, 40)):
        buy("P", f"2026-06-{d:02d}", amount)
    # Y: r 5 (R5), 2 purchases (F2), 20 (M1) -> loyal
    act("Y", "2026-05-01", "install")
    buy("Y", "2026-06-24", 10)
    buy("Y", "2026-06-25", 10)
    # K: r 119 (R1), 3 purchases (F3) -> at_risk
    for d in (1, 2, 3):
        buy("K", f"2026-03-0{d}", 10)
    # M: r 41 (R2), 1 purchase of 200 (M3) -> at_risk
    act("M", "2026-04-20", "install")
    buy("M", "2026-05-20", 200)
    # Q: like M, but 100 refunded: M2 -> hibernating
    act("Q", "2026-04-20", "install")
    buy("Q", "2026-05-20", 200)
    out.append(ev("Q-refund", "Q", "refund", "2026-05-21", amount=100))
    # X150: r 121, one purchase of exactly 150 (M3) -> at_risk; X149: 149.999 (M2) -> lost
    buy("X150", "2026-03-01", 150)
    buy("X149", "2026-03-01", 149.999)
    # Lo: r 112 -> lost; B61: r 61 -> lost; B60: r 60 (R2) -> hibernating
    act("Lo", "2026-03-01", "install")
    act("Lo", "2026-03-10")
    act("B61", "2026-04-30", "install")
    act("B60", "2026-05-01", "install")
    # H: r 46 (R2) -> hibernating
    act("H", "2026-04-01", "install")
    act("H", "2026-05-15")
    # N: first seen 10 days before T -> new, whatever it bought
    act("N", "2026-06-20", "install")
    buy("N", "2026-06-20", 1000)
    buy("N", "2026-06-21", 1000)
    # Nb: first seen exactly 14 days before T -> not new; r 14 (R4), F1 -> active
    act("Nb", "2026-06-16", "install")
    # A: r 2 -> active; R7: r 7 (R5) -> active
    act("A", "2026-05-01", "install")
    act("A", "2026-06-28")
    act("R7", "2026-05-01", "install")
    act("R7", "2026-06-23")
    return out


def test_rfm_segments() -> None:
    got = compute(_rfm_history())
    expected = {
        "vip": 1,  # V
        "pre_vip": 1,  # P
        "loyal": 1,  # Y
        "at_risk": 3,  # K, M, X150
        "lost": 3,  # Lo, B61, X149
        "hibernating": 3,  # Q, B60, H
        "new": 1,  # N
        "active": 3,  # Nb, A, R7
    }
    assert set(expected) == set(RFM_SEGMENTS)
    assert pick(got, "retention_rfm_customers") == {
        key("retention_rfm_customers", segment=s): n for s, n in expected.items()
    }


def test_rfm_thresholds_are_settings() -> None:
    # New for 20 days: Nb and N are new; recency 3,6,9,12: V (r 10) gets R2 -> at_risk.
    got = compute(_rfm_history(), OracleSettings(rfm_new_days=20, rfm_recency_days=(3, 6, 9, 12)))
    assert got[key("retention_rfm_customers", segment="new")] == 2
    assert got[key("retention_rfm_customers", segment="vip")] == 0
    # A customer first seen after T (possible with lateness) is in no segment.
    late = compute(
        [ev("a", "x", "install", "2026-06-01"), ev("b", "y", "install", "2026-06-02")],
        OracleSettings(allowed_lateness_seconds=86400),
    )
    assert sum(v for k, v in late.items() if k[0] == "retention_rfm_customers") == 1
