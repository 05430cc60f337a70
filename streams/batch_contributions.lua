-- The counters that are a plain function of one customer's whole state: purchasing
-- and repeat customers, cohort value, the RFM key, first churn and win-back, NPS
-- respondents, subscription and MRR deltas.
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

-- The latest of the sorted days A on or before day c (A[1] <= c).
local function latest_by(A, c)
  local latest = A[1]
  for _, a in ipairs(A) do
    if a > c then break end
    latest = a
  end
  return latest
end

-- The timeline field prefix of an NPS score's group.
local function nps_group(score)
  if score >= 9 then return TimelineField.NPS_PROMOTERS end
  if score >= 7 then return TimelineField.NPS_PASSIVES end
  return TimelineField.NPS_DETRACTORS
end

-- The RFM key: last purchase day (or none), F and M scores, and the first activity day
-- f while the customer can still be new at an evaluation day (L: last activity day).
local function rfm_key(st, f, L)
  local fkey = (L - f < NEWKEY) and tostring(f) or TimelineField.RFM_NOT_NEW
  if st.pd == nil then return TimelineField.RFM_NO_PURCHASE .. ':1:1:' .. fkey end
  return st.pd .. ':' .. score(st.p, FREQ) .. ':' .. score(st.r - st.q, MONEY) .. ':' .. fkey
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
    per[PeriodsField.COHORT_PURCHASES .. month] = st.p
    per[PeriodsField.COHORT_NET_REVENUE .. month] = net
    local L = A[#A]
    line[TimelineField.RFM_KEY .. rfm_key(st, f, L)] = 1
    -- tenure: first to last activity day before the first churn day c
    local c = first_churn(base_runs(st), f)
    local quick = latest_by(A, c) - f < QUICK
    local churned = quick and TimelineField.FIRST_CHURN_QUICK or TimelineField.FIRST_CHURN_LATE
    line[churned .. c] = 1
    if L > c then
      line[(quick and TimelineField.WON_BACK_QUICK or TimelineField.WON_BACK_LATE) .. c] = 1
    end
  end
  -- each answer counts from its day until the next answer's day or the end of its window
  for i, answer in ipairs(st.n) do
    local group, stop, following = nps_group(answer[3]), answer[1] + NPS_DAYS, st.n[i + 1]
    if following ~= nil and following[1] < stop then stop = following[1] end
    add(line, group .. answer[1], 1)
    add(line, group .. stop, -1)
  end
  -- subscribers and MRR (in twelfths of a thousandth, so annual plans stay exact) over
  -- the days the subscription is live, at the plan's latest known amount
  local subscribers, mrr = TimelineField.SUBSCRIBERS, TimelineField.MRR
  local monthly12 = st.sy == 1 and st.sa or 12 * st.sa
  for _, run in ipairs(sub_runs(st)) do
    add(line, subscribers .. run[1], 1)
    add(line, mrr .. run[1], monthly12)
    add(line, subscribers .. run[2], -1)
    add(line, mrr .. run[2], -monthly12)
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
