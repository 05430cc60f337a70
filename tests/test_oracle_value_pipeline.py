"""The value rules through the real pipeline (Kafka -> worker -> Redis -> exporter): small
hand-made histories, each scrape compared sample by sample with the oracle.

The histories are those of test_oracle_value.py, whose numbers are checked by hand
there; here each one also asserts that the oracle's answer shows what the case is about
(so a history that stops exercising its rule fails rather than passes quietly).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.oracle import Key, compute, diff, flatten, key
from tests.pipeline_runner import Pipeline
from tests.test_oracle_value import CLV, REPEAT, SHARE_NEW_LOST, SHARE_RETURNING
from tests.toy_events import ev

pytestmark = pytest.mark.integration


def gross_and_net(exp: dict[Key, float]) -> None:
    """AOV is gross revenue per purchase; CLV's value per purchase is net of the refund."""
    aov = exp[key("retention_average_order_value")]
    net_per_purchase = exp[key("retention_net_revenue")] / exp[key("retention_purchases_total")]
    assert aov > net_per_purchase > 0


def long_gone_does_not_dilute(exp: dict[Key, float]) -> None:
    """z left in 2025: purchases per customer-year stay above what z's calendar days since
    their first activity (more than 300) would allow."""
    customer_days = (
        365
        * exp[key("retention_purchases_total")]
        / exp[key("retention_purchases_per_customer_year", cohort="all")]
    )
    assert customer_days < 300
    assert key("retention_clv", cohort="all") in exp


def no_base_no_clv(exp: dict[Key, float]) -> None:
    assert key("retention_clv_lifespan_seconds") not in exp
    assert not [k for k in exp if k[0] == "retention_clv"]
    assert key("retention_purchases_per_customer_year", cohort="all") in exp


def zero_churn_cap(exp: dict[Key, float]) -> None:
    assert exp[key("retention_clv_lifespan_seconds")] == 5 * 365 * 86400
    assert key("retention_clv", cohort="all") in exp


def empty_last_month_holds_still(exp: dict[Key, float]) -> None:
    assert key("retention_churn_ratio", period="month") not in exp
    assert exp[key("retention_clv_lifespan_seconds")] < 5 * 365 * 86400


def repeat_per_period(exp: dict[Key, float]) -> None:
    """Late and re-sent purchases: the week and month rates are defined and differ from
    the all-time rate."""
    for period in ("week", "month"):
        rate = exp[key("retention_period_repeat_purchase_ratio", period=period)]
        assert rate != exp[key("retention_repeat_purchase_ratio")]


def share_below_crr(exp: dict[Key, float]) -> None:
    """A lapsed customer returns in March: CRR counts them, the retained share does not."""
    month = {"period": "month"}
    assert exp[key("retention_retained_share_ratio", **month)] < exp[key("retention_crr", **month)]


def share_above_crr(exp: dict[Key, float]) -> None:
    """A customer new in March is gone by its end: CRR drops, the retained share does not."""
    month = {"period": "month"}
    assert exp[key("retention_retained_share_ratio", **month)] > exp[key("retention_crr", **month)]


CASES: dict[str, tuple[list[dict[str, Any]], Callable[[dict[Key, float]], None]]] = {
    "gross-vs-net-aov": (CLV, gross_and_net),
    "churned-long-ago": (
        [
            *CLV,
            ev("z1", "z", "install", "2025-06-01"),
            ev("y1", "y", "install", "2026-05-02"),
            ev("y2", "y", "uninstall", "2026-05-02"),
        ],
        long_gone_does_not_dilute,
    ),
    "no-base-no-clv": ([e for e in CLV if e["ts"].startswith("2026-05")], no_base_no_clv),
    "zero-churn-cap": ([e for e in CLV if e["customer_id"] != "d"], zero_churn_cap),
    "empty-last-month": (
        [*CLV, ev("q1", "q", "session", "2026-08-02")],
        empty_last_month_holds_still,
    ),
    "repeat-per-period": (REPEAT, repeat_per_period),
    "retained-share-returning": (SHARE_RETURNING, share_below_crr),
    "retained-share-new-lost": (SHARE_NEW_LOST, share_above_crr),
}


@pytest.mark.parametrize("case", CASES)
def test_value_rule_through_pipeline(case: str, pipeline: Callable[..., Pipeline]) -> None:
    events, shows = CASES[case]
    expected = compute(events)
    shows(expected)
    p = pipeline()
    p.produce(events)
    p.wait_until_consumed(timeout=120)
    problems = diff(expected, flatten(p.scrape_text()))
    assert not problems, problems
