-- Trim what Kafka acknowledged from a shard's lifecycle outbox and release the shard's
-- lifecycle lock, only if the caller still holds it.
--
-- KEYS (slots in ReleaseKey, core/schema.py RELEASE_KEYS): the shard's outbox and lock
-- ARGV (slots in ReleaseArg): the caller's lock token; how many entries from the head
--   of the outbox Kafka acknowledged
--
-- Returns 1 when the caller held the lock, else 0. A caller whose lock expired (it
-- stalled past the lock's time) trims nothing: the next holder may already have read
-- and published the same entries and appended more, so they are published again rather
-- than trimmed unseen.

local OUTBOX, LOCK = KEYS[ReleaseKey.OUTBOX], KEYS[ReleaseKey.LIFECYCLE_LOCK]
if redis.call('GET', LOCK) ~= ARGV[ReleaseArg.TOKEN] then return 0 end
local published = tonumber(ARGV[ReleaseArg.PUBLISHED])
if published > 0 then redis.call('LTRIM', OUTBOX, published, -1) end
redis.call('DEL', LOCK)
return 1
