-- The counters that are a plain function of one customer's whole state: purchasing
-- and repeat customers, first-day sums, cohort value, the RFM key, first churn and
-- win-back, subscription and MRR deltas.
--
-- contributions(st) gives them as {key = {field = amount}}; an event changes them by
-- the new state's contributions minus the old state's (apply_difference).

-- The RFM score of a value: 1 plus the thresholds it reaches.
local function score(value, thresholds)
  local s = 1
  for _, t in ipairs(thresholds) do
    if value >= t then s = s + 1 end
  end
  return s
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
