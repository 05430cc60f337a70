"""Bounded breakdown dimensions: the first N platforms and channels get a code, the rest 'other'.

Codes are kept in Redis so every worker, replay and the exporter agree on them.
The registry is one small hash per dimension, outside the shard hash tags. Only
activity events can set a customer's platform or channel, so only their values are
registered: a value seen on an nps or refund event alone never takes one of the N codes.
"""

from __future__ import annotations

from core.redis_types import AsyncRedis
from core.schema import (
    BUCKET_LABELS,
    CODES_SEPARATOR,
    DIMENSIONS,
    UNKNOWN,
    UNSET_CODES,
    lua_header,
    registry_key,
)

# KEYS[1] the dimension's registry; ARGV[1] a raw value, ARGV[2] the cap on codes.
REGISTER = (
    lua_header()
    + """
local code = redis.call('HGET', KEYS[1], ARGV[1])
if code then return code end
local n = redis.call('HLEN', KEYS[1])
if n >= tonumber(ARGV[2]) then return DIMENSION_OTHER end
redis.call('HSET', KEYS[1], ARGV[1], n)
return tostring(n)
"""
)
# A raw value spelled like a bucket's label stands for that bucket: it is never
# registered, so the exported labels of real values and of buckets never meet.
RESERVED = {label: code for code, label in BUCKET_LABELS.items()}


class DimensionRegistry:
    """Maps raw platform/channel values to short codes, caching what Redis decided."""

    def __init__(self, redis: AsyncRedis, namespace: str, cap: int) -> None:
        self.namespace = namespace
        self.cap = cap
        self.script = redis.register_script(REGISTER)
        self.cache: dict[tuple[str, str], str] = {}

    async def codes(self, platform: str | None, channel: str | None, activity: bool) -> str:
        """Breakdown codes of one event, e.g. 'P0\\tCo' (platform 0, channel other); all
        unknown for an event that is not an activity, since it sets no dimension."""
        if not activity:
            return UNSET_CODES
        parts = []
        for dimension, value in (("platform", platform), ("channel", channel)):
            parts.append(DIMENSIONS[dimension] + await self.code(dimension, value))
        return CODES_SEPARATOR.join(parts)

    async def code(self, dimension: str, value: str | None) -> str:
        if value is None:
            return UNKNOWN
        if value in RESERVED:
            return RESERVED[value]
        key = (dimension, value)
        if key not in self.cache:
            raw = await self.script(
                keys=[registry_key(self.namespace, dimension)], args=[value, self.cap]
            )
            self.cache[key] = raw.decode() if isinstance(raw, bytes) else str(raw)
        return self.cache[key]
