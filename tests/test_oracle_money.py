"""One reporting currency: amounts converted on ingest with the configured rate table, a
currency without a rate dead-lettered with its own reason (docs/definitions.md, "Money").

The oracle cases are worked out by hand from the definition; the pipeline case sends a
mixed-currency history through Kafka, the worker and the exporter and compares the
scrape with the oracle, the dead-letter topic and the HELP texts.
"""

from __future__ import annotations

import base64
import json
import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.oracle import COMPARED, OracleSettings, compute, diff, key
from tests.toy_events import ev, pick

# Reporting in EUR: 1 USD = 0.92 EUR, 1 JPY = 0.0062 EUR.
EUR = OracleSettings(currency="EUR", rates=(("USD", 0.92), ("JPY", 0.0062)))
RATES_ENV = {"RETENTION_CURRENCY": "EUR", "RETENTION_CURRENCY_RATES": "USD=0.92,JPY=0.0062"}
# names of families whose values are amounts of money (not counts or durations)
MONEY_NAME = re.compile(r"revenue|order_value|_clv$|_mrr$")
MONEY = (
    "retention_revenue_total",
    "retention_refunded_revenue_total",
    "retention_net_revenue",
    "retention_average_order_value",
    "retention_mrr",
)

MIXED = [
    ev("p1", "a", "purchase", "2026-03-02", amount=10, currency="USD"),  # 9.200 EUR
    ev("p2", "b", "purchase", "2026-03-02", amount=1500, currency="jpy"),  # 9.300 EUR
    ev("p3", "c", "purchase", "2026-03-03", amount=20),  # no currency: 20.000 EUR
    ev("p4", "c", "purchase", "2026-03-03", amount=4.5, currency="EUR"),  # 4.500 EUR
    ev("p5", "b", "purchase", "2026-03-04", amount=333, currency="JPY"),  # 2.0646 -> 2.065
    ev("r1", "a", "refund", "2026-03-04", amount=2.5, currency="usd"),  # 2.300 EUR
    ev("s1", "d", "subscription_start", "2026-03-02", amount=9.99, currency="USD"),  # 9.1908
]
NO_RATE = [
    ev("x1", "a", "purchase", "2026-03-04", amount=99, currency="GBP"),
    ev("x2", "e", "install", "2026-03-04", currency="chf"),  # no amount, still no rate
]


def test_amounts_are_converted_before_summing() -> None:
    got = compute(MIXED, EUR)
    # 9.200 + 9.300 + 20.000 + 4.500 + 2.065 = 45.065 EUR over 5 purchases
    assert got[key("retention_revenue_total")] == pytest.approx(45.065)
    assert got[key("retention_refunded_revenue_total")] == pytest.approx(2.3)
    assert got[key("retention_net_revenue")] == pytest.approx(42.765)
    assert got[key("retention_average_order_value")] == pytest.approx(45.065 / 5)  # gross
    assert got[key("retention_mrr")] == pytest.approx(9.191)  # 9.99 * 0.92 = 9.1908
    # The same events summed as written would give 10 + 1500 + 20 + 4.5 + 333 = 1867.5.
    assert compute(MIXED, OracleSettings(rates=(("JPY", 1), ("EUR", 1))))[
        key("retention_revenue_total")
    ] == pytest.approx(1867.5)


def test_a_currency_without_a_rate_is_in_no_total() -> None:
    assert pick(compute(MIXED + NO_RATE, EUR), *MONEY) == pick(compute(MIXED, EUR), *MONEY)
    with_rate = compute(NO_RATE, OracleSettings(rates=(("GBP", 1.17), ("CHF", 1.13))))
    assert with_rate[key("retention_revenue_total")] == pytest.approx(115.83)  # 99 * 1.17
    assert with_rate[key("retention_customers")] == 2


def help_texts(text: str) -> dict[str, str]:
    return {f.name: f.documentation for f in text_string_to_metric_families(text)}


