"""Refuse to run over state that cannot be trusted, before a single event is applied.

Redis state is only exact if it was built under the current settings, on a Redis that
never evicts keys, and from a contiguous history of the events topic. Each check here
turns a silent corruption into a clear message and exit code 2.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from redis.asyncio import RedisCluster

from core.redis_types import AsyncRedis
from core.schema import Keys
from core.settings import Settings
from core.totals import applied_offsets, marker_fields
from streams.state import BEGINNING

# Bumped whenever the stored layout changes, so state written by an older version is
# rebuilt instead of read.
STATE_LAYOUT = 4
REBUILD_HINT = (
    "To rebuild the state under the current settings, stop every worker and run "
    "`retention rebuild` (it clears namespace {ns!r} and consumes {topic!r} from the start)."
)


class StateRefused(Exception):
    """The stored state does not fit this worker; the message says why and what to do."""


def fingerprint(settings: Settings) -> dict[str, str]:
    """The settings that shape stored counters, as text: change one and the numbers mean
    something else, so the state has to be rebuilt."""
    shaping = {
        "state_layout": STATE_LAYOUT,
        "shards": settings.shards,
        "customer_buckets": settings.customer_buckets,
        "timezone": settings.timezone,
        "week_start": settings.week_start,
        "churn_window_days": settings.churn_window_days,
        "subscription_grace_days": settings.subscription_grace_days,
        "allowed_lateness_seconds": settings.allowed_lateness_seconds,
        "cohorts_kept": settings.cohorts_kept,
        "quick_churn_days": settings.quick_churn_days,
        "nps_window_days": settings.nps_window_days,
        "rfm_frequency": list(settings.rfm_frequency),
        "rfm_monetary": list(settings.rfm_monetary),
        "rfm_new_days": settings.rfm_new_days,
        "dimension_cap": settings.dimension_cap,
        "at_risk_days": list(settings.at_risk_days),
        "activity_types": sorted(settings.activity_types),
        "churn_types": sorted(settings.churn_types),
        "purchase_types": sorted(settings.purchase_types),
        "refund_types": sorted(settings.refund_types),
        # Stored sums are in this currency, so reporting in another would mislabel them.
        # The rate table is left out: rates change over time, and a new rate applies to
        # the events applied from then on.
        "currency": settings.currency,
    }
    return {name: json.dumps(value) for name, value in shaping.items()}


def differences(stored: Mapping[str, str], settings: Settings) -> list[str]:
    """One line per setting whose stored value differs from the current one."""
    current = fingerprint(settings)
    lines = []
    for name in sorted(current.keys() | stored.keys()):
        old, new = stored.get(name, "(not recorded)"), current.get(name, "(not a setting)")
        if old != new:
            env = "(state layout version)" if name == "state_layout" else setting_env(name)
            lines.append(f"  {env}: stored {old}, now {new}")
    return lines


def setting_env(name: str) -> str:
    return f"RETENTION_{name.upper()}"


def mismatch_message(lines: list[str], settings: Settings) -> str:
    return (
        f"the state in namespace {settings.namespace!r} was built with other settings:\n"
        + "\n".join(lines)
        + "\n"
        + REBUILD_HINT.format(ns=settings.namespace, topic=settings.events_topic)
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def eviction_problem(policy: str | None) -> str | None:
    """Why a maxmemory-policy is unsafe for state, or None when it never evicts."""
    if policy is None or policy == "noeviction":
        return None
    return (
        f"Redis maxmemory-policy is {policy!r}: Redis would silently evict customers and "
        "counters when memory runs out, corrupting every number. Set it to 'noeviction' "
        "(`CONFIG SET maxmemory-policy noeviction` and in redis.conf)."
    )


async def read_eviction_policy(redis: AsyncRedis) -> str | None:
    """The policy (on a cluster the first unsafe one among the primaries, which each
    evict on their own), or None where CONFIG is not allowed (managed Redis services)."""
    replies: list[Mapping[Any, Any]]
    try:
        if isinstance(redis, RedisCluster):
            # one reply per node: {node name: {setting: value}}
            per_node: Any = await redis.config_get("maxmemory-policy", target_nodes=redis.PRIMARIES)
            replies = list(per_node.values())
        else:
            replies = [await redis.config_get("maxmemory-policy")]
    except Exception:
        return None
    policies = [_text(value) for reply in replies for value in reply.values()]
    unsafe = [policy for policy in policies if policy != "noeviction"]
    return next(iter(unsafe or policies), None)


async def has_state(redis: AsyncRedis, keys: Keys) -> bool:
    """Whether any shard holds applied events."""
    pipe = redis.pipeline(transaction=False)
    for shard in range(keys.shards):
        pipe.exists(keys.totals(shard))
    return any(await pipe.execute())


async def check_state(redis: AsyncRedis, settings: Settings, *, record: bool) -> None:
    """Refuse an evicting Redis and state built under other settings; with record, write
    the fingerprint of a namespace that has none and no state yet."""
    problem = eviction_problem(await read_eviction_policy(redis))
    if problem:
        raise StateRefused(problem)
    keys = Keys(settings.namespace, settings.shards, settings.customer_buckets)
    raw = await redis.hgetall(keys.fingerprint())
    stored = {_text(k): _text(v) for k, v in raw.items()}
    if stored:
        lines = differences(stored, settings)
        if lines:
            raise StateRefused(mismatch_message(lines, settings))
        return
    if await has_state(redis, keys):
        raise StateRefused(
            f"namespace {settings.namespace!r} holds state without a settings fingerprint "
            "(written by an older version, whose layout this one cannot read).\n"
            + REBUILD_HINT.format(ns=settings.namespace, topic=settings.events_topic)
        )
    if record:
        await record_fingerprint(redis, settings)


async def record_fingerprint(redis: AsyncRedis, settings: Settings) -> None:
    keys = Keys(settings.namespace, settings.shards, settings.customer_buckets)
    await redis.hset(keys.fingerprint(), mapping=fingerprint(settings))  # type: ignore[arg-type]


async def stored_positions(
    redis: AsyncRedis, keys: Keys, source: str, partitions: list[int]
) -> dict[int, int | None]:
    """Per partition, the offset after the last record every shard has applied (None:
    no shard has applied any); a shard without a marker holds nothing of it yet."""
    pipe = redis.pipeline(transaction=False)
    for shard in range(keys.shards):
        pipe.hmget(keys.totals(shard), marker_fields(source, partitions))
    return dict(zip(partitions, applied_offsets(await pipe.execute()), strict=True))


def start_position(
    topic: str, partition: int, stored: int | None, log_start: int, log_end: int
) -> int:
    """Where consumption of a partition resumes (BEGINNING or an offset), or why not."""
    where = f"partition {partition} of {topic!r}"
    if stored is None or stored == BEGINNING:
        if log_start > 0:
            raise StateRefused(
                f"Redis holds nothing of {where}, and Kafka no longer has its history: the "
                f"log starts at offset {log_start}. Rebuilding would silently leave out "
                "every deleted event. Restore Redis from a backup, or accept the loss by "
                "deleting this namespace and consuming from a new topic."
            )
        return BEGINNING
    if stored > log_end:
        raise StateRefused(
            f"Redis says offsets up to {stored} of {where} were applied, but the partition "
            f"ends at {log_end}: the state belongs to another topic of the same name (was "
            "it deleted and recreated?) or another cluster. "
            + REBUILD_HINT.format(ns="<namespace>", topic=topic)
        )
    if stored < log_start:
        raise StateRefused(
            f"Redis has {where} applied up to offset {stored}, but Kafka's log now starts at "
            f"{log_start}: the events in between are gone, so the state cannot be brought "
            "up to date exactly. Restore a newer Redis backup, or rebuild from a topic "
            "that keeps its history (RETENTION_EVENTS_RETENTION_MS=-1)."
        )
    return stored
