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
--   subscription starts and renewals (it breaks ts ties for MRR), and the customer's
--   field in its bucket.
--
-- A partition's offset marker is the offset after the last record applied. A batch that continues from beyond the marker would leave a hole (Redis
-- lost writes, was emptied or restored from an older copy): then nothing is applied
-- and the markers are returned, so the worker can go back and re-read from there.
--
-- Days are local days since 1970-01-01. A customer is a few day bitmaps, so late,
-- out-of-order and duplicate events land exactly; every aggregate changes only by
-- the difference between a customer's state before and after an event.

local cfg = cjson.decode(ARGV[BatchArg.CONFIG])
local W, WINS, WS, K = cfg.W, cfg.win, cfg.ws, cfg.K
local QUICK, NEWKEY, FREQ, MONEY = cfg.quick, cfg.newkey, cfg.freq, cfg.money
local PURE = {} -- pure activity type -> its bitmap's index in a customer's v
for i, name in ipairs(cfg.pure) do PURE[name] = i end
local AGG, DAYS, PER = KEYS[BatchKey.TOTALS], KEYS[BatchKey.DAYS], KEYS[BatchKey.PERIODS]
local LINE, DUE = KEYS[BatchKey.TIMELINE], KEYS[BatchKey.DUE]
local PERIODS = { PeriodCode.DAY, PeriodCode.WEEK, PeriodCode.MONTH }

local SPAN = W
for _, n in ipairs(WINS) do
  if n > SPAN then SPAN = n end
end

