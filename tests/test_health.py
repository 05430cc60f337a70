"""The worker's pipeline-health metrics (streams/health.py).

Unit tests drive the lag logic with a stand-in for the three consumer methods it
reads; the integration test checks the numbers a real worker serves after a real
feed against what was produced.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import urllib.request
from collections.abc import Callable
from datetime import date

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError
from prometheus_client.parser import text_string_to_metric_families

from streams.health import WorkerHealth
from tests.history import generate_history
from tests.pipeline_runner import Pipeline
from tests.services import free_port
from tests.waiting import WaitTimedOut, wait_until

TOPIC = "events"


class Consumer:
    """Just the reads update_lag makes of an aiokafka consumer."""

    def __init__(self, highwater: dict[int, int | None], position: dict[int, int]) -> None:
        self.hw, self.pos = highwater, position
        self.revoked: set[int] = set()

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(TOPIC, p) for p in self.hw}

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.hw[tp.partition]

    async def position(self, tp: TopicPartition) -> int:
        if tp.partition in self.revoked:
            raise IllegalStateError(f"{tp} is not assigned")
        return self.pos[tp.partition]


def samples(health: WorkerHealth) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in health.registry.collect()
        for s in family.samples
    }


def lag(health: WorkerHealth) -> dict[str, float]:
    return {
        dict(k[1])["partition"]: v
        for k, v in samples(health).items()
        if k[0] == "retention_consumer_lag"
    }


def test_lag_is_highwater_minus_position_per_assigned_partition() -> None:
    health = WorkerHealth()
    consumer = Consumer({0: 100, 1: None, 2: 50}, {0: 40, 2: 50})
    asyncio.run(health.update_lag(consumer))
    assert lag(health) == {"0": 60, "2": 0}  # partition 1: nothing fetched yet
    consumer.hw, consumer.pos = {1: 7, 2: 80}, {1: 7, 2: 55}  # rebalance: 0 went away
    asyncio.run(health.update_lag(consumer))
    assert lag(health) == {"1": 0, "2": 25}


def test_a_partition_revoked_mid_update_is_skipped() -> None:
    health = WorkerHealth()
    consumer = Consumer({0: 10, 3: 10}, {0: 4, 3: 0})
    consumer.revoked = {3}
    asyncio.run(health.update_lag(consumer))
    assert lag(health) == {"0": 6}


def test_batch_done_counts_records_and_observes_both_latencies() -> None:
    health = WorkerHealth()
    health.batch_done(120, batch_seconds=0.02, redis_seconds=0.004)
    health.batch_done(30, batch_seconds=3.0, redis_seconds=0.3)
    got = samples(health)
    assert got[("retention_consumed_events_total", ())] == 150
    assert got[("retention_batch_seconds_count", ())] == 2
    assert got[("retention_batch_seconds_sum", ())] == pytest.approx(3.02)
    assert got[("retention_batch_seconds_bucket", (("le", "0.025"),))] == 1
    assert got[("retention_batch_seconds_bucket", (("le", "2.5"),))] == 1
    assert got[("retention_batch_seconds_bucket", (("le", "5.0"),))] == 2
    assert got[("retention_redis_seconds_count", ())] == 2
    assert got[("retention_redis_seconds_bucket", (("le", "0.005"),))] == 1


def test_serve_never_stops_the_worker() -> None:
    health = WorkerHealth()
    assert health.serve("127.0.0.1", 0) is False  # 0 = off
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert health.serve("127.0.0.1", taken.getsockname()[1]) is False
    port = free_port()
    assert health.serve("127.0.0.1", port) is True
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        names = {f.name for f in text_string_to_metric_families(resp.read().decode())}
    assert {
        "retention_consumer_lag",
        "retention_batch_seconds",
        "retention_redis_seconds",
        "retention_consumed_events",
    } <= names


@pytest.mark.integration
def test_a_real_worker_reports_what_it_consumed(pipeline: Callable[..., Pipeline]) -> None:
    port = free_port()
    p = pipeline(extra_env={"RETENTION_WORKER_METRICS_PORT": str(port)})
    produced = p.produce(generate_history(seed=5, customers=150, days=20, start=date(2026, 3, 2)))
    produced += p.produce([b"{not json", b"[]"])
    p.wait_until_consumed(timeout=60)
    # The metrics are updated right after the commit that wait_until_consumed saw.
    got: dict[tuple[str, str | None], float] = {}
    lags: dict[str | None, float] = {}

    def caught_up() -> bool:
        nonlocal got, lags
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        got = {
            (s.name, s.labels.get("partition")): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        lags = {part: v for (name, part), v in got.items() if name == "retention_consumer_lag"}
        done = got[("retention_consumed_events_total", None)] >= produced
        return done and set(lags.values()) == {0}

    with contextlib.suppress(WaitTimedOut):  # the assertions below say what differs
        wait_until(caught_up, "the health metrics to show everything consumed", timeout=10)
    assert got[("retention_consumed_events_total", None)] == produced
    batches = got[("retention_batch_seconds_count", None)]
    assert batches >= 1 and got[("retention_redis_seconds_count", None)] == batches
    # Everything consumed: every partition that had records shows zero lag.
    assert lags and set(lags) <= {"0", "1", "2", "3"} and set(lags.values()) == {0}
