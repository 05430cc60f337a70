-- The base rule as runs of days, shared by the batch script and the lifecycle sweep.
--
-- A run {from, to} is the days from..to-1 at whose end the customer is in; lists of
-- runs are sorted and disjoint. A customer is in the base at the end of day t when they
-- have an activity day <= t and either the activity rule or a live subscription holds:
--   activity: latest activity a <= t with t - a < W and no churn event on a day of [a, t];
--   subscription: some start/renew day d <= t with t < expiry(d) + grace and no cancel
--   on a day of [d, t]; expiry(d) is d plus one calendar month, or twelve when a start
--   or renew on day d was annual (civil.lua add_months).

-- Append run {from, to} to sorted runs, merging it with the last run it touches.
local function append_run(runs, from, to)
  local n = #runs
  if to <= from then return end
  if n > 0 and from <= runs[n][2] then
    if to > runs[n][2] then runs[n][2] = to end
  else
    runs[n + 1] = { from, to }
  end
end

-- Each activity day opens W days that the first churn event on or after it cuts short.
local function activity_runs(A, X, W)
  local runs, xi = {}, 1
  for _, a in ipairs(A) do
    while X[xi] ~= nil and X[xi] < a do xi = xi + 1 end
    local stop = a + W
    if X[xi] ~= nil and X[xi] < stop then stop = X[xi] end
    append_run(runs, a, stop)
  end
  return runs
end

-- Each start/renew day d (S) opens its billing period plus grace days, twelve months for
-- the days in Y (annual), one otherwise; the first cancel day on or after d (K) ends it.
local function subscription_runs(S, K, Y, grace)
  local runs, ki, yi = {}, 1, 1
  for _, d in ipairs(S) do
    while K[ki] ~= nil and K[ki] < d do ki = ki + 1 end
    while Y[yi] ~= nil and Y[yi] < d do yi = yi + 1 end
    local stop = add_months(d, Y[yi] == d and 12 or 1) + grace
    if K[ki] ~= nil and K[ki] < stop then stop = K[ki] end
    -- runs are appended in the order of their first day, so merging keeps them sorted
    append_run(runs, d, stop)
  end
  return runs
end

-- The union of two run lists, clipped to start no earlier than day `from`.
local function union_runs(r1, r2, from)
  local all, i, j = {}, 1, 1
  while r1[i] ~= nil or r2[j] ~= nil do
    local r
    if r2[j] == nil or (r1[i] ~= nil and r1[i][1] <= r2[j][1]) then
      r = r1[i]; i = i + 1
    else
      r = r2[j]; j = j + 1
    end
    append_run(all, math.max(r[1], from), r[2])
  end
  return all
end

-- Whether day t lies in one of the runs.
local function in_runs(runs, t)
  for _, r in ipairs(runs) do
    if t < r[1] then return false end
    if t < r[2] then return true end
  end
  return false
end
