"""The Kafka names a test session makes, their deletion, and the check that none are left.

Every topic, consumer group and namespace a test creates carries this session's mark
(`scratch_name`), so the session can find exactly what it made on a broker that other
people use at the same time. Faust adds names of its own (the `<group>-host` group and
its `<group>-host-__assignor-__leader` topic); they contain the worker's group, and so
the mark too. The session-end check also watches the default topics: no test may
create them or write to them.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import for_code
from aiokafka.protocol.admin import DeleteGroupsRequest

from core.settings import Settings

SESSION = uuid.uuid4().hex[:6]
# A killed worker stays a member of its groups until its session times out (10 s).
GROUP_DELETE_TIMEOUT = 30.0
NON_EMPTY_GROUP = 68  # Kafka's error code for deleting a group that still has members
GROUP_ID_NOT_FOUND = 69  # gone already: nothing left to delete


def scratch_name(prefix: str) -> str:
    """A name unique to one test and marked as this session's: `<prefix><session><random>`."""
    return f"{prefix}{SESSION}{uuid.uuid4().hex[:6]}"


def unused_settings() -> dict[str, str]:
    """Topics, group and namespace for a command run without a pipeline: marked names no
    test creates, so a command that does reach Kafka shows up as a leftover instead of
    touching the defaults."""
    return {
        "RETENTION_EVENTS_TOPIC": f"unused-events-{SESSION}",
        "RETENTION_DLQ_TOPIC": f"unused-dlq-{SESSION}",
        "RETENTION_LIFECYCLE_TOPIC": f"unused-lifecycle-{SESSION}",
        "RETENTION_GROUP_ID": f"unused-group-{SESSION}",
        "RETENTION_NAMESPACE": f"unused{SESSION}",
    }


def default_topics() -> tuple[str, ...]:
    """The topics a process uses when nobody sets RETENTION_*_TOPIC."""
    fields = Settings.model_fields
    return tuple(str(fields[f].default) for f in ("events_topic", "dlq_topic", "lifecycle_topic"))


def default_groups() -> tuple[str, ...]:
    """The worker's consumer group when RETENTION_GROUP_ID is unset, and Faust's beside it."""
    group = str(Settings.model_fields["group_id"].default)
    return group, f"{group}-host"


async def _names(admin: AIOKafkaAdminClient) -> tuple[set[str], set[str]]:
    topics = set(await admin.list_topics())
    groups = {str(g[0]) for g in await admin.list_consumer_groups()}
    return topics, groups


async def _delete_groups(admin: AIOKafkaAdminClient, groups: list[str]) -> dict[str, int]:
    """Send DeleteGroups (aiokafka's admin client has no method for it); error code per group."""
    codes: dict[str, int] = {}
    for group in groups:
        node = await admin.find_coordinator(group)
        response = await admin._send_request(DeleteGroupsRequest([group]), node)
        codes.update({str(name): int(code) for name, code in response.results})
    return codes


async def delete_marked(bootstrap: str, mark: str, timeout: float = GROUP_DELETE_TIMEOUT) -> None:
    """Delete every topic and consumer group whose name contains `mark`; a group that still
    has (dead) members is retried until they time out or the deadline passes."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics, groups = await _names(admin)
        doomed = sorted(t for t in topics if mark in t)
        if doomed:
            await admin.delete_topics(doomed)
        pending = sorted(g for g in groups if mark in g)
        deadline = time.monotonic() + timeout
        while pending:
            codes = await _delete_groups(admin, pending)
            pending = [g for g, code in codes.items() if code == NON_EMPTY_GROUP]
            failed = {
                g: code
                for g, code in codes.items()
                if code not in (0, NON_EMPTY_GROUP, GROUP_ID_NOT_FOUND)
            }
            if failed:
                raise for_code(next(iter(failed.values())))(f"deleting groups {failed}")
            if pending and time.monotonic() > deadline:
                raise TimeoutError(f"groups {pending} kept members for {timeout:.0f}s")
            if pending:
                await asyncio.sleep(0.5)
    finally:
        await admin.close()


@dataclass(frozen=True)
class BrokerState:
    """What the session watches on the broker: every name, and the default topics' sizes."""

    topics: frozenset[str]
    groups: frozenset[str]
    default_records: dict[str, int]  # records in each default topic that exists

    @classmethod
    async def read(cls, bootstrap: str) -> BrokerState:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            topics, groups = await _names(admin)
        finally:
            await admin.close()
        defaults = [t for t in default_topics() if t in topics]
        return cls(frozenset(topics), frozenset(groups), await records_in(bootstrap, defaults))


async def records_in(bootstrap: str, topics: list[str]) -> dict[str, int]:
    """Records ever written to each topic that exists (the sum of its end offsets)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(topics) if topics else []
    finally:
        await admin.close()
    parts = [
        TopicPartition(d["topic"], p["partition"])
        for d in described
        if d["error_code"] == 0
        for p in d["partitions"]
    ]
    if not parts:
        return {}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(parts)
    finally:
        await consumer.stop()
    out: dict[str, int] = {}
    for tp, end in ends.items():
        out[tp.topic] = out.get(tp.topic, 0) + end
    return out


def problems(before: BrokerState, after: BrokerState) -> list[str]:
    """What this session left behind or touched that it must not have, in words."""
    found = []
    topics = sorted(t for t in after.topics - before.topics if SESSION in t)
    groups = sorted(g for g in after.groups - before.groups if SESSION in g)
    if topics:
        found.append(f"{len(topics)} topics left behind: {topics}")
    if groups:
        found.append(f"{len(groups)} consumer groups left behind: {groups}")
    for topic in default_topics():
        if topic in after.topics and topic not in before.topics:
            found.append(f"the default topic {topic!r} was created during the session")
        elif after.default_records.get(topic, 0) > before.default_records.get(topic, 0):
            gained = after.default_records[topic] - before.default_records.get(topic, 0)
            found.append(f"the default topic {topic!r} gained {gained} records")
    for group in default_groups():
        if group in after.groups and group not in before.groups:
            found.append(f"the default consumer group {group!r} was created during the session")
    return found
