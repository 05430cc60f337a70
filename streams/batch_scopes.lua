-- A customer's platform and channel (their breakdown codes, st.g, e.g. 'P0\tCu').
--
-- Each dimension is set by the customer's first applied activity event that carries it
-- and never changes afterwards; until then it is unknown (code DIMENSION_UNKNOWN).
-- When an event sets a dimension of a customer who is already counted, the customer's
-- scoped counters move from the unknown scope to the new value's: move_to(st, codes, copy)
-- rebuilds the customer's counters from nothing, day by day through the same
-- update_cohorts and update_membership as events, into a group that subtracts them
-- from the old scopes and adds them to the new ones (set_move_scopes), with the plain
-- totals left alone (scoped_only). So every breakdown keeps summing to the totals.

-- The codes after an activity event with `codes`: each unknown dimension of `g` takes
-- the event's code when the event has one.
local function codes_after(g, codes)
  local have, got, changed = code_list(g), code_list(codes), false
  for i, code in ipairs(have) do
    local new = got[i]
    if string.sub(code, 2) == DIMENSION_UNKNOWN and new ~= nil
        and string.sub(new, 2) ~= DIMENSION_UNKNOWN then
      have[i], changed = new, true
    end
  end
  if changed then return table.concat(have, CODES_SEPARATOR) end
  return g
end

-- The days of a customer's day bitmaps, each with the bitmaps that have it.
local function marked_days(st)
  local on, list = {}, {}
  for _, bitmap in ipairs({ 'a', 'x', 's', 'k', 'y' }) do
    for _, d in ipairs(days(st, bitmap)) do
      if on[d] == nil then
        on[d] = {}
        list[#list + 1] = d
      end
      on[d][#on[d] + 1] = bitmap
    end
  end
  table.sort(list)
  return list, on
end

-- Count the customer's scoped counters again into the current group: from a copy with
-- no day set, each day is marked and carried into the aggregates as an event would.
local function recount(st, copy)
  local cur = copy(st)
  cur.a, cur.x, cur.s, cur.k, cur.y = '', '', '', '', ''
  local list, on = marked_days(st)
  for _, d in ipairs(list) do
    local before = copy(cur)
    local new_activity = false
    for _, bitmap in ipairs(on[d]) do
      local set = mark(cur, bitmap, d)
      if bitmap == 'a' then new_activity = set end
    end
    if new_activity then update_cohorts(before, d) end
    update_membership(before, cur, d)
  end
end

-- Set the dimensions an activity event with `codes` gives the customer, moving what
-- the customer already counts to the new scopes. `copy` is the batch's state copy.
local function assign_dimensions(st, codes, copy)
  local g = st.g
  if codes == g or not string.find(g, DIMENSION_UNKNOWN, 1, true) then return end
  local new = codes_after(g, codes)
  if new == g then return end
  if st.a ~= '' or st.x ~= '' or st.s ~= '' or st.k ~= '' then
    set_move_scopes(g, new)
    scoped_only(function() recount(st, copy) end)
  end
  st.g = new
end
