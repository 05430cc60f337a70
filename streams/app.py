"""The Faust application that hosts the batch pipeline.

Faust owns the worker lifecycle, topic declarations, the web endpoint and timers.
The hot path is a batch loop on aiokafka inside a Faust task rather than a
per-event Faust stream, because it must commit offsets only after Redis holds a
whole batch, and because Faust's per-event path costs tens of microseconds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from faust.types.auth import CredentialsT

from core.errors import EXIT_UNREACHABLE, EXIT_USAGE
from core.kafka import KafkaFailure, client_options, explain_failure, security_options
from core.redis_client import REDIS_ERRORS, async_client, describe_failure, is_outage
from core.schema import Keys
from core.settings import Settings
from streams.guard import StateRefused, check_state, start_position, stored_positions
from streams.pipeline.clients import partitions_of
from streams.pipeline.stages import BatchPipeline
from streams.topic_identity import source_name
from streams.topics import REFUSALS, topic_refused

log = logging.getLogger(__name__)
# what the start-up checks raise while Redis, or the network to it, is down
REDIS_DOWN: tuple[type[Exception], ...] = (*REDIS_ERRORS, OSError)


def broker_credentials(settings: Settings) -> CredentialsT | None:
    """The Faust app's view of core/kafka.py's security options (its own consumer,
    producer and topic creation use them)."""
    options = security_options(settings)
    protocol, context = options["security_protocol"], options.get("ssl_context")
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    if "sasl_oauth_token_provider" in options:
        return faust.OAuthCredentials(
            oauth_cb=options["sasl_oauth_token_provider"], ssl_context=context
        )
    # SASL_SSL when a context is given, SASL_PLAINTEXT otherwise
    return faust.SASLCredentials(
        username=options["sasl_plain_username"],
        password=options["sasl_plain_password"],
        ssl_context=context,
        mechanism=options["sasl_mechanism"],
    )


def make_app(settings: Settings) -> faust.App:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        f"{settings.group_id}-host",
        broker=f"kafka://{settings.kafka_bootstrap}",
        broker_credentials=broker_credentials(settings),
        store="memory://",
        datadir=str(settings.state_dir),
        web_host="127.0.0.1",
        web_port=settings.worker_web_port,
        web_bind="127.0.0.1",
        topic_partitions=settings.events_partitions,
        # Faust's own topics too (its assignor's); ours below also get min.insync.replicas
        topic_replication_factor=settings.topic_replication_factor,
        # Faust's own (idle) consumer group would otherwise hold a restarted worker
        # back for its default 60 s session timeout after a crash.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=3.0,
    )
    replicas, common = settings.topic_replication_factor, settings.topic_configs
    topics = [
        app.topic(
            settings.events_topic,
            partitions=settings.events_partitions,
            replicas=replicas,
            # the state is rebuilt from this history after a loss or a settings change
            config={**common, "retention.ms": str(settings.events_retention_ms)},
        ),
        app.topic(settings.dlq_topic, partitions=1, replicas=replicas, config=common),
        app.topic(
            settings.lifecycle_topic,
            partitions=settings.events_partitions,
            replicas=replicas,
            config=common,
        ),
    ]
    pipeline = BatchPipeline(settings)

    @app.task
    async def consume() -> None:
        try:
            for topic in topics:
                await topic.maybe_declare()
        except REFUSALS:
            log.exception("the broker refused to create a topic")
            refuse(topic_refused(settings))
        log.info("consuming %s as group %s", settings.events_topic, settings.group_id)
        pipeline.health.serve(settings.exporter_host, settings.worker_metrics_port)
        try:
            await pipeline.run()
        except StateRefused as exc:
            # The state cannot be continued exactly; stopping is the only safe answer,
            # and a restart would refuse again.
            refuse(str(exc))

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


class KafkaRefused(Exception):
    """The broker answered but would not accept the worker (credentials, certificate)."""

    def __init__(self, failure: KafkaFailure) -> None:
        super().__init__(failure.message)


def refuse(message: str) -> None:
    """Exit with code 2 and say why, without Faust's restart dance: a restart with the
    same settings would fail the same way."""
    log.critical("%s", message)
    logging.shutdown()
    os._exit(EXIT_USAGE)


class RedisRefused(Exception):
    """The deployment answers, but not as RETENTION_REDIS_URL says it is (a cluster URL
    naming a server not in cluster mode): a settings mistake no wait mends."""

    def __init__(self, settings: Settings, exc: BaseException) -> None:
        where = settings.redis_deployment.describe()
        super().__init__(f"Redis ({where}) refused: {exc}; check RETENTION_REDIS_URL")


class RedisLoginRefused(Exception):
    """Redis answered but refused the worker's login, rights or certificate."""


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Check the state can be continued, then run the Faust worker in the foreground until
    SIGINT/SIGTERM; a refusal exits with code 2 and says why, a broker or Redis that
    refuses the worker's credentials or certificate with code 3."""
    try:
        asyncio.run(preflight(settings))
    except (StateRefused, RedisRefused) as exc:
        print(f"retention worker: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
    except (KafkaRefused, RedisLoginRefused) as exc:
        print(f"retention worker: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_UNREACHABLE) from None
    app = make_app(settings)
    worker = faust.Worker(app, loglevel=loglevel)
    worker.execute_from_commandline()


async def preflight(settings: Settings) -> None:
    """Run the start-up checks, waiting with backoff while Redis or Kafka is unreachable:
    a worker started before its servers (or during a restart) waits instead of exiting.
    A broker that refuses the credentials or the certificate is a settings mistake no
    wait mends: that raises KafkaRefused."""
    delay = 0.5
    while True:
        try:
            await check_before_consuming(settings)
            return
        except KafkaError as exc:
            failure = await explain_failure(settings, exc)
            if failure.refused:
                raise KafkaRefused(failure) from None
            reason = failure.message
        except REDIS_DOWN as exc:
            redis_failure = describe_failure(settings, exc)
            if redis_failure.refused:
                raise RedisLoginRefused(redis_failure.message) from None
            if not is_outage(exc):
                raise RedisRefused(settings, exc) from None
            reason = f"Redis or Kafka not reachable ({type(exc).__name__}: {exc})"
        print(f"retention worker: {reason}; retrying in {delay:.1f} s", file=sys.stderr, flush=True)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 30.0)


async def check_before_consuming(settings: Settings) -> None:
    """Refuse an evicting Redis, state built under other settings, and partitions whose
    applied offsets Kafka can no longer continue (history deleted, topic recreated)."""
    redis = async_client(settings, timeout=30)
    consumer = AIOKafkaConsumer(**client_options(settings))
    try:
        await check_state(redis, settings, record=True)
        await consumer.start()
        await check_replication(consumer, settings)
        topic = settings.events_topic
        partitions = await partitions_of(consumer, topic)
        if not partitions:
            return  # the worker creates the topic
        source = await source_name(consumer._client, topic)
        keys = Keys(settings.namespace, settings.shards, settings.customer_buckets)
        stored = await stored_positions(redis, keys, source, partitions)
        tps = [TopicPartition(topic, p) for p in partitions]
        starts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            start_position(topic, tp.partition, stored[tp.partition], starts[tp], ends[tp])
    finally:
        await consumer.stop()
        await redis.aclose()


async def check_replication(consumer: AIOKafkaConsumer, settings: Settings) -> None:
    """Refuse a replication factor the cluster cannot give before Faust, whose own topics
    take it too, fails on it with a trace."""
    metadata = await consumer._client.fetch_all_metadata()
    brokers = len(metadata.brokers())
    if settings.topic_replication_factor > brokers:
        raise StateRefused(f"{topic_refused(settings)}; the cluster has {brokers} broker(s)")
