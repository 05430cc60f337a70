"""The worker and exporter refuse state they cannot continue exactly, with exit code 2
and a message that says why; `retention rebuild` derives it again under new settings."""

from __future__ import annotations

import asyncio
import subprocess
import time
from datetime import UTC, date, datetime, timedelta

import pytest
import redis
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from core.redis_client import async_client, sync_client
from core.schema import Keys, active_window, offset_marker
from core.settings import Settings
from core.totals import positions, sum_totals
from streams.state import Record, StateWriter
from tests.broker import delete_marked, scratch_name
from tests.cli_fixtures import cli_env, run_cli
from tests.history import generate_history
from tests.oracle import COMPARED, OracleSettings, compute, diff, flatten
from tests.pipeline_runner import Pipeline, Process
from tests.services import KAFKA, REDIS_URL, STACK
from tests.waiting import wait_until_async

pytestmark = pytest.mark.integration


def exit_code(proc: Process, timeout: float = 60) -> int:
    """The code a process exits with on its own, within the deadline."""
    code = proc.popen.wait(timeout)
    proc.stopped = True
    return code


def history(p: Pipeline, customers: int = 80) -> list[dict]:
    events = generate_history(seed=31, customers=customers, days=40, start=date(2026, 2, 2))
    p.produce(events)
    return events


def stop_all(p: Pipeline) -> None:
    for proc in p.processes:
        if not proc.stopped:
            proc.stop()


def matches_oracle(
    p: Pipeline, events: list[dict], settings: OracleSettings, timeout: float = 0
) -> None:
    """The exporter's numbers equal the oracle's, at once or within the timeout (for a
    worker that first has to notice Redis lost what the group's commits say)."""
    expected = compute(events, settings)
    problems = ""

    def matching() -> bool:
        nonlocal problems
        problems = diff(expected, flatten(p.scrape_text(), COMPARED))
        return not problems

    p.wait(matching, lambda: f"the exporter to match the oracle: {problems}", timeout, 0.5)


def test_changed_setting_is_refused_and_rebuild_applies_it(pipeline) -> None:  # type: ignore[no-untyped-def]
    p = pipeline()
    events = history(p)
    p.wait_until_consumed()
    matches_oracle(p, events, OracleSettings())
    stop_all(p)

    p.settings["RETENTION_CHURN_WINDOW_DAYS"] = "14"
    p.settings["RETENTION_WEEK_START"] = "sunday"
    worker = p.start_worker()
    assert exit_code(worker) == 2
    log = worker.log.read_text()
    assert "RETENTION_CHURN_WINDOW_DAYS: stored 30, now 14" in log, log
    assert 'RETENTION_WEEK_START: stored "monday", now "sunday"' in log, log
    assert "retention rebuild" in log
    exporter = p._spawn("exporter-refused", ["exporter"], {})
    assert exit_code(exporter) == 2
    assert "RETENTION_CHURN_WINDOW_DAYS" in exporter.log.read_text()

    env = cli_env(p)
    refused = run_cli(["rebuild"], env)  # no terminal to confirm on, no --yes
    assert refused.returncode == 2, refused.stderr
    rebuilt = run_cli(["rebuild", "--yes"], env, timeout=300)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert f"from {len(events)} records" in rebuilt.stderr, rebuilt.stderr

    p.start_worker()
    p.wait_until_consumed()
    p.start_exporter()
    matches_oracle(p, events, OracleSettings(churn_window_days=14, week_start=6))


def test_rebuild_refuses_while_a_worker_runs(pipeline) -> None:  # type: ignore[no-untyped-def]
    p = pipeline()
    history(p, customers=20)
    p.wait_until_consumed()
    result = run_cli(["rebuild", "--yes"], cli_env(p))
    assert result.returncode == 2
    assert "stop every `retention worker` first" in result.stderr


def test_evicting_redis_is_refused(pipeline) -> None:  # type: ignore[no-untyped-def]
    p = pipeline(start=False)
    client = sync_client(STACK, timeout=10)
    client.config_set("maxmemory-policy", "allkeys-lru")
    try:
        worker = p.start_worker()
        assert exit_code(worker) == 2
        log = worker.log.read_text()
        assert "maxmemory-policy is 'allkeys-lru'" in log and "noeviction" in log, log
    finally:
        client.config_set("maxmemory-policy", "noeviction")


def test_marker_beyond_the_partition_end_is_refused(pipeline) -> None:  # type: ignore[no-untyped-def]
    p = pipeline()
    history(p, customers=20)
    p.wait_until_consumed()
    stop_all(p)
    client = p.redis()
    keys = Keys(p.ns, Settings().shards)
    aggs = [keys.totals(shard) for shard in range(keys.shards)]
    markers = [source for source, partition in positions(client.hgetall(aggs[0])) if partition == 0]
    assert len(markers) == 1, markers
    for agg in aggs:
        client.hset(agg, offset_marker(markers[0], 0), 10**9)
    worker = p.start_worker()
    assert exit_code(worker) == 2
    log = worker.log.read_text()
    assert "applied, but the partition ends at" in log, log


def test_deleted_history_is_refused(pipeline) -> None:  # type: ignore[no-untyped-def]
    p = pipeline(start=False)
    history(p, customers=20)

    async def delete_head() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
        await admin.start()
        try:
            await admin.delete_records({TopicPartition(p.topic, 0): RecordsToDelete(3)})
        finally:
            await admin.close()

    asyncio.run(delete_head())
    worker = p.start_worker()
    assert exit_code(worker) == 2
    log = worker.log.read_text()
    assert "no longer has its history" in log and "starts at offset 3" in log, log


