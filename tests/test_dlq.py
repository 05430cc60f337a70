"""Bad records go to the dead-letter topic with a reason, are counted, and do not stop
the valid events around them."""

from __future__ import annotations

import base64
import hashlib
import json
from collections import Counter
from datetime import date

import pytest

from tests.history import generate_history
from tests.oracle import COMPARED, OracleSettings, compute, diff, key

pytestmark = pytest.mark.integration

VALID_TS = "2026-03-10T12:00:00Z"


def bad_records() -> list[tuple[bytes, bytes, str]]:
    """(key, value, expected reason) for each kind of bad input."""
    ok = {"event_id": "", "customer_id": "", "type": "app_open", "ts": VALID_TS}

    def ev(n: int, **changes: object) -> dict:
        e = {**ok, "event_id": f"bad-{n}", "customer_id": f"bad-customer-{n}", **changes}
        return {k: v for k, v in e.items() if v is not None}

    missing = ev(2)
    del missing["customer_id"]
    oversized = ev(5, properties={"blob": "x" * 70_000})
    cases = [
        (b"bad-customer-1", b'{"event_id": ', "malformed_json"),
        (b"bad-customer-2", json.dumps(missing).encode(), "missing_field"),
        (b"bad-customer-3", json.dumps(ev(3, customer_id=123)).encode(), "wrong_type"),
        (
            b"bad-customer-4",
            json.dumps(ev(4, ts="2099-01-01T00:00:00Z")).encode(),
            "ts_out_of_range",
        ),
        (b"bad-customer-5", json.dumps(oversized).encode(), "oversized"),
        (b"bad-customer-6", json.dumps(ev(6, type="purchsae")).encode(), "unknown_type"),
        (
            b"bad-customer-7",
            json.dumps(ev(7, type="purchase", amount="9.99", currency="EUR")).encode(),
            "wrong_type",
        ),
    ]
    assert len(cases[4][1]) > 65536
    return cases


def full_original(body: dict, candidates: list[bytes]) -> bytes:
    """The original value of a DLQ record: as kept, or (when it was cut to the size
    limit) the candidate with the recorded size and hash that starts with the kept part."""
    kept = base64.b64decode(body["original"])
    if not body.get("truncated"):
        return kept
    match = [c for c in candidates if hashlib.sha256(c).hexdigest() == body["original_sha256"]]
    assert len(match) == 1, f"no original with the recorded hash: {body!r:.300}"
    assert match[0].startswith(kept) and len(match[0]) == body["original_size"] > len(kept)
    return match[0]


def test_bad_records_are_dead_lettered_and_counted(pipeline) -> None:  # type: ignore[no-untyped-def]
    p = pipeline()
    valid = generate_history(seed=99, customers=60, days=20, start=date(2026, 3, 2))
    bad = bad_records()
    # Interleave: bad ones spread through the valid stream, some sharing a valid
    # customer's key (so they land between that customer's events on one partition).
    records: list[tuple[bytes, bytes]] = []
    step = len(valid) // (len(bad) + 1)
    for i, e in enumerate(valid):
        records.append((e["customer_id"].encode(), json.dumps(e).encode()))
        if i % step == step - 1 and i // step < len(bad):
            k, value, _ = bad[i // step]
            if i // step % 2:
                k = e["customer_id"].encode()
            records.append((k, value))
    sent_bad = {value: k for k, value in records if any(value == b[1] for b in bad)}
    assert len(sent_bad) == len(bad)
    p.produce(records)
    p.wait_until_consumed()

    dead = p.consume_dlq(len(bad))
    assert len(dead) == len(bad), f"expected {len(bad)} DLQ records, got {len(dead)}"
    expected_reason = {value: reason for _, value, reason in bad}
    for rec in dead:
        body = json.loads(rec.value)
        original = full_original(body, list(expected_reason))
        assert original in expected_reason, f"DLQ record with unknown original: {body!r:.300}"
        assert body["reason"] == expected_reason[original], (
            f"{original[:80]!r}: reason {body['reason']!r}, expected {expected_reason[original]!r} "
            f"(detail: {body.get('detail')!r})"
        )
        assert isinstance(body["detail"], str) and len(body["detail"]) > 5
        assert rec.key == sent_bad[original]
        assert body["topic"] == p.topic
        assert isinstance(body["partition"], int) and isinstance(body["offset"], int)
    assert {full_original(json.loads(r.value), list(expected_reason)) for r in dead} == set(
        expected_reason
    )

    scraped = p.scrape(COMPARED | {"retention_events_invalid_total"})
    invalid = {
        k[1][0][1]: v for k, v in scraped.items() if k[0] == "retention_events_invalid_total" and v
    }
    assert invalid == dict(Counter(reason for _, _, reason in bad))
    # Every valid event around them was applied: the full oracle comparison holds.
    expected = compute(valid, OracleSettings())
    got = {k: v for k, v in scraped.items() if k[0] != "retention_events_invalid_total"}
    assert not diff(expected, got), diff(expected, got)
    assert got[key("retention_customers")] == 60
