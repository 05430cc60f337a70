-- Find one shard's lifecycle changes for complete days up to T - 1 and queue them.
--
-- KEYS (slots in SweepKey, core/schema.py SWEEP_KEYS): the shard's due set (bucket
--   number -> earliest day one of its customers is due), outbox (JSON changes
--   waiting to be produced to Kafka), lifecycle lock and totals (offset markers), then
--   from FIRST_BUCKET on the buckets to sweep, as the caller read them from the due set
--   (the number ends each bucket's key)
-- ARGV (slots in SweepArg): JSON {T, W, risk = {2, 7}, limit, grace, lock_ms, source,
--   parts = the partitions of the events topic `source` T was taken from}; the caller's
--   lock token
--
-- Returns {customers looked at, changes queued, 1 if due customers are left, 1 if the
-- caller holds the lock, 1 if the shard has applied a partition not in parts}. Only the
-- holder of the shard's lifecycle lock sweeps (it alone appends to and trims the
-- outbox, streams/lifecycle.py), and each call extends its hold. A partition applied
-- since T was taken can bring customers events older than T, so then nothing is swept.
--
-- Per customer (customer.lua): pt = last published day, ls = last published state,
-- due = first day whose state is not yet published. Changes are computed from pt + 1
-- to T - 1 over the customer's decoded days, appended to the outbox in the same atomic
-- step that advances pt, so nothing is published twice. A due bucket is read whole;
-- its customers that are not due yet are skipped on their blob's header. The caller
-- read the due set before this call, so each bucket's score is looked at again here: a
-- bucket swept meanwhile is skipped.

local cfg = cjson.decode(ARGV[SweepArg.CONFIG])
local T, W, RISK, LIMIT, GRACE = cfg.T, cfg.W, cfg.risk, cfg.limit, cfg.grace
local DUE, OUTBOX = KEYS[SweepKey.DUE], KEYS[SweepKey.OUTBOX]

-- The state at the end of day t: `last` the latest activity day <= t, `inside` whether
-- t is in the customer's base runs (base_rule.lua: activity or a live subscription).
local function state_of(last, inside, t)
  if last == nil then return 'none' end
  if not inside then return 'churned' end
  for i = #RISK, 1, -1 do
    if t - last >= RISK[i] then return 'at_risk_' .. RISK[i] end
  end
  return 'active'
end

-- Why the state changed on day t; `churn_event` whether a churn event fell on a day of
-- [last, t], `subscribed_before` whether a live subscription kept the customer in the
-- base at the end of t - 1.
local function reason(from, to, last, t, churn_event, subscribed_before)
  if to == 'active' then
    if from == 'none' then return 'first activity' end
    if from == 'churned' then return 'resurrected' end
    return 'active again'
  end
  if to == 'churned' then
    if subscribed_before then
      return churn_event and 'churn event' or 'subscription ended'
    end
    if t - last >= W then return 'inactive ' .. W .. ' days' end
    return 'churn event'
  end
  return 'inactive ' .. (t - last) .. ' days'
end

