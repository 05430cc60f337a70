-- What the batch script is told (apply_batch.lua has the whole KEYS/ARGV contract):
-- the JSON config and the shard's hash keys, as locals every batch module uses.
--
-- W churn window (days); WINS active-customer windows; WS week start (0 = Monday);
-- K cohort offsets kept; QUICK first-churn tenure that counts as quick; NEWKEY days
-- after which a customer's RFM key no longer carries the first day; FREQ and MONEY
-- RFM score thresholds (money in milli); PURE the pure activity types, each with a
-- day bitmap in the customer's v.

local cfg = cjson.decode(ARGV[BatchArg.CONFIG])
local W, WINS, WS, K = cfg.W, cfg.win, cfg.ws, cfg.K
local QUICK, NEWKEY, FREQ, MONEY = cfg.quick, cfg.newkey, cfg.freq, cfg.money
local PURE = {} -- pure activity type -> its bitmap's index in a customer's v
for i, name in ipairs(cfg.pure) do PURE[name] = i end
local AGG, DAYS, PER = KEYS[BatchKey.TOTALS], KEYS[BatchKey.DAYS], KEYS[BatchKey.PERIODS]
local LINE, DUE = KEYS[BatchKey.TIMELINE], KEYS[BatchKey.DUE]
local PERIODS = { PeriodCode.DAY, PeriodCode.WEEK, PeriodCode.MONTH }
