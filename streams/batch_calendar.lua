-- Calendar arithmetic on day numbers, the same as core/calendar.py computes.
--
-- period(d, P): the number of the period of kind P (a PeriodCode) holding day d;
-- period_start(p, P): the first day of period p. Days are local days since
-- 1970-01-01, weeks start on day WS of the week, months are counted from year 0
-- (year * 12 + month - 1). Month arithmetic uses H. Hinnant's civil date algorithms.

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
