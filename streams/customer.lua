-- How customers are stored: the only code that knows the layout, shared by the batch
-- and sweep scripts (prepended to them when they are loaded).
--
-- Many customers share one hash, a bucket <ns>:{s:N}:b:<n>: a key costs ~100 B of
-- overhead (name, object, dict entry) that a few dozen customers split, and the
-- bucket stays a compact listpack. The field is the customer id (a canonical UUID as
-- its 16 raw bytes, see core/schema.py customer_field); the value is the customer's
-- state as a sequence of MessagePack values (Redis's built-in cmsgpack packs and
-- unpacks it in C, several times faster than a Lua codec), in the order of
-- CUSTOMER_SLOTS (core/schema.py).
-- Missing values are nil (one byte) and trailing ones are left out; the fields most
-- customers have come first. Numbers are kept small: the base day o as o / 8 (it is a
-- multiple of 8), days as days after o, times as ms after o's UTC midnight (l after f),
-- the lifecycle state and breakdown codes as small numbers. MessagePack integers take
-- 1, 3, 5 or 9 bytes, so a time costs 5 bytes up to 49 days after its reference.
--
-- The state table the scripts work on (read_customer) has the fields: o base day;
-- bitmaps a activity, x churn, s subscribed, k cancelled, y annual subscribe days; v one
-- day bitmap per pure
-- activity type (its index in the config's `pure` list, '' where it has no day);
-- e event-id hashes of the events that moved counters;
-- f/l first and last event ts; p/r/q purchases, revenue, refunded (milli); sa/st/si/sy
-- the amount (milli), ts, event id and annual flag (1) of the latest start or renew that
-- carried an amount; g platform and channel codes; pt/ls last
-- published lifecycle day and state; due the sweep's next day for this customer; pd
-- the day of the latest purchase; n the NPS answers still needed, the latest of each
-- answer day, ascending by day, each { day, ts, score, event id } (stored flat, four
-- values an answer, the ts as ms after its day's UTC midnight); pb/pm bitmaps of the
-- days with a purchase and of those with two or more.

local DAY_MS = 86400000
-- o8 and due come first in CUSTOMER_SLOTS, so the sweep can read a customer's due day alone.

-- Lifecycle states as small numbers: the published state of every swept customer is
-- stored, and 'at_risk_7' would cost 10 bytes.
local function state_code(name)
  if name == 'none' then return 1 end
  if name == 'active' then return 2 end
  if name == 'churned' then return 3 end
  return 4 + tonumber(string.match(name, '^at_risk_(%d+)$'))
end

local function state_name(code)
  if code == 1 then return 'none' end
  if code == 2 then return 'active' end
  if code == 3 then return 'churned' end
  return 'at_risk_' .. (code - 4)
end

-- Breakdown codes 'P<p>\tC<c>' (streams/dimensions.py: a code is a number below the
-- dimension cap, u unknown or o other) become two one-byte numbers: 0 (u), 1 (o) or
-- n + 2. Any other text is kept as it is, in gp.
local CODES_PATTERN = '^' .. DimensionLetter.platform .. '(%w+)' .. CODES_SEPARATOR
  .. DimensionLetter.channel .. '(%w+)$'

local function code_number(code)
  if code == DIMENSION_UNKNOWN then return 0 end
  if code == DIMENSION_OTHER then return 1 end
  local n = tonumber(code)
  if n and n < 126 and tostring(n) == code then return n + 2 end
  return nil
end

local function code_text(n)
  if n == 0 then return DIMENSION_UNKNOWN end
  if n == 1 then return DIMENSION_OTHER end
  return tostring(n - 2)
end

local function split_codes(g)
  if g == nil or g == '' then return nil, nil end
  local p, c = string.match(g, CODES_PATTERN)
  p, c = p and code_number(p), c and code_number(c)
  if p and c then return p, c end
  return g, nil
end

local function join_codes(gp, gc)
  if gc == nil then return gp end
  return DimensionLetter.platform .. code_text(gp) .. CODES_SEPARATOR
    .. DimensionLetter.channel .. code_text(gc)
end

local function some(v)
  if v == '' or v == 0 then return nil end
  return v
end

-- The per-type day bitmaps (v), or nil when none has a day set.
local function some_days(v)
  for _, bits in ipairs(v or {}) do
    if bits ~= '' then return v end
  end
  return nil
end

-- NPS answers as one flat list (nil when there are none): four values per answer.
local function encode_answers(n, o)
  if n == nil or #n == 0 then return nil end
  local flat = {}
  for _, answer in ipairs(n) do
    local day = answer[1]
    flat[#flat + 1] = day - o
    flat[#flat + 1] = answer[2] - day * DAY_MS
    flat[#flat + 1] = answer[3]
    flat[#flat + 1] = answer[4]
  end
  return flat
end

local function decode_answers(flat, o)
  local n = {}
  for i = 1, #(flat or {}), 4 do
    local day = o + flat[i]
    n[#n + 1] = { day, day * DAY_MS + flat[i + 1], flat[i + 2], flat[i + 3] }
  end
  return n
end

local function encode_customer(st)
  local o, base = st.o, st.o * DAY_MS
  local gp, gc = split_codes(st.g)
  -- in the order of CUSTOMER_SLOTS
  local values = {
    o / 8, st.due and math.max(st.due - o, 0), some(st.a), some_days(st.v), some(st.e),
    st.f and st.f - base,
    st.l and st.l - (st.f or base), gp, gc, st.pt and st.pt - o, st.ls and state_code(st.ls),
    some(st.p), some(st.r), some(st.q), some(st.x), some(st.s), some(st.k), some(st.sa),
    st.st and st.st - base, some(st.si), st.pd and st.pd - o, encode_answers(st.n, o),
    some(st.y), some(st.sy),
    some(st.pb), some(st.pm),
  }
  local n = #CUSTOMER_SLOTS
  while values[n] == nil do n = n - 1 end
  return cmsgpack.pack(unpack(values, 1, n))
end

local function decode_customer(blob)
  if blob == nil or blob == '' then
    return { a = '', v = {}, x = '', s = '', k = '', y = '', e = '', si = '', p = 0, r = 0,
      q = 0, sa = 0, sy = 0, n = {}, pb = '', pm = '' }
  end
  local o8, due, a, v, e, f, l, gp, gc, pt, ls, p, r, q, x, s, k, sa, sts, si, pd, n, y, sy,
    pb, pm = cmsgpack.unpack(blob)
  local o = o8 * 8
  local base = o * DAY_MS
  f = f and base + f
  return {
    o = o, due = due and o + due, a = a or '', v = v or {}, e = e or '', f = f,
    l = l and (f or base) + l, g = join_codes(gp, gc), pt = pt and o + pt,
    ls = ls and state_name(ls), p = p or 0, r = r or 0, q = q or 0, x = x or '',
    s = s or '', k = k or '', sa = sa or 0, st = sts and base + sts, si = si or '',
    pd = pd and o + pd, n = decode_answers(n, o),
    y = y or '', sy = sy or 0, pb = pb or '', pm = pm or '',
  }
end

-- The day the sweep must look at this customer again (nil: never), read from the
-- blob's first two values alone.
local function due_day(blob)
  local _, o8, due = cmsgpack.unpack_limit(blob, 2)
  if due == nil then return nil end
  return o8 * 8 + due
end

-- The customer id a bucket field stands for (the inverse of core/schema.py customer_field).
local function customer_id(field)
  if #field == 16 then
    return string.format('%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x',
      string.byte(field, 1, 16))
  end
  if string.byte(field, 1) == 255 then return string.sub(field, 2) end
  return field
end

-- A customer's state and the blob it was read from (nil for a new customer), so that
-- write_customer can skip customers an event did not change.
local function read_customer(key, field)
  local blob = redis.call('HGET', key, field) or nil
  return decode_customer(blob), blob
end

-- Store the customer and, if its due day moved earlier, lower its bucket's score in the
-- due set: a bucket's score is at most the earliest due day of its customers (the
-- sweep sets it to exactly that).
local function write_customer(due, key, field, st, before)
  if st.o == nil then return end -- nothing applied yet
  local blob = encode_customer(st)
  if blob == before then return end
  redis.call('HSET', key, field, blob)
  local was = before and due_day(before)
  if st.due ~= nil and (was == nil or st.due < was) then
    redis.call('ZADD', due, 'LT', st.due, string.match(key, '(%d+)$'))
  end
end

-- The customer's event-id hashes (fixed width n each, concatenated): an event whose id
-- is among them was applied before (a producer retry or a re-sent file) and changes
-- nothing. Otherwise the id is remembered and false is returned. Only events that move
-- counters are remembered; pure activity is idempotent through the day bitmap.
local function seen_before(st, id)
  local n, at = #id, 1
  while true do
    local i = string.find(st.e, id, at, true)
    if i == nil then break end
    if (i - 1) % n == 0 then return true end
    at = i + 1
  end
  st.e = st.e .. id
  return false
end

-- The lifecycle sweep must look at this customer again from day `from` on. Only the
-- customer's own due day changes here; write_customer carries it into the bucket's
-- score in the due set (`due`) at the end of the batch.
local function mark_due(due, key, st, from)
  if st.due == nil or from < st.due then st.due = from end
end
