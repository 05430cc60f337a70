"""The Faust application that hosts the batch pipeline.

Faust owns the worker lifecycle, topic declarations, the web endpoint and timers.
The hot path is a batch loop on aiokafka inside a Faust task rather than a
per-event Faust stream, because it must commit offsets only after Redis holds a
whole batch, and because Faust's per-event path costs tens of microseconds.
"""

from __future__ import annotations

import logging

import faust

from retention.settings import Settings
from streams.pipeline import BatchPipeline

log = logging.getLogger(__name__)


def make_app(settings: Settings) -> faust.App:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        f"{settings.group_id}-host",
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        datadir=str(settings.state_dir),
        web_host="127.0.0.1",
        web_port=settings.worker_web_port,
        web_bind="127.0.0.1",
        topic_partitions=settings.events_partitions,
        topic_replication_factor=1,
        # Faust's own (idle) consumer group would otherwise hold a restarted worker
        # back for its default 60 s session timeout after a crash.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=3.0,
    )
    topics = [
        app.topic(settings.events_topic, partitions=settings.events_partitions),
        app.topic(settings.dlq_topic, partitions=1),
        app.topic(settings.lifecycle_topic, partitions=settings.events_partitions),
    ]
    pipeline = BatchPipeline(settings)

    @app.task
    async def consume() -> None:
        for topic in topics:
            await topic.maybe_declare()
        log.info("consuming %s as group %s", settings.events_topic, settings.group_id)
        pipeline.health.serve(settings.exporter_host, settings.worker_metrics_port)
        await pipeline.run()

    @app.timer(interval=10.0)
    async def report_progress() -> None:
        p = pipeline.progress
        log.info(
            "batches=%d records=%d rejected=%d duplicates=%d replayed=%d",
            p.batches,
            p.records,
            p.rejected,
            p.duplicates,
            p.replayed,
        )

    return app


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Start the Faust worker in the foreground until SIGINT/SIGTERM."""
    app = make_app(settings)
    worker = faust.Worker(app, loglevel=loglevel)
    worker.execute_from_commandline()
