-- Shared by the Redis scripts (prepended when they are loaded): a customer's days are
-- bitmaps, where bit i of string s (least significant bit first in each byte) is
-- day o + i.
local floor, band, bor, lshift = math.floor, bit.band, bit.bor, bit.lshift

local function getbit(s, o, day)
  local i = day - o
  if i < 0 then return false end
  local byte = floor(i / 8) + 1
  if byte > #s then return false end
  return band(string.byte(s, byte), lshift(1, i % 8)) ~= 0
end

