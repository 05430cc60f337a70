"""Pipeline-health metrics served by the worker process (not by the exporter).

The alert rules need what only the consuming process knows: how far behind the
consumer is, how long a batch and its Redis round trip take, and how many records
it consumed. Everything here is updated once per batch (one histogram observation,
one counter increment) or once per poll (lag), never per event, so the hot path
stays cheap.

Served on RETENTION_EXPORTER_HOST:RETENTION_WORKER_METRICS_PORT/metrics (0 = off).
A port that is already taken is logged and skipped: health metrics must never stop
the worker from consuming.
"""

from __future__ import annotations

import logging
from typing import Protocol

from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

# Batches take milliseconds (small) to seconds (5000 events, slow Redis).
BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# One pipelined round trip to Redis: sub-millisecond on loopback, more over a network.
BACKENDS = ("redis", "kafka", "dead_letter")
REDIS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class LagSource(Protocol):
    """The part of aiokafka's consumer the lag gauge reads."""

    def assignment(self) -> set[TopicPartition]: ...

    def highwater(self, partition: TopicPartition) -> int | None: ...

    async def position(self, partition: TopicPartition) -> int: ...


class WorkerHealth:
    """The worker's own metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.lag = Gauge(
            "retention_consumer_lag",
            "Records in the events topic not yet consumed (highwater - position), "
            "per assigned partition, after the latest poll.",
            ["partition"],
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "retention_batch_seconds",
            "Time to process one batch: decode, dead-letter, apply to Redis, commit offsets.",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.redis_seconds = Histogram(
            "retention_redis_seconds",
            "Time of the pipelined Redis round trip that applies one batch.",
            buckets=REDIS_BUCKETS,
            registry=self.registry,
        )
        self.consumed = Counter(
            "retention_consumed_events",
            "Records consumed from the events topic (valid, invalid and redelivered).",
            registry=self.registry,
        )
        self.backend_up = Gauge(
            "retention_backend_up",
            "1 when the last operation against the backend succeeded, 0 while the worker "
            "holds its position and retries it (redis, kafka, dead_letter).",
            ["backend"],
            registry=self.registry,
        )
        self.backend_retries = Counter(
            "retention_backend_retries",
            "Retries after a failed operation against the backend.",
            ["backend"],
            registry=self.registry,
        )
        for backend in BACKENDS:
            self.backend_up.labels(backend).set(1)
            self.backend_retries.labels(backend)
        self._lag_partitions: set[int] = set()

    def backend_ok(self, backend: str) -> None:
        self.backend_up.labels(backend).set(1)

    def backend_failed(self, backend: str) -> None:
        self.backend_up.labels(backend).set(0)
        self.backend_retries.labels(backend).inc()

    def batch_done(self, records: int, batch_seconds: float, redis_seconds: float) -> None:
        self.consumed.inc(records)
        self.batch_seconds.observe(batch_seconds)
        self.redis_seconds.observe(redis_seconds)

    async def update_lag(self, consumer: LagSource) -> None:
        """Set the lag of every assigned partition; forget partitions no longer assigned."""
        current: set[int] = set()
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None:  # nothing fetched yet for this partition
                continue
            try:  # a fetch response arrived, so the position is known: this does not wait
                position = await consumer.position(tp)
            except IllegalStateError:  # revoked by a rebalance in the meantime
                continue
            self.lag.labels(str(tp.partition)).set(max(highwater - position, 0))
            current.add(tp.partition)
        for gone in self._lag_partitions - current:
            self.lag.remove(str(gone))
        self._lag_partitions = current

    def serve(self, host: str, port: int) -> bool:
        """Serve /metrics in a daemon thread; False (and a warning) when it cannot listen."""
        if port == 0:
            return False
        try:
            start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            log.warning("worker metrics not served on %s:%d: %s", host, port, exc)
            return False
        log.info("worker metrics on http://%s:%d/metrics", host, port)
        return True
