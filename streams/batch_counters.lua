-- How the batch changes the shard's counters: nothing is written until
-- flush_increments() at the end of the batch.
--
-- incr(key, field, delta): a plain counter. add_range(key, prefix, from, to, delta):
-- the counters prefix .. n for every n in [from, to). Scoped counters are also kept
-- per breakdown value of the current customer (field prefixes like "P0|" for platform
-- code 0, SCOPE_END): set_scopes(codes) chooses the customer's group, incr_scoped()
-- and the scoped difference arrays (scoped_edges, move_runs) count for all of its
-- scopes at once. set_move_scopes(from, to) chooses a group that takes what is counted
-- away from the scopes a customer leaves and adds it to those they join, and
-- scoped_only(fn) runs fn with the plain counters set aside: together they move a
-- customer's scoped counters when their platform or channel becomes known.

-- Increments are summed here and written once per field at the end of the batch:
-- many events of a batch touch the same day and period cells.
local pending = { [AGG] = {}, [DAYS] = {}, [PER] = {}, [LINE] = {} }

local function incr(key, field, delta)
  if delta ~= 0 then
    local cells = pending[key]
    cells[field] = (cells[field] or 0) + delta
  end
end

-- Counters over runs of consecutive numbers (days, offsets) are kept as difference
-- arrays until the end of the batch: an event adds or removes a run in O(1), and
-- the flush expands each array into one increment per number.
local ranges = { [DAYS] = {}, [PER] = {} }

-- Scoped counters are summed per group of customers with the same breakdown codes
-- (a handful per batch) and copied to each of the group's scopes at the flush, so an
-- event pays for one scope, not three.
local groups = {} -- breakdown codes -> group
local current_group -- the current customer's: scopes, their signs, cells and ranges by key

local function new_group(scopes, signs)
  return { scopes = scopes, signs = signs, cells = { [DAYS] = {}, [PER] = {} },
    ranges = { [DAYS] = {}, [PER] = {} } }
end

-- The codes of 'P0\tCu' as a list: { 'P0', 'Cu' }.
local function code_list(codes)
  local out = {}
  for code in string.gmatch(codes, '[^' .. CODES_SEPARATOR .. ']+') do out[#out + 1] = code end
  return out
end

local function set_scopes(codes)
  local group = groups[codes]
  if group == nil then
    local scopes, signs = { '' }, { 1 }
    for _, code in ipairs(code_list(codes)) do
      scopes[#scopes + 1] = code .. SCOPE_END
      signs[#signs + 1] = 1
    end
    group = new_group(scopes, signs)
    groups[codes] = group
  end
  current_group = group
end

-- A customer whose codes change from `from` to `to`: what is counted leaves the scope
-- of each dimension that changes and joins its new one; the totals stay as they are.
local function set_move_scopes(from, to)
  local name = from .. '>' .. to
  local group = groups[name]
  if group == nil then
    local scopes, signs = {}, {}
    local old, new = code_list(from), code_list(to)
    for i, code in ipairs(new) do
      if old[i] ~= code then
        scopes[#scopes + 1], signs[#signs + 1] = old[i] .. SCOPE_END, -1
        scopes[#scopes + 1], signs[#signs + 1] = code .. SCOPE_END, 1
      end
    end
    group = new_group(scopes, signs)
    groups[name] = group
  end
  current_group = group
end

local function incr_scoped(key, field, delta)
  if delta ~= 0 then
    local cells = current_group.cells[key]
    cells[field] = (cells[field] or 0) + delta
  end
end

local function spread_groups()
  for _, g in pairs(groups) do
    for key, cells in pairs(g.cells) do
      for field, delta in pairs(cells) do
        for i, scope in ipairs(g.scopes) do incr(key, scope .. field, delta * g.signs[i]) end
      end
    end
    for key, by_prefix in pairs(g.ranges) do
      local all = ranges[key]
      for prefix, edges in pairs(by_prefix) do
        for i, scope in ipairs(g.scopes) do
          local name, sign = scope .. prefix, g.signs[i]
          local e = all[name]
          if e == nil then e = {}; all[name] = e end
          for n, delta in pairs(edges) do e[n] = (e[n] or 0) + delta * sign end
        end
      end
    end
  end
end

local function add_range(key, prefix, from, to, delta)
  if from >= to or delta == 0 then return end
  local edges = ranges[key][prefix]
  if edges == nil then edges = {}; ranges[key][prefix] = edges end
  edges[from] = (edges[from] or 0) + delta
  edges[to] = (edges[to] or 0) - delta
end

local function expand_ranges()
  for key, by_prefix in pairs(ranges) do
    for prefix, edges in pairs(by_prefix) do
      local at = {}
      for n, delta in pairs(edges) do
        if delta ~= 0 then at[#at + 1] = n end
      end
      table.sort(at)
      local sum = 0
      for i = 1, #at - 1 do
        sum = sum + edges[at[i]]
        if sum ~= 0 then
          for n = at[i], at[i + 1] - 1 do incr(key, prefix .. n, sum) end
        end
      end
    end
  end
end

-- Run fn with the plain (unscoped) counters set aside and dropped afterwards: fn counts
-- only into the current group's scopes.
local function scoped_only(fn)
  local kept_pending, kept_ranges = pending, ranges
  pending = { [AGG] = {}, [DAYS] = {}, [PER] = {}, [LINE] = {} }
  ranges = { [DAYS] = {}, [PER] = {} }
  fn()
  pending, ranges = kept_pending, kept_ranges
end

local function flush_increments()
  spread_groups()
  expand_ranges()
  for key, cells in pairs(pending) do
    for field, delta in pairs(cells) do
      if delta ~= 0 then redis.call('HINCRBY', key, field, string.format('%d', delta)) end
    end
  end
end

-- The current group's difference array of a scoped day counter.
local function scoped_edges(key, prefix)
  local all = current_group.ranges[key]
  local e = all[prefix]
  if e == nil then e = {}; all[prefix] = e end
  return e
end

-- Add the non-zero edges to a scoped day counter; returns the days they sit on.
local function move_runs(key, prefix, edges)
  local at, e = {}, scoped_edges(key, prefix)
  for n, delta in pairs(edges) do
    if delta ~= 0 then
      at[#at + 1] = n
      e[n] = (e[n] or 0) + delta
    end
  end
  return at
end
