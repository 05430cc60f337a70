"""The replication of the topics the project creates, and what to say when Kafka refuses it."""

from __future__ import annotations

from aiokafka.errors import (
    InvalidConfigurationError,
    InvalidReplicationFactorError,
    PolicyViolationError,
    TopicAlreadyExistsError,
)

from core.settings import Settings

# what the broker answers when the replication settings do not fit the cluster
REFUSALS = (InvalidReplicationFactorError, InvalidConfigurationError, PolicyViolationError)
REFUSAL_CODES = frozenset(error.errno for error in REFUSALS)
ALREADY_EXISTS = TopicAlreadyExistsError.errno


def topic_refused(settings: Settings) -> str:
    """What to check when the broker refuses the topics' replication settings."""
    return (
        f"Kafka refused to create the topics with RETENTION_TOPIC_REPLICATION_FACTOR="
        f"{settings.topic_replication_factor} and RETENTION_TOPIC_MIN_INSYNC_REPLICAS="
        f"{settings.topic_min_insync_replicas or '(the broker default)'}: the replication "
        "factor can be at most the number of brokers, and min.insync.replicas at most the "
        "replication factor"
    )
