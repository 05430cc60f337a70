-- Cohort counters of a new activity day: update_cohorts(old, d), old being the
-- customer's state before day d became active.
--
-- Per period kind: cohort sizes (PeriodsField.COHORT_SIZE, scoped), retained cells
-- cohort x offset (RETAINED, scoped for weeks and months) and unbounded cells
-- (RETAINED_OR_LATER), active and returning customers (ACTIVE, RETURNING). An activity
-- before the customer's first one moves the customer to an earlier cohort. Offsets at
-- or beyond K are not kept.

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
