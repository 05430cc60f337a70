"""A Kafka topic's id (KIP-516), so a deleted and recreated topic is told from the old one.

aiokafka 0.14 speaks Metadata only up to v5, which predates topic ids, so this module declares
Metadata v10-v13 (the flexible versions that carry `topic_id`) on aiokafka's own protocol
classes; the started client's connection negotiates the version and handles the flexible headers.
"""

# aiokafka ships no type information, so its protocol base classes are Any to mypy:
# mypy: disallow-subclassing-any=False

from __future__ import annotations

import uuid
from io import BytesIO
from typing import Any

from aiokafka import AIOKafkaClient
from aiokafka.errors import (
    IncompatibleBrokerVersion,
    NodeNotReadyError,
    UnknownTopicOrPartitionError,
    for_code,
)
from aiokafka.protocol.abstract import AbstractType
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    Boolean,
    CompactArray,
    CompactString,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)

_NO_ID = bytes(16)  # Kafka's zero UUID: "no topic id"
_TAGS = ("tags", TaggedFields)  # every flexible struct ends in tagged fields (KIP-482)


class _Uuid(AbstractType[bytes]):
    """Kafka's `uuid` wire type: 16 raw bytes."""

    @classmethod
    def encode(cls, value: bytes) -> bytes:
        if len(value) != 16:
            raise ValueError(f"a Kafka uuid is 16 bytes, not {len(value)}")
        return value

    @classmethod
    def decode(cls, data: BytesIO) -> bytes:
        value = data.read(16)
        if len(value) != 16:
            raise ValueError("Buffer underrun decoding uuid")
        return value


def _request_schema(version: int) -> Schema:
    return Schema(
        ("topics", CompactArray(("topic_id", _Uuid), ("name", CompactString()), _TAGS)),
        ("allow_auto_topic_creation", Boolean),
        *([("include_cluster_authorized_operations", Boolean)] if version == 10 else []),
        ("include_topic_authorized_operations", Boolean),
        _TAGS,
    )


def _response_schema(version: int) -> Schema:
    nodes = CompactArray(Int32)
    partition = (
        ("error_code", Int16),
        ("partition_index", Int32),
        ("leader_id", Int32),
        ("leader_epoch", Int32),
        ("replica_nodes", nodes),
        ("isr_nodes", nodes),
        ("offline_replicas", nodes),
        _TAGS,
    )
    broker = (("node_id", Int32), ("host", CompactString()), ("port", Int32))
    return Schema(
        ("throttle_time_ms", Int32),
        ("brokers", CompactArray(*broker, ("rack", CompactString()), _TAGS)),
        ("cluster_id", CompactString()),
        ("controller_id", Int32),
        (
            "topics",
            CompactArray(
                ("error_code", Int16),
                ("name", CompactString()),
                ("topic_id", _Uuid),
                ("is_internal", Boolean),
                ("partitions", CompactArray(*partition)),
                ("topic_authorized_operations", Int32),
                _TAGS,
            ),
        ),
        *([("cluster_authorized_operations", Int32)] if version == 10 else []),
        *([("error_code", Int16)] if version >= 13 else []),
        _TAGS,
    )


class _MetadataResponse_v10(Response):
    API_KEY = 3
    API_VERSION = 10
    SCHEMA = _response_schema(10)


class _MetadataResponse_v11(Response):
    API_KEY = 3
    API_VERSION = 11
    SCHEMA = _response_schema(11)


class _MetadataResponse_v12(Response):
    API_KEY = 3
    API_VERSION = 12
    SCHEMA = _response_schema(12)


class _MetadataResponse_v13(Response):
    API_KEY = 3
    API_VERSION = 13
    SCHEMA = _response_schema(13)


class _MetadataRequest_v10(RequestStruct):
    FLEXIBLE_VERSION = True  # request header v2, response header v1
    API_KEY = 3
    API_VERSION = 10
    RESPONSE_TYPE = _MetadataResponse_v10
    SCHEMA = _request_schema(10)


class _MetadataRequest_v11(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 3
    API_VERSION = 11
    RESPONSE_TYPE = _MetadataResponse_v11
    SCHEMA = _request_schema(11)


class _MetadataRequest_v12(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 3
    API_VERSION = 12
    RESPONSE_TYPE = _MetadataResponse_v12
    SCHEMA = _request_schema(12)


class _MetadataRequest_v13(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 3
    API_VERSION = 13
    RESPONSE_TYPE = _MetadataResponse_v13
    SCHEMA = _request_schema(13)


class _TopicMetadataRequest(
    Request[
        _MetadataRequest_v10 | _MetadataRequest_v11 | _MetadataRequest_v12 | _MetadataRequest_v13
    ]
):
    """Metadata for one topic by name; never asks the broker to auto-create it."""

    API_KEY = 3

    def __init__(self, topic: str) -> None:
        self._topic = topic

    def build(self, request_struct_class: type[Any]) -> Any:
        topics: list[tuple[bytes, str, dict[int, bytes]]] = [(_NO_ID, self._topic, {})]
        if request_struct_class.API_VERSION == 10:
            return request_struct_class(topics, False, False, False, {})
        return request_struct_class(topics, False, False, {})


async def topic_id(client: AIOKafkaClient, topic: str) -> str | None:
    """The topic's id as a canonical UUID string, or None.

    `client` is a started `AIOKafkaClient`, e.g. a started consumer's or producer's
    `._client`. None means the topic does not exist or the broker predates Metadata v10
    (Kafka < 2.8). Connection errors and other broker errors propagate.
    """
    node_id = client.get_random_node()
    if node_id is None:
        raise NodeNotReadyError("no broker known: is the client started?")
    try:
        response = await client.send(node_id, _TopicMetadataRequest(topic))
    except (NotImplementedError, IncompatibleBrokerVersion):
        return None  # raised by Request.prepare: the broker has no Metadata v10-v13
    if getattr(response, "error_code", 0):  # top-level error, v13+
        raise for_code(response.error_code)()
    for error_code, name, raw_id, *_ in response.topics:
        if name != topic:
            continue
        if raw_id != _NO_ID:
            return str(uuid.UUID(bytes=raw_id))
        if error_code in (0, UnknownTopicOrPartitionError.errno):
            return None
        raise for_code(error_code)(topic)
    return None


async def source_name(client: AIOKafkaClient, topic: str) -> str:
    """How offset markers name the events topic: `<topic>@<topic id>`, or the bare name
    where the broker has no topic ids."""
    ident = await topic_id(client, topic)
    return f"{topic}@{ident}" if ident else topic
