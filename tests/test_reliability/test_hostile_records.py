"""100,000 records, most of them hostile: each is applied or dead-lettered for the reason
the decoder gives, and the metrics of the valid ones equal the oracle's.
"""

from __future__ import annotations

import base64
import json
import time
from collections import Counter

import pytest

from tests.oracle import COMPARED, OracleSettings, compute, diff, kept_values, key
from tests.pipeline_runner import Pipeline
from tests.services import free_port
from tests.test_reliability.hostile_records import fuzz_records
from tests.test_reliability.support import INVALID, worker_metrics

pytestmark = pytest.mark.integration


def test_fuzz_hostile_records(pipeline) -> None:  # type: ignore[no-untyped-def]
    total = 100_000
    t0 = time.monotonic()
    fuzz = fuzz_records(seed=666, total=total)
    generated = time.monotonic() - t0
    port = free_port()
    p: Pipeline = pipeline(start=False, extra_env={"RETENTION_WORKER_METRICS_PORT": str(port)})
    p.start_worker()
    p.start_exporter()
    t1 = time.monotonic()
    produced = p.produce(fuzz.records)  # type: ignore[arg-type]
    t2 = time.monotonic()
    assert produced == total
    seconds = p.wait_until_consumed(timeout=300)
    p.check_alive()
    n_rejected = sum(fuzz.rejected.values())
    assert n_rejected + len(fuzz.accepted) == total
    assert len(fuzz.accepted) > 10_000 and n_rejected > 50_000
    assert fuzz.rejected.keys() >= {
        "empty",
        "oversized",
        "invalid_encoding",
        "malformed_json",
        "too_deep",
        "not_an_object",
        "missing_field",
        "wrong_type",
        "invalid_value",
        "bad_timestamp",
        "ts_out_of_range",
        "unknown_type",
    }, fuzz.rejected

    scraped = p.scrape(COMPARED | {INVALID})
    invalid = {dict(k[1])["reason"]: v for k, v in scraped.items() if k[0] == INVALID and v}
    assert invalid == dict(fuzz.rejected), f"exporter {invalid} != decoder {dict(fuzz.rejected)}"
    got = {k: v for k, v in scraped.items() if k[0] != INVALID}
    # More platforms and channels than the cap, from four partitions: which ones were
    # met first is the consumption order, so the oracle takes the kept ones as given.
    expected = compute(fuzz.accepted, OracleSettings(), kept=kept_values(got))
    problems = diff(expected, got)
    assert not problems, f"valid records' metrics != oracle: {problems}"

    dead = p.consume_dlq(n_rejected, timeout=120)
    reasons: Counter[str] = Counter()
    for rec in dead:
        body = json.loads(rec.value)
        sha = body["original_sha256"]
        assert fuzz.reason_of.get(sha) == body["reason"], body
        assert base64.b64decode(body["original"]) or body["original_size"] == 0
        reasons[body["reason"]] += 1
    assert len(dead) == n_rejected and reasons == fuzz.rejected, (len(dead), reasons)
    health = worker_metrics(port)
    consumed = health[key("retention_consumed_events_total")]
    assert consumed >= total, health
    p.check_alive()
    print(
        f"\n{total} records ({len(fuzz.accepted)} accepted, {n_rejected} dead-lettered: "
        f"{dict(fuzz.rejected)}); left out while generating: {dict(fuzz.dropped)}; "
        f"generated in {generated:.1f}s, produced in {t2 - t1:.1f}s, consumed in {seconds:.1f}s; "
        f"worker consumed {consumed:.0f}"
    )
