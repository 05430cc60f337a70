-- How one customer's state is stored: the only code that knows the layout, shared by
-- the batch and sweep scripts (prepended to them when they are loaded).
--
-- A customer is one hash: o base day of the bitmaps; bitmaps a activity, x churn,
-- s subscribed, k cancelled; e recent event-id hashes; f/l first and last event ts;
-- p/r/q purchases, revenue, refunded; sa/st/si latest subscription amount, ts, id;
-- g platform and channel codes; pt/ls last published lifecycle day and state.

local CUSTOMER_FIELDS = { 'o', 'a', 'x', 's', 'k', 'e', 'f', 'l', 'p', 'r', 'q', 'sa', 'st',
  'g', 'pt', 'si', 'ls' }

local function read_customer(key)
  local v = redis.call('HMGET', key, unpack(CUSTOMER_FIELDS))
  return {
    o = tonumber(v[1]), a = v[2] or '', x = v[3] or '', s = v[4] or '', k = v[5] or '',
    e = v[6] or '', f = tonumber(v[7]), l = tonumber(v[8]), p = tonumber(v[9]) or 0,
    r = tonumber(v[10]) or 0, q = tonumber(v[11]) or 0, sa = tonumber(v[12]) or 0,
    st = tonumber(v[13]), g = v[14], pt = tonumber(v[15]), si = v[16] or '', ls = v[17],
  }
end

local function write_customer(key, st)
  redis.call('HSET', key, 'o', st.o or 0, 'a', st.a, 'x', st.x, 's', st.s, 'k', st.k,
    'e', st.e, 'f', string.format('%d', st.f or 0), 'l', string.format('%d', st.l or 0),
    'p', st.p, 'r', string.format('%d', st.r), 'q', string.format('%d', st.q),
    'sa', string.format('%d', st.sa), 'st', string.format('%d', st.st or 0), 'g', st.g or '',
    'si', st.si)
end

-- Producer retries reach us with a new offset but the same event id (an 8-byte hash):
-- remember the customer's last `ring` ids.
local function seen_before(st, id, ring)
  for i = 1, #st.e, 8 do
    if string.sub(st.e, i, i + 7) == id then return true end
  end
  st.e = string.sub(st.e .. id, -ring * 8)
  return false
end

-- The lifecycle sweep must look at this customer again from day `from` on.
local function mark_due(due, key, st, from)
  redis.call('ZADD', due, 'LT', from, key)
end
