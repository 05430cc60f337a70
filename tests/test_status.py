"""`retention status`: every part's reachability, lag, events/s and watermark, checked against
what we know the pipeline holds; a stopped stack is named part by part, with exit code 3."""

from __future__ import annotations

import asyncio
import csv
import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.broker import records_in, scratch_name
from tests.cli_fixtures import SimRun, cli_env, closed_port, delete_topic, run_cli, sim_run
from tests.services import KAFKA, RETENTION_BIN, ROOT
from tests.waiting import wait_until

__all__ = ["sim_run"]  # the fixture, imported for pytest


def checks(stdout: str) -> dict[str, dict]:
    return {c["name"]: c for c in json.loads(stdout)["checks"]}


@pytest.mark.integration
def test_status_of_a_running_pipeline(sim_run: SimRun) -> None:
    done = run_cli(["status", "--json", "--sample", "1"], sim_run.env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] is True
    got = checks(done.stdout)
    assert all(got[part]["ok"] for part in ("kafka", "redis", "exporter", "worker"))
    worker = got["worker"]["data"]
    assert worker["group"] == sim_run.pipeline.group and worker["members"] >= 1
    assert worker["lag"] == 0 and worker["events_in_topic"] == len(sim_run.events)
    assert worker["dead_lettered"] == 0
    realized = sim_run.truth["realized"]
    assert got["redis"]["data"]["watermark_ms"] == realized["watermark_ms"]
    assert got["redis"]["data"]["evaluation_day"] == realized["as_of_day"]
    assert got["redis"]["data"]["customers"] == realized["customers"]
    assert got["exporter"]["data"]["customers"] == realized["customers"]
    table = run_cli(["status", "--sample", "0.5"], sim_run.env)
    assert table.returncode == 0
    for part in ("kafka", "worker", "redis", "exporter", "watermark 2026-04-03", "of 2026-04-02"):
        assert part in table.stdout, part


def test_stopped_stack_is_named_part_by_part() -> None:
    env = cli_env(
        RETENTION_KAFKA_BOOTSTRAP=f"127.0.0.1:{closed_port()}",
        RETENTION_REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0",
        RETENTION_EXPORTER_PORT=str(closed_port()),
    )
    started = time.monotonic()
    done = run_cli(["status", "--prometheus", f"http://127.0.0.1:{closed_port()}"], env)
    assert done.returncode == 3
    assert time.monotonic() - started < 30
    text = done.stdout
    assert text.count("DOWN") >= 4, text  # kafka, redis, exporter, prometheus
    assert "retention stack up" in text and "retention exporter" in text
    as_json = run_cli(["status", "--json"], env)
    assert as_json.returncode == 3 and json.loads(as_json.stdout)["ok"] is False


@pytest.mark.integration
def test_events_per_second_while_a_feed_runs(sim_run: SimRun, tmp_path: Path) -> None:
    """A feed at 200 events/s into a topic nobody consumes: status sees ~200/s coming in."""
    topic = scratch_name("events-rate-")
    source = tmp_path / "rows.csv"
    with source.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["customer_id", "ts", "type"])
        w.writerows([f"c{n % 50}", 1772445600000 + n, "session"] for n in range(1500))
    env = {**sim_run.env, "RETENTION_EVENTS_TOPIC": topic, "RETENTION_GROUP_ID": f"g-{topic}"}
    feeding = subprocess.Popen(
        [str(RETENTION_BIN), "feed", str(source), "--rate", "200/s"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(
            lambda: asyncio.run(records_in(KAFKA, [topic])).get(topic, 0) >= 100,
            "the feed to write its first half second of events",
            timeout=30,
        )
        done = run_cli(["status", "--json", "--sample", "2"], env)
        assert done.returncode == 0, done.stderr  # Kafka, Redis and exporter are up
        worker = checks(done.stdout)["worker"]
        assert not worker["ok"] and "no worker is consuming" in worker["detail"]
        assert 120 <= worker["data"]["produced_per_second"] <= 280, worker
        assert worker["data"]["lag"] == worker["data"]["events_in_topic"] > 0
    finally:
        feeding.terminate()
        feeding.wait(30)
        delete_topic(topic)
