"""Hand-checked unit tests of the oracle's value metrics (no servers needed): purchases,
repeat purchases per period, CLV, CRR against the retained share, and subscriptions.

Every expected number below was worked out by hand from docs/definitions.md; the
arithmetic is in the comments. Events are at 12:00 UTC unless a time is given.
"""

from __future__ import annotations

from datetime import date

import pytest

from tests.oracle import OracleSettings, compute, key
from tests.oracle.ledger import read_ledger
from tests.toy_events import closing, ev

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
    # AOV is gross: 15.251 / 5, the refunds lower only the net revenue.
    assert got[key("retention_average_order_value")] == pytest.approx(3.0502)
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


# --- repeat purchases per period ----------------------------------------------------------
# T = 04-15 (Wednesday), so C = 04-14: the latest complete day is 04-14, week
# 04-06..04-12, month March.
# r1 buys twice on 04-14 (the second one delivered late, after T's events) and once in
# March; r2 buys once on 04-14, re-sent twice; r3 buys on 04-07 and 04-11, and twice on
# 03-31; r4 buys on 03-02 and on 04-01.

REPEAT = [
    ev("r1a", "r1", "purchase", "2026-04-14", "09:00:00", amount=5),
    ev("r2a", "r2", "purchase", "2026-04-14", amount=7),
    ev("r2a", "r2", "purchase", "2026-04-14", amount=7),  # re-sent
    ev("r3a", "r3", "purchase", "2026-04-07", amount=1),
    ev("r4a", "r4", "purchase", "2026-04-01", amount=1),
    ev("x1", "x", "session", "2026-04-15"),
    ev("r1b", "r1", "purchase", "2026-04-14", "23:00:00", amount=5),  # late
    ev("r3b", "r3", "purchase", "2026-04-11", amount=1),  # late
    ev("r1c", "r1", "purchase", "2026-03-20", amount=5),  # late
    ev("r3c", "r3", "purchase", "2026-03-31", "10:00:00", amount=1),  # late
    ev("r3d", "r3", "purchase", "2026-03-31", "11:00:00", amount=1),  # late
    ev("r3d", "r3", "purchase", "2026-03-31", "11:00:00", amount=1),  # re-sent
    ev("r4b", "r4", "purchase", "2026-03-02", amount=1),  # late
]


def test_repeat_purchase_rate_per_period() -> None:
    got = compute(REPEAT)

    def rate(period: str) -> tuple[float, float, float | None]:
        return (
            got[key("retention_period_purchasing_customers", period=period)],
            got[key("retention_period_repeat_customers", period=period)],
            got.get(key("retention_period_repeat_purchase_ratio", period=period)),
        )

    # Day 04-14: r1 (2 purchases), r2 (1; the re-sent one does not count).
    assert rate("day") == (2, 1, 0.5)
    # Week 04-06..04-12: r3 on 04-07 and 04-11 (two days).
    assert rate("week") == (1, 1, 1.0)
    # March: r1 once, r3 twice on 03-31 (re-sent third does not count), r4 once.
    assert rate("month") == (3, 1, pytest.approx(1 / 3))
    # All-time: r1 3, r2 1, r3 4, r4 2.
    assert got[key("retention_repeat_purchase_ratio")] == 0.75
    # A day without purchases: counts 0, no ratio.
    quiet = compute([*REPEAT, ev("x2", "x", "session", "2026-04-16")])
    assert rate("day") == (2, 1, 0.5)
    assert quiet[key("retention_period_purchasing_customers", period="day")] == 0
    assert key("retention_period_repeat_purchase_ratio", period="day") not in quiet


# --- customer lifetime value --------------------------------------------------------------
# C = 05-10 (T = 05-11, the closing event's day); the three latest months complete at
# the end of C are February, March and April. Bases
# at the end of 01-31 and 02-28 are empty; at the end of 03-31 {a, b, c, d} (each active
# within 30 days), at the end of 04-30 {a, b, c}: pooled churn (0 + 0 + 1) / (0 + 0 + 4),
# lifespan 1 / (12 * 0.25) = 1/3 year.
# Active life up to the end of C = 05-10 (days at whose end the customer is in the base):
# a 03-15..04-13 (30) + 04-20..05-10 (21) = 51; b 03-20..04-18 (30) + 04-25..05-10 (16)
# = 46; c 03-25..04-23 (30) + 04-28..05-10 (13) = 43; d 03-10..04-08 = 30; e 05-10 = 1;
# total 171.
# Purchases a 30 + 20, b 100, e 50 = 200 over 4; refund b 40; net 160: 40 per purchase.

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
    closing("2026-05-10"),  # first seen on T, after C: no day of life
]


