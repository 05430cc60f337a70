-- Apply one batch of events to one shard, atomically and idempotently.
--
-- KEYS[1] shard aggregate hash  (customers, watermark, offsets, event counts)
-- KEYS[2] shard per-day hash    (b:<day> base size, a<n>:<day> active in n-day window)
-- KEYS[3] shard per-period hash (z: cohort size, c: cohort cell, s: stayed, p: active)
-- KEYS[4..] customer hashes     (o base day, a activity bitmap, x churn bitmap,
--                                e recent event ids, f/l first/last ts, p/r purchases/revenue)
-- ARGV[1] JSON config {W, win, ws, ring, K}
-- ARGV[2..] 9 values per item: key index (0 = invalid), partition, offset, event-id hash,
--           type (or reason), flags (1 activity, 2 churn, 4 purchase), day, ts ms, amount milli
--
-- Days are local days since 1970-01-01. Customer state is a pair of day bitmaps, so
-- late, out-of-order and duplicate events land exactly; every aggregate is changed
-- only by the difference between a customer's state before and after the event.

local cfg = cjson.decode(ARGV[1])
local W, WINS, WS, RING, K = cfg.W, cfg.win, cfg.ws, cfg.ring, cfg.K
local AGG, DAYS, PER = KEYS[1], KEYS[2], KEYS[3]
local floor, band, bor, lshift = math.floor, bit.band, bit.bor, bit.lshift
local PERIODS = { 'd', 'w', 'm' }

local SPAN = W
for _, n in ipairs(WINS) do
  if n > SPAN then SPAN = n end
end

