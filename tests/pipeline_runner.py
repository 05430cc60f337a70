"""Real worker and exporter subprocesses on an isolated namespace, topics and group.

A `Pipeline` is what the `pipeline` fixture (tests/conftest.py) hands a test: it starts
`retention worker` and `retention exporter`, produces to its own topics, waits for them and
deletes every Kafka topic and group it made when closed (tests/broker.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from bench.kafka import group_members
from core.kafka import client_options
from core.redis_client import sync_client
from core.redis_types import SyncRedis
from core.settings import Settings
from tests.broker import delete_marked, scratch_name
from tests.oracle import flatten
from tests.services import KAFKA, PARTITIONS, REDIS_URL, RETENTION_BIN, ROOT, free_port, tail
from tests.waiting import WaitTimedOut, wait_until


def settings_arguments(env: dict[str, str], prefix: str = "") -> dict[str, str]:
    """RETENTION_<PREFIX>* variables as Settings arguments (the rest stay as the
    environment says)."""
    start = f"RETENTION_{prefix}"
    return {k.removeprefix("RETENTION_").lower(): v for k, v in env.items() if k.startswith(start)}


class Process:
    def __init__(self, name: str, popen: subprocess.Popen[bytes], log: Path) -> None:
        self.name, self.popen, self.log = name, popen, log
        self.stopped = False  # set when a test stops it on purpose

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL: a crash, no clean shutdown, no final commit."""
        self.stopped = True
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)

    def stop(self, timeout: float = 20) -> None:
        self.stopped = True
        if self.popen.poll() is not None:
            return
        os.killpg(self.popen.pid, signal.SIGTERM)  # its own session: only what we started
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            print(f"{self.name} ignored SIGTERM for {timeout}s; sending SIGKILL", file=sys.stderr)
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)


