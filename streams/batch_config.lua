-- What the batch script is told (apply_batch.lua has the whole KEYS/ARGV contract):
-- the JSON config and the shard's hash keys, as locals every batch module uses.
--
-- W churn window (days); WINS active-customer windows; WS week start (0 = Monday);
-- K cohort offsets kept; GRACE days a subscription stays live past its billing period;
-- QUICK tenure (days from first to last activity before the
-- first churn) under which that churn is quick; NEWKEY days after which a customer's
-- RFM key no longer carries the first day; FREQ and MONEY RFM score thresholds (money
-- in milli); NPS_DAYS the NPS window; LAG how many days the exporter's evaluation day
-- can lie before the day of an event applied (streams/state.py evaluation_lag_days);
-- PURE the pure activity types, each with a day bitmap in the customer's v.

local cfg = cjson.decode(ARGV[BatchArg.CONFIG])
local W, WINS, WS, K, GRACE = cfg.W, cfg.win, cfg.ws, cfg.K, cfg.grace
local QUICK, NEWKEY, FREQ, MONEY = cfg.quick, cfg.newkey, cfg.freq, cfg.money
local NPS_DAYS, LAG = cfg.nps, cfg.lag
local PURE = {} -- pure activity type -> its bitmap's index in a customer's v
for i, name in ipairs(cfg.pure) do PURE[name] = i end
local AGG, DAYS, PER = KEYS[BatchKey.TOTALS], KEYS[BatchKey.DAYS], KEYS[BatchKey.PERIODS]
local LINE, DUE = KEYS[BatchKey.TIMELINE], KEYS[BatchKey.DUE]
local PERIODS = { PeriodCode.DAY, PeriodCode.WEEK, PeriodCode.MONTH }