@pytest.mark.integration
def test_mixed_currencies_through_the_pipeline(pipeline) -> None:  # type: ignore[no-untyped-def]
    p = pipeline(extra_env=RATES_ENV)
    over_limit = ev("x3", "f", "purchase", "2026-03-04", amount=1e12, currency="JPY")
    # 1e12 JPY is 6.2e9 EUR: over the 1e9 amount limit, refused rather than summed
    p.produce([*MIXED, *NO_RATE, NO_RATE[0], over_limit])  # the first of them twice
    p.wait_until_consumed()
    dead = [json.loads(r.value) for r in p.consume_dlq(4)]
    reasons = sorted(
        (json.loads(base64.b64decode(d["original"]))["event_id"], d["reason"]) for d in dead
    )
    assert reasons == [
        ("x1", "unknown_currency"),
        ("x1", "unknown_currency"),
        ("x2", "unknown_currency"),
        ("x3", "invalid_value"),
    ]
    detail = next(d["detail"] for d in dead if d["reason"] == "invalid_value")
    assert detail == "amount 1e+12 JPY is 6.2e+09 EUR, over the 1e+09 limit"

    got = p.scrape(COMPARED)
    assert not diff(compute(MIXED + NO_RATE, EUR), got), diff(compute(MIXED + NO_RATE, EUR), got)
    assert got[key("retention_revenue_total")] == pytest.approx(45.065)
    invalid = p.scrape(frozenset({"retention_events_invalid_total"}))
    assert {dict(k[1])["reason"]: v for k, v in invalid.items()} == {
        "unknown_currency": 3,
        "invalid_value": 1,
    }
    helps = help_texts(p.scrape_text())
    money = {name for name in helps if MONEY_NAME.search(name)}
    assert {"retention_revenue", "retention_net_revenue", "retention_mrr", "retention_clv"} <= money
    for name in money:
        assert helps[name].endswith(", in EUR."), (name, helps[name])
    assert "EUR" not in helps["retention_purchases"]


@pytest.mark.integration
def test_a_new_rate_applies_from_ingest_on_a_new_currency_is_refused(pipeline) -> None:  # type: ignore[no-untyped-def]
    p = pipeline(extra_env=RATES_ENV)
    p.produce(MIXED)
    p.wait_until_consumed()
    before = p.scrape(COMPARED)
    assert not diff(compute(MIXED, EUR), before)
    for proc in p.processes:
        proc.stop()

    # Rates are not part of the state's settings: the worker continues under a new table,
    # converting the events it applies from now on with it, and revalues nothing.
    p.settings["RETENTION_CURRENCY_RATES"] = "USD=0.95,JPY=0.0060"
    p.start_worker()
    p.start_exporter()
    late = ev("p6", "b", "purchase", "2026-03-04", "13:00:00", amount=1000, currency="JPY")
    p.produce([late, MIXED[1]])  # MIXED[1] again: a duplicate, not revalued
    p.wait_until_consumed()
    after = p.scrape(COMPARED)
    # 45.065 EUR as before, plus 1000 JPY at the new rate: 6.000 EUR
    assert after[key("retention_revenue_total")] == pytest.approx(45.065 + 6.0)
    new_rates = OracleSettings(currency="EUR", rates=(("USD", 0.95), ("JPY", 0.006)))
    assert compute([late], new_rates)[key("retention_revenue_total")] == pytest.approx(6.0)
    assert after[key("retention_purchases_total")] == before[key("retention_purchases_total")] + 1
    for proc in p.processes:
        proc.stop()

    # The reporting currency is: stored sums are in EUR, so a USD worker refuses them.
    p.settings["RETENTION_CURRENCY"] = "USD"
    p.settings["RETENTION_CURRENCY_RATES"] = "EUR=1.08"
    worker = p.start_worker()
    assert worker.popen.wait(60) == 2
    worker.stopped = True
    log = worker.log.read_text()
    assert 'RETENTION_CURRENCY: stored "EUR", now "USD"' in log, log
    assert "retention rebuild" in log