def test_event_ahead_of_the_clock_does_not_move_now(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """It is applied to its own day, but the watermark stays within the allowed skew."""
    settings = Settings(
        redis_url=REDIS_URL, namespace=f"g{int(time.time() * 1000) % 10**8}", shards=2
    )
    now = datetime.now(UTC)
    ahead = now + timedelta(hours=12)
    from streams.events import Event

    events = [
        Event("a-1", "early", "app_open", int((now - timedelta(days=1)).timestamp() * 1000)),
        Event("a-2", "early", "app_open", int(ahead.timestamp() * 1000)),
    ]

    async def run() -> tuple[int | None, set[int]]:
        client = async_client(settings, timeout=30)
        writer = StateWriter(client, settings)
        try:
            await writer.apply([Record(0, i, event=e) for i, e in enumerate(events)])
            keys = Keys(settings.namespace, settings.shards)
            shard = keys.shard_of("early")
            watermark = sum_totals([await client.hgetall(keys.totals(shard))]).watermark_ms
            one_day = active_window(1)
            active_days = {
                int(name.removeprefix(one_day))
                for name in (f.decode() for f in await client.hkeys(keys.days(shard)))
                if name.startswith(one_day)
            }
            await client.unlink(
                *[k async for k in client.scan_iter(match=f"{settings.namespace}:*")]
            )
            return watermark, active_days
        finally:
            await client.aclose()

    before = time.time()
    watermark, active_days = asyncio.run(run())
    assert watermark is not None
    skew = settings.max_clock_skew_seconds
    assert watermark <= (time.time() + skew) * 1000
    assert watermark >= (before + skew - 5) * 1000
    ahead_day = (ahead.date() - date(1970, 1, 1)).days
    assert ahead_day in active_days  # the event still counts on its own day


def snapshot(client: redis.Redis, ns: str) -> dict[bytes, bytes]:
    """Every key of the namespace as DUMP output: a backup of it at this moment."""
    return {key: client.dump(key) for key in client.scan_iter(match=f"{ns}:*")}  # type: ignore[misc]


def test_redis_restored_from_an_older_backup_resumes_exactly(pipeline) -> None:  # type: ignore[no-untyped-def]
    p = pipeline()
    events = generate_history(seed=77, customers=150, days=40, start=date(2026, 2, 2))
    half = len(events) // 2
    p.produce(events[:half])
    p.wait_until_consumed()
    client = p.redis()
    backup = snapshot(client, p.ns)
    p.produce(events[half:])
    p.wait_until_consumed()
    matches_oracle(p, events, OracleSettings())
    stop_all(p)

    # the backup replaces everything: the newer half is gone from Redis, not from Kafka
    client.unlink(*client.scan_iter(match=f"{p.ns}:*"))
    for key, value in backup.items():
        client.restore(key, 0, value)
    seen = p.processes[0].log.stat().st_size
    worker = p.start_worker()
    p.start_exporter()
    matches_oracle(p, events, OracleSettings(), timeout=90)
    log = worker.log.read_text()[seen:]
    assert "resumes from offset" in log and "resumes from the beginning" not in log, log


def test_events_of_another_topic_are_not_skipped(pipeline) -> None:  # type: ignore[no-untyped-def]
    """Markers belong to a topic: a second topic's offsets 0.. are new records."""
    p = pipeline()
    first = generate_history(seed=5, customers=40, days=20, start=date(2026, 2, 2))
    p.produce(first)
    p.wait_until_consumed()
    matches_oracle(p, first, OracleSettings())
    stop_all(p)

    second = [
        {**e, "event_id": f"2-{e['event_id']}"[:128], "customer_id": f"2-{e['customer_id']}"[:128]}
        for e in generate_history(seed=6, customers=40, days=20, start=date(2026, 2, 2))
    ]
    p.topic = f"{p.topic}-b"
    p.settings["RETENTION_EVENTS_TOPIC"] = p.topic
    asyncio.run(p._create_topics())
    p.produce(second)
    p.start_worker()
    p.start_exporter()
    p.wait_until_consumed()
    matches_oracle(p, first + second, OracleSettings())


def test_the_events_topic_is_created_to_keep_its_history() -> None:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    from retention.produce import ensure_topic

    topic = scratch_name("events-keep-")
    settings = Settings(kafka_bootstrap=KAFKA)

    async def created_retention() -> str:
        await ensure_topic(settings, topic)
        admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
        await admin.start()

        async def retention_ms() -> str | None:
            # A just-created topic may not be known to the answering broker yet: no entries.
            described = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic)]
            )
            entries = described[0].resources[0][4]
            return next((entry[1] for entry in entries if entry[0] == "retention.ms"), None)

        try:
            return await wait_until_async(
                retention_ms, f"the configs of {topic}", timeout=30, interval=0.25
            )
        finally:
            await admin.close()

    try:
        assert asyncio.run(created_retention()) == "-1"
    finally:
        asyncio.run(delete_marked(KAFKA, topic))


def test_worker_started_before_redis_waits_for_it(pipeline, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """No Redis at start: the worker keeps retrying (and says so) instead of exiting;
    once a Redis answers on that port it consumes everything."""
    from tests.services import free_port

    port = free_port()
    p = pipeline(start=False, extra_env={"RETENTION_REDIS_URL": f"redis://127.0.0.1:{port}/0"})
    events = generate_history(seed=8, customers=20, days=10, start=date(2026, 2, 2))
    p.produce(events)
    worker = p.start_worker()
    # a second "not reachable" line: the worker retried instead of exiting
    p.wait(
        lambda: worker.log.read_text().count("not reachable") >= 2,
        "the worker to retry connecting to Redis",
        30,
        interval=0.3,
    )
    server = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        p.wait_until_consumed(timeout=90)
        p.start_exporter()
        matches_oracle(p, events, OracleSettings(), timeout=30)
    finally:
        stop_all(p)
        server.terminate()
        server.wait(10)
