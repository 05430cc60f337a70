-- Civil calendar arithmetic on day numbers (days since 1970-01-01), after H. Hinnant's
-- algorithms; shared by the batch script (periods) and the sweep (billing periods).

-- The year, month and day of month of day d.
local function civil(d)
  local z = d + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y, m, doy - math.floor((153 * mp + 2) / 5) + 1
end

-- The day number of the first day of month m (1-12) of year y.
local function month_start(y, m)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = math.floor((153 * mp + 2) / 5)
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

-- Day d plus n calendar months, the day of month clamped to the target month's length
-- (Jan 31 + 1 month = Feb 28 or 29), as billing periods are counted.
local function add_months(d, n)
  local y, m, dom = civil(d)
  local index = y * 12 + m - 1 + n
  local ty, tm = math.floor(index / 12), index % 12 + 1
  local first = month_start(ty, tm)
  local length = month_start(math.floor((index + 1) / 12), (index + 1) % 12 + 1) - first
  return first + math.min(dom, length) - 1
end
