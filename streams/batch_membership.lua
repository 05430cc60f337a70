-- The base, active-window and stayed-in-base counters of a customer's change.
--
-- update_membership(old, new, d) carries the difference between two states of one
-- customer, changed on day d, into the day counters DaysField.BASE and the active
-- windows (active_window(n) for n in WINS), and into PeriodsField.STAYED_IN_BASE of
-- every period kind; all of them scoped to the customer's breakdown values.
-- update_subscribed(old, new, d) does the same for PeriodsField.STAYED_SUBSCRIBED from
-- the live subscription runs (not broken down).

local WINDOW_PREFIX = {} -- window length -> its day-field prefix
for _, n in ipairs(WINS) do WINDOW_PREFIX[n] = active_window(n) end

-- Weeks and months whose first or last day lies in the changed days [from, to]: count
-- with `add` (incr or incr_scoped) the change in "in the runs at the end of the day
-- before the period and at the end of its last day" under field prefix `field`.
local function stayed_in_periods(old, new, from, to, field, add)
  for i = 2, #PERIODS do
    local P = PERIODS[i]
    for p = period(from, P), period(to, P) do
      local s, e = period_start(p, P) - 1, period_start(p + 1, P) - 1
      local was, is = stayed(old, s, e), stayed(new, s, e)
      if was ~= is then add(PER, field .. P .. ':' .. p, is and 1 or -1) end
    end
  end
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
        local e = scoped_edges(DAYS, WINDOW_PREFIX[n])
        e[from] = (e[from] or 0) + 1
        e[to] = (e[to] or 0) - 1
      end
    end
  end
  local at = move_runs(DAYS, DaysField.BASE, run_edges(Bo, Bn, d, 0))
  if #at == 0 then return end
  -- stayed in the base through day p = in the base at the end of p - 1 and of p
  local stayed_days = PeriodsField.STAYED_IN_BASE .. PeriodCode.DAY .. ':'
  run_edges(Bo, Bn, d, 1, scoped_edges(PER, stayed_days))
  -- weeks and months: only those with a first or last day inside the changed days
  table.sort(at)
  stayed_in_periods(Bo, Bn, at[1], at[#at], PeriodsField.STAYED_IN_BASE, incr_scoped)
end

-- The changed days (sorted) between two run lists from day d on, or nil when none.
local function changed_days(old, new, d)
  local at = {}
  for n, delta in pairs(run_edges(old, new, d, 0)) do
    if delta ~= 0 then at[#at + 1] = n end
  end
  if #at == 0 then return nil end
  table.sort(at)
  return at
end

-- Carry the difference between two states' live subscriptions, changed at day d, into
-- the stayed-subscribed counters of every period kind: only periods with a first or
-- last day inside the changed days can change.
local function update_subscribed(old, new, d)
  local So, Sn = sub_runs(old), sub_runs(new)
  local at = changed_days(So, Sn, d)
  if at == nil then return end
  local day_prefix = PeriodsField.STAYED_SUBSCRIBED .. PeriodCode.DAY .. ':'
  local edges = ranges[PER][day_prefix]
  if edges == nil then edges = {}; ranges[PER][day_prefix] = edges end
  run_edges(So, Sn, d, 1, edges)
  stayed_in_periods(So, Sn, at[1], at[#at], PeriodsField.STAYED_SUBSCRIBED, incr)
end
