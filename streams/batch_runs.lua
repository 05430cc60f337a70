-- A customer's base membership and live subscription as runs of days (base_rule.lua).
--
-- sub_runs(st): the days at whose end the subscription is live; base_runs(st): the days
-- at whose end the customer is in the base, the union of the activity runs and, from
-- the first activity day on, the subscription runs. Both are kept on the state table
-- (sub_runs, base_runs) with the bitmaps they were built from (runs_of), until one of
-- those changes; they are never changed in place.

local function runs_current(st, name, bitmaps)
  local of = st[name .. '_of']
  if of == nil then return false end
  for _, b in ipairs(bitmaps) do
    if of[b] ~= st[b] then return false end
  end
  return true
end

local function remember(st, name, runs, bitmaps)
  local of = {}
  for _, b in ipairs(bitmaps) do of[b] = st[b] end
  st[name], st[name .. '_of'] = runs, of
  return runs
end

local SUB_BITMAPS, BASE_BITMAPS = { 's', 'k', 'y' }, { 'a', 'x', 's', 'k', 'y' }

local function sub_runs(st)
  if runs_current(st, 'sub_runs', SUB_BITMAPS) then return st.sub_runs end
  local runs = subscription_runs(days(st, 's'), days(st, 'k'), days(st, 'y'), GRACE)
  return remember(st, 'sub_runs', runs, SUB_BITMAPS)
end

local function base_runs(st)
  if runs_current(st, 'base_runs', BASE_BITMAPS) then return st.base_runs end
  local A = days(st, 'a')
  local runs = activity_runs(A, days(st, 'x'), W)
  if A[1] ~= nil and st.s ~= '' then runs = union_runs(runs, sub_runs(st), A[1]) end
  return remember(st, 'base_runs', runs, BASE_BITMAPS)
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
