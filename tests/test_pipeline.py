"""End to end: a synthetic history through Kafka -> worker -> Redis -> exporter, checked
value by value against the independent oracle (tests/oracle/)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pytest

from core.schema import Keys, offset_marker
from core.settings import Settings
from core.totals import positions
from tests.history import generate_history
from tests.oracle import (
    COMPARED,
    RFM_SEGMENTS,
    Key,
    OracleSettings,
    compute,
    diff,
    flatten,
    flatten_all,
    key,
)
from tests.pipeline_runner import Pipeline

pytestmark = pytest.mark.integration

LATENESS = 30 * 3600
COHORT_SERIES = ("retention_cohort_size", "retention_cohort_retained", "retention_cohort_ratio")


@dataclass
class Run:
    pipeline: Pipeline
    expected: dict[Key, float]
    text: str  # the exporter's /metrics after the first pass
    produced: int
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)


def run_history(p: Pipeline, history: list[dict[str, Any]], settings: OracleSettings) -> Run:
    produced = p.produce(history)
    seconds = p.wait_until_consumed(timeout=180)
    return Run(p, compute(history, settings), p.scrape_text(), produced, seconds, history)


def assert_matches(run: Run, text: str | None = None) -> None:
    got = flatten(text if text is not None else run.text, COMPARED)
    problems = diff(run.expected, got)
    if problems:
        moving = run.pipeline.still_moving()
        pytest.fail(f"exporter != oracle ({moving}); {problems}", pytrace=False)
    # The set of exported cohort label sets is exactly the oracle's (no extra, none missing).
    for name in COHORT_SERIES:
        assert {k for k in got if k[0] == name} == {k for k in run.expected if k[0] == name}


@pytest.fixture(scope="module")
def utc_run(module_pipelines: list[Pipeline], tmp_path_factory: pytest.TempPathFactory) -> Run:
    # 75 days from Monday 2026-02-16 to 2026-05-01: three complete months in view,
    # lapsers who come back after more than 30 days. 30 hours of allowed lateness put
    # the watermark day T on 04-30 and the evaluation day C on 04-29, so events of 04-30
    # (so far) and 05-01 lie beyond C.
    history = generate_history(seed=20260302, customers=2000, days=75, start=date(2026, 2, 16))
    p = Pipeline(tmp_path_factory.mktemp("utc"), allowed_lateness_seconds=LATENESS)
    module_pipelines.append(p)
    p.start_worker()
    p.start_exporter()
    return run_history(p, history, OracleSettings(allowed_lateness_seconds=LATENESS))


def test_history_matches_oracle_utc(utc_run: Run) -> None:
    exp = utc_run.expected
    # The history must exercise what it claims to (else the comparison proves little).
    assert exp[key("retention_customers")] == 2000
    for period in ("day", "week", "month"):
        assert key("retention_churn_ratio", period=period) in exp
        assert exp[key("retention_lost_customers", period=period)] > 0
    assert sum(1 for k in exp if k[0] == "retention_cohort_ratio") > 100
    assert key("retention_cohort_size", cohort_period="day", cohort="2026-04-29") in exp
    assert key("retention_cohort_size", cohort_period="day", cohort="2026-04-30") not in exp
    # C (a Wednesday) leaves week 04-27 and April running: their cells are marked.
    running = {k for k in exp if k[0] == "retention_cohort_cell_running"}
    assert {dict(k[1])["cohort_period"] for k in running} == {"week", "month"}
    assert_exercises_value_metrics(exp)
    assert_matches(utc_run)


def assert_exercises_value_metrics(exp: dict[Key, float]) -> None:
    """The value metrics (RFM, NPS, win-back, refunds, ...) are non-trivial in this history
    (not all zero or absent)."""

    def values(name: str) -> list[float]:
        return [v for k, v in exp.items() if k[0] == name]

    for segment in RFM_SEGMENTS:
        assert exp[key("retention_rfm_customers", segment=segment)] > 0, segment
    for group in ("promoter", "passive", "detractor"):
        assert exp[key("retention_nps_responses", group=group)] > 0, group
    for tenure in ("quick", "late"):
        assert exp[key("retention_winback_customers", tenure=tenure)] > 0
        assert exp[key("retention_winback_ratio", tenure=tenure)] < 1
    assert exp[key("retention_refunds_total")] > 0
    assert exp[key("retention_repeat_customers")] > 0
    assert exp[key("retention_subscription_cancels", period="month")] > 0
    assert exp[key("retention_subscribers")] > 0 and exp[key("retention_mrr")] > 0
    assert 0 < exp[key("retention_clv_lifespan_seconds")] < 5 * 365 * 86400
    assert len(values("retention_clv")) >= 3  # "all" and at least two cohort months
    # Unbounded differs from N-period retention somewhere; every lifecycle state occurs.
    differs = [
        k
        for k, v in exp.items()
        if k[0] == "retention_cohort_unbounded_retained"
        and v != exp[("retention_cohort_retained", k[1])]
    ]
    assert len(differs) > 20
    for state in ("new", "returning", "resurrecting", "dormant"):
        assert (
            sum(
                v
                for k, v in exp.items()
                if k[0] == "retention_lifecycle_customers" and ("state", state) in k[1]
            )
            > 0
        ), state
    assert sum(values("retention_period_installs")) > 0


def test_topic_consumed_again_into_state_that_holds_it_changes_nothing(utc_run: Run) -> None:
    """With the offset markers gone, a new group re-reads the whole topic into state that
    already holds every event: each one really goes through the script again (dedup,
    bitmaps, sweep, outbox), and no number moves."""
    p = utc_run.pipeline
    for proc in p.processes:
        if proc.name.startswith("worker"):
            proc.stop()
    client = p.redis()
    keys = Keys(p.ns, Settings().shards)
    for agg in (keys.totals(shard) for shard in range(keys.shards)):
        markers = [offset_marker(*where) for where in positions(client.hgetall(agg))]
        assert markers, f"{agg!r} has no offset markers"
        client.hdel(agg, *markers)
    replay_group = f"{p.group}-replay"
    worker = p.start_worker(group=replay_group)
    p.wait_until_consumed(replay_group, timeout=180)
    assert "resumes from the beginning" in worker.log.read_text()
    after = p.scrape_text()
    before_all, after_all = flatten_all(utc_run.text), flatten_all(after)
    changed = diff(before_all, after_all)
    assert not changed, f"re-applying the topic changed metrics: {changed}"
    assert_matches(utc_run, after)


def test_history_matches_oracle_berlin(pipeline) -> None:  # type: ignore[no-untyped-def]
    # DST starts on 2026-03-29 in Europe/Berlin; other knobs off their defaults too,
    # and 2% of events arrive 10-45 days late (beyond the churn window).
    settings = OracleSettings(
        tz="Europe/Berlin", churn_window_days=14, allowed_lateness_seconds=3600, cohorts_kept=6
    )
    p = pipeline(
        timezone="Europe/Berlin",
        churn_window_days=14,
        allowed_lateness_seconds=3600,
        cohorts_kept=6,
    )
    history = generate_history(
        seed=4242,
        customers=600,
        days=75,
        start=date(2026, 2, 16),
        tz="Europe/Berlin",
        very_late=0.02,
    )
    run = run_history(p, history, settings)
    assert_matches(run)


def test_crash_mid_stream(pipeline) -> None:  # type: ignore[no-untyped-def]
    """Two workers share the group; one is SIGKILLed while the stream is being consumed,
    the other takes its partitions over (after the group session timeout) from the
    offsets stored in Redis, past batches the dead one applied but never committed."""
    p = pipeline(start=False)
    p.start_exporter()
    a = p.start_worker(name="worker-a")
    b = p.start_worker(name="worker-b")
    p.wait_for_group(2)
    history = generate_history(seed=777, customers=2000, days=60)
    p.produce(history)

    def first_commit() -> tuple[int, int] | None:
        committed, end = p.progress()
        return (committed, end) if committed > 0 else None

    _, end = p.wait(first_commit, "a first commit", 60, interval=0.02)
    before_kill = b.log.stat().st_size
    a.kill()
    seconds = p.wait_until_consumed(timeout=180)
    # the survivor took the dead worker's partitions over where Redis says they end
    assert "(as applied in Redis)" in b.log.read_text()[before_kill:]
    run = Run(p, compute(history, OracleSettings()), p.scrape_text(), end, seconds)
    assert_matches(run)
    # While the dead member is still in Faust's own (-host) group, which keeps it for
    # broker_session_timeout = 60 s, a SIGTERM waits for that rebalance; end it hard.
    b.kill()
