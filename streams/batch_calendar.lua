-- Calendar arithmetic on day numbers, the same as core/calendar.py computes.
--
-- period(d, P): the number of the period of kind P (a PeriodCode) holding day d;
-- period_start(p, P): the first day of period p. Days are local days since
-- 1970-01-01, weeks start on day WS of the week, months are counted from year 0
-- (year * 12 + month - 1). civil() and month_start() come from civil.lua.

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

local function period_start(p, P)
  if P == PeriodCode.DAY then return p end
  if P == PeriodCode.WEEK then return p * 7 - 3 + WS end
  local d = month_first[p]
  if d == nil then
    d = month_start(floor(p / 12), p % 12 + 1)
    month_first[p] = d
  end
  return d
end
