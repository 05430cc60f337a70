"""topic_id tells a deleted and recreated topic from the old one of the same name.

Runs against the real broker: a uniquely named topic is created, read, deleted and created
again through aiokafka's admin client, and its id is read through a started consumer's client,
the way the worker reads it. Every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import pytest
from aiokafka import AIOKafkaClient, AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError

from streams.topic_identity import topic_id
from tests.broker import scratch_name
from tests.services import KAFKA
from tests.waiting import wait_until_async

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("stack")]

DEADLINE_S = 30.0
T = TypeVar("T")


async def wait_for(what: str, probe: Callable[[], Awaitable[T | None]]) -> T:
    """Poll `probe` until it returns a value (not None), or fail at the deadline."""
    value = await wait_until_async(probe, what, timeout=DEADLINE_S)
    assert value is not None
    return value


@asynccontextmanager
async def kafka() -> AsyncIterator[tuple[AIOKafkaAdminClient, AIOKafkaConsumer]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA, request_timeout_ms=10_000)
    consumer = AIOKafkaConsumer(bootstrap_servers=KAFKA, request_timeout_ms=10_000)
    await admin.start()
    await consumer.start()
    try:
        yield admin, consumer
    finally:
        await consumer.stop()
        await admin.close()


async def create(admin: AIOKafkaAdminClient, topic: str) -> bool | None:
    """True once created; None while a deletion of the same name is still in progress."""
    response = await admin.create_topics([NewTopic(topic, 1, 1)])
    (_, code, *_) = response.topic_errors[0]
    if code == TopicAlreadyExistsError.errno:
        return None
    assert code == 0, f"create_topics({topic}) failed with error code {code}"
    return True


async def delete(admin: AIOKafkaAdminClient, topic: str) -> None:
    response = await admin.delete_topics([topic])
    (_, code, *_) = response.topic_error_codes[0]
    assert code in (0, UnknownTopicOrPartitionError.errno), f"delete_topics({topic}): {code}"


def unique_topic() -> str:
    return scratch_name("topic-identity-")


def test_recreated_topic_gets_a_new_id() -> None:
    async def scenario() -> None:
        topic = unique_topic()
        async with kafka() as (admin, consumer):
            client = consumer._client  # what the worker passes: its started consumer's client
            try:
                await wait_for("the topic to be created", lambda: create(admin, topic))
                first = await wait_for("the topic's id", lambda: topic_id(client, topic))
                assert str(uuid.UUID(first)) == first  # canonical UUID string
                assert first != str(uuid.UUID(int=0))
                assert await topic_id(client, topic) == first  # stable while the topic lives

                await delete(admin, topic)

                async def gone() -> bool | None:
                    return True if await topic_id(client, topic) is None else None

                await wait_for("the deletion to complete", gone)
                await wait_for("the topic to be recreated", lambda: create(admin, topic))
                second = await wait_for("the new id", lambda: topic_id(client, topic))
                assert second != first
                assert await topic_id(client, topic) == second
            finally:
                await delete(admin, topic)

    asyncio.run(scenario())


def test_missing_topic_has_no_id() -> None:
    async def scenario() -> None:
        async with kafka() as (_, consumer):
            assert await topic_id(consumer._client, unique_topic()) is None

    asyncio.run(scenario())


def test_every_metadata_version_and_an_old_broker() -> None:
    """Pretend the broker's Metadata tops out at v9..v13 by narrowing the negotiated range."""

    async def scenario() -> None:
        topic = unique_topic()
        async with kafka() as (admin, consumer):
            try:
                await wait_for("the topic to be created", lambda: create(admin, topic))
                expected = await wait_for("the id", lambda: topic_id(consumer._client, topic))
                client = AIOKafkaClient(bootstrap_servers=KAFKA, request_timeout_ms=10_000)
                await client.bootstrap()
                try:
                    for node in client.cluster.brokers():
                        assert await client.ready(node.nodeId)
                    conns = list(client._conns.values())
                    broker_max = conns[0]._versions[3][1]
                    assert broker_max >= 10, "the test broker itself must support topic ids"
                    for top in range(9, min(broker_max, 13) + 1):
                        for conn in conns:
                            conn._versions[3] = (0, top)
                        got = await topic_id(client, topic)
                        assert got == (None if top < 10 else expected), f"Metadata v{top}"
                finally:
                    await client.close()
            finally:
                await delete(admin, topic)

    asyncio.run(scenario())
