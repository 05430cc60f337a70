-- Apply one batch of events to one shard, atomically and idempotently.
--
-- KEYS (slots in BatchKey, core/schema.py BATCH_KEYS): the shard's totals, per-day,
--   per-period and timeline hashes and its lifecycle due set, then from FIRST_BUCKET on
--   the buckets of the batch's customers (the layout is in customer.lua).
-- ARGV (slots in BatchArg): the JSON config; the source (events topic, and its id when
--   known); the watermark's ceiling (wall clock plus allowed skew, ms); the number n of
--   partitions in the batch, followed by n spans (SpanArg): partition, the offset the
--   batch continues from (-1: the partition's beginning), the offset after its last
--   record. Every shard gets every batch's spans, so all shards' markers agree.
--   Then one EventArg group per record (core/schema.py EventArgs): bucket key index
--   (0 = invalid), partition, offset, event-id hash, type (or reason), flags, day, ts ms,
--   amount milli, NPS score, breakdown codes (e.g. "P0\tC3"), the event id itself for
--   subscription starts and renewals and NPS answers (it breaks ts ties), and the
--   customer's field in its bucket.
--
-- Returns {applied, duplicates, replayed}, followed by (partition, stored offset)
-- pairs when the batch would leave a hole.
--
-- A partition's offset marker is the offset after the last record applied. A batch
-- that continues from beyond the marker would leave a hole (Redis lost writes, was
-- emptied or restored from an older copy): then nothing is applied and the markers
-- are returned, so the worker can go back and re-read from there.
--
-- Days are local days since 1970-01-01. A customer is a few day bitmaps, so late,
-- out-of-order and duplicate events land exactly; every aggregate changes only by
-- the difference between a customer's state before and after an event.
--
-- The script is loaded behind the schema header, bitmap.lua, customer.lua and the
-- batch modules (streams/state.py BATCH_MODULES): configuration, calendar, day lists,
-- base runs, counters, membership, cohorts, value, contributions and breakdown scopes,
-- in that order.

---------------------------------------------------------------------------
-- Customer state (customer.lua), loaded once per batch and written back at the end.
---------------------------------------------------------------------------
local customers, stored = {}, {} -- bucket key -> field -> state, and the blob as read

local function load(key, field)
  local bucket = customers[key]
  if bucket == nil then
    bucket = {}
    customers[key], stored[key] = bucket, {}
  end
  local st = bucket[field]
  if st then return st end
  st, stored[key][field] = read_customer(key, field)
  bucket[field] = st
  return st
end

-- The fields of a state that the aggregates compare before and after an event,
-- with the decoded day lists and base runs it shares with the state.
local function copy(st)
  return { o = st.o, a = st.a, x = st.x, s = st.s, k = st.k, y = st.y, p = st.p, r = st.r,
    q = st.q, sa = st.sa, sy = st.sy, pd = st.pd, n = st.n, a_days = st.a_days,
    a_days_of = st.a_days_of, x_days = st.x_days, x_days_of = st.x_days_of,
    s_days = st.s_days, s_days_of = st.s_days_of, k_days = st.k_days,
    k_days_of = st.k_days_of, y_days = st.y_days, y_days_of = st.y_days_of,
    base_runs = st.base_runs, base_runs_of = st.base_runs_of, sub_runs = st.sub_runs,
    sub_runs_of = st.sub_runs_of }
end

---------------------------------------------------------------------------
-- One event.
---------------------------------------------------------------------------
local function count_in_periods(prefix, day)
  for _, P in ipairs(PERIODS) do incr(PER, prefix .. P .. ':' .. period(day, P), 1) end
end

-- Whether NPS answer x is later than y: by ts, a tie going to the larger event id.
local function later(x, y)
  return x[2] > y[2] or (x[2] == y[2] and x[4] > y[4])
end

-- The customer's NPS answers with this one, which replaces an earlier answer of its day
-- or is dropped for a later one. Answers that no window from the newest answer's day
-- less LAG on can reach are forgotten: all they changed lies before any day the
-- exporter will still evaluate, so at most NPS_DAYS + LAG answers are kept. The list is
-- replaced, never changed in place, so a copy of the state keeps the old one.
local function with_answer(answers, day, ts, score, id)
  local new, out = { day, ts, score, id }, {}
  local newest = answers[#answers]
  local keep_from = math.max(day, newest and newest[1] or day) - LAG - NPS_DAYS + 1
  for _, answer in ipairs(answers) do
    if answer[1] == day then
      if later(answer, new) then new = answer end
    elseif answer[1] >= keep_from then
      out[#out + 1] = answer
    end
  end
  if day >= keep_from then out[#out + 1] = new end
  table.sort(out, function(x, y) return x[1] < y[1] end)
  return out
end

local function apply_event(key, st, flags, day, ts, amount, nps, codes, id)
  rebase(st, day)
  -- platform and channel: each set once, by the first activity event carrying it
  if st.g == nil then st.g = UNSET_CODES end
  if band(flags, Flag.ACTIVITY) ~= 0 then assign_dimensions(st, codes, copy) end
  set_scopes(st.g)
  local before = copy(st)
  if st.f == nil or ts < st.f then st.f = ts end
  if st.l == nil or ts > st.l then st.l = ts end
  if band(flags, Flag.PURCHASE) ~= 0 then
    if st.pd == nil or day > st.pd then st.pd = day end
    st.p = st.p + 1
    st.r = st.r + amount
    count_purchase_day(st, day)
    incr(AGG, TotalsField.PURCHASES, 1)
    incr(AGG, TotalsField.REVENUE, amount)
  end
  if band(flags, Flag.REFUND) ~= 0 then
    st.q = st.q + amount
    incr(AGG, TotalsField.REFUNDS, 1)
    incr(AGG, TotalsField.REFUNDED, amount)
  end
  if band(flags, Flag.INSTALL) ~= 0 then count_in_periods(PeriodsField.INSTALLS, day) end
  if band(flags, Flag.SUBSCRIPTION_OFF) ~= 0 then
    count_in_periods(PeriodsField.SUBSCRIPTION_CANCELS, day)
  end
  if band(flags, Flag.NPS) ~= 0 and nps >= 0 then st.n = with_answer(st.n, day, ts, nps, id) end
  local subscribes = band(flags, Flag.SUBSCRIPTION_ON) ~= 0
  local priced = subscribes and band(flags, Flag.NO_AMOUNT) == 0
  if priced and (st.st == nil or ts > st.st or (ts == st.st and id > st.si)) then
    st.sa, st.st, st.si = amount, ts, id
    st.sy = band(flags, Flag.ANNUAL) ~= 0 and 1 or 0
  end
  local new_activity = band(flags, Flag.ACTIVITY) ~= 0 and mark(st, 'a', day)
  local new_churn = band(flags, Flag.CHURN) ~= 0 and mark(st, 'x', day)
  local new_subscription = false
  if subscribes then
    new_subscription = mark(st, 's', day)
    if band(flags, Flag.ANNUAL) ~= 0 then
      new_subscription = mark(st, 'y', day) or new_subscription
    end
  end
  if band(flags, Flag.SUBSCRIPTION_OFF) ~= 0 then
    new_subscription = mark(st, 'k', day) or new_subscription
  end

  if new_activity then update_cohorts(before, day) end
  if new_subscription then update_subscribed(before, st, day) end
  if new_activity or new_churn or new_subscription then
    update_membership(before, st, day)
    update_life(before, st, day)
    -- the lifecycle sweep must look at this customer again from this day on
    local from = st.pt and math.max(day, st.pt + 1) or day
    mark_due(DUE, key, st, from)
  end
  if st.a ~= before.a or st.x ~= before.x or st.s ~= before.s or st.k ~= before.k
      or st.y ~= before.y or st.p ~= before.p or st.r ~= before.r or st.q ~= before.q
      or st.sa ~= before.sa or st.sy ~= before.sy or st.pd ~= before.pd or st.n ~= before.n then
    -- st.contributions: those of the state before this event, kept from the last one
    local after = contributions(st)
    apply_difference(st.contributions or contributions(before), after)
    st.contributions = after
  end
end

---------------------------------------------------------------------------
-- Main loop.
---------------------------------------------------------------------------
-- Whether a pure activity event is its customer's first of its type that day: only
-- those count in the type's event total, so a re-sent one counts nothing.
local function first_of_type_that_day(st, kind, day)
  local i = PURE[kind]
  if i == nil then return true end
  for j = #st.v + 1, i - 1 do st.v[j] = '' end
  local bits = st.v[i] or ''
  if getbit(bits, st.o, day) then return false end
  st.v[i] = setbit(bits, st.o, day)
  return true
end

local SOURCE_ID, CEILING = ARGV[BatchArg.SOURCE], tonumber(ARGV[BatchArg.CLOCK_CEILING])
local FIRST_EVENT = BatchArg.FIRST_SPAN + SpanArg.COUNT * tonumber(ARGV[BatchArg.SPAN_COUNT])

-- The stored markers of the batch's partitions; a hole stops the batch here.
local next_offsets, holes = {}, {}
for i = BatchArg.FIRST_SPAN, FIRST_EVENT - 1, SpanArg.COUNT do
  local part, from = ARGV[i + SpanArg.PARTITION], tonumber(ARGV[i + SpanArg.START])
  local stored = redis.call('HGET', AGG, offset_marker(SOURCE_ID, part))
  local at = stored and tonumber(stored) or -1
  if (stored == false and from ~= -1) or (stored and at < from) then
    holes[#holes + 1] = tonumber(part)
    holes[#holes + 1] = at
  end
  next_offsets[part] = { at = at, to = tonumber(ARGV[i + SpanArg.END]) }
end
if #holes > 0 then
  local out = { 0, 0, 0 }
  for _, v in ipairs(holes) do out[#out + 1] = v end
  return out
end

local partition_marks = {}
local watermark = tonumber(redis.call('HGET', AGG, TotalsField.WATERMARK) or '0')
local new_watermark = watermark
local applied, duplicates, replayed = 0, 0, 0

local E = EventArg
for i = FIRST_EVENT, #ARGV, E.COUNT do
  local kidx, part = tonumber(ARGV[i + E.BUCKET_KEY]), ARGV[i + E.PARTITION]
  if tonumber(ARGV[i + E.OFFSET]) < next_offsets[part].at then
    replayed = replayed + 1
  else
    local kind = ARGV[i + E.KIND]
    if kidx == 0 then
      incr(AGG, TotalsField.INVALID_OF_REASON .. kind, 1)
      applied = applied + 1
    else
      local st = load(KEYS[kidx], ARGV[i + E.CUSTOMER_FIELD])
      local flags = tonumber(ARGV[i + E.FLAGS])
      -- pure activity only sets day bits (the active day, its type's day), so only
      -- events that move counters need their id remembered
      if flags ~= Flag.ACTIVITY and seen_before(st, ARGV[i + E.EVENT_HASH]) then
        duplicates = duplicates + 1
      else
        local ts = tonumber(ARGV[i + E.TS_MS])
        local day = tonumber(ARGV[i + E.DAY])
        apply_event(KEYS[kidx], st, flags, day, ts, tonumber(ARGV[i + E.AMOUNT_MILLI]),
          tonumber(ARGV[i + E.NPS_SCORE]), ARGV[i + E.CODES], ARGV[i + E.TIE_ID])
        if flags ~= Flag.ACTIVITY or first_of_type_that_day(st, kind, day) then
          incr(AGG, TotalsField.EVENTS_OF_TYPE .. kind, 1)
        end
        -- an event ahead of the clock counts on its own day, but "now" stays the clock's
        if ts > CEILING then ts = CEILING end
        if ts > new_watermark then new_watermark = ts end
        if ts > (partition_marks[part] or 0) then partition_marks[part] = ts end
        applied = applied + 1
      end
    end
  end
end

flush_increments()
for key, bucket in pairs(customers) do
  for field, st in pairs(bucket) do write_customer(DUE, key, field, st, stored[key][field]) end
end
for part, o in pairs(next_offsets) do
  if o.to > o.at then
    redis.call('HSET', AGG, offset_marker(SOURCE_ID, part), string.format('%d', o.to))
  end
end
-- Newest event time per partition: the lifecycle sweep waits for the slowest one.
for part, ts in pairs(partition_marks) do
  local field = partition_mark(SOURCE_ID, part)
  local old = tonumber(redis.call('HGET', AGG, field) or '0')
  if ts > old then redis.call('HSET', AGG, field, string.format('%d', ts)) end
end
if new_watermark > watermark then
  redis.call('HSET', AGG, TotalsField.WATERMARK, string.format('%d', new_watermark))
end
return { applied, duplicates, replayed }
