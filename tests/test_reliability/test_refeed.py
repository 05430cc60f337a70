"""Re-sent events, in order and shuffled, at new offsets, change no exported sample."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from tests.history import generate_history
from tests.oracle import COMPARED, OracleSettings, compute, diff, flatten, flatten_all, key, ts_ms
from tests.pipeline_runner import Pipeline
from tests.test_reliability.support import HOUR_MS, without_invalid

pytestmark = pytest.mark.integration


def heavy_customers(rng: random.Random, n: int, days: int, start: date) -> list[dict[str, Any]]:
    """n customers with hundreds of events each: purchases, refunds, visits, a subscription
    and NPS answers spread over `days` days (time-ordered)."""
    t0 = datetime(start.year, start.month, start.day, tzinfo=UTC)
    out: list[tuple[int, dict[str, Any]]] = []

    def at(day: int) -> int:
        moment = t0 + timedelta(days=day, milliseconds=rng.randrange(86_400_000))
        return int((moment - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(milliseconds=1))

    for c in range(n):
        cid = f"heavy-{c}"

        def add(kind: str, day: int, cid: str = cid, **extra: Any) -> None:
            ms = at(day)
            ev = {
                "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "customer_id": cid,
                "type": kind,
                "ts": ms
                if rng.random() < 0.5
                else datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds"),
                "platform": rng.choice(("ios", "android", "web")),
                "channel": "organic",
                **extra,
            }
            out.append((ms, ev))

        add("install", 0)
        for _ in range(rng.randint(300, 360)):
            amount = round(rng.uniform(1, 99), 2)
            add("purchase", rng.randrange(days), amount=amount, currency="USD")
        for _ in range(rng.randint(5, 15)):
            add("refund", rng.randrange(1, days), amount=round(rng.uniform(1, 20), 2))
        for _ in range(rng.randint(300, 400)):
            add(rng.choice(("app_open", "session")), rng.randrange(days))
        add("subscription_start", 1, amount=9.99, currency="USD")
        for d in range(31, days, 30):
            add("subscription_renew", d, amount=9.99, currency="USD")
        for _ in range(3):
            add("nps", rng.randrange(days), score=rng.randint(0, 10))
    out.sort(key=lambda t: t[0])
    return [e for _, e in out]


def test_refeed_same_events_changes_nothing(pipeline) -> None:  # type: ignore[no-untyped-def]
    """At default settings: the same events produced again, in order and shuffled, at
    new offsets, change no exported sample."""
    rng = random.Random(55)
    start, days = date(2026, 3, 2), 60
    normal = generate_history(seed=55, customers=300, days=days, start=start)
    heavy = heavy_customers(random.Random(5_500), 5, days, start)
    # Merge the heavy customers into the normal history, roughly by time.
    merged = [(ts_ms(e["ts"]) + rng.uniform(0, 6 * HOUR_MS), n, e) for n, e in enumerate(normal)]
    merged += [(ts_ms(e["ts"]), len(normal) + n, e) for n, e in enumerate(heavy)]
    merged.sort(key=lambda t: (t[0], t[1]))
    history = [e for _, _, e in merged]
    owners: dict[str, set[str]] = {}
    for e in history:
        owners.setdefault(e["event_id"], set()).add(e["customer_id"])
    assert all(len(o) == 1 for o in owners.values()), "an event id is shared by two customers"
    per_customer = Counter(e["customer_id"] for e in history)
    assert sum(1 for c in per_customer.values() if c >= 600) == 5
    assert min(Counter(e["customer_id"] for e in heavy if e["type"] == "purchase").values()) >= 300

    p: Pipeline = pipeline()
    p.produce(history)
    p.wait_until_consumed(timeout=180)
    first_text = p.scrape_text()
    expected = compute(history, OracleSettings())
    problems = diff(expected, flatten(first_text, COMPARED))
    assert not problems, f"first pass != oracle: {problems}"
    first = without_invalid(flatten_all(first_text))
    assert first[key("retention_customers")] == 305

    shuffled = list(history)
    rng.shuffle(shuffled)
    for label, again in (("same order", history), ("shuffled", shuffled)):
        p.produce(again)
        p.wait_until_consumed(timeout=180)
        text = p.scrape_text()
        changed = diff(first, without_invalid(flatten_all(text)))
        assert not changed, f"re-sending the events ({label}) changed the metrics: {changed}"
        problems = diff(expected, flatten(text, COMPARED))
        assert not problems, f"after re-sending ({label}) != oracle: {problems}"
    p.check_alive()
    _, end = p.progress()
    print(f"\n{len(history)} events x 3 = {end} records; {len(first)} samples unchanged")
