-- Find one shard's lifecycle changes for complete days up to T - 1 and queue them.
--
-- KEYS[1] due zset   (customer key -> first day whose state is not yet published)
-- KEYS[2] outbox list (JSON changes waiting to be produced to Kafka)
-- ARGV[1] JSON {T, W, risk = {2, 7}, limit}
--
-- Per customer: pt = last published day, ls = last published state. Changes are
-- computed from pt + 1 to T - 1 over the customer's day bitmaps, appended to the
-- outbox in the same atomic step that advances pt, so nothing is published twice.

local cfg = cjson.decode(ARGV[1])
local T, W, RISK, LIMIT = cfg.T, cfg.W, cfg.risk, cfg.limit
local DUE, OUTBOX = KEYS[1], KEYS[2]

local function any_after(s, o, day)
  for d = day + 1, o + #s * 8 - 1 do
    if getbit(s, o, d) then return true end
  end
  return false
end

local function first_set(s, o)
  for i = 0, #s * 8 - 1 do
    if getbit(s, o, o + i) then return o + i end
  end
  return nil
end

local function state_of(last, churned, t)
  if last == nil then return 'none' end
  if churned or t - last >= W then return 'churned' end
  for i = #RISK, 1, -1 do
    if t - last >= RISK[i] then return 'at_risk_' .. RISK[i] end
  end
  return 'active'
end

local function reason(from, to, last, t)
  if to == 'active' then
    if from == 'none' then return 'first activity' end
    if from == 'churned' then return 'resurrected' end
    return 'active again'
  end
  if to == 'churned' then
    if t - last >= W then return 'inactive ' .. W .. ' days' end
    return 'churn event'
  end
  return 'inactive ' .. (t - last) .. ' days'
end

local function sweep(key)
  local v = redis.call('HMGET', key, 'o', 'a', 'x', 'pt', 'ls', 'p', 'r', 'q')
  local o, a, x = tonumber(v[1]), v[2] or '', v[3] or ''
  if o == nil or #a == 0 then
    redis.call('ZREM', DUE, key)
    return 0
  end
  local from = v[5] or 'none'
  local start = tonumber(v[4])
  start = start and start + 1 or o
  -- The state on the day before `start`: the latest activity however long ago (a
  -- customer published as churned may come back months later), and whether a churn
  -- event followed it. Then walk forward as the base rule does.
  local last, churned = nil, false
  for d = start - 1, o, -1 do
    if getbit(a, o, d) then last = d; break end
  end
  if last ~= nil then
    for d = last, start - 1 do
      if getbit(x, o, d) then churned = true end
    end
  end
  local changes = 0
  for t = start, T - 1 do
    if getbit(a, o, t) then last = t; churned = false end
    if getbit(x, o, t) then churned = true end
    local now = state_of(last, churned, t)
    if now ~= from then
      redis.call('RPUSH', OUTBOX, cjson.encode({
        key = key, from = from, to = now, day = t, reason = reason(from, now, last, t),
        last = last, first = first_set(a, o), purchases = tonumber(v[6]) or 0,
        net_milli = (tonumber(v[7]) or 0) - (tonumber(v[8]) or 0),
      }))
      changes = changes + 1
      from = now
    end
  end
  redis.call('HSET', key, 'pt', T - 1, 'ls', from)
  -- When could the state change next, if no new event came?
  if any_after(a, o, T - 1) or any_after(x, o, T - 1) then
    redis.call('ZADD', DUE, T, key)
  elseif from == 'churned' or last == nil then
    redis.call('ZREM', DUE, key)
  else
    local next_day = last + W
    for _, r in ipairs(RISK) do
      if last + r >= T and last + r < next_day then next_day = last + r end
    end
    redis.call('ZADD', DUE, math.max(next_day, T), key)
  end
  return changes
end

local due = redis.call('ZRANGEBYSCORE', DUE, '-inf', T - 1, 'LIMIT', 0, LIMIT)
local changes = 0
for _, key in ipairs(due) do changes = changes + sweep(key) end
return { #due, changes }