-- Calendar arithmetic on day numbers (H. Hinnant's civil date algorithms).
local function civil(d)
  local z = d + 719468
  local era = floor(z / 146097)
  local doe = z - era * 146097
  local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))
  local mp = floor((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y, m
end

local function month_start(y, m)
  if m <= 2 then y = y - 1 end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = floor((153 * mp + 2) / 5)
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

local function period(d, P)
  if P == 'd' then return d end
  if P == 'w' then return floor((d + 3 - WS) / 7) end
  local y, m = civil(d)
  return y * 12 + m - 1
end

local function pstart(p, P)
  if P == 'd' then return p end
  if P == 'w' then return p * 7 - 3 + WS end
  return month_start(floor(p / 12), p % 12 + 1)
end

local function pend(p, P)
  return pstart(p + 1, P) - 1
end

-- Bitmaps: bit i of string s (LSB first in each byte) is day o + i.
local function getbit(s, o, day)
  local i = day - o
  if i < 0 then return false end
  local byte = floor(i / 8) + 1
  if byte > #s then return false end
  return band(string.byte(s, byte), lshift(1, i % 8)) ~= 0
end

local function setbit(s, o, day)
  local i = day - o
  local byte = floor(i / 8) + 1
  if byte > #s then s = s .. string.rep('\0', byte - #s) end
  local v = bor(string.byte(s, byte), lshift(1, i % 8))
  return string.sub(s, 1, byte - 1) .. string.char(v) .. string.sub(s, byte + 1)
end

local function first_day(st)
  for byte = 1, #st.a do
    local v = string.byte(st.a, byte)
    if v ~= 0 then
      for b = 0, 7 do
        if band(v, lshift(1, b)) ~= 0 then return st.o + (byte - 1) * 8 + b end
      end
    end
  end
  return nil
end

local function active_periods(st, P)
  local out, seen = {}, nil
  for i = 0, #st.a * 8 - 1 do
    local d = st.o + i
    if getbit(st.a, st.o, d) then
      local p = period(d, P)
      if p ~= seen then out[#out + 1] = p; seen = p end
    end
  end
  return out
end

local function active_in(st, p, P)
  for d = pstart(p, P), pend(p, P) do
    if getbit(st.a, st.o, d) then return true end
  end
  return false
end

-- Base membership at the end of day t: latest activity a <= t with t - a < W and no
-- churn event on any day of [a, t].
local function last_active(st, t, limit)
  for d = t, t - limit + 1, -1 do
    if getbit(st.a, st.o, d) then return d end
  end
  return nil
end

local function churned_between(st, a, t)
  for d = a, t do
    if getbit(st.x, st.o, d) then return true end
  end
  return false
end

local function member(st, t)
  local a = last_active(st, t, W)
  return a ~= nil and not churned_between(st, a, t)
end

-- Membership and latest activity for each day of [d - 1, d + SPAN - 1], in one pass.
local function trace(st, d)
  local last = last_active(st, d - 1, SPAN)
  local churned = last ~= nil and churned_between(st, last, d - 1)
  local M, L = {}, {}
  M[d - 1] = last ~= nil and (d - 1 - last) < W and not churned
  L[d - 1] = last
  for t = d, d + SPAN - 1 do
    if getbit(st.a, st.o, t) then last = t; churned = false end
    if getbit(st.x, st.o, t) then churned = true end
    M[t] = last ~= nil and (t - last) < W and not churned
    L[t] = last
  end
  return M, L
end

local function incr(key, field, delta)
  if delta ~= 0 then redis.call('HINCRBY', key, field, string.format('%d', delta)) end
end

local function cell(P, cohort, offset, delta)
  if offset < K then incr(PER, 'c:' .. P .. ':' .. cohort .. ':' .. offset, delta) end
end

-- Carry the difference between two states of one customer, changed at day d, into
-- the base, active-window and stayed-in-base aggregates.
local function update_membership(old, new, d)
  local Mo, Lo = trace(old, d)
  local Mn, Ln = trace(new, d)
  for t = d, d + SPAN - 1 do
    if Mo[t] ~= Mn[t] then incr(DAYS, 'b:' .. t, Mn[t] and 1 or -1) end
  end
  for _, n in ipairs(WINS) do
    for t = d, d + n - 1 do
      local was = Lo[t] ~= nil and t - Lo[t] < n
      local is = Ln[t] ~= nil and t - Ln[t] < n
      if was ~= is then incr(DAYS, 'a' .. n .. ':' .. t, is and 1 or -1) end
    end
  end
  local function at(M, st, t)
    local v = M[t]
    if v == nil then return member(st, t) end
    return v
  end
  for _, P in ipairs(PERIODS) do
    for p = period(d, P), period(d + SPAN, P) do
      local s, e = pstart(p, P) - 1, pend(p, P)
      local was = at(Mo, new, s) and at(Mo, new, e)
      local is = at(Mn, new, s) and at(Mn, new, e)
      if was ~= is then incr(PER, 's:' .. P .. ':' .. p, is and 1 or -1) end
    end
  end
end

-- A new activity day: cohort sizes, cohort cells and per-period active counts.
local function update_cohorts(old, new, d)
  local first = first_day(old)
  if first == nil then
    incr(AGG, 'customers', 1)
    for _, P in ipairs(PERIODS) do
      local c = period(d, P)
      incr(PER, 'z:' .. P .. ':' .. c, 1)
      incr(PER, 'p:' .. P .. ':' .. c, 1)
      cell(P, c, 0, 1)
    end
    return
  end
  for _, P in ipairs(PERIODS) do
    local pd, cohort = period(d, P), period(first, P)
    local fresh = not active_in(old, pd, P)
    if fresh then incr(PER, 'p:' .. P .. ':' .. pd, 1) end
    if pd < cohort then
      incr(PER, 'z:' .. P .. ':' .. cohort, -1)
      incr(PER, 'z:' .. P .. ':' .. pd, 1)
      for _, q in ipairs(active_periods(old, P)) do cell(P, cohort, q - cohort, -1) end
      for _, q in ipairs(active_periods(new, P)) do cell(P, pd, q - pd, 1) end
    elseif fresh then
      cell(P, cohort, pd - cohort, 1)
    end
  end
end

-- Customer state, loaded once per batch and written back at the end.
local customers = {}

local function load(key)
  local st = customers[key]
  if st then return st end
  local v = redis.call('HMGET', key, 'o', 'a', 'x', 'e', 'f', 'l', 'p', 'r')
  st = {
    o = tonumber(v[1]), a = v[2] or '', x = v[3] or '', e = v[4] or '',
    f = tonumber(v[5]), l = tonumber(v[6]), p = tonumber(v[7]) or 0, r = tonumber(v[8]) or 0,
  }
  customers[key] = st
  return st
end

-- Move the bitmaps' base day down so that `day` fits; bases stay multiples of 8.
local function rebase(st, day)
  local o = floor(day / 8) * 8
  if st.o == nil then
    st.o = o
  elseif o < st.o then
    local pad = string.rep('\0', (st.o - o) / 8)
    if #st.a > 0 then st.a = pad .. st.a end
    if #st.x > 0 then st.x = pad .. st.x end
    st.o = o
  end
end

local function seen_before(st, id)
  for i = 1, #st.e, 8 do
    if string.sub(st.e, i, i + 7) == id then return true end
  end
  st.e = string.sub(st.e .. id, -RING * 8)
  return false
end

local function mark(st, field, day)
  local before = { o = st.o, a = st.a, x = st.x }
  if getbit(st[field], st.o, day) then return nil end
  st[field] = setbit(st[field], st.o, day)
  return before
end

local function apply_event(st, flags, day, ts, amount)
  rebase(st, day)
  if st.f == nil or ts < st.f then st.f = ts end
  if st.l == nil or ts > st.l then st.l = ts end
  if band(flags, 4) ~= 0 then
    st.p = st.p + 1
    st.r = st.r + amount
    incr(AGG, 'purchases', 1)
    incr(AGG, 'revenue_milli', amount)
  end
  if band(flags, 1) ~= 0 then
    local before = mark(st, 'a', day)
    if before then
      update_cohorts(before, st, day)
      update_membership(before, st, day)
    end
  end
  if band(flags, 2) ~= 0 then
    local before = mark(st, 'x', day)
    if before then update_membership(before, st, day) end
  end
end

-- Main loop.
local applied_offsets = {}
local watermark = tonumber(redis.call('HGET', AGG, 'watermark_ms') or '0')
local new_watermark = watermark
local counts = { applied = 0, duplicate = 0, replayed = 0 }

for i = 2, #ARGV, 9 do
  local kidx, part, offset = tonumber(ARGV[i]), ARGV[i + 1], tonumber(ARGV[i + 2])
  if applied_offsets[part] == nil then
    applied_offsets[part] = tonumber(redis.call('HGET', AGG, 'o:' .. part) or '-1')
  end
  local done = applied_offsets[part]
  if offset <= done then
    counts.replayed = counts.replayed + 1
  else
    applied_offsets[part] = offset
    local kind = ARGV[i + 4]
    if kidx == 0 then
      incr(AGG, 'i:' .. kind, 1)
      counts.applied = counts.applied + 1
    else
      local st = load(KEYS[kidx])
      if seen_before(st, ARGV[i + 3]) then
        counts.duplicate = counts.duplicate + 1
      else
        local ts = tonumber(ARGV[i + 7])
        apply_event(st, tonumber(ARGV[i + 5]), tonumber(ARGV[i + 6]), ts, tonumber(ARGV[i + 8]))
        incr(AGG, 'e:' .. kind, 1)
        if ts > new_watermark then new_watermark = ts end
        counts.applied = counts.applied + 1
      end
    end
  end
end

for key, st in pairs(customers) do
  redis.call('HSET', key, 'o', st.o or 0, 'a', st.a, 'x', st.x, 'e', st.e,
    'f', string.format('%d', st.f or 0), 'l', string.format('%d', st.l or 0),
    'p', st.p, 'r', string.format('%d', st.r))
end
for part, offset in pairs(applied_offsets) do
  redis.call('HSET', AGG, 'o:' .. part, string.format('%d', offset))
end
if new_watermark > watermark then
  redis.call('HSET', AGG, 'watermark_ms', string.format('%d', new_watermark))
end
return { counts.applied, counts.duplicate, counts.replayed }