---------------------------------------------------------------------------
-- Calendar arithmetic on day numbers (H. Hinnant's civil date algorithms).
---------------------------------------------------------------------------
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

-- Months are remembered for the batch: the civil arithmetic is the costly part.
local month_of, month_first = {}, {}

local function period(d, P)
  if P == PeriodCode.DAY then return d end
  if P == PeriodCode.WEEK then return floor((d + 3 - WS) / 7) end
  local p = month_of[d]
  if p == nil then
    local y, m = civil(d)
    p = y * 12 + m - 1
    month_of[d] = p
  end
  return p
end

local function pstart(p, P)
  if P == PeriodCode.DAY then return p end
  if P == PeriodCode.WEEK then return p * 7 - 3 + WS end
  local d = month_first[p]
  if d == nil then
    d = month_start(floor(p / 12), p % 12 + 1)
    month_first[p] = d
  end
  return d
end

---------------------------------------------------------------------------
-- Day lists: each bitmap decoded once into its sorted days, cached on the state table
-- (under '_' .. name, with the string it came from) until the bitmap changes.
---------------------------------------------------------------------------
local function setbit(s, o, day)
  local i = day - o
  local byte = floor(i / 8) + 1
  if byte > #s then s = s .. string.rep('\0', byte - #s) end
  local v = bor(string.byte(s, byte), lshift(1, i % 8))
  return string.sub(s, 1, byte - 1) .. string.char(v) .. string.sub(s, byte + 1)
end

local LIST = { a = '_a', x = '_x', s = '_s', k = '_k' }
local SOURCE = { a = '_as', x = '_xs', s = '_ss', k = '_ks' }

local function days(st, name)
  local src, s = SOURCE[name], st[name]
  if st[src] ~= s then
    st[LIST[name]], st[src] = decode_days(s, st.o or 0), s
  end
  return st[LIST[name]]
end

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
  local s0, s1, s2, s3 = pstart(p - 1, P), pstart(p, P), pstart(p + 1, P), pstart(p + 2, P)
  local before, at, after = false, false, false
  for _, d in ipairs(A) do
    if d >= s3 then break end
    if d >= s2 then after = true elseif d >= s1 then at = true elseif d >= s0 then before = true end
  end
  return before, at, after
end

---------------------------------------------------------------------------
-- Base membership at the end of day t: latest activity a <= t with t - a < W and no
-- churn event on any day of [a, t]. As maximal runs [from, to) of days, built from
-- the day lists: each activity opens W days that a churn event cuts short.
---------------------------------------------------------------------------
local function base_runs(st)
  if st._Ba == st.a and st._Bx == st.x then return st._B end
  local A, X = days(st, 'a'), days(st, 'x')
  local runs, xi, n = {}, 1, 0
  for _, a in ipairs(A) do
    while X[xi] ~= nil and X[xi] < a do xi = xi + 1 end
    local stop = a + W
    if X[xi] ~= nil and X[xi] < stop then stop = X[xi] end
    if stop > a then
      if n > 0 and a <= runs[n][2] then
        if stop > runs[n][2] then runs[n][2] = stop end
      else
        n = n + 1
        runs[n] = { a, stop }
      end
    end
  end
  st._B, st._Ba, st._Bx = runs, st.a, st.x
  return runs
end

-- In the base at the end of day s and of day e (s < e)? Runs are sorted and disjoint.
local function stayed(runs, s, e)
  local s_in = false
  for _, r in ipairs(runs) do
    if not s_in then
      if s < r[1] then return false end -- s is in a gap
      s_in = s < r[2]
    end
    if s_in then
      if e < r[1] then return false end
      if e < r[2] then return true end
    end
  end
  return false
end

-- First day t >= first activity at whose end the customer is not in the base.
local function first_churn(runs, f)
  local first = runs[1]
  if first ~= nil and first[1] == f then return first[2] end
  return f -- churned on the day of the first activity
end

-- Days on which the customer is subscribed, as [from, to) intervals (to may be nil).
local function subscribed_intervals(st)
  local S, Kd = days(st, 's'), days(st, 'k')
  local out, open, i, j = {}, nil, 1, 1
  while S[i] ~= nil or Kd[j] ~= nil do
    local d = math.min(S[i] or math.huge, Kd[j] or math.huge)
    local on, off = S[i] == d, Kd[j] == d
    if on then i = i + 1 end
    if off then j = j + 1 end
    local now = on and not off
    if now and open == nil then
      open = d
    elseif not now and open ~= nil then
      out[#out + 1] = { open, d }
      open = nil
    end
  end
  if open ~= nil then out[#out + 1] = { open, nil } end
  return out
end

---------------------------------------------------------------------------
-- Writing aggregates. Scoped counters are also kept per breakdown value of the
-- current customer (field prefixes like "P0|" for platform code 0).
---------------------------------------------------------------------------

-- Increments are summed here and written once per field at the end of the batch:
-- many events of a batch touch the same day and period cells.
local pending = { [AGG] = {}, [DAYS] = {}, [PER] = {}, [LINE] = {} }

local function incr(key, field, delta)
  if delta ~= 0 then
    local cells = pending[key]
    cells[field] = (cells[field] or 0) + delta
  end
end

-- Counters over runs of consecutive numbers (days, offsets) are kept as difference
-- arrays until the end of the batch: an event adds or removes a run in O(1), and
-- the flush expands each array into one increment per number.
local ranges = { [DAYS] = {}, [PER] = {} }

-- Scoped counters are summed per group of customers with the same breakdown codes
-- (a handful per batch) and copied to each of the group's scopes at the flush, so an
-- event pays for one scope, not three.
local groups = {}
local group -- the current customer's: scopes, cells and ranges by key

local function set_scopes(codes)
  group = groups[codes]
  if group == nil then
    local scopes = { '' }
    for code in string.gmatch(codes, '[^' .. CODES_SEPARATOR .. ']+') do
      scopes[#scopes + 1] = code .. SCOPE_END
    end
    group = { scopes = scopes, cells = { [DAYS] = {}, [PER] = {} },
      ranges = { [DAYS] = {}, [PER] = {} } }
    groups[codes] = group
  end
end

local function incr_scoped(key, field, delta)
  if delta ~= 0 then
    local cells = group.cells[key]
    cells[field] = (cells[field] or 0) + delta
  end
end

local function spread_groups()
  for _, g in pairs(groups) do
    for key, cells in pairs(g.cells) do
      for field, delta in pairs(cells) do
        for _, scope in ipairs(g.scopes) do incr(key, scope .. field, delta) end
      end
    end
    for key, by_prefix in pairs(g.ranges) do
      local all = ranges[key]
      for prefix, edges in pairs(by_prefix) do
        for _, scope in ipairs(g.scopes) do
          local name = scope .. prefix
          local e = all[name]
          if e == nil then e = {}; all[name] = e end
          for n, delta in pairs(edges) do e[n] = (e[n] or 0) + delta end
        end
      end
    end
  end
end

local function add_range(key, prefix, from, to, delta)
  if from >= to or delta == 0 then return end
  local edges = ranges[key][prefix]
  if edges == nil then edges = {}; ranges[key][prefix] = edges end
  edges[from] = (edges[from] or 0) + delta
  edges[to] = (edges[to] or 0) - delta
end

local function expand_ranges()
  for key, by_prefix in pairs(ranges) do
    for prefix, edges in pairs(by_prefix) do
      local at = {}
      for n, delta in pairs(edges) do
        if delta ~= 0 then at[#at + 1] = n end
      end
      table.sort(at)
      local sum = 0
      for i = 1, #at - 1 do
        sum = sum + edges[at[i]]
        if sum ~= 0 then
          for n = at[i], at[i + 1] - 1 do incr(key, prefix .. n, sum) end
        end
      end
    end
  end
end

local function flush_increments()
  spread_groups()
  expand_ranges()
  for key, cells in pairs(pending) do
    for field, delta in pairs(cells) do
      if delta ~= 0 then redis.call('HINCRBY', key, field, string.format('%d', delta)) end
    end
  end
end

local function cell(prefix, P, cohort, offset, delta)
  if offset < K then
    local field = prefix .. P .. ':' .. cohort .. ':' .. offset
    -- breakdowns keep weekly and monthly cohort cells; daily ones would swamp the scrape
    if prefix == PeriodsField.RETAINED and P ~= PeriodCode.DAY then
      incr_scoped(PER, field, delta)
    else
      incr(PER, field, delta)
    end
  end
end

local function score(value, thresholds)
  local s = 1
  for _, t in ipairs(thresholds) do
    if value >= t then s = s + 1 end
  end
  return s
end

-- The edges (day -> +1/-1) that turn the old runs into the new ones from day d on;
-- nothing before d changes when an event lands on day d.
local function run_edges(old, new, d, shift, edges)
  edges = edges or {}
  for sign = -1, 1, 2 do
    for _, r in ipairs(sign < 0 and old or new) do
      local from = r[1] + shift
      if from < d then from = d end
      if from < r[2] then
        edges[from] = (edges[from] or 0) + sign
        edges[r[2]] = (edges[r[2]] or 0) - sign
      end
    end
  end
  return edges
end

-- The current group's difference array of a scoped day counter.
local function scoped_edges(key, prefix)
  local all = group.ranges[key]
  local e = all[prefix]
  if e == nil then e = {}; all[prefix] = e end
  return e
end

local WIN_PREFIX = {}
for _, n in ipairs(WINS) do WIN_PREFIX[n] = active_window(n) end

-- Add the non-zero edges to a scoped day counter; returns the days they sit on.
local function move_runs(key, prefix, edges)
  local at, all = {}, group.ranges[key]
  local e = all[prefix]
  if e == nil then e = {}; all[prefix] = e end
  for n, delta in pairs(edges) do
    if delta ~= 0 then
      at[#at + 1] = n
      e[n] = (e[n] or 0) + delta
    end
  end
  return at
end

-- Carry the difference between two states of one customer, changed at day d, into
-- the base, active-window and stayed-in-base aggregates.
local function update_membership(old, new, d)
  local Bo, Bn = base_runs(old), base_runs(new)
  if old.a ~= new.a then
    -- day d became active: windows gain the days of [d, d + n) that the neighbouring
    -- active days (before and after d) did not already cover
    local before, after = nil, nil
    for _, a in ipairs(days(old, 'a')) do
      if a < d then before = a elseif a > d then after = a; break end
    end
    for _, n in ipairs(WINS) do
      local from, to = d, d + n
      if before ~= nil and before + n > from then from = before + n end
      if after ~= nil and after < to then to = after end
      if from < to then
        local e = scoped_edges(DAYS, WIN_PREFIX[n])
        e[from] = (e[from] or 0) + 1
        e[to] = (e[to] or 0) - 1
      end
    end
  end
  local at = move_runs(DAYS, DaysField.BASE, run_edges(Bo, Bn, d, 0))
  if #at == 0 then return end
  -- stayed in the base through day p = in the base at the end of p - 1 and of p
  run_edges(Bo, Bn, d, 1, scoped_edges(PER, PeriodsField.STAYED_IN_BASE .. PeriodCode.DAY .. ':'))
  -- weeks and months: only those with a first or last day inside the changed days
  table.sort(at)
  local from, to = at[1], at[#at]
  for i = 2, #PERIODS do
    local P = PERIODS[i]
    for p = period(from, P), period(to, P) do
      local s, e = pstart(p, P) - 1, pstart(p + 1, P) - 1
      local was, is = stayed(Bo, s, e), stayed(Bn, s, e)
      if was ~= is then incr_scoped(PER, PeriodsField.STAYED_IN_BASE .. P .. ':' .. p, is and 1 or -1) end
    end
  end
end

-- Unbounded retention: a customer counts at every offset up to their latest period.
local function unbounded(P, cohort, from, to, delta)
  local prefix = PeriodsField.RETAINED_OR_LATER .. P .. ':' .. cohort .. ':'
  add_range(PER, prefix, from, math.min(to, K - 1) + 1, delta)
end

-- A new activity day d: cohort sizes and cells, active and returning per period.
local function update_cohorts(old, d)
  local A = days(old, 'a')
  if A[1] == nil then
    incr(AGG, TotalsField.CUSTOMERS, 1)
    for _, P in ipairs(PERIODS) do
      local c = period(d, P)
      incr_scoped(PER, PeriodsField.COHORT_SIZE .. P .. ':' .. c, 1)
      incr(PER, PeriodsField.ACTIVE .. P .. ':' .. c, 1)
      cell(PeriodsField.RETAINED, P, c, 0, 1)
      cell(PeriodsField.RETAINED_OR_LATER, P, c, 0, 1)
    end
    return
  end
  local first, last = A[1], A[#A]
  for _, P in ipairs(PERIODS) do
    local pd, cohort, latest = period(d, P), period(first, P), period(last, P)
    local before, at, after = active_around(A, pd, P)
    local fresh = not at
    if fresh then
      incr(PER, PeriodsField.ACTIVE .. P .. ':' .. pd, 1)
      if before then incr(PER, PeriodsField.RETURNING .. P .. ':' .. pd, 1) end
      if after then incr(PER, PeriodsField.RETURNING .. P .. ':' .. pd + 1, 1) end
    end
    if pd < cohort then
      incr_scoped(PER, PeriodsField.COHORT_SIZE .. P .. ':' .. cohort, -1)
      incr_scoped(PER, PeriodsField.COHORT_SIZE .. P .. ':' .. pd, 1)
      local retained = PeriodsField.RETAINED
      for _, q in ipairs(active_periods(old, P)) do cell(retained, P, cohort, q - cohort, -1) end
      cell(retained, P, pd, 0, 1)
      for _, q in ipairs(active_periods(old, P)) do cell(retained, P, pd, q - pd, 1) end
      unbounded(P, cohort, 0, latest - cohort, -1)
      unbounded(P, pd, 0, latest - pd, 1)
    else
      if fresh then cell(PeriodsField.RETAINED, P, cohort, pd - cohort, 1) end
      if pd > latest then unbounded(P, cohort, latest - cohort + 1, pd - cohort, 1) end
    end
  end
end

-- Everything that is a plain function of one customer's whole state: the new value
-- minus the old one is what an event changes. Returns {key = {field = amount}}.
local function contributions(st)
  local agg, per, line = {}, {}, {}
  local function add(cells, field, v) cells[field] = (cells[field] or 0) + v end
  local net = st.r - st.q
  if st.p >= 1 then agg[TotalsField.PURCHASING_CUSTOMERS] = 1 end
  if st.p >= 2 then agg[TotalsField.REPEAT_CUSTOMERS] = 1 end
  local A = days(st, 'a')
  local f = A[1]
  if f ~= nil then
    local month = period(f, PeriodCode.MONTH)
    agg[TotalsField.FIRST_DAY_SUM] = f
    per[PeriodsField.COHORT_PURCHASES .. month] = st.p
    per[PeriodsField.COHORT_NET_REVENUE .. month] = net
    per[PeriodsField.COHORT_FIRST_DAY_SUM .. month] = f
    local L = A[#A]
    local fkey = (L - f < NEWKEY) and tostring(f) or TimelineField.RFM_NOT_NEW
    local rfm = L .. ':' .. score(st.p, FREQ) .. ':' .. score(net, MONEY) .. ':' .. fkey
    line[TimelineField.RFM_KEY .. rfm] = 1
    local c = first_churn(base_runs(st), f)
    local quick = c - f < QUICK
    local churned = quick and TimelineField.FIRST_CHURN_QUICK or TimelineField.FIRST_CHURN_LATE
    line[churned .. c] = 1
    if L > c then
      line[(quick and TimelineField.WON_BACK_QUICK or TimelineField.WON_BACK_LATE) .. c] = 1
    end
  end
  local subscribers, mrr = TimelineField.SUBSCRIBERS, TimelineField.MRR
  for _, span in ipairs(subscribed_intervals(st)) do
    add(line, subscribers .. span[1], 1)
    add(line, mrr .. span[1], st.sa)
    if span[2] ~= nil then
      add(line, subscribers .. span[2], -1)
      add(line, mrr .. span[2], -st.sa)
    end
  end
  return { [AGG] = agg, [PER] = per, [LINE] = line }
end

local function apply_difference(before, after)
  for key, cells in pairs(after) do
    local old = before[key]
    for field, v in pairs(cells) do incr(key, field, v - (old[field] or 0)) end
    for field, v in pairs(old) do
      if cells[field] == nil then incr(key, field, -v) end
    end
  end
end

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

-- Move the bitmaps' base day down so that `day` fits; bases stay multiples of 8.
local function rebase(st, day)
  local o = floor(day / 8) * 8
  if st.o == nil then
    st.o = o
  elseif o < st.o then
    local pad = string.rep('\0', (st.o - o) / 8)
    for _, b in ipairs({ 'a', 'x', 's', 'k' }) do
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
  if st[SOURCE[bitmap]] == old then
    local list, out, placed = st[LIST[bitmap]], {}, false
    for _, d in ipairs(list) do
      if not placed and d > day then out[#out + 1] = day; placed = true end
      out[#out + 1] = d
    end
    if not placed then out[#out + 1] = day end
    st[LIST[bitmap]], st[SOURCE[bitmap]] = out, new
  end
  return true
end

local function copy(st)
  return { o = st.o, a = st.a, x = st.x, s = st.s, k = st.k, p = st.p, r = st.r, q = st.q,
    sa = st.sa, _a = st._a, _as = st._as, _x = st._x, _xs = st._xs, _s = st._s, _ss = st._ss,
    _k = st._k, _ks = st._ks, _B = st._B, _Ba = st._Ba, _Bx = st._Bx }
end

---------------------------------------------------------------------------
-- One event.
---------------------------------------------------------------------------
local function count_in_periods(prefix, day)
  for _, P in ipairs(PERIODS) do incr(PER, prefix .. P .. ':' .. period(day, P), 1) end
end

local function apply_event(key, st, flags, day, ts, amount, nps, codes, id)
  if st.o == nil then st.g = codes end -- the customer's first applied event
  set_scopes(st.g or "")
  rebase(st, day)
  local before = copy(st)
  if st.f == nil or ts < st.f then st.f = ts end
  if st.l == nil or ts > st.l then st.l = ts end
  if band(flags, Flag.PURCHASE) ~= 0 then
    st.p = st.p + 1
    st.r = st.r + amount
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
  if band(flags, Flag.NPS) ~= 0 and nps >= 0 then
    local answer = DaysField.NPS_DETRACTORS
    if nps >= 9 then answer = DaysField.NPS_PROMOTERS elseif nps >= 7 then answer = DaysField.NPS_PASSIVES end
    incr(DAYS, answer .. day, 1)
  end
  local subscribes = band(flags, Flag.SUBSCRIPTION_ON) ~= 0
  if subscribes and (st.st == nil or ts > st.st or (ts == st.st and id > st.si)) then
    st.sa, st.st, st.si = amount, ts, id
  end
  local new_activity = band(flags, Flag.ACTIVITY) ~= 0 and mark(st, 'a', day)
  local new_churn = band(flags, Flag.CHURN) ~= 0 and mark(st, 'x', day)
  if subscribes then mark(st, 's', day) end
  if band(flags, Flag.SUBSCRIPTION_OFF) ~= 0 then mark(st, 'k', day) end

  if new_activity then update_cohorts(before, day) end
  if new_activity or new_churn then
    update_membership(before, st, day)
    -- the lifecycle sweep must look at this customer again from this day on
    local from = st.pt and math.max(day, st.pt + 1) or day
    mark_due(DUE, key, st, from)
  end
  if st.a ~= before.a or st.x ~= before.x or st.s ~= before.s or st.k ~= before.k
      or st.p ~= before.p or st.r ~= before.r or st.q ~= before.q or st.sa ~= before.sa then
    -- st._c: the contributions of the state before this event, kept from the last one
    local after = contributions(st)
    apply_difference(st._c or contributions(before), after)
    st._c = after
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
          tonumber(ARGV[i + E.NPS_SCORE]), ARGV[i + E.CODES], ARGV[i + E.SUBSCRIPTION_ID])
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
