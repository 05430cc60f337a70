"""The Redis clients the tracker works with: a standalone server's or a Redis Cluster's.

Code that talks to Redis takes either, so it must keep to what both do: every command
or script call names keys of one hash slot, and pipelines run without MULTI/EXEC
(a cluster pipeline sends each node its part).
"""

from __future__ import annotations

from typing import TypeAlias

import redis
import redis.asyncio

AsyncRedis: TypeAlias = redis.asyncio.Redis | redis.asyncio.RedisCluster
SyncRedis: TypeAlias = redis.Redis | redis.RedisCluster
