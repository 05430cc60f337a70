"""Subscriptions through the real pipeline (Kafka -> worker -> Redis -> exporter and the
lifecycle topic), checked against the oracle and against numbers worked out by hand from
docs/definitions.md.

The history is the issue's: 50 customers subscribe on 1 June and renew on the 1st of
every month through November without ever opening the app, beside ten installs on
1 September that never come back and one install + uninstall. Added: an annual plan,
renewals without an amount, a subscription that expires, one that is cancelled, the
renewals delivered out of order and some of them twice, and a start whose billing period
is unknown (dead-lettered). The last event is on 11-20 (T), so the evaluation day C is
11-19.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import pytest

from tests.oracle import COMPARED, OracleSettings, compute, diff, flatten, key
from tests.pipeline_runner import Pipeline
from tests.test_lifecycle_topic import read_topic
from tests.toy_events import Event, ev

pytestmark = pytest.mark.integration

MONTHS = ("06", "07", "08", "09", "10", "11")


def subscription_history() -> tuple[list[Event], Event]:
    """The valid events in a shuffled delivery order with duplicates, and one invalid."""
    events: list[Event] = []
    for n in range(50):
        for i, month in enumerate(MONTHS):
            kind = "subscription_start" if i == 0 else "subscription_renew"
            # sub0..sub9 renew without an amount: they keep paying 10
            amount = {} if (i > 0 and n < 10) else {"amount": 10}
            events.append(ev(f"sub{n}-{month}", f"sub{n}", kind, f"2026-{month}-01", **amount))
    for n in range(10):
        events.append(ev(f"inst{n}", f"inst{n}", "install", "2026-09-01"))
    events += [
        ev("u1", "u", "install", "2026-09-10"),
        ev("u2", "u", "uninstall", "2026-09-12"),
        # annual: 120 a year = 10 a month, live until 2027-01-20 + 7 days
        ev("a1", "a", "subscription_start", "2026-01-20", amount=120, billing_period="annual"),
        # monthly, never renewed: 10-30 + 7 days grace, last live day 11-05
        ev("e1", "e", "subscription_start", "2026-09-30", amount=20),
        # renewed on 09-15 (live until 10-22), cancelled on 10-20
        ev("c1", "c", "subscription_start", "2026-08-15", amount=15),
        ev("c3", "c", "subscription_renew", "2026-09-15"),
        ev("c2", "c", "subscription_cancel", "2026-10-20"),
        ev("w1", "w", "app_open", "2026-11-20"),
    ]
    rng = random.Random(12)
    rng.shuffle(events)  # renewals arrive out of order, some months before earlier ones
    events += [dict(e) for e in rng.sample(events, 40)]  # re-sent events
    bad = ev("b1", "b", "subscription_start", "2026-10-01", amount=5, billing_period="weekly")
    return events, bad


def test_subscribers_stay_in_the_base(pipeline) -> None:  # type: ignore[no-untyped-def]
    p: Pipeline = pipeline()
    valid, bad = subscription_history()
    p.produce([*valid[:100], bad, *valid[100:]])
    p.wait_until_consumed(timeout=120)
    got = flatten(p.scrape_text(), COMPARED)
    expected = compute(valid, OracleSettings())
    problems = diff(expected, got)
    assert not problems, problems

    # October: base at the end of 09-30 = 50 subscribers, 10 installers, a, e and c (63);
    # at the end of 10-31 = the 50, a and e (52). Lost: the installers and c.
    month = {"period": "month"}
    assert got[key("retention_base_start_customers", **month)] == 63
    assert got[key("retention_base_end_customers", **month)] == 52
    assert got[key("retention_lost_customers", **month)] == 11
    assert got[key("retention_churn_ratio", **month)] == pytest.approx(11 / 63)
    # Live at C: the 50 and a; e expired after 11-05, c was cancelled. MRR 50 x 10 + 120 / 12.
    assert got[key("retention_subscribers")] == 51
    assert got[key("retention_mrr")] == pytest.approx(510.0)
    # Subscriber churn in October: 53 live at the end of 09-30 (the 50, a, e, c); c lost.
    assert got[key("retention_subscribers_start", **month)] == 53
    assert got[key("retention_subscribers_lost", **month)] == 1
    assert got[key("retention_subscription_churn_ratio", **month)] == pytest.approx(1 / 53)
    # Churned at least once: the installers, u, c and e; the 50 subscribers never. Nobody
    # is won back.
    churned = sum(v for k, v in got.items() if k[0] == "retention_churned_customers")
    won_back = sum(v for k, v in got.items() if k[0] == "retention_winback_customers")
    assert (churned, won_back) == (13, 0)

    dead = p.consume_dlq(1)
    assert [json.loads(r.value)["reason"] for r in dead] == ["invalid_value"]
    assert "billing period" in json.loads(dead[0].value)["detail"]

    # The lifecycle topic: each subscriber turns active again on every renewal and is never
    # published as churned (so never as resurrected either).
    messages = asyncio.run(read_topic(p.lifecycle_topic, 50 * 3 * 5))
    mine: list[dict[str, Any]] = [m for m in messages if str(m["customer_id"]).startswith("sub")]
    assert len({m["customer_id"] for m in mine}) == 50
    assert not [m for m in mine if m["to"] == "churned" or m["reason"] == "resurrected"]
    again = [m for m in mine if m["reason"] == "active again"]
    assert len(again) >= 50 * 4  # renewals on 07-01 .. 10-01 at least
