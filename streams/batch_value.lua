-- Value counters: per-period purchasing and repeat customers, and each customer's
-- active life as edges that the reader turns into customer-days up to its evaluation day.
--
-- count_purchase_day(st, day) is called once per unique purchase; it changes only the
-- periods holding the purchase's day. update_life(old, new, d) is called with
-- update_membership (batch_membership.lua), whenever the base runs may have changed.

-- A day's purchases are kept as two bits: pb (one or more), pm (two or more). A customer
-- is a buyer of a period with a pb bit in it, a repeat buyer with two pb bits or a pm bit.
local function period_purchases(st, s, e)
  local days, two = 0, false
  for d = s, e do
    if getbit(st.pb, st.o, d) then days = days + 1 end
    if getbit(st.pm, st.o, d) then two = true end
  end
  return days, two
end

-- Count a purchase on `day` in the buyers and repeat buyers of the day, week and month
-- holding it; a third purchase on one day changes nothing.
local function count_purchase_day(st, day)
  local first = not getbit(st.pb, st.o, day)
  if not first and getbit(st.pm, st.o, day) then return end
  for _, P in ipairs(PERIODS) do
    local p = period(day, P)
    local days, two = period_purchases(st, period_start(p, P), period_start(p + 1, P) - 1)
    if days == 0 then incr(PER, PeriodsField.PERIOD_BUYERS .. P .. ':' .. p, 1) end
    -- before: repeat with two days or a pm bit; after: also when another day had a
    -- purchase (this day is new) or this day had one already
    if days < 2 and not two and (days >= 1 or not first) then
      incr(PER, PeriodsField.PERIOD_REPEAT_BUYERS .. P .. ':' .. p, 1)
    end
  end
  if first then st.pb = setbit(st.pb, st.o, day) else st.pm = setbit(st.pm, st.o, day) end
end

-- A customer's active life: the days at whose end they are in the base, as base runs,
-- and their first activity day f when they are not in the base at its end (so a
-- customer who churned on their first day lived one day).
local function life_runs(st, f)
  local runs = base_runs(st)
  if runs[1] ~= nil and runs[1][1] == f then return runs end
  local out = { { f, f + 1 } }
  for _, r in ipairs(runs) do out[#out + 1] = r end
  return out
end

-- Add a customer's life edges (day -> +1/-1) to the counters: per day and per month
-- (summed, and summed times the day) for all customers, and the same for the cohort
-- month (cohort, nil for all customers) while that cohort can still be exported (its
-- first K months).
local function count_life_edges(edges, cohort)
  for d, e in pairs(edges) do
    if e ~= 0 then
      local q = period(d, PeriodCode.MONTH)
      if cohort == nil then
        incr(DAYS, DaysField.LIFE_EDGES .. d, e)
        incr(LINE, TimelineField.LIFE_EDGES .. q, e)
        incr(LINE, TimelineField.LIFE_EDGE_DAYS .. q, e * d)
      elseif q < cohort + K then
        local at = cohort .. ':'
        incr(DAYS, DaysField.COHORT_LIFE_EDGES .. at .. d, e)
        incr(PER, PeriodsField.COHORT_LIFE_EDGES .. at .. q, e)
        incr(PER, PeriodsField.COHORT_LIFE_EDGE_DAYS .. at .. q, e * d)
      end
    end
  end
end

-- Carry a change of one customer's active life, from an event on day d, into the life
-- edges: only the edges from day d on can change (run_edges), unless the event moved
-- the first activity day to another cohort month, which moves all of them.
local function update_life(old, new, d)
  local fo, fn = days(old, 'a')[1], days(new, 'a')[1]
  if fn == nil then return end
  local before = fo and life_runs(old, fo) or {}
  local after = life_runs(new, fn)
  local changed = run_edges(before, after, d, 0)
  count_life_edges(changed, nil)
  local co, cn = fo and period(fo, PeriodCode.MONTH), period(fn, PeriodCode.MONTH)
  if co == cn then
    count_life_edges(changed, cn)
  else
    -- all of the old edges leave the old cohort (run_edges negates them), the new join
    if co ~= nil then count_life_edges(run_edges(before, {}, -math.huge, 0), co) end
    count_life_edges(run_edges({}, after, -math.huge, 0), cn)
  end
end