class Pipeline:
    """One isolated pipeline: namespace, topics, group, worker(s) and an exporter."""

    def __init__(
        self,
        workdir: Path,
        *,
        timezone: str = "UTC",
        churn_window_days: int = 30,
        allowed_lateness_seconds: int = 0,
        cohorts_kept: int = 12,
        partitions: int = PARTITIONS,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.partitions = partitions
        workdir.mkdir(parents=True, exist_ok=True)
        self.ns = scratch_name("t")
        self.topic = f"events-{self.ns}"
        self.dlq_topic = f"events.dlq-{self.ns}"
        self.lifecycle_topic = f"customer-lifecycle-{self.ns}"
        self.group = f"retention-{self.ns}"
        self.exporter_port = free_port()
        self.settings = {
            "RETENTION_KAFKA_BOOTSTRAP": KAFKA,
            "RETENTION_REDIS_URL": REDIS_URL,
            "RETENTION_NAMESPACE": self.ns,
            "RETENTION_EVENTS_TOPIC": self.topic,
            "RETENTION_DLQ_TOPIC": self.dlq_topic,
            "RETENTION_LIFECYCLE_TOPIC": self.lifecycle_topic,
            "RETENTION_EXPORTER_PORT": str(self.exporter_port),
            "RETENTION_TIMEZONE": timezone,
            "RETENTION_CHURN_WINDOW_DAYS": str(churn_window_days),
            "RETENTION_ALLOWED_LATENESS_SECONDS": str(allowed_lateness_seconds),
            "RETENTION_COHORTS_KEPT": str(cohorts_kept),
            "RETENTION_EVENTS_PARTITIONS": str(partitions),
            **(extra_env or {}),
        }
        self.processes: list[Process] = []
        # this side's clients connect as the worker does (RETENTION_KAFKA_* of extra_env)
        self.kafka = client_options(Settings(**settings_arguments(self.settings, "KAFKA_")))
        asyncio.run(self._create_topics())

    # --- processes ---------------------------------------------------------------------

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> Process:
        log = self.workdir / f"{name}.log"
        full_env = {**os.environ, **self.settings, **env, "PYTHONUNBUFFERED": "1"}
        with log.open("ab") as out:
            popen = subprocess.Popen(
                [str(RETENTION_BIN), *args],
                cwd=ROOT,
                env=full_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        proc = Process(name, popen, log)
        self.processes.append(proc)
        return proc

    def start_worker(self, group: str | None = None, name: str | None = None) -> Process:
        group = group or self.group
        name = name or f"worker-{group}"
        state = self.workdir / f"state-{name}"
        state.mkdir(exist_ok=True)
        return self._spawn(
            name,
            ["worker"],
            {
                "RETENTION_GROUP_ID": group,
                "RETENTION_WORKER_WEB_PORT": str(free_port()),
                "RETENTION_WORKER_METRICS_PORT": self.settings.get(
                    "RETENTION_WORKER_METRICS_PORT", str(free_port())
                ),
                "RETENTION_STATE_DIR": str(state),
            },
        )

    def start_exporter(
        self,
        timeout: float = 30,
        env: dict[str, str] | None = None,
        ready: Callable[[], bool] | None = None,
    ) -> Process:
        """`retention exporter` with extra settings, once `ready` (by default: a plain
        scrape answers) holds."""
        env = {"RETENTION_STATE_DIR": str(self.workdir), **(env or {})}
        proc = self._spawn("exporter", ["exporter"], env)

        def serving() -> bool:
            try:
                self.scrape_text()
            except OSError:
                return False
            return True

        what = f"the exporter to serve /metrics on port {self.exporter_port}"
        self.wait(ready or serving, what, timeout)
        return proc

    def wait(
        self,
        check: Callable[[], Any],
        what: str | Callable[[], str],
        timeout: float,
        interval: float = 0.2,
    ) -> Any:
        """wait_until, failing at once (with the logs) when a process of ours has died."""

        def alive_and(check: Callable[[], Any] = check) -> Any:
            self.check_alive()
            return check()

        try:
            return wait_until(alive_and, what, timeout=timeout, interval=interval)
        except WaitTimedOut as exc:
            self.fail(str(exc))

    def logs(self) -> str:
        return "\n".join(tail(p.log) for p in self.processes)

    def fail(self, message: str) -> None:
        pytest.fail(f"{message}\n{self.logs()}", pytrace=False)

    def check_alive(self) -> None:
        for p in self.processes:
            if not p.stopped and not p.alive():
                self.fail(f"{p.name} exited with code {p.popen.returncode}")

    # --- Kafka -------------------------------------------------------------------------

    async def _create_topics(self) -> None:
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        admin = AIOKafkaAdminClient(**self.kafka)
        await admin.start()
        try:
            await admin.create_topics(
                [
                    NewTopic(self.topic, num_partitions=self.partitions, replication_factor=1),
                    NewTopic(self.dlq_topic, num_partitions=1, replication_factor=1),
                ]
            )
        finally:
            await admin.close()

    def produce(
        self,
        items: Iterable[dict[Any, Any] | bytes | tuple[bytes | None, bytes]],
        key: Callable[[dict[Any, Any]], str] | None = None,
    ) -> int:
        """Produce in list order (key = customer_id for dicts; (key, value) tuples as given)."""
        records: list[tuple[bytes | None, bytes]] = []
        for item in items:
            if isinstance(item, dict):
                k = (key or (lambda e: e["customer_id"]))(item)
                records.append((str(k).encode(), json.dumps(item).encode()))
            elif isinstance(item, tuple):
                records.append(item)
            else:
                records.append((None, item))
        asyncio.run(self._produce(records))
        return len(records)

    async def _produce(self, records: list[tuple[bytes | None, bytes]]) -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(
            **self.kafka,
            acks="all",
            max_request_size=2 * 1024 * 1024,
            linger_ms=10,
        )
        await producer.start()
        try:
            futures = [await producer.send(self.topic, value, key=k) for k, value in records]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    async def _offsets(self, group: str) -> tuple[dict[int, int], dict[int, int]]:
        from aiokafka import AIOKafkaConsumer, TopicPartition
        from aiokafka.admin import AIOKafkaAdminClient

        parts = [TopicPartition(self.topic, p) for p in range(self.partitions)]
        consumer = AIOKafkaConsumer(**self.kafka, enable_auto_commit=False)
        admin = AIOKafkaAdminClient(**self.kafka)
        await consumer.start()
        await admin.start()
        try:
            ends = await consumer.end_offsets(parts)
            committed = await admin.list_consumer_group_offsets(group, partitions=parts)
        finally:
            await consumer.stop()
            await admin.close()
        end = {tp.partition: off for tp, off in ends.items()}
        done = {
            tp.partition: (meta.offset if meta is not None and meta.offset >= 0 else 0)
            for tp, meta in committed.items()
        }
        return end, done

    def wait_until_consumed(self, group: str | None = None, timeout: float = 120) -> float:
        """Poll until the group's committed offsets equal the end offsets; returns seconds."""
        group = group or self.group
        t0 = time.monotonic()
        last: list[tuple[dict[int, int], dict[int, int]]] = [({}, {})]

        def consumed() -> bool:
            end, done = last[0] = asyncio.run(self._offsets(group))
            return all(done.get(p, 0) >= end[p] for p in end)

        self.wait(
            consumed,
            lambda: f"group {group} to consume {self.topic}: (end, committed) offsets {last[0]}",
            timeout,
            interval=0.5,
        )
        return time.monotonic() - t0

    def group_state(self, group: str | None = None) -> tuple[str, int]:
        """(state, number of members) of a consumer group, e.g. ('Stable', 2)."""
        return asyncio.run(group_members(self.kafka, group or self.group))

    def wait_for_group(self, members: int, group: str | None = None, timeout: float = 60) -> None:
        state: list[tuple[str, int]] = [("", 0)]

        def stable() -> bool:
            state[0] = self.group_state(group)
            return state[0] == ("Stable", members)

        self.wait(
            stable,
            lambda: f"group {group or self.group} Stable with {members} members: {state[0]}",
            timeout,
            interval=0.25,
        )

    def progress(self, group: str | None = None) -> tuple[int, int]:
        """(committed, end) summed over partitions."""
        end, done = asyncio.run(self._offsets(group or self.group))
        return sum(done.values()), sum(end.values())

    def consume_dlq(self, count: int, timeout: float = 30) -> list[Any]:
        return asyncio.run(self._consume_dlq(count, timeout))

    async def _consume_dlq(self, count: int, timeout: float) -> list[Any]:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(
            self.dlq_topic,
            **self.kafka,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            fetch_max_bytes=8 * 1024 * 1024,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        await consumer.start()
        out: list[Any] = []
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    out.extend(records)
                if len(out) >= count:
                    # Linger briefly so that extra (unexpected) records show up too.
                    for records in (await consumer.getmany(timeout_ms=1000)).values():
                        out.extend(records)
                    break
        finally:
            await consumer.stop()
        return out

    # --- exporter ----------------------------------------------------------------------

    def scrape_text(self) -> str:
        url = f"http://127.0.0.1:{self.exporter_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as resp:
            return str(resp.read().decode())

    def scrape(self, names: frozenset[str] | None = None) -> dict[Any, Any]:
        text = self.scrape_text()
        return flatten(text) if names is None else flatten(text, names)

    def still_moving(self, within: float = 5) -> str:
        """Tell a late write (values still changing) from a wrong one, for a failure message."""
        first = self.scrape_text()
        try:
            wait_until(lambda: self.scrape_text() != first, "a change", timeout=within)
        except WaitTimedOut:
            return f"stable for {within:.0f} s"
        return f"values still changed within {within:.0f} s"

    def redis(self) -> SyncRedis:
        """A client of the Redis deployment this pipeline's worker and exporter use."""
        return sync_client(Settings(**settings_arguments(self.settings, "REDIS_")), timeout=10)

    # --- teardown ----------------------------------------------------------------------

    def close(self) -> None:
        for p in reversed(self.processes):
            with contextlib.suppress(ProcessLookupError):
                p.stop()
        try:
            r = self.redis()
            batch = []
            for k in r.scan_iter(match=f"{self.ns}:*", count=1000):
                batch.append(k)
                if len(batch) >= 500:
                    r.unlink(*batch)
                    batch.clear()
            if batch:
                r.unlink(*batch)
            r.close()
        except Exception as exc:  # teardown must not mask the test result
            print(f"redis cleanup of {self.ns} failed: {exc!r}", file=sys.stderr)
        # Every topic and group of this pipeline names its namespace: the workers', and
        # Faust's own `<group>-host` group and assignor topic. A failure here shows in the
        # session's leftover check.
        try:
            asyncio.run(delete_marked(KAFKA, self.ns))
        except Exception as exc:
            print(f"kafka cleanup of {self.ns} failed: {exc!r}", file=sys.stderr)
