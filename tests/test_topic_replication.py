"""The topics the project creates take their replication from settings, and a replication
the cluster cannot give stops the command with exit code 2 and a message naming the
settings (the local stack has one broker).
"""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from core.errors import CommandError
from core.settings import Settings
from retention.produce import ensure_topic
from tests.broker import delete_marked, scratch_name
from tests.pipeline_runner import Pipeline
from tests.services import KAFKA

pytestmark = pytest.mark.integration


SET_ON_THE_TOPIC = 1  # DescribeConfigs' config_source of a topic's own setting


async def topic_config(topic: str) -> dict[str, tuple[str, int]]:
    """Each config of the topic: (value, where it comes from)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        resource = ConfigResource(ConfigResourceType.TOPIC, topic)
        (response,) = await admin.describe_configs([resource])
    finally:
        await admin.close()
    (_, _, _, _, entries), *_ = response.resources
    return {name: (value, source) for name, value, _, source, *_ in entries}


async def replicas(topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        (description,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return len(description["partitions"][0]["replicas"])


def test_the_worker_creates_its_topics_with_the_configured_min_insync_replicas(pipeline) -> None:  # type: ignore[no-untyped-def]
    p: Pipeline = pipeline(
        start=False,
        extra_env={
            "RETENTION_TOPIC_REPLICATION_FACTOR": "1",
            "RETENTION_TOPIC_MIN_INSYNC_REPLICAS": "1",
        },
    )
    p.start_worker()
    p.wait_for_group(1)
    config = asyncio.run(topic_config(p.lifecycle_topic))
    # set on the topic itself, not the broker's default of the same value
    assert config["min.insync.replicas"] == ("1", SET_ON_THE_TOPIC)
    assert asyncio.run(replicas(p.lifecycle_topic)) == 1


def test_a_replication_factor_beyond_the_brokers_stops_the_worker_with_code_2(pipeline) -> None:  # type: ignore[no-untyped-def]
    p: Pipeline = pipeline(start=False, extra_env={"RETENTION_TOPIC_REPLICATION_FACTOR": "2"})
    worker = p.start_worker()
    worker.stopped = True  # it is meant to exit
    try:
        worker.popen.wait(90)
    except TimeoutError:
        p.fail("the worker kept running with a replication factor the cluster cannot give")
    log = worker.log.read_text(errors="replace")
    assert worker.popen.returncode == 2, log[-3000:]
    assert "RETENTION_TOPIC_REPLICATION_FACTOR=2" in log, log[-3000:]


def test_feed_refuses_to_create_the_events_topic_beyond_the_brokers() -> None:
    mark = scratch_name("rf")
    settings = Settings(kafka_bootstrap=KAFKA, topic_replication_factor=3, namespace=mark)
    try:
        with pytest.raises(CommandError) as refused:
            asyncio.run(ensure_topic(settings, f"events-{mark}"))
    finally:
        asyncio.run(delete_marked(KAFKA, mark))
    assert refused.value.code == 2
    assert "RETENTION_TOPIC_REPLICATION_FACTOR=3" in refused.value.message


def test_min_insync_replicas_above_the_replication_factor_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="RETENTION_TOPIC_MIN_INSYNC_REPLICAS=3 exceeds"):
        Settings(topic_replication_factor=2, topic_min_insync_replicas=3)
