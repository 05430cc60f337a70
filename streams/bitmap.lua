-- Shared by the Redis scripts (prepended when they are loaded): a customer's days are
-- bitmaps, where bit i of string s (least significant bit first in each byte) is
-- day o + i; the scripts work on them decoded into sorted lists of days.
local floor, band, bor, lshift = math.floor, bit.band, bit.bor, bit.lshift

local function getbit(s, o, day)
  local i = day - o
  if i < 0 then return false end
  local byte = floor(i / 8) + 1
  if byte > #s then return false end
  return band(string.byte(s, byte), lshift(1, i % 8)) ~= 0
end

-- BITS[v]: the set bits of byte value v, lowest first.
local BITS = {}
for v = 0, 255 do
  local bits = {}
  for b = 0, 7 do
    if band(v, lshift(1, b)) ~= 0 then bits[#bits + 1] = b end
  end
  BITS[v] = bits
end

local function decode_days(s, o)
  local out, n = {}, 0
  for byte = 1, #s do
    local v = string.byte(s, byte)
    if v ~= 0 then
      local base = o + (byte - 1) * 8
      for _, b in ipairs(BITS[v]) do
        n = n + 1
        out[n] = base + b
      end
    end
  end
  return out
end
