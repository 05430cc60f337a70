-- A customer's base membership and subscriptions as runs of days.
--
-- In the base at the end of day t: latest activity a <= t with t - a < W and no churn
-- event on any day of [a, t]. base_runs(st) gives that as sorted, disjoint runs
-- {from, to} (to excluded), built from the day lists: each activity opens W days that
-- a churn event cuts short. The runs are kept on the state table (base_runs, with the
-- bitmaps they were built from in base_runs_of_a and base_runs_of_x) until a or x
-- changes; they are never changed in place.

local function base_runs(st)
  if st.base_runs_of_a == st.a and st.base_runs_of_x == st.x then return st.base_runs end
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
  st.base_runs, st.base_runs_of_a, st.base_runs_of_x = runs, st.a, st.x
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
