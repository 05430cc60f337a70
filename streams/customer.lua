-- How customers are stored: the only code that knows the layout, shared by the batch
-- and sweep scripts (prepended to them when they are loaded).
--
-- Many customers share one hash, a bucket <ns>:{s:N}:b:<n>: a key costs ~100 B of
-- overhead (name, object, dict entry) that a few dozen customers now split, and the
-- bucket stays a compact listpack. The field is the customer id (a canonical UUID as
-- its 16 raw bytes, see streams/state.py customer_field); the value is one binary
-- blob of the customer's state, unsigned LEB128 varints and length-prefixed strings:
--
--   o/8     base day of the bitmaps (always a multiple of 8)
--   due     0, or 1 + (day the lifecycle sweep must look again - o); it comes first
--           so the sweep can skip customers that are not due without decoding them
--   mask    which of FIELDS follow, in that order; empty strings, zero counts and
--           missing times are left out, so most customers need a one-byte mask
--
-- The state table the scripts work on (read_customer) has the fields: o base day;
-- bitmaps a activity, x churn, s subscribed, k cancelled; e recent event-id hashes;
-- f/l first and last event ts; p/r/q purchases, revenue, refunded (milli); sa/st/si
-- latest subscription amount, ts, event id; g platform and channel codes; pt/ls last
-- published lifecycle day and state; due the sweep's next day for this customer.

local DAY_MS = 86400000

