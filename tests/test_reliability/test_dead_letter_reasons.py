"""One record for every reason a record can be dead-lettered for, amid valid events."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from datetime import date
from typing import Any

import pytest

from core.settings import Settings
from streams.events import EventDecoder, Reason, Rejected
from tests.history import generate_history
from tests.oracle import COMPARED, OracleSettings, compute, diff
from tests.pipeline_runner import Pipeline
from tests.test_reliability.hostile_records import nested
from tests.test_reliability.support import INVALID

pytestmark = pytest.mark.integration


def reason_cases() -> list[tuple[bytes | None, bytes | None, str]]:
    """(key, value, reason) for every reason a record can be dead-lettered for."""
    ok = {"event_id": "", "customer_id": "", "type": "app_open", "ts": "2026-03-10T12:00:00Z"}
    n = 0

    def ev(**changes: Any) -> dict[str, Any]:
        nonlocal n
        n += 1
        e = {**ok, "event_id": f"dead-{n}", "customer_id": f"dead-customer-{n}", **changes}
        return {k: v for k, v in e.items() if v is not None}

    def js(doc: Any) -> bytes:
        return json.dumps(doc).encode()

    no_customer = ev()
    del no_customer["customer_id"]
    cases: list[tuple[bytes | None, bytes | None, str]] = [
        (b"k-tombstone", None, "empty"),
        (b"k-empty", b"", "empty"),
        (b"k-big", js(ev(properties={"blob": "x" * 70_000})), "oversized"),
        (b"k-ff", b'{"event_id": "\xff", "customer_id": "c"}', "invalid_encoding"),
        (b"k-surrogate", js(ev(customer_id="\ud800")), "invalid_encoding"),
        (b"k-cut", b'{"event_id": ', "malformed_json"),
        (b"k-nan", js(ev(type="purchase", amount=float("nan"))), "malformed_json"),
        (b"k-deep", nested(5000), "too_deep"),
        (b"k-array", b"[1, 2]", "not_an_object"),
        (b"k-null", b"null", "not_an_object"),
        (b"k-missing", js(no_customer), "missing_field"),
        (b"k-nps", js(ev(type="nps")), "missing_field"),
        (b"k-wrong", js(ev(customer_id=123)), "wrong_type"),
        (b"k-amount-text", js(ev(type="purchase", amount="9.99")), "wrong_type"),
        (b"k-negative", js(ev(type="purchase", amount=-1)), "invalid_value"),
        (b"k-huge", js(ev(type="purchase", amount=1e306)), "invalid_value"),
        (b"k-currency", js(ev(type="purchase", amount=1, currency="euro")), "invalid_value"),
        (b"k-no-rate", js(ev(type="purchase", amount=1, currency="gbp")), "unknown_currency"),
        (b"k-no-offset", js(ev(ts="2026-03-10T12:00:00")), "bad_timestamp"),
        (b"k-words", js(ev(ts="yesterday")), "bad_timestamp"),
        (b"k-1999", js(ev(ts="1999-12-31T23:59:59Z")), "ts_out_of_range"),
        (b"k-2099", js(ev(ts="2099-01-01T00:00:00Z")), "ts_out_of_range"),
        (b"k-type", js(ev(type="purchsae")), "unknown_type"),
    ]
    return cases


def test_every_dead_letter_reason(pipeline) -> None:  # type: ignore[no-untyped-def]
    cases = reason_cases()
    decoder = EventDecoder(Settings())
    for _, value, reason in cases:
        with pytest.raises(Rejected) as caught:
            decoder.decode(value)
        assert caught.value.reason == reason, (value, caught.value)
    # Every reason but `undecodable`, which no input reaches: it is the safety net for an
    # unforeseen exception (tests/test_decode_fuzz.py asserts that every input has a rule).
    assert {reason for _, _, reason in cases} == {str(r) for r in Reason} - {"undecodable"}

    valid = generate_history(seed=77, customers=60, days=20, start=date(2026, 3, 2))
    records: list[tuple[bytes | None, bytes | None]] = []
    step = len(valid) // (len(cases) + 1)
    for i, e in enumerate(valid):
        records.append((e["customer_id"].encode(), json.dumps(e).encode()))
        if i % step == step - 1 and i // step < len(cases):
            k, value, _ = cases[i // step]
            records.append((e["customer_id"].encode() if i // step % 2 else k, value))
    assert sum(1 for _, v in records if v is None) == 1
    p: Pipeline = pipeline()
    p.produce(records)  # type: ignore[arg-type]
    p.wait_until_consumed()

    dead = p.consume_dlq(len(cases))
    expected = {hashlib.sha256(v or b"").hexdigest(): r for _, v, r in cases}
    assert len(dead) == len(cases), [json.loads(d.value)["reason"] for d in dead]
    for rec in dead:
        body = json.loads(rec.value)
        assert body["reason"] == expected[body["original_sha256"]], body
        assert body["topic"] == p.topic and isinstance(body["offset"], int)
        assert isinstance(body["detail"], str) and body["detail"]
    assert Counter(json.loads(d.value)["reason"] for d in dead) == Counter(r for *_, r in cases)
    tombstones = [d for d in dead if json.loads(d.value)["original_size"] == 0]
    assert len(tombstones) == 2

    scraped = p.scrape(COMPARED | {INVALID})
    invalid = {dict(k[1])["reason"]: v for k, v in scraped.items() if k[0] == INVALID and v}
    assert invalid == dict(Counter(r for *_, r in cases))
    got = {k: v for k, v in scraped.items() if k[0] != INVALID}
    problems = diff(compute(valid, OracleSettings()), got)
    assert not problems, problems
    p.check_alive()
