"""Bad records go to the dead-letter topic with a reason, are counted, and do not stop
the valid events around them."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import urllib.request
from collections import Counter
from datetime import date

import pytest

from tests.history import generate_history
from tests.oracle import COMPARED, OracleSettings, compute, diff, key
from tests.pipeline_runner import Pipeline
from tests.services import KAFKA, free_port

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


def worker_metrics(port: int) -> dict[tuple[str, str], float]:
    """The worker's health samples by (name, backend label)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, s.labels.get("backend", ""))] = s.value
    return out


def set_dlq_max_bytes(p: Pipeline, value: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    async def alter() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
        await admin.start()
        try:
            resource = ConfigResource(
                ConfigResourceType.TOPIC, p.dlq_topic, {"max.message.bytes": str(value)}
            )
            await admin.alter_configs([resource])
        finally:
            await admin.close()

    asyncio.run(alter())


def test_unwritable_dead_letter_topic_holds_the_position_until_it_accepts(pipeline) -> None:  # type: ignore[no-untyped-def]
    """A broker refusing dead-letter writes stops nothing but progress: the worker stays
    up, says so on its health metrics, and once the topic accepts writes everything
    lands exactly."""
    metrics_port = free_port()
    p = pipeline(start=False, extra_env={"RETENTION_WORKER_METRICS_PORT": str(metrics_port)})
    set_dlq_max_bytes(p, 128)  # every dead-letter record is larger
    valid = generate_history(seed=12, customers=30, days=10, start=date(2026, 3, 2))
    bad = (b"bad-customer", b'{"event_id": "x", "customer_id": "bad-customer", "type": 1}')
    records = [bad] + [(e["customer_id"].encode(), json.dumps(e).encode()) for e in valid]
    p.produce(records)
    worker = p.start_worker()
    p.start_exporter()

    health: dict[tuple[str, str], float] = {}

    def retried_twice() -> bool:
        nonlocal health
        with contextlib.suppress(OSError):
            health = worker_metrics(metrics_port)
        return health.get(("retention_backend_retries_total", "dead_letter"), 0) >= 2

    p.wait(
        retried_twice,
        lambda: f"two retries of the dead-letter write; health {health}",
        60,
        interval=0.5,
    )
    assert health[("retention_backend_up", "dead_letter")] == 0, health
    assert health[("retention_backend_retries_total", "dead_letter")] >= 2, health
    assert "writing to the dead-letter topic failed" in worker.log.read_text()
    # the batch holding the bad record was not applied: its position is kept
    assert p.scrape(COMPARED).get(key("retention_customers"), 0) < 30

    set_dlq_max_bytes(p, 1024 * 1024)
    p.wait_until_consumed(timeout=120)
    dead = p.consume_dlq(1)
    assert [json.loads(r.value)["reason"] for r in dead] == ["wrong_type"]
    scraped = p.scrape(COMPARED)
    assert not diff(compute(valid, OracleSettings()), scraped)
    assert worker_metrics(metrics_port)[("retention_backend_up", "dead_letter")] == 1