local function varint(n)
  local bytes = {}
  while n >= 128 do
    bytes[#bytes + 1] = n % 128 + 128
    n = floor(n / 128)
  end
  bytes[#bytes + 1] = n
  return string.char(unpack(bytes))
end

local function read_varint(s, i)
  local n, scale, b = 0, 1, 128
  while b >= 128 do
    b = string.byte(s, i)
    n = n + (b % 128) * scale
    scale = scale * 128
    i = i + 1
  end
  return n, i
end

-- Signed values (times relative to the base day can be a few hours negative in zones
-- east of UTC) are zigzag-coded: 0, -1, 1, -2, ... become 0, 1, 2, 3, ...
local function zigzag(n)
  if n >= 0 then return 2 * n end
  return -2 * n - 1
end

local function unzigzag(z)
  if z % 2 == 0 then return z / 2 end
  return -(z + 1) / 2
end

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
-- dimension cap, u unknown or o other) fit in two bytes: each code as 0 (u), 1 (o) or
-- n + 2, in 7 bits. Any other text is kept as it is.
local function code_number(code)
  if code == 'u' then return 0 end
  if code == 'o' then return 1 end
  local n = tonumber(code)
  if n and n < 126 and tostring(n) == code then return n + 2 end
  return nil
end

local function code_text(n)
  if n == 0 then return 'u' end
  if n == 1 then return 'o' end
  return tostring(n - 2)
end

-- How each kind of value is written and read back; `st` gives the base day (and f
-- for l, which is stored as the span after the first event).
local CODECS = {
  bytes = {
    put = function(v) return varint(#v) .. v end,
    get = function(s, i)
      local n
      n, i = read_varint(s, i)
      return string.sub(s, i, i + n - 1), i + n
    end,
  },
  count = {
    put = function(v) return varint(v) end,
    get = function(s, i) return read_varint(s, i) end,
  },
  ms = {
    put = function(v, st) return varint(zigzag(v - st.o * DAY_MS)) end,
    get = function(s, i, st)
      local z
      z, i = read_varint(s, i)
      return st.o * DAY_MS + unzigzag(z), i
    end,
  },
  span = {
    put = function(v, st) return varint(zigzag(v - (st.f or st.o * DAY_MS))) end,
    get = function(s, i, st)
      local z
      z, i = read_varint(s, i)
      return (st.f or st.o * DAY_MS) + unzigzag(z), i
    end,
  },
  day = {
    put = function(v, st) return varint(zigzag(v - st.o)) end,
    get = function(s, i, st)
      local z
      z, i = read_varint(s, i)
      return st.o + unzigzag(z), i
    end,
  },
  -- even: the two codes as 2 * (p * 128 + c); odd: 2 * length + 1, then the text
  codes = {
    put = function(v)
      local p, c = string.match(v, '^P(%w+)\tC(%w+)$')
      p, c = p and code_number(p), c and code_number(c)
      if p and c then return varint(2 * (p * 128 + c)) end
      return varint(2 * #v + 1) .. v
    end,
    get = function(s, i)
      local z
      z, i = read_varint(s, i)
      if z % 2 == 1 then
        local n = (z - 1) / 2
        return string.sub(s, i, i + n - 1), i + n
      end
      z = z / 2
      return 'P' .. code_text(floor(z / 128)) .. '\tC' .. code_text(z % 128), i
    end,
  },
  state = {
    put = function(v) return varint(state_code(v)) end,
    get = function(s, i)
      local code
      code, i = read_varint(s, i)
      return state_name(code), i
    end,
  },
}

-- Optional fields in blob order, the ones nearly every customer has first (bits 1-64
-- fit the one-byte mask).
local FIELDS = {
  { 'a', 'bytes' }, { 'e', 'bytes' }, { 'f', 'ms' }, { 'l', 'span' }, { 'g', 'codes' },
  { 'pt', 'day' }, { 'ls', 'state' }, { 'x', 'bytes' }, { 's', 'bytes' }, { 'k', 'bytes' },
  { 'p', 'count' }, { 'r', 'count' }, { 'q', 'count' }, { 'sa', 'count' }, { 'st', 'ms' },
  { 'si', 'bytes' },
}
for n, spec in ipairs(FIELDS) do spec[3] = 2 ^ (n - 1) end

local function fresh_customer()
  return { a = '', x = '', s = '', k = '', e = '', si = '', p = 0, r = 0, q = 0, sa = 0 }
end

local function encode_customer(st)
  local due = st.due and 1 + math.max(st.due - st.o, 0) or 0
  local parts, mask = { varint(st.o / 8), varint(due), '' }, 0
  for _, spec in ipairs(FIELDS) do
    local v = st[spec[1]]
    if v ~= nil and v ~= '' and v ~= 0 then
      parts[#parts + 1] = CODECS[spec[2]].put(v, st)
      mask = mask + spec[3]
    end
  end
  parts[3] = varint(mask)
  return table.concat(parts)
end

local function decode_customer(blob)
  local st = fresh_customer()
  if blob == nil or blob == '' then return st end
  local o8, due, mask, i
  o8, i = read_varint(blob, 1)
  due, i = read_varint(blob, i)
  mask, i = read_varint(blob, i)
  st.o = o8 * 8
  if due > 0 then st.due = st.o + due - 1 end
  for _, spec in ipairs(FIELDS) do
    if band(mask, spec[3]) ~= 0 then
      st[spec[1]], i = CODECS[spec[2]].get(blob, i, st)
    end
  end
  return st
end

-- The day the sweep must look at this customer again (nil: never), read from the
-- blob's header alone.
local function due_day(blob)
  local o8, i = read_varint(blob, 1)
  local due = read_varint(blob, i)
  if due == 0 then return nil end
  return o8 * 8 + due - 1
end

-- The customer id a bucket field stands for (the inverse of state.py customer_field).
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

-- Producer retries reach us with a new offset but the same event id (a short hash):
-- remember the customer's last `ring` ids.
local function seen_before(st, id, ring)
  local n = #id
  for i = 1, #st.e, n do
    if string.sub(st.e, i, i + n - 1) == id then return true end
  end
  st.e = string.sub(st.e .. id, -ring * n)
  return false
end

-- The lifecycle sweep must look at this customer again from day `from` on. Only the
-- customer's own due day changes here; write_customer carries it into the bucket's
-- score in the due set (`due`) at the end of the batch.
local function mark_due(due, key, st, from)
  if st.due == nil or from < st.due then st.due = from end
end