-- The latest day of a sorted list, or nil.
local function latest(days)
  return days[#days]
end

-- When could the state change next, if no new event came? nil: never. `runs` are the
-- base runs: a customer in the base leaves it at the end of their current run.
local function next_due(lists, runs, from, last)
  for _, days in ipairs(lists) do
    local d = latest(days)
    if d ~= nil and d > T - 1 then return T end
  end
  if from == 'churned' or last == nil then return nil end
  local day
  for _, r in ipairs(runs) do
    if r[1] <= T - 1 and T - 1 < r[2] then day = r[2] end
  end
  if day == nil then return T end
  for _, r in ipairs(RISK) do
    if last + r >= T and last + r < day then day = last + r end
  end
  return math.max(day, T)
end

-- The days of [start, T - 1] on which the state can change: activity and churn days,
-- the at-risk thresholds after each activity, the base runs' first and end days, and
-- start itself. Between two of them the state stays the same, so only these are looked at.
local function turning_days(A, X, runs, start)
  local out = { start }
  local function add(d)
    if d > start and d < T then out[#out + 1] = d end
  end
  for _, a in ipairs(A) do
    add(a)
    for _, r in ipairs(RISK) do add(a + r) end
  end
  for _, x in ipairs(X) do add(x) end
  for _, r in ipairs(runs) do
    add(r[1])
    add(r[2])
  end
  table.sort(out)
  return out
end

-- Queue one due customer's changes up to T - 1 and record them as published.
local function sweep_customer(id, st)
  local A, X = decode_days(st.a, st.o), decode_days(st.x, st.o)
  if #A == 0 then
    st.due = nil
    return 0
  end
  local S, K = decode_days(st.s, st.o), decode_days(st.k, st.o)
  local subs = subscription_runs(S, K, decode_days(st.y, st.o), GRACE)
  local runs = union_runs(activity_runs(A, X, W), subs, A[1])
  local from = st.ls or 'none'
  local start = st.pt and st.pt + 1 or st.o
  -- The state on day t is that of the base rule: the latest activity on or before t
  -- (however long ago: a customer published as churned may come back months later),
  -- whether a churn event fell between it and t, and whether t is in a base run.
  local ai, xi, last, changes, seen = 0, 0, nil, 0, nil
  local function advance(t)
    while A[ai + 1] ~= nil and A[ai + 1] <= t do ai = ai + 1 end
    while X[xi + 1] ~= nil and X[xi + 1] <= t do xi = xi + 1 end
    last = A[ai]
  end
  for _, t in ipairs(turning_days(A, X, runs, start)) do
    if t ~= seen then
      seen = t
      advance(t)
      local now = state_of(last, in_runs(runs, t), t)
      if now ~= from then
        local churn_event = last ~= nil and X[xi] ~= nil and X[xi] >= last
        local change = cjson.encode({
          customer = id, from = from, to = now, day = t,
          reason = reason(from, now, last, t, churn_event, in_runs(subs, t - 1)),
          first = A[1], purchased = st.pd, purchases = st.p, net_milli = st.r - st.q,
        })
        redis.call('RPUSH', OUTBOX, change)
        changes = changes + 1
        from = now
      end
    end
  end
  advance(T - 1)
  st.pt, st.ls = T - 1, from
  st.due = next_due({ A, X, S, K }, runs, from, last)
  return changes
end

-- Sweep the due customers of bucket `b` (stored at `key`) and set its score to its new
-- earliest due day. Returns the customers looked at and the changes queued.
local function sweep_bucket(key, b)
  local entries = redis.call('HGETALL', key)
  local earliest, changes = nil, 0
  for i = 1, #entries, 2 do
    local field, blob = entries[i], entries[i + 1]
    local due = due_day(blob)
    if due ~= nil and due <= T - 1 then
      local st = decode_customer(blob)
      changes = changes + sweep_customer(customer_id(field), st)
      redis.call('HSET', key, field, encode_customer(st))
      due = st.due
    end
    if due ~= nil and (earliest == nil or due < earliest) then earliest = due end
  end
  if earliest == nil then
    redis.call('ZREM', DUE, b)
  else
    redis.call('ZADD', DUE, earliest, b)
  end
  return #entries / 2, changes
end

if redis.call('GET', KEYS[SweepKey.LIFECYCLE_LOCK]) ~= ARGV[SweepArg.TOKEN] then
  return { 0, 0, 0, 0, 0 }
end
redis.call('PEXPIRE', KEYS[SweepKey.LIFECYCLE_LOCK], cfg.lock_ms)
local known = {}
for _, p in ipairs(cfg.parts) do known[offset_marker(cfg.source, p)] = true end
local prefix = offset_marker(cfg.source, '')
for _, field in ipairs(redis.call('HKEYS', KEYS[SweepKey.TOTALS])) do
  if string.sub(field, 1, #prefix) == prefix and not known[field] then
    return { 0, 0, 0, 1, 1 }
  end
end

-- Whole buckets that are still due, until about LIMIT customers have been looked at, so
-- one call stays short; the rest stay in the due set for the next call.
local looked, changes = 0, 0
for i = SweepKey.FIRST_BUCKET, #KEYS do
  local key = KEYS[i]
  local b = string.match(key, '(%d+)$')
  local score = redis.call('ZSCORE', DUE, b)
  if score and tonumber(score) <= T - 1 then
    local n, c = sweep_bucket(key, b)
    looked, changes = looked + n, changes + c
    if looked >= LIMIT then break end
  end
end
local more = redis.call('ZCOUNT', DUE, '-inf', T - 1) > 0 and 1 or 0
return { looked, changes, more, 1, 0 }
