-- A customer's day bitmaps as the batch works on them (the stored layout is in
-- customer.lua): bitmaps a activity, x churn, s subscribed, k cancelled, y annual
-- subscribe days, all relative to the customer's base day o.
--
-- days(st, name): the bitmap's sorted days. Each bitmap is decoded once and the list
-- is kept on the state table, under DAY_LIST[name], with the bitmap it was decoded
-- from under DAY_LIST_OF[name]; a changed bitmap is decoded again, except that
-- mark() inserts its day into a current list. Lists are never changed in place, so a
-- copy of the state may share them.

local DAY_LIST = { a = 'a_days', x = 'x_days', s = 's_days', k = 'k_days', y = 'y_days' }
local DAY_LIST_OF = {
  a = 'a_days_of', x = 'x_days_of', s = 's_days_of', k = 'k_days_of', y = 'y_days_of',
}

local function setbit(s, o, day)
  local i = day - o
  local byte = floor(i / 8) + 1
  if byte > #s then s = s .. string.rep('\0', byte - #s) end
  local v = bor(string.byte(s, byte), lshift(1, i % 8))
  return string.sub(s, 1, byte - 1) .. string.char(v) .. string.sub(s, byte + 1)
end

local function days(st, name)
  local bits = st[name]
  if st[DAY_LIST_OF[name]] ~= bits then
    st[DAY_LIST[name]], st[DAY_LIST_OF[name]] = decode_days(bits, st.o or 0), bits
  end
  return st[DAY_LIST[name]]
end

-- The numbers of the periods of kind P in which the customer was active, ascending.
local function active_periods(st, P)
  local out, seen = {}, nil
  for _, d in ipairs(days(st, 'a')) do
    local p = period(d, P)
    if p ~= seen then out[#out + 1] = p; seen = p end
  end
  return out
end

-- Whether the customer was active in the periods before, at and after period p.
local function active_around(A, p, P)
  local s0, s1 = period_start(p - 1, P), period_start(p, P)
  local s2, s3 = period_start(p + 1, P), period_start(p + 2, P)
  local before, at, after = false, false, false
  for _, d in ipairs(A) do
    if d >= s3 then break end
    if d >= s2 then after = true elseif d >= s1 then at = true elseif d >= s0 then before = true end
  end
  return before, at, after
end

-- Move the bitmaps' base day down so that `day` fits; bases stay multiples of 8.
local function rebase(st, day)
  local o = floor(day / 8) * 8
  if st.o == nil then
    st.o = o
  elseif o < st.o then
    local pad = string.rep('\0', (st.o - o) / 8)
    for _, b in ipairs({ 'a', 'x', 's', 'k', 'y', 'pb', 'pm' }) do
      if #st[b] > 0 then st[b] = pad .. st[b] end
    end
    for i, bits in ipairs(st.v) do
      if #bits > 0 then st.v[i] = pad .. bits end
    end
    st.o = o
  end
end

-- Set a day's bit; a decoded day list that was current gets the day inserted.
local function mark(st, bitmap, day)
  local old = st[bitmap]
  if getbit(old, st.o, day) then return false end
  local new = setbit(old, st.o, day)
  st[bitmap] = new
  if st[DAY_LIST_OF[bitmap]] == old then
    local out, placed = {}, false
    for _, d in ipairs(st[DAY_LIST[bitmap]]) do
      if not placed and d > day then out[#out + 1] = day; placed = true end
      out[#out + 1] = d
    end
    if not placed then out[#out + 1] = day end
    st[DAY_LIST[bitmap]], st[DAY_LIST_OF[bitmap]] = out, new
  end
  return true
end