def test_clv() -> None:
    got = compute(CLV)
    assert got[key("retention_churn_ratio", period="month")] == 0.25
    assert got[key("retention_clv_lifespan_seconds")] == pytest.approx(365 * 86400 / 3)
    # AOV is gross (200 / 4); CLV takes the net value per purchase (160 / 4).
    assert got[key("retention_average_order_value")] == 50.0
    # all: 4 * 365 / 171 purchases per customer-year; CLV 40 * that * 1/3.
    per_year = 4 * 365 / 171
    assert got[key("retention_purchases_per_customer_year", cohort="all")] == pytest.approx(
        per_year
    )
    assert got[key("retention_clv", cohort="all")] == pytest.approx(40 * per_year / 3)
    # March cohort {a, b, c, d}: 3 purchases, net 110, 170 customer-days.
    assert got[key("retention_purchases_per_customer_year", cohort="2026-03")] == pytest.approx(
        1095 / 170
    )
    assert got[key("retention_clv", cohort="2026-03")] == pytest.approx(110 / 3 * 1095 / 170 / 3)
    # May cohort {e}: 1 purchase of 50 over 1 customer-day: 365 per year, CLV 50*365/3.
    assert got[key("retention_purchases_per_customer_year", cohort="2026-05")] == 365.0
    assert got[key("retention_clv", cohort="2026-05")] == pytest.approx(50 * 365 / 3)
    # April has no cohort members: no series.
    assert key("retention_clv", cohort="2026-04") not in got
    assert key("retention_purchases_per_customer_year", cohort="2026-04") not in got
    names = {k[1] for k in got if k[0] == "retention_clv"}
    assert names == {(("cohort", c),) for c in ("all", "2026-03", "2026-05")}


def test_clv_customer_churned_long_ago_does_not_dilute() -> None:
    # z was active on 2025-06-01 only: 30 days of life, not the 344 days to 05-10.
    got = compute([*CLV, ev("z1", "z", "install", "2025-06-01")])
    per_year = 4 * 365 / (171 + 30)
    assert got[key("retention_purchases_per_customer_year", cohort="all")] == pytest.approx(
        per_year
    )
    # y installed and uninstalled on 05-02: their first day counts as one day of life.
    churned_at_once = compute(
        [*CLV, ev("y1", "y", "install", "2026-05-02"), ev("y2", "y", "uninstall", "2026-05-02")]
    )
    assert churned_at_once[
        key("retention_purchases_per_customer_year", cohort="2026-05")
    ] == pytest.approx(365 / 2)


def test_clv_lifespan_fallbacks() -> None:
    # The cap: 1/3 year is above a 0.25-year cap.
    capped = compute(CLV, OracleSettings(clv_max_lifespan_years=0.25))
    assert capped[key("retention_clv_lifespan_seconds")] == 0.25 * 365 * 86400
    assert capped[key("retention_clv", cohort="all")] == pytest.approx(40 * 4 * 365 / 171 * 0.25)
    # Nobody lost over the three months (d removed): pooled churn 0, the cap, 5 years.
    no_churn = compute([e for e in CLV if e["customer_id"] != "d"])
    assert no_churn[key("retention_clv_lifespan_seconds")] == 5 * 365 * 86400
    assert key("retention_clv", cohort="all") in no_churn
    # No base at the start of any of the three months (everything in May): neither
    # lifespan nor CLV is exported, purchases per customer-year are.
    may = compute([e for e in CLV if e["ts"].startswith("2026-05")])
    assert key("retention_clv_lifespan_seconds") not in may
    assert not [k for k in may if k[0] == "retention_clv"]
    assert may[key("retention_purchases_per_customer_year", cohort="all")] == 365.0
    # The latest complete month without a base (C = 08-01, July): its own churn ratio is
    # absent, and the lifespan stays defined by May (S = {a, b, c}, all lost) and June
    # (S = {e}, lost): pooled 4 / 4, 1/12 year, not the cap.
    august = compute([*CLV, ev("q1", "q", "session", "2026-08-02")])
    assert august[key("retention_base_start_customers", period="month")] == 0
    assert key("retention_churn_ratio", period="month") not in august
    assert august[key("retention_clv_lifespan_seconds")] == pytest.approx(365 * 86400 / 12)


def test_clv_negative_value_and_moved_customer() -> None:
    # A refund bigger than e's purchases: May's net value per purchase is -10, no CLV.
    refunded = compute([*CLV, ev("e2", "e", "refund", "2026-05-10", amount=60)])
    assert key("retention_clv", cohort="2026-05") not in refunded
    assert refunded[key("retention_purchases_per_customer_year", cohort="2026-05")] == 365.0
    assert refunded[key("retention_clv", cohort="all")] == pytest.approx(25 * 4 * 365 / 171 / 3)
    # A late session of e on 04-15 moves e (and the purchase) to April: life 04-15..05-10
    # = 26 days.
    moved = compute([*CLV, ev("e0", "e", "session", "2026-04-15")])
    assert key("retention_clv", cohort="2026-05") not in moved
    assert moved[key("retention_purchases_per_customer_year", cohort="2026-04")] == pytest.approx(
        365 / 26
    )
    assert moved[key("retention_clv", cohort="2026-04")] == pytest.approx(50 * 365 / 26 / 3)


# --- CRR and the retained share -----------------------------------------------------------
# T = 04-02, C = 04-01; the latest complete month is March. S = base at the end of 02-28
# = {s1, s2} (active 02-10 and 02-20). l lapsed (last active 01-05) and returns on 03-25;
# n1 is new on 03-03 and uninstalls on 03-10; n2 is new on 03-28. E = base at the end of
# 03-31 = {s2 (active 03-15), l, n2}; s1 is lost.
# CRR = (E - N) / S = (3 - 2) / 2 = 0.5; retained share = |S and E| / S = 1 / 2: l's
# return and n1's loss cancel out. Without n1: CRR = (3 - 1) / 2 = 1.0. Without l's
# return: E = {s2, n2}, CRR = (2 - 2) / 2 = 0. The retained share stays 0.5 throughout.

SHARE = [
    ev("s1", "s1", "install", "2026-02-10"),
    ev("s2a", "s2", "install", "2026-02-20"),
    ev("s2b", "s2", "session", "2026-03-15"),
    ev("l1", "l", "install", "2026-01-05"),
    ev("l2", "l", "session", "2026-03-25"),
    ev("n1a", "n1", "install", "2026-03-03"),
    ev("n1b", "n1", "uninstall", "2026-03-10"),
    ev("n2", "n2", "install", "2026-03-28"),
    ev("t", "t", "install", "2026-04-02"),
]
SHARE_RETURNING = [e for e in SHARE if e["customer_id"] != "n1"]
SHARE_NEW_LOST = [e for e in SHARE if e["event_id"] != "l2"]


def test_crr_and_retained_share_differ() -> None:
    got = compute(SHARE)
    month = {"period": "month"}
    assert got[key("retention_base_start_customers", **month)] == 2
    assert got[key("retention_base_end_customers", **month)] == 3
    assert got[key("retention_new_customers", **month)] == 2
    assert got[key("retention_lost_customers", **month)] == 1
    assert got[key("retention_crr", **month)] == 0.5
    assert got[key("retention_retained_share_ratio", **month)] == 0.5
    returning_only = compute(SHARE_RETURNING)
    assert returning_only[key("retention_crr", **month)] == 1.0
    assert returning_only[key("retention_retained_share_ratio", **month)] == 0.5
    lost_new_only = compute(SHARE_NEW_LOST)
    assert lost_new_only[key("retention_crr", **month)] == 0.0
    assert lost_new_only[key("retention_retained_share_ratio", **month)] == 0.5


# --- subscriptions ------------------------------------------------------------------------
# T = 04-15 (Wednesday), so the evaluation day C = 04-14. Billing periods are monthly,
# grace 7 days. s3 re-subscribes; s4 starts and cancels on one day; s5's start and renew
# share a ts (the larger event_id wins); s6 cancels without a subscription.
#   s1 live from 03-01 (03-01 + 1 month + 7 = 04-08, renewed 04-01: until 05-08)
#   s2 live 03-05 .. 04-07 (cancel 04-08 ends it at the end of 04-08)
#   s3 live 02-10 .. 03-09 (cancel 03-10), then from 03-20 until 04-27
#   s4 never live (the cancel falls on the start day); s5 live from 04-02

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
    # Live at the end of C = 04-14: s1, s3, s5.
    assert got[key("retention_subscribers")] == 3
    # MRR: s1 12.99 (latest is the renew) + s3 7.99 + s5 3.00 ('s5-b' > 's5-a').
    assert got[key("retention_mrr")] == pytest.approx(23.98)
    # Month March: cancels s3 (03-10) and s6 (03-15); live at the end of 02-28: s3, who
    # is live again at the end of 03-31: nobody lost.
    assert got[key("retention_subscription_cancels", period="month")] == 2
    assert got[key("retention_subscribers_start", period="month")] == 1
    assert got[key("retention_subscribers_lost", period="month")] == 0
    assert got[key("retention_subscription_churn_ratio", period="month")] == 0.0
    # Week 04-06..04-12: cancels s2, s4; live at the end of 04-05: s1, s2, s3, s5; at the
    # end of 04-12 s2 is not: 1 of 4 lost.
    assert got[key("retention_subscription_cancels", period="week")] == 2
    assert got[key("retention_subscribers_start", period="week")] == 4
    assert got[key("retention_subscribers_lost", period="week")] == 1
    assert got[key("retention_subscription_churn_ratio", period="week")] == 0.25
    # Day 04-14 (C, complete): no cancels; s1, s3, s5 live before and after it.
    assert got[key("retention_subscription_cancels", period="day")] == 0
    assert got[key("retention_subscribers_start", period="day")] == 3
    assert got[key("retention_subscription_churn_ratio", period="day")] == 0.0


def test_subscription_lives_for_its_billing_period_plus_grace() -> None:
    book = read_ledger(
        [
            ev("m", "m", "subscription_start", "2026-01-31", amount=5),
            ev("y", "y", "subscription_start", "2026-01-15", amount=120, billing_period="annual"),
            ev("r", "r", "subscription_start", "2026-03-01", amount=10),
            ev("r2", "r", "subscription_renew", "2026-04-01"),  # no amount: keeps 10
        ],
        OracleSettings(),
    )
    # Jan 31 + 1 month = Feb 28 (clamped), + 7 days grace: live through 03-06.
    assert book.subscribed("m", date(2026, 3, 6))
    assert not book.subscribed("m", date(2026, 3, 7))
    # Annual: 2027-01-15 + 7 days: live through 2027-01-21 without any activity.
    assert book.subscribed("y", date(2026, 12, 31))
    assert book.subscribed("y", date(2027, 1, 21))
    assert not book.subscribed("y", date(2027, 1, 22))
    # In the base while live, though inactive for far longer than the churn window.
    assert book.in_base("y", date(2026, 9, 1)) and not book.in_base("y", date(2027, 1, 22))
    # The renewal without an amount extends the subscription to 05-01 + 7 days.
    assert book.subscribed("r", date(2026, 5, 7)) and not book.subscribed("r", date(2026, 5, 8))
    # Grace 0: the billing period alone.
    start = [ev("m", "m", "subscription_start", "2026-01-31")]
    no_grace = read_ledger(start, OracleSettings(subscription_grace_days=0))
    assert no_grace.subscribed("m", date(2026, 2, 27))
    assert not no_grace.subscribed("m", date(2026, 2, 28))


def test_mrr_normalises_annual_plans_and_keeps_amounts() -> None:
    events = [
        ev("y", "y", "subscription_start", "2026-01-15", amount=120, billing_period="yearly"),
        ev("r1", "r", "subscription_start", "2026-03-01", amount=10),
        ev("r2", "r", "subscription_renew", "2026-04-01"),  # no amount: keeps 10
        ev("e1", "e", "subscription_start", "2026-02-01", amount=50),  # expired by 03-08
        ev("x", "x", "app_open", "2026-04-10"),
    ]
    got = compute(events)
    # Live at C = 04-09: y (annual 120 -> 10 a month) and r (10); e has expired.
    assert got[key("retention_subscribers")] == 2
    assert got[key("retention_mrr")] == pytest.approx(20.0)
    # Month March: live at the end of 02-28: y and e; e is live through 03-07 only.
    assert got[key("retention_subscribers_start", period="month")] == 2
    assert got[key("retention_subscribers_lost", period="month")] == 1
    assert got[key("retention_subscription_churn_ratio", period="month")] == 0.5
    # y's activity is its one start on 01-15, yet it stays in the base: base at the end of
    # March = y and r (r live from 03-01); x is not yet a customer.
    assert got[key("retention_base_end_customers", period="month")] == 2


def test_subscription_mrr_uses_latest_event_even_after_t() -> None:
    # Lateness 1 day: T = 04-14, C = 04-13. s1's renew at 04-15 (after C) has the latest
    # ts, so its amount is the MRR, although subscription state is taken at the end of C.
    events = [
        ev("a", "s1", "subscription_start", "2026-04-01", amount=10),
        ev("b", "s1", "subscription_renew", "2026-04-15", amount=15),
        ev("c", "s2", "subscription_start", "2026-04-15", amount=100),
    ]
    got = compute(events, OracleSettings(allowed_lateness_seconds=86400))
    assert got[key("retention_subscribers")] == 1  # s2 starts after C
    assert got[key("retention_mrr")] == 15.0
    # s1 was subscribed at the end of 04-12 (day) and 04-05 (week), not of 02-28 (month).
    ratios = {k[1]: v for k, v in got.items() if k[0] == "retention_subscription_churn_ratio"}
    assert ratios == {(("period", "day"),): 0.0, (("period", "week"),): 0.0}
